"""Verify anyone's backward rule: :func:`verify` and :func:`assert_rule_correct`.

For each dtype row, K random cotangents ``cₖ`` of the checked outputs are pulled back
through the rule (``jax.vjp`` of a ``jax.custom_vjp``; ``jax.jvp`` along every basis
direction for a ``jax.custom_jvp``) and compared, leaf by leaf, with

1. autodiff of the plain forward (``f.fun`` or ``reference=``): reverse mode where it
   works, else forward mode with the dot-product test ⟨vjp(c), eᵢ⟩ = ⟨c, jvp(eᵢ)⟩ (a
   ``lax.while_loop``, a Pallas kernel), in the row's own dtype for float32/float64 and in
   float64 for float16/bfloat16 rows;
2. float64 central differences of the plain forward at the same (rounded) inputs.

The rule is also checked to be linear in its cotangent: pullback(c₀ + c₁) = pullback(c₀) +
pullback(c₁) and pullback(β·c₀) = β·pullback(c₀). Each dtype row runs as the user's own
program would (float64 with x64 on, every other dtype with x64 off), compiled once: the
float64 row's program also computes the float64 references every row is compared with
(so float64 + float32 is two compilations); half-precision rows compute theirs at their
own rounded inputs. An exception in a row becomes that row's ERROR.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.check import _references as refs
from funcnet.check._compare import (
    NUMERICAL_RTOL_FLOOR,
    SUPPORTED_DTYPES,
    Comparison,
    compare,
    default_atol,
    default_rtol,
)
from funcnet.check._table import format_columns

TRANSFORMS = ("jit", "vmap", "grad")
# pullback(β·c) = β·pullback(c): a power of two, so a linear rule scales exactly.
_BETA = {"float16": 2.0**4, "bfloat16": 2.0**4}
_BETA_DEFAULT = 2.0**10
_FD_STEP = 1e-4
_FD_NOISE = 100 * float(np.finfo(np.float64).eps) / _FD_STEP


class VerifyRow(NamedTuple):
    """One row of a :class:`VerifyReport`: one leaf of one argument in one dtype (or one
    transformation, or a row that raised).

    ``argument`` is the argument's name (``x``, ``params``; ``arg 2`` when the signature
    has none) and ``leaf`` the path inside it (``['W']``; ``""`` for an array argument).
    ``reference`` says what the rule was compared with: ``"reverse"`` or ``"forward"``
    autodiff of the plain forward, ``"none"`` (finite differences only), or the
    transformation (``"jit"``, ``"vmap"``, ``"grad"``). ``autodiff``, ``numerical`` and
    ``linearity`` are :class:`~funcnet.check._compare.Comparison` (or ``None`` where not
    computed). ``status`` is ``PASS``, ``FAIL``, ``ERROR`` or ``n/a``; ``note`` says why.
    """

    dtype: str
    argument: str
    leaf: str
    reference: str
    autodiff: Comparison | None
    numerical: Comparison | None
    linearity: Comparison | None
    status: str
    note: str

    @property
    def passed(self) -> bool:
        """True for PASS and n/a (a transformation that does not apply)."""
        return self.status in ("PASS", "n/a")

    def describe(self) -> str:
        """One sentence naming the argument, leaf, dtype, reference and what went wrong."""
        where = f"argument {self.argument}" + (f", leaf {self.leaf}" if self.leaf else "")
        if self.status == "ERROR":
            return f"{self.dtype}: {where}: raised {self.note}"
        parts = []
        for label, c in (
            (f"{self.reference} autodiff", self.autodiff),
            ("float64 finite differences", self.numerical),
            ("linearity in the cotangent", self.linearity),
        ):
            if c is not None and not c.passed:
                parts.append(f"against {label}: {c.reason} (relative error {c.rel:.3g})")
        if self.reference in TRANSFORMS and self.autodiff is not None and not self.autodiff.passed:
            parts = [f"under {self.reference}: {self.note}"]
        return f"{self.dtype}: {where}: " + "; ".join(parts or [self.note])


class VerifyReport(NamedTuple):
    """The result of :func:`verify`: ``name`` of the checked function and its rows.
    ``print`` it for the table; ``.passed`` is True when no row failed or raised."""

    name: str
    rows: tuple[VerifyRow, ...]

    @property
    def passed(self) -> bool:
        """True when there is at least one row and no row failed or raised."""
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def results(self) -> tuple[VerifyRow, ...]:
        """The rows (the name of earlier versions)."""
        return self.rows

    def failures(self) -> list[VerifyRow]:
        """The rows that failed or raised."""
        return [r for r in self.rows if not r.passed]

    def __str__(self) -> str:
        return format_report(self)


def _fmt(c: Comparison | None, field: str) -> str:
    if c is None:
        return "-"
    v = getattr(c, field)
    return "nan" if v != v else f"{v:.2e}"


def format_report(report: VerifyReport) -> str:
    """The table: one line per dtype, argument leaf and transformation."""
    header = [
        "dtype",
        "argument",
        "reference",
        "autodiff abs",
        "autodiff rel",
        "numeric abs",
        "numeric rel",
        "linear rel",
        "result",
        "note",
    ]
    rows = [
        [
            r.dtype,
            r.argument + r.leaf,
            r.reference,
            _fmt(r.autodiff, "abs"),
            _fmt(r.autodiff, "rel"),
            _fmt(r.numerical, "abs"),
            _fmt(r.numerical, "rel"),
            _fmt(r.linearity, "rel"),
            r.status,
            r.note,
        ]
        for r in report.rows
    ]
    return f"{report.name}\n" + format_columns(header, rows, "<<<>>>>><<")


# --------------------------------------------------------------------------------------
# What is differentiated: the leaves of the arguments


class _Leaf(NamedTuple):
    argument: str  # its name
    path: str  # inside the argument
    value: Any
    kind: str  # "diff", "float" (a float array held fixed), "fixed" (anything else)


def _names(f: Callable[..., Any], n: int) -> list[str]:
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = []
    for i in range(n):
        if i < len(params) and params[i].kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            names.append(params[i].name)
        else:
            names.append(f"arg {i}")
    return names


def _float_kind(leaf: Any, where: str) -> str:
    """'float' for a real floating array or Python float, 'fixed' for anything else."""
    if isinstance(leaf, bool | int | str | bytes) or leaf is None or callable(leaf):
        return "fixed"
    if isinstance(leaf, float):
        return "float"
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return "fixed"
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"verify: {where} is {jnp.dtype(dtype).name}; complex rules are not supported: "
            "pass the real and imaginary parts as two float arguments"
        )
    return "float" if jnp.issubdtype(dtype, jnp.floating) else "fixed"


def _resolve_leaves(f, args, kwargs, argnums, nondiff) -> tuple[list[_Leaf], Any, list[str]]:
    """Flatten ``(args, kwargs)``; mark the leaves to differentiate."""
    names = _names(f, len(args))
    keys: list[int | str] = list(range(len(args))) + list(kwargs)
    labels = {k: (names[k] if isinstance(k, int) else k) for k in keys}
    float_args: list[int | str] = []
    leaves: list[_Leaf] = []
    structure = []
    for k in keys:
        value = args[k] if isinstance(k, int) else kwargs[k]
        if k in nondiff:
            structure.append(None)
            leaves.append(_Leaf(labels[k], "", value, "fixed"))
            continue
        flat, treedef = jax.tree_util.tree_flatten_with_path(value)
        structure.append(treedef)
        any_float = False
        for path, leaf in flat:
            where = f"argument {labels[k]}" + (
                f", leaf {jax.tree_util.keystr(path)}" if path else ""
            )
            kind = _float_kind(leaf, where)
            any_float |= kind == "float"
            leaves.append(_Leaf(labels[k], jax.tree_util.keystr(path), leaf, kind))
        if any_float:
            float_args.append(k)
    if argnums is None:
        chosen = float_args
    else:
        chosen = list(argnums) if isinstance(argnums, list | tuple) else [argnums]
        bad = [a for a in chosen if a not in keys or a in nondiff or a not in float_args]
        if bad:
            raise ValueError(
                f"verify: argnums must name arguments with float leaves (positions or keyword "
                f"names; not integer, bool, non-array or nondiff_argnums); those are "
                f"{[labels[k] + (f' ({k})' if isinstance(k, int) else '') for k in float_args]}"
                f", got {bad}"
            )
    chosen_labels = {labels[k] for k in chosen}
    marked = [
        leaf._replace(kind="diff")
        if leaf.kind == "float" and leaf.argument in chosen_labels
        else leaf
        for leaf in leaves
    ]
    return marked, (keys, structure, nondiff), [labels[k] for k in chosen]


def _rebuild(layout, values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    keys, structure, nondiff = layout
    args, kwargs, pos = [], {}, 0
    for k, treedef in zip(keys, structure, strict=True):
        if treedef is None:
            value = values[pos]
            pos += 1
        else:
            n = treedef.num_leaves
            value = jax.tree_util.tree_unflatten(treedef, values[pos : pos + n])
            pos += n
        if isinstance(k, int):
            args.append(value)
        else:
            kwargs[k] = value
    return args, kwargs


def _selector(outputs: Any) -> Callable[[Any], Any]:
    if outputs is None:
        return lambda out: out
    if callable(outputs):
        return outputs
    keys = list(outputs) if isinstance(outputs, list | tuple) else [outputs]

    def select(out):
        try:
            return tuple(out[k] for k in keys)
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(
                f"verify: outputs={outputs!r} does not select from the output "
                f"{jax.tree_util.tree_structure(out)}: {e}"
            ) from None

    return select


# --------------------------------------------------------------------------------------
# One dtype row


class _Setup(NamedTuple):
    name: str
    rule: Callable[..., Any]
    ref: Callable[..., Any]
    rule_mode: str  # "reverse" (custom_vjp, or any function) or "forward" (custom_jvp)
    leaves: list[_Leaf]
    layout: Any
    select: Callable[[Any], Any]
    cotangents: int
    seed: int
    rtol: dict[str, float]
    atol: dict[str, float]
    transforms: tuple[str, ...]


def _row_values(leaves: list[_Leaf], dtype: Any) -> list[Any]:
    """The leaves as a row's program sees them (call inside the row's x64 context): float
    arrays (and Python floats being differentiated) cast to ``dtype``, other arrays
    (integer, bool) as JAX arrays of the context's default widths, the rest unchanged."""
    out = []
    for leaf in leaves:
        if leaf.kind == "diff" or (leaf.kind == "float" and not isinstance(leaf.value, float)):
            out.append(jnp.asarray(np.asarray(leaf.value).astype(dtype)))
        elif leaf.kind == "fixed" and isinstance(leaf.value, np.ndarray | jax.Array):
            out.append(jnp.asarray(leaf.value))
        else:
            out.append(leaf.value)
    return out


