"""Gradient verification: each hand-written backward rule against autodiff and against
finite differences, as a library and as a command (``python -m funcnet.check``).

For a layer ``L`` with inputs ``args``, the output is reduced to a scalar with a fixed
random cotangent ``c`` (``f(args) = Σ L(*args) · c``), and the gradient of ``f`` is
computed three ways:

1. through ``L``'s custom rule (``jax.grad`` of ``f``);
2. through autodiff of the plain forward ``L.fun`` (the reference);
3. by central differences (:func:`funcnet.gradient.numerical_gradient`) in float64.

The error against a reference ``r`` is reported as the maximum absolute difference and
as that maximum relative to ``max |r|`` (so entries near zero do not blow it up).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.gradient import numerical_gradient
from funcnet.layers import REGISTRY, LayerCase

# Tolerances on the relative error, per dtype of the checked computation.
# float64: the rule and autodiff do the same arithmetic up to rounding (~1e-16); central
# differences with h = 1e-4 are accurate to ~1e-9 for these smooth functions.
# float32: rounding alone is ~1e-7 relative, matmul sums of 60 terms a little more.
AUTODIFF_RTOL = {jnp.dtype("float64"): 1e-12, jnp.dtype("float32"): 1e-5}
NUMERICAL_RTOL = {jnp.dtype("float64"): 1e-7, jnp.dtype("float32"): 1e-4}


class CheckResult(NamedTuple):
    """The comparison of one layer on one input case."""

    layer: str
    case: str
    dtype: str
    autodiff_abs: float
    autodiff_rel: float
    numerical_abs: float
    numerical_rel: float
    passed: bool


def _scalarized(layer: Callable[..., jax.Array], cotangent: jax.Array, args, argnums):
    """f(diff_args) = Σ layer(*args) · cotangent, with the other args held fixed."""

    def f(diff_args):
        full = list(args)
        for i, a in zip(argnums, diff_args, strict=True):
            full[i] = a
        return jnp.sum(layer(*full) * cotangent)

    return f


def _errors(got, want) -> tuple[float, float]:
    got_leaves = [np.asarray(g, np.float64) for g in jax.tree_util.tree_leaves(got)]
    want_leaves = [np.asarray(w, np.float64) for w in jax.tree_util.tree_leaves(want)]
    abs_err = max(
        (
            float(np.max(np.abs(g - w), initial=0.0))
            for g, w in zip(got_leaves, want_leaves, strict=True)
        ),
        default=0.0,
    )
    scale = max((float(np.max(np.abs(w), initial=0.0)) for w in want_leaves), default=0.0)
    return abs_err, abs_err / scale if scale > 0 else abs_err


def gradients_three_ways(
    layer: Callable[..., jax.Array],
    args: Sequence[jax.Array],
    argnums: Sequence[int],
    cotangent_seed: int = 0,
) -> tuple[Any, Any, Any]:
    """The gradient of ``Σ layer(*args) · c`` (random ``c``) w.r.t. ``args[argnums]``.

    Returns ``(custom, autodiff, numerical)``: through ``layer``'s custom rule, through
    ``jax.grad`` of ``layer.fun``, and by float64 central differences. Each is a tuple with
    one array per entry of ``argnums``, shaped like that argument. Call inside
    ``jax.enable_x64(True)`` for float64 inputs.
    """
    args = tuple(jnp.asarray(a) for a in args)
    argnums = tuple(argnums)
    out = jax.eval_shape(layer, *args)
    # A stream of its own, so that inputs drawn with default_rng(0) are never the cotangent:
    # batch norm's dx vanishes identically when the cotangent is an affine function of x.
    rng = np.random.default_rng((cotangent_seed, 0xC07A))
    cotangent = jnp.asarray(rng.standard_normal(out.shape), out.dtype)
    diff_args = tuple(args[i] for i in argnums)

    # Each gradient is one jitted program: one compilation instead of dozens of eager ones.
    custom = jax.jit(jax.grad(_scalarized(layer, cotangent, args, argnums)))(diff_args)
    autodiff = jax.jit(jax.grad(_scalarized(layer.fun, cotangent, args, argnums)))(diff_args)
    with jax.enable_x64(True):
        args64 = tuple(
            a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args
        )
        f64 = _scalarized(layer.fun, cotangent.astype(jnp.float64), args64, argnums)
        numerical = jax.jit(lambda d: numerical_gradient(f64, d))(tuple(args64[i] for i in argnums))
    return custom, autodiff, numerical


def check_layer(
    name: str,
    layer: Callable[..., jax.Array],
    case: LayerCase,
    dtype=jnp.float64,
    seed: int = 0,
) -> CheckResult:
    """Verify ``layer``'s custom rule on one case against autodiff and finite differences.

    Runs in float64 mode so that the finite differences are accurate; ``dtype`` is the
    dtype of the inputs (float32 inputs are checked with float32 tolerances, against
    finite differences taken in float64 on the same values).
    """
    dtype = jnp.dtype(dtype)
    # Full-precision matmuls: GPUs (TF32) and TPUs (bf16 passes) lower them by default.
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        args = case.make_inputs(np.random.default_rng(seed), dtype)
        custom, autodiff, numerical = gradients_three_ways(layer, args, case.argnums, seed + 1)
    ad_abs, ad_rel = _errors(custom, autodiff)
    num_abs, num_rel = _errors(custom, numerical)
    passed = bool(ad_rel <= AUTODIFF_RTOL[dtype] and num_rel <= NUMERICAL_RTOL[dtype])
    return CheckResult(name, case.name, dtype.name, ad_abs, ad_rel, num_abs, num_rel, passed)


def check_registry(dtypes: Sequence[Any] = (jnp.float64, jnp.float32)) -> list[CheckResult]:
    """Run :func:`check_layer` on every case of every layer in ``funcnet.layers.REGISTRY``."""
    return [
        check_layer(entry.name, entry.layer, case, dtype)
        for entry in REGISTRY.values()
        for case in entry.cases
        for dtype in dtypes
    ]


def format_table(results: Sequence[CheckResult]) -> str:
    """A fixed-width table, one row per layer, case and dtype."""
    header = (
        f"{'layer':<18} {'case':<15} {'dtype':<8} {'autodiff abs':>12} {'autodiff rel':>12} "
        f"{'numeric abs':>12} {'numeric rel':>12}  result"
    )
    rows = [header, "-" * len(header)]
    for r in results:
        rows.append(
            f"{r.layer:<18} {r.case:<15} {r.dtype:<8} {r.autodiff_abs:12.2e} "
            f"{r.autodiff_rel:12.2e} {r.numerical_abs:12.2e} {r.numerical_rel:12.2e}  "
            f"{'PASS' if r.passed else 'FAIL'}"
        )
    return "\n".join(rows)


# --------------------------------------------------------------------------------------
# Verify anyone's rule


class VerifyReport(NamedTuple):
    """The result of :func:`verify`: one :class:`CheckResult` per differentiated argument
    and dtype. Prints as the table of ``python -m funcnet.check``."""

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """True when every row passed."""
        return all(r.passed for r in self.results)

    def __str__(self) -> str:
        return format_table(self.results)


def _reference_of(f: Callable[..., Any], reference: Callable[..., Any] | None):
    if reference is not None:
        if not callable(reference):
            raise TypeError(f"verify: reference must be a function, got {type(reference).__name__}")
        return reference
    plain = getattr(f, "fun", None)
    if not callable(plain):
        raise TypeError(
            f"verify: {getattr(f, '__name__', type(f).__name__)} is not a jax.custom_vjp "
            "function (it has no .fun, the plain forward to compare with); pass "
            "reference=the_same_function_without_the_custom_rule"
        )
    return plain


def _is_float_tree(tree: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(
        jnp.issubdtype(jnp.result_type(leaf), jnp.floating) for leaf in leaves
    )


def _cast(tree: Any, dtype: Any) -> Any:
    def cast(leaf):
        leaf = jnp.asarray(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree_util.tree_map(cast, tree)


def _scalarized_tree(fn, args, argnums, seed):
    """f(diff_args) = Σ over output leaves of leaf · a fixed random cotangent."""

    def call(diff_args):
        full = list(args)
        for i, a in zip(argnums, diff_args, strict=True):
            full[i] = a
        return fn(*full)

    # Only the differentiated arguments are traced: nondiff_argnums must stay concrete.
    out = jax.eval_shape(call, tuple(args[i] for i in argnums))
    # A stream of its own: with plain default_rng(seed), test inputs drawn from the same seed
    # would equal the cotangent, and x·xᵀ-like terms would hide a transposed rule.
    rng = np.random.default_rng((seed, 0xC07A))
    cotangents = jax.tree_util.tree_map(
        lambda o: (
            jnp.asarray(rng.standard_normal(o.shape), o.dtype)
            if jnp.issubdtype(o.dtype, jnp.floating)
            else None
        ),
        out,
    )

    def f(diff_args):
        outs = jax.tree_util.tree_leaves(call(diff_args))
        cots = jax.tree_util.tree_leaves(cotangents)
        floats = [o for o in outs if jnp.issubdtype(o.dtype, jnp.floating)]
        return sum(jnp.sum(o * c.astype(o.dtype)) for o, c in zip(floats, cots, strict=True))

    return f


def verify(
    f: Callable[..., Any],
    *args: Any,
    argnums: Sequence[int] | None = None,
    reference: Callable[..., Any] | None = None,
    dtypes: Sequence[Any] = (jnp.float64, jnp.float32),
    seed: int = 0,
) -> VerifyReport:
    """Verify a hand-written backward rule three ways, for anyone's ``jax.custom_vjp``.

    The outputs of ``f(*args)`` (any pytree; float leaves) are reduced to a scalar with a
    fixed random cotangent, and its gradient with respect to each argument in ``argnums``
    (any pytree of float arrays) is computed through ``f``'s custom rule, through
    ``jax.grad`` of ``reference`` (default ``f.fun``, the plain forward of a custom_vjp)
    and by float64 central differences of ``reference``; each row of the report compares
    them, with ``python -m funcnet.check``'s tolerances.

    Args:
        f: a ``jax.custom_vjp`` function (or any function, with ``reference`` given).
        *args: example inputs. Integer and bool arguments and ``f.nondiff_argnums`` are
            never differentiated.
        argnums: the arguments to differentiate (default: every all-float argument).
        reference: the function to compare with (default ``f.fun``).
        dtypes: check with the float inputs cast to each of these.
        seed: of the random cotangent.

    Returns:
        A :class:`VerifyReport` (``.passed``; ``print`` it for the table).

    Raises:
        TypeError: ``f`` is not a custom_vjp and no ``reference`` was given.
        ValueError: nothing to differentiate, or an ``argnums`` entry that is not a float
            argument.
    """
    ref = _reference_of(f, reference)
    nondiff = set(getattr(f, "nondiff_argnums", ()) or ())
    floats = [i for i, a in enumerate(args) if i not in nondiff and _is_float_tree(a)]
    argnums = tuple(floats if argnums is None else argnums)
    bad = [i for i in argnums if i not in floats]
    if bad or not argnums:
        raise ValueError(
            f"verify: argnums must name float arguments (not integer, bool or nondiff_argnums);"
            f" the float arguments are {floats}, got argnums {list(argnums)}"
        )
    name = getattr(f, "__name__", None) or getattr(getattr(f, "fun", None), "__name__", "f")
    results = []
    for dtype in dtypes:
        dtype = jnp.dtype(dtype)
        with jax.enable_x64(True), jax.default_matmul_precision("highest"):
            cast = tuple(a if i in nondiff else _cast(a, dtype) for i, a in enumerate(args))
            diff_args = tuple(cast[i] for i in argnums)
            custom = jax.grad(_scalarized_tree(f, cast, argnums, seed))(diff_args)
            autodiff = jax.grad(_scalarized_tree(ref, cast, argnums, seed))(diff_args)
            args64 = tuple(a if i in nondiff else _cast(a, jnp.float64) for i, a in enumerate(cast))
            f64 = _scalarized_tree(ref, args64, argnums, seed)
            numerical = numerical_gradient(f64, tuple(args64[i] for i in argnums))
        for k, i in enumerate(argnums):
            ad_abs, ad_rel = _errors(custom[k], autodiff[k])
            num_abs, num_rel = _errors(custom[k], numerical[k])
            passed = bool(ad_rel <= AUTODIFF_RTOL[dtype] and num_rel <= NUMERICAL_RTOL[dtype])
            results.append(
                CheckResult(name, f"arg {i}", dtype.name, ad_abs, ad_rel, num_abs, num_rel, passed)
            )
    return VerifyReport(tuple(results))


def assert_rule_correct(f: Callable[..., Any], *args: Any, **options: Any) -> VerifyReport:
    """:func:`verify`, raising ``AssertionError`` with the table when any row fails (for
    pytest). Returns the report when everything passes."""
    report = verify(f, *args, **options)
    if not report.passed:
        raise AssertionError(f"the backward rule of {report.results[0].layer} is wrong:\n{report}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m funcnet.check``: print the table; exit status 1 if any row fails."""
    parser = argparse.ArgumentParser(
        prog="python -m funcnet.check",
        description="Verify every custom backward rule against jax.grad and finite differences.",
    )
    parser.add_argument(
        "--dtype",
        choices=["float64", "float32", "both"],
        default="both",
        help="input dtype(s) to check (default: both)",
    )
    args = parser.parse_args(argv)
    dtypes = {"float64": [jnp.float64], "float32": [jnp.float32]}.get(
        args.dtype, [jnp.float64, jnp.float32]
    )
    results = check_registry(dtypes)
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    print(
        f"\n{len(results) - len(failed)} passed, {len(failed)} failed "
        f"(relative tolerances: autodiff {AUTODIFF_RTOL[jnp.dtype('float64')]:.0e} f64 / "
        f"{AUTODIFF_RTOL[jnp.dtype('float32')]:.0e} f32, finite differences "
        f"{NUMERICAL_RTOL[jnp.dtype('float64')]:.0e} f64 / "
        f"{NUMERICAL_RTOL[jnp.dtype('float32')]:.0e} f32)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
