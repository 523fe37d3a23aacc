"""funcnet's own rules, checked from ``funcnet.layers.REGISTRY``, and the command
``python -m funcnet.check``.

For a layer ``L`` with inputs ``args``, the output is reduced to a scalar with a fixed
random cotangent ``c`` (``f(args) = Σ L(*args) · c``), and the gradient of ``f`` is
computed three ways:

1. through ``L``'s custom rule (``jax.grad`` of ``f``);
2. through autodiff of the plain forward ``L.fun`` (the reference);
3. by central differences (:func:`funcnet.gradient.numerical_gradient`) in float64.

The error against a reference ``r`` is reported as the maximum absolute difference and
as that maximum relative to ``max |r|`` of the same argument (so entries near zero do not
blow it up); the worst argument decides, and NaN anywhere is NaN (a failure).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.check._table import format_columns
from funcnet.gradient import numerical_gradient
from funcnet.layers import REGISTRY, LayerCase, RegisteredLayer

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
    """The worst (absolute, relative) error over the arguments, each argument relative to
    its own scale. NaN in any argument gives NaN (``max(0.0, nan)`` would give 0.0)."""
    worst_abs, worst_rel = 0.0, 0.0
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        if g.size == 0:
            continue
        abs_err = float(np.max(np.abs(g - w)))
        scale = float(np.max(np.abs(w)))
        rel = abs_err / scale if scale > 0 else abs_err
        if not (np.isfinite(abs_err) and np.isfinite(rel)):
            return float("nan"), float("nan")
        worst_abs, worst_rel = max(worst_abs, abs_err), max(worst_rel, rel)
    return worst_abs, worst_rel


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
    # NaN compares False: a NaN error is a failure.
    passed = bool(ad_rel <= AUTODIFF_RTOL[dtype] and num_rel <= NUMERICAL_RTOL[dtype])
    return CheckResult(name, case.name, dtype.name, ad_abs, ad_rel, num_abs, num_rel, passed)


def check_registry(
    dtypes: Sequence[Any] = (jnp.float64, jnp.float32),
    registry: Mapping[str, RegisteredLayer] | None = None,
) -> list[CheckResult]:
    """Run :func:`check_layer` on every case of every layer in ``registry`` (default
    ``funcnet.layers.REGISTRY``)."""
    registry = REGISTRY if registry is None else registry
    return [
        check_layer(entry.name, entry.layer, case, dtype)
        for entry in registry.values()
        for case in entry.cases
        for dtype in dtypes
    ]


def format_table(results: Sequence[CheckResult]) -> str:
    """A table, one row per layer, case and dtype; each column as wide as its longest
    entry."""
    header = [
        "layer",
        "case",
        "dtype",
        "autodiff abs",
        "autodiff rel",
        "numeric abs",
        "numeric rel",
        "result",
    ]
    rows = [
        [
            r.layer,
            r.case,
            r.dtype,
            f"{r.autodiff_abs:.2e}",
            f"{r.autodiff_rel:.2e}",
            f"{r.numerical_abs:.2e}",
            f"{r.numerical_rel:.2e}",
            "PASS" if r.passed else "FAIL",
        ]
        for r in results
    ]
    return format_columns(header, rows, "<<<>>>><")


def main(
    argv: Sequence[str] | None = None, registry: Mapping[str, RegisteredLayer] | None = None
) -> int:
    """``python -m funcnet.check``: print the table of every rule in ``registry`` (default
    ``funcnet.layers.REGISTRY``); exit status 1 if any row fails."""
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
    results = check_registry(dtypes, registry)
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