def _leaf_fn(setup: _Setup, fn, values: list[Any]) -> Callable[[list], list]:
    """The function of the differentiated leaves returning the checked float outputs."""
    diff_at = [i for i, leaf in enumerate(setup.leaves) if leaf.kind == "diff"]

    def call(diff: list) -> list:
        full = list(values)
        for i, d in zip(diff_at, diff, strict=True):
            full[i] = d
        args, kwargs = _rebuild(setup.layout, full)
        outs = jax.tree_util.tree_leaves(setup.select(fn(*args, **kwargs)))
        outs = [o for o in outs if jnp.issubdtype(jnp.result_type(o), jnp.inexact)]
        _check_outputs(outs)
        return outs

    return call


def _draw(outs: list, setup: _Setup, beta: float) -> list:
    """The cotangents, stacked: ``max(K, 2)`` random ones, then c₀ + c₁ and β·c₀. Drawn in
    float32 from ``jax.random.key(seed)`` and cast to each output's dtype, so every row
    (and the float64 references) sees the same values."""
    drawn = max(setup.cotangents, 2)
    key = jax.random.key(setup.seed)
    cots = []
    for j, o in enumerate(outs):
        c = jax.random.normal(jax.random.fold_in(key, j), (drawn, *o.shape), jnp.float32)
        c = c.astype(o.dtype)  # then the combinations, exact in the row's dtype up to rounding
        cots.append(jnp.concatenate([c, c[:1] + c[1:2], jnp.asarray(beta, o.dtype) * c[:1]]))
    return cots


