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

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.check import _arguments as arguments
from funcnet.check import _references as refs
from funcnet.check import _transforms as tr
from funcnet.check._compare import (
    NUMERICAL_RTOL_FLOOR,
    compare,
    default_atol,
    default_rtol,
    finite_scale,
    leaf_atol,
    leaf_rounding,
)
from funcnet.check._report import VerifyReport, VerifyRow, error_row

# pullback(β·c) = β·pullback(c): a power of two, so a linear rule scales exactly.
_BETA = {"float16": 2.0**4, "bfloat16": 2.0**4}
_BETA_DEFAULT = 2.0**10
_FD_STEP = 1e-4
_FD_NOISE = 100 * float(np.finfo(np.float64).eps) / _FD_STEP


# --------------------------------------------------------------------------------------
# One dtype row


def _leaf_fn(setup: arguments.Setup, fn, values: list[Any]) -> Callable[[list], list]:
    """The function of the differentiated leaves returning the checked float outputs."""
    diff_at = [i for i, leaf in enumerate(setup.leaves) if leaf.kind == "diff"]

    def call(diff: list) -> list:
        full = list(values)
        for i, d in zip(diff_at, diff, strict=True):
            full[i] = d
        args, kwargs = arguments.rebuild(setup.layout, full)
        outs = jax.tree_util.tree_leaves(setup.select(fn(*args, **kwargs)))
        outs = [o for o in outs if jnp.issubdtype(jnp.result_type(o), jnp.inexact)]
        _check_outputs(outs)
        return outs

    return call


def _draw(outs: list, setup: arguments.Setup, beta: float) -> list:
    """The cotangents, stacked: ``max(K, 2)`` random ones, then c₀ + c₁ and β·c₀. Drawn in
    float32 from ``jax.random.key(seed)`` and cast to each output's dtype, so every row
    (and the float64 references) sees the same values. ``outs`` need only shapes and
    dtypes. Drawn eagerly, outside the compiled program, which takes them as an argument:
    inside it XLA may compute them twice (once for the rule's pullbacks, once for the
    reference's) with other float32 roundings, a 1-ulp difference that a float64 row
    would report as the rule's error."""
    drawn = max(setup.cotangents, 2)
    key = jax.random.key(setup.seed)
    cots = []
    for j, o in enumerate(outs):
        c = jax.random.normal(jax.random.fold_in(key, j), (drawn, *o.shape), jnp.float32)
        c = c.astype(o.dtype)  # then the combinations, exact in the row's dtype up to rounding
        cots.append(jnp.concatenate([c, c[:1] + c[1:2], jnp.asarray(beta, o.dtype) * c[:1]]))
    return cots


# Small checks spend their time compiling, not running: compile them with XLA's cheaper
# backend passes (about a third less compile time on CPU; what runs is the same math).
_FAST_COMPILE_MAX_ELEMENTS = 4096
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _compiler_options(diff) -> dict | None:
    size = sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(diff))
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
            program = jax.jit(build(mode)).lower(*args).compile(_compiler_options(args[0]))
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


