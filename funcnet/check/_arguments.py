"""What :func:`funcnet.check.verify` checks: the call's arguments flattened into leaves
(which are differentiated, which held fixed), its options validated (:func:`setup`), and
the values each dtype row sees."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.check._compare import SUPPORTED_DTYPES
from funcnet.check._report import TRANSFORMS


class Leaf(NamedTuple):
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


def resolve_leaves(f, args, kwargs, argnums, nondiff) -> tuple[list[Leaf], Any, list[str]]:
    """Flatten ``(args, kwargs)``; mark the leaves to differentiate."""
    names = _names(f, len(args))
    keys: list[int | str] = list(range(len(args))) + list(kwargs)
    labels = {k: (names[k] if isinstance(k, int) else k) for k in keys}
    float_args: list[int | str] = []
    leaves: list[Leaf] = []
    structure = []
    for k in keys:
        value = args[k] if isinstance(k, int) else kwargs[k]
        if k in nondiff:
            structure.append(None)
            leaves.append(Leaf(labels[k], "", value, "fixed"))
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
            leaves.append(Leaf(labels[k], jax.tree_util.keystr(path), leaf, kind))
        if any_float:
            float_args.append(k)
    if argnums is None:
        chosen = float_args
    else:
        chosen = list(argnums) if isinstance(argnums, list | tuple) else [argnums]
        positional = {names[i]: i for i in range(len(args))}
        chosen = [
            positional[a] if isinstance(a, str) and a not in kwargs and a in positional else a
            for a in chosen
        ]
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


def rebuild(layout, values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
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


def selector(outputs: Any) -> Callable[[Any], Any]:
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


class Setup(NamedTuple):
    name: str
    rule: Callable[..., Any]
    ref: Callable[..., Any]
    rule_mode: str  # "reverse" (custom_vjp, or any function) or "forward" (custom_jvp)
    leaves: list[Leaf]
    layout: Any
    select: Callable[[Any], Any]
    cotangents: int
    seed: int
    rtol: dict[str, float]
    atol: dict[str, float]
    transforms: tuple[str, ...]


def row_values(leaves: list[Leaf], dtype: Any) -> list[Any]:
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


def float32_point(setup: Setup) -> list | None:
    """The user's values with the float leaves rounded to float32, where every one
    survives that rounding (finite, and no element moved by more than float32's rounding:
    no overflow, no underflow into subnormals); else None. The float64 row is computed
    there when a float32 row is asked for, so that both rows' references belong to one
    point: rounding the inputs moves the gradient of an ill-conditioned function by about
    eps32 times its conditioning, more than float32's tolerances."""
    out = []
    for leaf in setup.leaves:
        v = leaf.value
        if leaf.kind == "diff" or (leaf.kind == "float" and not isinstance(v, float)):
            wide = np.asarray(v, np.float64)
            with np.errstate(over="ignore", under="ignore"):
                narrow = wide.astype(np.float32)
            moved = np.abs(narrow.astype(np.float64) - wide)
            if not np.isfinite(narrow).all() or (moved > _F32_EPS * np.abs(wide)).any():
                return None
            v = narrow
        out.append(v)
    return out


_F32_EPS = float(np.finfo(np.float32).eps)


def float64_values(setup: Setup, values: list | None = None) -> list:
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