def _pull(mode: str, fun, diff, make_cots):
    """(cotangents, pullbacks of all of them) through ``fun`` in ``mode``."""
    if mode == "reverse":
        outs, pullback = jax.vjp(fun, diff)
        cots = make_cots(outs)
        return cots, refs.pull_reverse(pullback, cots)
    cots = make_cots(fun(diff))
    return cots, refs.forward(fun, diff, cots)


def _pullback(mode: str, fun, diff, cots):
    return (refs.reverse if mode == "reverse" else refs.forward)(fun, diff, cots)


# Small checks spend their time compiling, not running: compile them with XLA's cheaper
# backend passes (about a third less compile time on CPU; what runs is the same math).
_FAST_COMPILE_MAX_ELEMENTS = 4096
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _compiler_options(args) -> dict | None:
    size = sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(args))
    small = size <= _FAST_COMPILE_MAX_ELEMENTS and jax.default_backend() == "cpu"
    return dict(_FAST_COMPILE) if small else None


_MODES = {"reverse": ("reverse", "forward", "none"), "forward": ("forward", "reverse", "none")}


def _compiled(build: Callable[[str], Callable], prefer: str, *args) -> tuple[str, Any, str]:
    """Compile ``build(mode)`` for the first reference mode that traces (``prefer`` first,
    then the other autodiff mode, then none: finite differences only). Returns the mode,
    the compiled program and a note saying why the preferred mode was not used. When
    even ``none`` fails, the error is the rule's own: it is raised."""
    errors = {}
    for mode in _MODES[prefer]:
        try:
            program = jax.jit(build(mode)).lower(*args).compile(_compiler_options(args))
        except Exception as e:  # noqa: BLE001 - try the next mode; the last error is raised
            errors[mode] = e
            continue
        if mode == prefer:
            return mode, program, ""
        why = type(errors[prefer]).__name__
        if mode == "none":
            return (
                mode,
                program,
                f"finite differences only: autodiff fails on the plain forward ({why})",
            )
        return mode, program, f"{mode} mode: {prefer} mode fails on the plain forward ({why})"
    raise errors["none"]