def _program(setup: arguments.Setup, dtype: str, values: list, *, rule: bool, autodiff: bool,
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

    cots = _draw(jax.eval_shape(rule_fn if rule else ref_fn, diff), setup, beta)

    def build(mode):
        def program(diff, cots):
            out = {"cots": cots}
            if rule:
                out["rule"] = tr.pullback(setup.rule_mode, rule_fn, diff, cots)
            first = [c[:k] for c in cots]
            if autodiff and mode != "none":
                out["autodiff"] = tr.pullback(mode, ref_fn, diff, first)
            if numerical:
                out["numerical"] = refs.central_differences(ref_fn, diff, first, _FD_STEP)
                out["magnitude"] = refs.output_magnitude(ref_fn, diff, first)
            return out

        return program

    mode, compiled, note = _compiled(build, setup.rule_mode, diff, cots)
    out = jax.device_get(compiled(diff, cots))
    computed = _Computed(
        mode, note, out["cots"], out.get("rule"), out.get("autodiff"), out.get("numerical"),
        float(out.get("magnitude", 0.0)),
    )  # fmt: skip
    return computed, rule_fn, ref_fn, diff


def _rows(setup: arguments.Setup, dtypes: list[str]) -> list[VerifyRow]:
    """Every dtype row. The float64 references (central differences, autodiff and the
    rule in float64) are computed once, in the float64 row's own program; with a float32
    row, at the inputs rounded to float32 where they survive it
    (:func:`arguments.float32_point`), so that the float32 row is compared with
    references at its own inputs. Half-precision rows compute theirs at their own
    rounded inputs."""
    rows: list[VerifyRow] = []
    ref64, error64 = None, None
    if not {"float64", "float32"} & set(dtypes):  # half-precision rows have their own
        return [row for dtype in dtypes for row in _guarded(_low_precision_row, setup, dtype)]
    point = arguments.float32_point(setup) if "float32" in dtypes else None
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        values64 = arguments.float64_values(setup, point)
        ref64, rule_fn, ref_fn, diff, error64 = _float64_program(setup, values64)
    for dtype in dtypes:
        try:
            if dtype == "float64":
                if error64 is not None:
                    raise error64
                with jax.enable_x64(True), jax.default_matmul_precision("highest"):
                    rows += _judge(setup, dtype, ref64, ref64)
                    rows += tr.transforms(setup, dtype, rule_fn, ref_fn, diff, ref64.cots,
                                          ref64.rule)  # fmt: skip
            else:
                rows += _low_precision_row(setup, dtype, ref64, error64)
        except Exception as e:  # noqa: BLE001 - the row's ERROR; the other rows still run
            rows.append(error_row(dtype, "-", e))
    return rows


def _float64_program(setup: arguments.Setup, values64: list, *, with_autodiff=False):
    """The float64 program (in an x64 context) at ``values64``: the rule's pullbacks,
    autodiff of the plain forward and the central differences — the float64 row, and the
    float64 values other rows measure their own rounding against. Where it raises (the
    rule, or the plain forward's autodiff, fails in float64), the central differences
    alone (``with_autodiff``: and autodiff, the reference of a half-precision row).
    Returns ``(computed or None, rule_fn, ref_fn, diff, error)``; the functions and
    ``diff`` only from the whole program, ``error`` its exception."""
    try:
        return (*_program(setup, "float64", values64, rule=True, autodiff=True,
                          numerical=True), None)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the float64 row's ERROR, the others go on
        error = e
    try:
        computed, *_ = _program(
            setup, "float64", values64, rule=False, autodiff=with_autodiff, numerical=True
        )
    except Exception:  # noqa: BLE001 - the other rows go without float64 references
        computed = None
    return computed, None, None, None, error


def _guarded(row_fn, setup: arguments.Setup, dtype: str) -> list[VerifyRow]:
    """``row_fn``'s rows, or the row's ERROR."""
    try:
        return row_fn(setup, dtype, None, None)
    except Exception as e:  # noqa: BLE001 - the row's ERROR; the other rows still run
        return [error_row(dtype, "-", e)]


def _low_precision_row(
    setup: arguments.Setup, dtype: str, ref64: _Computed | None, error64
) -> list:
    half = dtype in ("float16", "bfloat16")
    with jax.enable_x64(False), jax.default_matmul_precision("highest"):
        values = arguments.row_values(setup.leaves, jnp.dtype(dtype))
        row, rule_fn, ref_fn, diff = _program(
            setup, dtype, values, rule=True, autodiff=True, numerical=False
        )
        transform_rows = tr.transforms(setup, dtype, rule_fn, ref_fn, diff, row.cots, row.rule)
    if half:
        # float64 references at the row's rounded inputs.
        with jax.enable_x64(True), jax.default_matmul_precision("highest"):
            values64 = arguments.float64_values(setup, values)
            ref64, *_, error = _float64_program(setup, values64, with_autodiff=True)
        if ref64 is None:
            raise error
        return _judge(setup, dtype, row, ref64, autodiff_from=ref64) + transform_rows
    if ref64 is None:
        row = row._replace(note="; ".join(
            filter(None, [row.note, f"no float64 finite differences ({refs.first_line(error64)})"])
        ))  # fmt: skip
    return _judge(setup, dtype, row, ref64) + transform_rows


def _judge(setup: arguments.Setup, dtype: str, row: _Computed, ref64: _Computed | None,
           autodiff_from: _Computed | None = None) -> list[VerifyRow]:  # fmt: skip
    """Each leaf's rule pullbacks against the references: per leaf, its own scale."""
    k = setup.cotangents
    source = autodiff_from if autodiff_from is not None else row
    ref = source.autodiff
    numerical = ref64.numerical if ref64 is not None else None
    label = f"{source.mode} f64" if autodiff_from is not None else source.mode
    if ref is None and numerical is None:
        raise ValueError("no reference could be computed (see the float64 row)")
    call_floor = default_atol(dtype, finite_scale(*(ref if ref is not None else numerical)))
    magnitude = ref64.magnitude if ref64 is not None else 0.0
    precise = _float64_reference(dtype, ref64)
    user_atol, user_rtol = setup.atol.get(dtype), setup.rtol.get(dtype)
    rtol_ad = user_rtol if user_rtol is not None else default_rtol(dtype, "autodiff")
    rtol_fd = max(
        user_rtol if user_rtol is not None else default_rtol(dtype, "numerical"),
        NUMERICAL_RTOL_FLOOR,
    )
    notes = [n for n in (row.note, source.note if source is not row else "") if n]
    resolution = _FD_NOISE * magnitude  # the smallest gradient the differences resolve
    unresolved = user_atol is None and _all_within(ref64, resolution)
    rows = []
    diff_leaves = [leaf for leaf in setup.leaves if leaf.kind == "diff"]
    for j, leaf in enumerate(diff_leaves):
        pairs = _rounding_pairs(row, ref64, precise, j, k)
        # autodiff in this dtype against float64 autodiff (not against the differences,
        # whose own error is no rounding)
        autodiff_pair = None
        if precise is not None and row.autodiff is not None and ref64.autodiff is not None:
            autodiff_pair = (row.autodiff[j], ref64.autodiff[j])
        if user_atol is not None:
            floor = fd_floor = user_atol
        elif unresolved:
            floor = fd_floor = max(resolution, leaf_rounding(dtype, pairs) or 0.0)
        else:
            floor = leaf_atol(dtype, call_floor, pairs, autodiff_pair)
            fd_floor = max(floor, resolution)
        r = np.asarray(row.rule[j])
        ad = compare(r[:k], ref[j], rtol_ad, floor) if ref is not None else None
        fd = compare(r[:k], numerical[j], rtol_fd, fd_floor) if numerical is not None else None
        lin = _linearity(r, dtype, k, rtol_ad, floor)
        if unresolved:
            ad_counted, fd_counted = None, fd
            why_not = [
                f"every gradient checked is zero to within what float64 finite differences "
                f"resolve ({resolution:.2g}), where autodiff's rounding has no scale to be "
                "judged against: judged by the finite differences (atol= judges finer)"
            ]
        else:
            ad_counted, fd_counted, why_not = _counted(ad, fd, ref, numerical, j, rtol_fd, fd_floor)
        checks = [c for c in (ad_counted, fd_counted, lin) if c is not None]
        status = "PASS" if all(c.passed for c in checks) else "FAIL"
        why = "; ".join(
            f"{name}: {c.reason}"
            for name, c in (("autodiff", ad_counted), ("numeric", fd_counted), ("linearity", lin))
            if c is not None and not c.passed
        )
        if ad_counted is not None and not ad_counted.passed and fd_counted is not None:
            if fd_counted.passed:
                why += (
                    "; the finite differences agree with the rule (to their tolerance): a "
                    "rule accurate only to a solver's tolerance needs rtol=, and one for a "
                    "forward whose autodiff is not the derivative meant (an op that reads "
                    "part of its input, as cholesky's lower triangle) needs reference="
                )
        counted = [x[j] for x, c in ((ref, ad_counted), (numerical, fd_counted)) if c is not None]
        if why and counted and all(finite_scale(x) == 0 for x in counted):
            why += (
                "; a surrogate rule (straight-through, gradient reversal) needs reference= "
                "the function it differentiates"
            )
        rows.append(
            VerifyRow(
                dtype,
                leaf.argument,
                leaf.path,
                label,
                ad,
                fd,
                lin,
                status,
                why or "; ".join([*why_not, *notes]),
            )  # fmt: skip
        )
    return rows


def _all_within(ref64: _Computed | None, level: float) -> bool:
    """Whether every differentiated leaf's float64 references (the central differences,
    and autodiff where it was computed) are finite and at most ``level`` in size: the
    call has no gradient the finite differences resolve (an exactly zero gradient, a
    sum that cancels), so the call's floor, a few eps of its largest gradient, is
    itself rounding noise."""
    if ref64 is None or ref64.numerical is None or not level > 0:
        return False
    leaves = [*ref64.numerical, *(ref64.autodiff or [])]
    return all(
        np.isfinite(a).all() and finite_scale(a) <= level
        for a in (np.asarray(leaf, np.float64) for leaf in leaves)
    )


def _float64_reference(dtype: str, ref64: _Computed | None) -> list | None:
    """Per leaf, the float64 values a float32 or half-precision row's own autodiff is
    measured against to see the rounding each leaf carries (:func:`leaf_atol`): float64
    autodiff where it was computed, else the float64 finite differences; None for the
    float64 row."""
    if dtype == "float64":
        return None
    for candidate in (ref64.autodiff if ref64 is not None else None,
                      ref64.numerical if ref64 is not None else None):  # fmt: skip
        if candidate is not None:
            return candidate
    return None


def _rounding_pairs(row: _Computed, ref64: _Computed | None, precise, j: int, k: int):
    """Leaf ``j``'s values in the row's dtype beside the same in float64, whose
    differences are the rounding the leaf carries in this dtype: the plain forward's
    autodiff against the float64 reference, the rule against the rule in float64."""
    if precise is None:
        return []
    pairs = []
    if row.autodiff is not None:
        pairs.append((row.autodiff[j], precise[j]))
    if ref64 is not None and ref64.rule is not None:
        pairs.append((np.asarray(row.rule[j])[:k], np.asarray(ref64.rule[j])[:k]))
    return pairs


def _linearity(r: np.ndarray, dtype: str, k: int, rtol: float, floor: float):
    """pullback(c₀ + c₁) = pullback(c₀) + pullback(c₁) and pullback(β·c₀) = β·pullback(c₀);
    None where the rule is not finite (that already fails against the references)."""
    if not np.isfinite(r).all():
        return None
    drawn = max(k, 2)
    beta = _BETA.get(dtype, _BETA_DEFAULT)
    return compare(
        np.stack([r[drawn], r[drawn + 1] / beta]), np.stack([r[0] + r[1], r[0]]), rtol, floor
    )


def _counted(ad, fd, ref, numerical, j: int, rtol_fd: float, fd_floor: float):
    """Which comparisons decide a leaf, and notes on those left out. The rule is the
    derivative of the plain forward when it agrees with the plain forward's autodiff; the
    finite differences are the independent check of both, so they do not count where
    they disagree with that autodiff as much as with the rule (a step too coarse for the
    curvature or for |x|, a forward computed in float32, random draws that change with
    x64, a ``stop_gradient``). Where the autodiff is NaN/inf (a ``where`` or a ``sqrt``
    at 0 in the plain forward) and the finite differences agree with the rule, they
    decide alone."""
    if ad is None or fd is None:
        return ad, fd, []
    if not np.isfinite(np.asarray(ref[j], np.float64)).all() and fd.passed:
        return (
            None,
            fd,
            [
                "autodiff of the plain forward is NaN/inf at these inputs: judged against the "
                "finite differences"
            ],
        )
    if ad.passed and not fd.passed and np.isfinite(np.asarray(numerical[j])).all():
        cross = compare(ref[j], numerical[j], rtol_fd, fd_floor)
        if not cross.passed:
            return (
                ad,
                None,
                [
                    f"finite differences not counted: they differ as much from the plain "
                    f"forward's autodiff (rel {cross.rel:.2g}; a step too coarse for the "
                    "curvature or |x|, float32 or x64-dependent random draws in the forward, a "
                    "stop_gradient)"
                ],
            )
    return ad, fd, []


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
    along every basis direction. Finite differences that differ from the plain forward's
    autodiff as much as from the rule are not counted (the row's note says so); where
    that autodiff is NaN and the finite differences agree with the rule, they decide. See
    ``docs/verify.md``.

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
        dtypes: a row per dtype: float64, float32, float16, bfloat16 (a sequence of
            them, or one). float64 runs with x64 on, the others with x64 off (as the
            user's program would).
        outputs: check only some outputs: an index or key of the output (or a list of
            them), or a function of the output returning the part to check.
        rtol: relative tolerance of every comparison: one number for every row, or a
            mapping from dtype to number (the other rows keep their defaults, see
            ``docs/verify.md``); finite differences are never held below 1e-7.
        atol: absolute floor of every comparison, given like ``rtol`` (default: 16 eps of
            the row's dtype times the largest reference cotangent of the call; in float32
            and half-precision rows a leaf's own floor where smaller, from its scale and
            the rounding it shows in that dtype, and never below 4 times the rounding the
            plain forward's autodiff shows there; where every gradient checked is zero,
            the finite differences' resolution; see ``docs/verify.md``).
        cotangents: random cotangents per row (>= 1; default 3).
        transforms: also check the rule under ``"jit"`` (equals eager), ``"vmap"``
            (equals per example) and ``"grad"`` (second order through the rule equals that
            of the plain forward, where both exist).
        seed: of the random cotangents.

    Returns:
        A :class:`VerifyReport`: ``print`` it for the table, ``.passed``, ``.failures()``.

    Raises:
        TypeError: ``f`` has no plain forward and no ``reference``; complex inputs.
        ValueError: nothing to differentiate (no float argument, or a differentiated
            argument without elements), an ``argnums`` entry that is not a float
            argument, empty or unsupported ``dtypes``, a bad option (``seed`` included).
    """
    if isinstance(dtypes, str) or not isinstance(dtypes, Sequence):
        dtypes = (dtypes,)  # one dtype: jnp.float32, np.dtype("float32"), "float32"
    setup = arguments.setup(f, args, kwargs, argnums, reference, dtypes, outputs, rtol, atol,
                   cotangents, transforms, seed)  # fmt: skip
    rows = _rows(setup, [jnp.dtype(d).name for d in dtypes])
    return VerifyReport(setup.name, tuple(rows))


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