def setup(f, args, kwargs, argnums, reference, dtypes, outputs, rtol, atol, cotangents,
           transforms, seed) -> Setup:  # fmt: skip
    if not callable(f):
        raise TypeError(f"verify: f must be a function, got {type(f).__name__}")
    if reference is not None and not callable(reference):
        raise TypeError(f"verify: reference must be a function, got {type(reference).__name__}")
    base, bound, keywords = f, (), {}
    if isinstance(f, functools.partial):  # a rule with some arguments bound
        base, bound, keywords = f.func, f.args, dict(f.keywords)
    inner, transparent = _unwrap(base)
    plain = getattr(inner, "fun", None)
    if callable(plain) and (bound or keywords):
        plain = functools.partial(plain, *bound, **keywords)
    if reference is None and callable(plain) and not transparent:
        raise TypeError(
            f"verify: {_label(f)} wraps a custom rule (jax.vmap, jax.grad or a "
            "functools.wraps function), which may compute something else than the rule "
            "alone, so its plain forward is unknown: pass reference= the same wrapper around "
            "the rule's plain forward (its .fun), e.g. reference=jax.vmap(rule.fun) for "
            "f=jax.vmap(rule)"
        )
    ref = reference if reference is not None else plain
    if not callable(ref):
        raise TypeError(
            f"verify: {_label(f)} is not a jax.custom_vjp "
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
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise ValueError(f"verify: seed must be an int in [0, 2**63), got {seed!r}")
    seed = int(seed)
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if isinstance(transforms, str) or unknown:
        raise ValueError(
            f"verify: transforms must be a sequence from {TRANSFORMS}, got {transforms!r}"
        )
    rtol, atol = _tolerances("rtol", rtol, names), _tolerances("atol", atol, names)
    kwargs = dict(kwargs or {})
    # the inner rule's nondiff_argnums are positions of f's own arguments only through jit
    # (and functools.partial, which binds the first len(bound))
    inner_nondiff = set(getattr(inner, "nondiff_argnums", ()) or ()) if transparent else set()
    nondiff = {i - len(bound) for i in inner_nondiff if i >= len(bound)}
    leaves, layout, chosen = resolve_leaves(ref if reference is None else f, args, kwargs,
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
    sizes: dict[str, int] = {}
    for leaf in diff:
        sizes[leaf.argument] = sizes.get(leaf.argument, 0) + int(np.size(leaf.value))
    empty = [name for name, size in sizes.items() if size == 0]
    if empty:
        raise ValueError(
            f"verify: the differentiated argument(s) {', '.join(empty)} have no elements: "
            "nothing to compare there; leave them out with argnums= or give them elements"
        )
    rule_mode = "forward" if _forward_mode_rule(inner) else "reverse"
    name = next(
        (n for n in (getattr(o, "__name__", None) for o in (f, base, plain, inner)) if n),
        type(f).__name__,
    )
    return Setup(name, f, ref, rule_mode, leaves, layout, selector(outputs), cotangents,
                  seed, rtol, atol, tuple(transforms))  # fmt: skip


def _unwrap(f: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    """The custom_vjp/custom_jvp (or funcnet layer) ``f`` is, or is ``jax.jit`` of, and
    whether its plain forward (``.fun``) is ``f``'s: True through ``jax.jit``, which
    computes what it wraps; False for any other wrapper that carries a rule's ``.fun``
    (``functools.wraps`` and ``jax.vmap`` copy it onto a function that computes something
    else). A funcnet layer (:func:`funcnet.layers.make_layer`) validates its inputs and
    calls its rule: its ``.fun`` is its own."""
    for _ in range(8):
        if isinstance(f, jax.custom_vjp | jax.custom_jvp) or _is_funcnet_layer(f):
            return f, True
        inner = getattr(f, "__wrapped__", None)
        if not (_is_jit(f) and inner is not None):
            return f, not callable(getattr(f, "fun", None))
        f = inner
    return f, True


def _is_funcnet_layer(f: Any) -> bool:
    return getattr(f, "funcnet_layer", None) is f


def _forward_mode_rule(f: Any) -> bool:
    """A custom_jvp, or a wrapper carrying one's attributes (``jvp``, no ``bwd``)."""
    if isinstance(f, jax.custom_jvp):
        return True
    copied_jvp = callable(getattr(f, "jvp", None)) and not hasattr(f, "bwd")
    return not isinstance(f, jax.custom_vjp) and copied_jvp


def _is_jit(f: Any) -> bool:
    """Whether ``f`` is ``jax.jit(g)`` (it lowers, traces and evaluates shapes)."""
    return all(callable(getattr(f, a, None)) for a in ("lower", "trace", "eval_shape"))


def _label(f: Any) -> str:
    return getattr(f, "__name__", None) or type(f).__name__


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