class _Computed(NamedTuple):
    """What one compiled program gave (NumPy arrays), per differentiated leaf."""

    mode: str  # the reference's autodiff mode
    note: str
    cots: list  # the cotangents, stacked
    rule: list | None  # (K + 2 + ...) pullbacks per leaf through the rule
    autodiff: list | None  # K pullbacks per leaf through the plain forward
    numerical: list | None  # K per leaf, float64 central differences
    magnitude: float


def _program(setup: _Setup, dtype: str, values: list, *, rule: bool, autodiff: bool,
             numerical: bool) -> tuple[_Computed, Callable, Callable, list]:  # fmt: skip
    """Compile and run one program in the current x64 context at ``values`` cast to
    ``dtype``: the rule's pullbacks, the reference's (in the mode that works) and the
    float64 central differences, as asked. Also returns ``rule_fn``, ``ref_fn`` and the
    differentiated leaves (for the transformations)."""
    beta = _BETA.get(dtype, _BETA_DEFAULT)
    k = setup.cotangents
    diff = [v for v, leaf in zip(values, setup.leaves, strict=True) if leaf.kind == "diff"]
    rule_fn = _leaf_fn(setup, setup.rule, values)
    ref_fn = _leaf_fn(setup, setup.ref, values)

    def build(mode):
        def program(diff):
            out = {}
            if rule:
                cots, out["rule"] = _pull(
                    setup.rule_mode, rule_fn, diff, lambda o: _draw(o, setup, beta)
                )
            else:
                cots = _draw(jax.eval_shape(ref_fn, diff), setup, beta)
            out["cots"] = cots
            first = [c[:k] for c in cots]
            if autodiff and mode != "none":
                out["autodiff"] = _pullback(mode, ref_fn, diff, first)
            if numerical:
                out["numerical"] = refs.central_differences(ref_fn, diff, first, _FD_STEP)
                out["magnitude"] = refs.output_magnitude(ref_fn, diff, first)
            return out

        return program

    mode, compiled, note = _compiled(build, setup.rule_mode, diff)
    out = jax.device_get(compiled(diff))
    computed = _Computed(
        mode, note, out["cots"], out.get("rule"), out.get("autodiff"), out.get("numerical"),
        float(out.get("magnitude", 0.0)),
    )  # fmt: skip
    return computed, rule_fn, ref_fn, diff


def _float64_values(setup: _Setup, values: list | None = None) -> list:
    """The float64 inputs (x64 on): the user's values, or a row's (rounded) ones."""
    values = values if values is not None else [leaf.value for leaf in setup.leaves]
    out = []
    for v, leaf in zip(values, setup.leaves, strict=True):
        if leaf.kind == "diff" or (leaf.kind == "float" and not isinstance(leaf.value, float)):
            out.append(jnp.asarray(np.asarray(v).astype(np.float64)))
        elif leaf.kind == "fixed" and isinstance(v, np.ndarray | jax.Array):
            out.append(jnp.asarray(v))
        else:
            out.append(v)
    return out


def _rows(setup: _Setup, dtypes: list[str]) -> list[VerifyRow]:
    """Every dtype row. The float64 references (central differences, and autodiff for
    the float64 row) are computed once at the float64 inputs, in the float64 row's own
    program; the float32 row compares with them at its rounded inputs (the rounding moves
    the gradient by ~eps32·conditioning, far inside float32 tolerances), half-precision
    rows compute theirs at their own rounded inputs."""
    rows: list[VerifyRow] = []
    ref64, error64 = None, None
    if not {"float64", "float32"} & set(dtypes):  # half-precision rows have their own
        return [row for dtype in dtypes for row in _guarded(_low_precision_row, setup, dtype)]
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        values64 = _float64_values(setup)
        want_rule = "float64" in dtypes
        try:
            ref64, rule_fn, ref_fn, diff = _program(
                setup, "float64", values64, rule=want_rule, autodiff=want_rule, numerical=True
            )
        except Exception as e:  # noqa: BLE001 - the float64 row's ERROR
            error64 = e
            if want_rule and any(d != "float64" for d in dtypes):
                try:  # the references alone, for the other rows
                    ref64, *_ = _program(
                        setup, "float64", values64, rule=False, autodiff=False, numerical=True
                    )
                except Exception:  # noqa: BLE001 - the other rows go without them
                    ref64 = None
    for dtype in dtypes:
        try:
            if dtype == "float64":
                if error64 is not None:
                    raise error64
                with jax.enable_x64(True), jax.default_matmul_precision("highest"):
                    rows += _judge(setup, dtype, ref64, ref64)
                    rows += _transforms(setup, dtype, rule_fn, ref_fn, ref64.mode, diff,
                                        ref64.cots, ref64.rule)  # fmt: skip
            else:
                rows += _low_precision_row(setup, dtype, ref64, error64)
        except Exception as e:  # noqa: BLE001 - the row's ERROR; the other rows still run
            rows.append(
                VerifyRow(dtype, "(all)", "", "-", None, None, None, "ERROR", refs.first_line(e))
            )
    return rows


def _guarded(row_fn, setup: _Setup, dtype: str) -> list[VerifyRow]:
    """``row_fn``'s rows, or the row's ERROR."""
    try:
        return row_fn(setup, dtype, None, None)
    except Exception as e:  # noqa: BLE001 - the row's ERROR; the other rows still run
        return [VerifyRow(dtype, "(all)", "", "-", None, None, None, "ERROR", refs.first_line(e))]


def _low_precision_row(setup: _Setup, dtype: str, ref64: _Computed | None, error64) -> list:
    half = dtype in ("float16", "bfloat16")
    with jax.enable_x64(False), jax.default_matmul_precision("highest"):
        values = _row_values(setup.leaves, jnp.dtype(dtype))
        row, rule_fn, ref_fn, diff = _program(
            setup, dtype, values, rule=True, autodiff=not half, numerical=False
        )
        transform_rows = _transforms(setup, dtype, rule_fn, ref_fn, row.mode, diff, row.cots,
                                     row.rule)  # fmt: skip
    if half:
        # float64 references at the row's rounded inputs.
        with jax.enable_x64(True), jax.default_matmul_precision("highest"):
            ref64, *_ = _program(
                setup, "float64", _float64_values(setup, values), rule=False, autodiff=True,
                numerical=True,
            )  # fmt: skip
        return _judge(setup, dtype, row, ref64, autodiff_from=ref64) + transform_rows
    if ref64 is None:
        row = row._replace(note="; ".join(
            filter(None, [row.note, f"no float64 finite differences ({refs.first_line(error64)})"])
        ))  # fmt: skip
    return _judge(setup, dtype, row, ref64) + transform_rows


def _judge(setup: _Setup, dtype: str, row: _Computed, ref64: _Computed | None,
           autodiff_from: _Computed | None = None) -> list[VerifyRow]:  # fmt: skip
    """Each leaf's rule pullbacks against the references: per leaf, its own scale."""
    k = setup.cotangents
    drawn = max(k, 2)
    beta = _BETA.get(dtype, _BETA_DEFAULT)
    source = autodiff_from if autodiff_from is not None else row
    ref = source.autodiff
    numerical = ref64.numerical if ref64 is not None else None
    label = f"{source.mode} f64" if autodiff_from is not None else source.mode
    basis = ref if ref is not None else numerical
    if basis is None:
        raise ValueError("no reference could be computed (see the float64 row)")
    grad_scale = max((float(np.max(np.abs(a), initial=0.0)) for a in basis), default=0.0)
    grad_scale = grad_scale if np.isfinite(grad_scale) else 0.0
    magnitude = ref64.magnitude if ref64 is not None else 0.0
    user_atol, user_rtol = setup.atol.get(dtype), setup.rtol.get(dtype)
    floor = user_atol if user_atol is not None else default_atol(dtype, grad_scale)
    fd_floor = user_atol if user_atol is not None else max(floor, _FD_NOISE * magnitude)
    rtol_ad = user_rtol if user_rtol is not None else default_rtol(dtype, "autodiff")
    rtol_fd = max(
        user_rtol if user_rtol is not None else default_rtol(dtype, "numerical"),
        NUMERICAL_RTOL_FLOOR,
    )
    notes = [n for n in (row.note, source.note if source is not row else "") if n]
    rows = []
    diff_leaves = [leaf for leaf in setup.leaves if leaf.kind == "diff"]
    for j, leaf in enumerate(diff_leaves):
        r = np.asarray(row.rule[j])
        ad = compare(r[:k], ref[j], rtol_ad, floor) if ref is not None else None
        fd = compare(r[:k], numerical[j], rtol_fd, fd_floor) if numerical is not None else None
        lin = None
        if np.isfinite(r).all():  # a non-finite rule already fails above
            lin = compare(
                np.stack([r[drawn], r[drawn + 1] / beta]),
                np.stack([r[0] + r[1], r[0]]),
                rtol_ad,
                floor,
            )
        checks = [c for c in (ad, fd, lin) if c is not None]
        status = "PASS" if all(c.passed for c in checks) else "FAIL"
        why = "; ".join(
            f"{name}: {c.reason}"
            for name, c in (("autodiff", ad), ("numeric", fd), ("linearity", lin))
            if c is not None and not c.passed
        )
        rows.append(
            VerifyRow(
                dtype, leaf.argument, leaf.path, label, ad, fd, lin, status, why or "; ".join(notes)
            )  # fmt: skip
        )
    return rows


def _check_outputs(outs: list) -> None:
    if not outs:
        raise ValueError("verify: f has no float outputs to check (after outputs=)")
    for o in outs:
        if jnp.issubdtype(o.dtype, jnp.complexfloating):
            raise TypeError(
                f"verify: an output is {jnp.dtype(o.dtype).name}; complex rules are not "
                "supported: return the real and imaginary parts as two float outputs"
            )
    if sum(int(np.prod(o.shape)) for o in outs) == 0:
        raise ValueError("verify: the checked outputs have no elements: nothing to compare")


# --------------------------------------------------------------------------------------
# Transformations


def _transforms(setup, dtype, rule_fn, ref_fn, ref_mode, diff, cots, rule) -> list[VerifyRow]:
    rows = []
    for name in setup.transforms:
        try:
            rows.append(_transform(name, setup, dtype, rule_fn, ref_fn, ref_mode, diff, cots, rule))
        except Exception as e:  # noqa: BLE001 - reported as the row's ERROR
            rows.append(
                VerifyRow(dtype, "(all)", "", name, None, None, None, "ERROR", refs.first_line(e))
            )
    return rows


def _transform(name, setup, dtype, rule_fn, ref_fn, ref_mode, diff, cots, rule) -> VerifyRow:
    diff_leaves = [leaf for leaf in setup.leaves if leaf.kind == "diff"]
    rtol = setup.rtol.get(dtype, default_rtol(dtype, "numerical"))
    c0 = [c[:1] for c in cots]
    if name == "jit":
        # The compiled rule (``rule``) against the same rule run eagerly.
        with jax.disable_jit():
            got = _pullback(setup.rule_mode, rule_fn, diff, c0)
        want = [np.asarray(r[:1]) for r in rule]
        what = "jit = eager"
    elif name == "vmap":
        # Two examples at once (the same inputs, the first two cotangents) against the
        # per-example pullbacks computed above.
        batched = [jnp.stack([d, d]) for d in diff]
        cots2 = [c[:2] for c in cots]

        def one(d, c):
            return [p[0] for p in _pullback(setup.rule_mode, rule_fn, d, [ci[None] for ci in c])]

        got = jax.jit(jax.vmap(one))(batched, cots2)
        want = [np.asarray(r[:2]) for r in rule]
        what = "vmap = per example"
    elif name == "grad":
        if ref_mode != "reverse":
            return VerifyRow(
                dtype, "(all)", "", name, None, None, None, "n/a",
                "the plain forward has no reverse-mode second derivative",
            )  # fmt: skip
        rng = np.random.default_rng((setup.seed, 0x2D))
        v = [jnp.asarray(rng.standard_normal(d.shape).astype(d.dtype)) for d in diff]

        def second(fn):
            def h(d):
                pulled = refs.reverse(fn, d, c0)
                return sum(jnp.sum(p[0] * vi) for p, vi in zip(pulled, v, strict=True))

            return jax.jit(jax.grad(h))(diff)

        why = refs.traceable(
            lambda d: jax.grad(lambda x: refs.reverse(rule_fn, x, c0)[0].sum())(d), diff
        )
        if why:
            return VerifyRow(
                dtype, "(all)", "", name, None, None, None, "n/a",
                f"the rule is not differentiable ({why})",
            )  # fmt: skip
        got, want = second(rule_fn), second(ref_fn)
        got, want = [np.asarray(g)[None] for g in got], [np.asarray(w)[None] for w in want]
        what = "2nd order = plain's"
    else:  # pragma: no cover - validated in verify
        raise ValueError(name)
    got = [np.asarray(g) for g in got]
    scale = max((float(np.max(np.abs(w), initial=0.0)) for w in want), default=0.0)
    floor = setup.atol.get(dtype, default_atol(dtype, scale))
    comps = [compare(g, w, rtol, floor) for g, w in zip(got, want, strict=True)]
    bad = next((j for j, c in enumerate(comps) if not c.passed), None)
    j = bad if bad is not None else int(np.argmax([c.rel for c in comps]))
    c = comps[j]
    status = "PASS" if bad is None else "FAIL"
    leaf = diff_leaves[j]
    return VerifyRow(dtype, leaf.argument, leaf.path, name, c, None, None, status,
                     what if bad is None else f"{what} fails: {c.reason}")  # fmt: skip


# --------------------------------------------------------------------------------------
# The entry points


def verify(
    f: Callable[..., Any],
    *args: Any,
    kwargs: Mapping[str, Any] | None = None,
    argnums: int | str | Sequence[int | str] | None = None,
    reference: Callable[..., Any] | None = None,
    dtypes: Sequence[Any] = (jnp.float64, jnp.float32),
    outputs: Any = None,
    rtol: float | Mapping[Any, float] | None = None,
    atol: float | Mapping[Any, float] | None = None,
    cotangents: int = 3,
    transforms: Sequence[str] = (),
    seed: int = 0,
) -> VerifyReport:
    """Verify a hand-written derivative rule (``jax.custom_vjp`` or ``jax.custom_jvp``).

    In each dtype of ``dtypes``, ``cotangents`` random cotangents of the checked outputs
    are pulled back through the rule and compared, leaf by leaf, with autodiff of the
    plain forward (reverse mode, or forward mode where reverse mode cannot go, e.g.
    ``lax.while_loop`` or a Pallas kernel) and with float64 central differences; the rule
    must also be linear in its cotangent. A ``custom_jvp`` rule is applied in forward mode
    along every basis direction. See ``docs/verify.md``.

    Args:
        f: the function with the rule. Its plain forward is ``f.fun``; any other function
            needs ``reference``.
        *args: example inputs: arrays or pytrees. Float leaves (arrays, and Python floats)
            of the arguments in ``argnums`` are differentiated; integer and bool leaves,
            non-arrays (callables, strings, ints, ``None``) and ``f.nondiff_argnums`` are
            held fixed. Complex inputs raise ``TypeError``.
        kwargs: keyword arguments of ``f`` (held fixed or differentiated like ``args``).
        argnums: which arguments to differentiate, by position or keyword name (default:
            every argument with a float leaf).
        reference: the function the rule is the derivative of (default ``f.fun``). For a
            straight-through or other surrogate rule, the surrogate (e.g. the identity).
        dtypes: a row per dtype: float64, float32, float16, bfloat16. float64 runs with
            x64 on, the others with x64 off (as the user's program would).
        outputs: check only some outputs: an index or key of the output (or a list of
            them), or a function of the output returning the part to check.
        rtol: relative tolerance of every comparison: one number for every row, or a
            mapping from dtype to number (the other rows keep their defaults, see
            ``docs/verify.md``); finite differences are never held below 1e-7.
        atol: absolute floor of every comparison, given like ``rtol`` (default: 16 eps of
            the row's dtype times the largest reference cotangent of the call).
        cotangents: random cotangents per row (>= 1; default 3).
        transforms: also check the rule under ``"jit"`` (equals eager), ``"vmap"``
            (equals per example) and ``"grad"`` (second order through the rule equals that
            of the plain forward, where both exist).
        seed: of the random cotangents.

    Returns:
        A :class:`VerifyReport`: ``print`` it for the table, ``.passed``, ``.failures()``.

    Raises:
        TypeError: ``f`` has no plain forward and no ``reference``; complex inputs.
        ValueError: nothing to differentiate (no float argument, or no element), an
            ``argnums`` entry that is not a float argument, empty or unsupported ``dtypes``,
            a bad option.
    """
    setup = _setup(f, args, kwargs, argnums, reference, dtypes, outputs, rtol, atol,
                   cotangents, transforms, seed)  # fmt: skip
    rows = _rows(setup, [jnp.dtype(d).name for d in dtypes])
    return VerifyReport(setup.name, tuple(rows))


def _setup(f, args, kwargs, argnums, reference, dtypes, outputs, rtol, atol, cotangents,
           transforms, seed) -> _Setup:  # fmt: skip
    if not callable(f):
        raise TypeError(f"verify: f must be a function, got {type(f).__name__}")
    if reference is not None and not callable(reference):
        raise TypeError(f"verify: reference must be a function, got {type(reference).__name__}")
    inner = _unwrap(f)
    plain = getattr(inner, "fun", None)
    ref = reference if reference is not None else plain
    if not callable(ref):
        raise TypeError(
            f"verify: {getattr(f, '__name__', type(f).__name__)} is not a jax.custom_vjp "
            "or jax.custom_jvp function (it has no .fun, the plain forward to compare with); "
            "pass reference=the_same_function_without_the_custom_rule"
        )
    dtypes = list(dtypes)
    if not dtypes:
        raise ValueError("verify: dtypes is empty: give at least one, e.g. (jnp.float64,)")
    names = []
    for d in dtypes:
        try:
            names.append(jnp.dtype(d).name)
        except TypeError:
            names.append(repr(d))
    bad = [n for n in names if n not in SUPPORTED_DTYPES]
    if bad:
        raise ValueError(f"verify: dtypes must be among {list(SUPPORTED_DTYPES)}, got {bad}")
    if isinstance(cotangents, bool) or not isinstance(cotangents, int) or cotangents < 1:
        raise ValueError(f"verify: cotangents must be an int >= 1, got {cotangents!r}")
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if isinstance(transforms, str) or unknown:
        raise ValueError(
            f"verify: transforms must be a sequence from {TRANSFORMS}, got {transforms!r}"
        )
    rtol, atol = _tolerances("rtol", rtol, names), _tolerances("atol", atol, names)
    kwargs = dict(kwargs or {})
    nondiff = set(getattr(inner, "nondiff_argnums", ()) or ())
    leaves, layout, chosen = _resolve_leaves(ref if reference is None else f, args, kwargs,
                                             argnums, nondiff)  # fmt: skip
    diff = [leaf for leaf in leaves if leaf.kind == "diff"]
    if not diff:
        raise ValueError(
            "verify: nothing to differentiate: no argument has a float leaf (integer, bool, "
            "non-array and nondiff_argnums arguments are held fixed); pass float arrays"
        )
    if sum(np.size(leaf.value) for leaf in diff) == 0:
        raise ValueError(
            f"verify: the differentiated arguments {chosen} have no elements: nothing to compare"
        )
    rule_mode = "forward" if isinstance(inner, jax.custom_jvp) else "reverse"
    name = getattr(f, "__name__", None) or getattr(plain, "__name__", None) or type(f).__name__
    return _Setup(name, f, ref, rule_mode, leaves, layout, _selector(outputs), cotangents,
                  seed, rtol, atol, tuple(transforms))  # fmt: skip


def _unwrap(f: Callable[..., Any]) -> Callable[..., Any]:
    """The custom_vjp/custom_jvp inside ``jax.jit(f)`` or a ``functools.wraps`` wrapper."""
    seen = 0
    while not isinstance(f, jax.custom_vjp | jax.custom_jvp) and seen < 8:
        inner = getattr(f, "__wrapped__", None)
        if inner is None:
            break
        f, seen = inner, seen + 1
    return f


def _tolerances(label: str, tol: Any, names: list[str]) -> dict[str, float]:
    """``rtol``/``atol`` as {dtype name: value} for the rows that set one."""
    if tol is None:
        return {}
    items = tol.items() if isinstance(tol, Mapping) else [(n, tol) for n in names]
    out = {}
    for d, v in items:
        try:
            name = jnp.dtype(d).name
        except TypeError:
            raise ValueError(f"verify: {label} keys must be dtypes, got {d!r}") from None
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
            raise ValueError(f"verify: {label} must be a finite number >= 0, got {v!r}")
        out[name] = float(v)
    return out


def assert_rule_correct(f: Callable[..., Any], *args: Any, **options: Any) -> VerifyReport:
    """:func:`verify` with the same options, raising ``AssertionError`` when a row fails or
    raises: the message names the dtype, argument, leaf and reference of each failure,
    then the table. Returns the report when everything passes (for pytest)."""
    report = verify(f, *args, **options)
    if not report.passed:
        lines = "\n".join(f"  - {r.describe()}" for r in report.failures())
        if not report.rows:
            lines = "  - no rows were checked"
        raise AssertionError(f"the rule of {report.name} is wrong:\n{lines}\n{report}")
    return report
