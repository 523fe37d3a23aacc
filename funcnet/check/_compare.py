"""Comparing a rule's cotangents with a reference: per leaf, each against its own scale.

A rule's cotangent ``r`` for one leaf passes against a reference ``a`` when, for every
cotangent ``k`` that was tried,

    max |r_k − a_k|  ≤  atol + rtol · max |a_k|                       (NaN never passes)

and wherever the reference is finite the rule is finite too. ``max |a_k|`` is the leaf's
own scale, so a small leaf (a bias, a temperature) is not judged against a large one, and
``atol`` is an absolute floor: an exactly zero gradient, whose reference is rounding
noise, passes. In float32 and half-precision rows the floor is the leaf's own too, where
the plain forward's autodiff in that dtype shows how much rounding the leaf carries
(:func:`leaf_atol`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

# Relative tolerances of a rule's cotangent in each dtype, against the two references:
# autodiff of the plain forward (same dtype for float32/float64 rows, float64 for half
# rows) and float64 central differences. float64: the rule and autodiff agree to rounding
# (~1e-15 times the conditioning); central differences with h = 1e-4 to ~1e-8. float32:
# rounding ~6e-8 times the conditioning of the computation. Half precision: eps is ~1e-3
# (float16) and ~8e-3 (bfloat16), and a rule's own rounding is several eps.
_RTOL = {
    "float64": {"autodiff": 1e-9, "numerical": 1e-6},
    "float32": {"autodiff": 1e-4, "numerical": 1e-4},
    "float16": {"autodiff": 2e-2, "numerical": 2e-2},
    "bfloat16": {"autodiff": 1e-1, "numerical": 1e-1},
}
# Finite differences in float64 are never more accurate than this, whatever rtol asks.
NUMERICAL_RTOL_FLOOR = 1e-7
# The absolute floor is FLOOR_EPS · eps(dtype) · (gradient scale of the whole call).
FLOOR_EPS = 16.0
SUPPORTED_DTYPES = tuple(_RTOL)
# A rule may round up to this many times as much as the plain forward's autodiff does in
# the same dtype (both against float64): two computations of the same ill-conditioned
# gradient differ by up to the sum of their roundings.
AUTODIFF_ROUNDING_FACTOR = 4.0
# ... where that rounding is at most this fraction of the leaf's scale: a larger difference
# between autodiff in the row's dtype and in float64 is no rounding but another function
# (random draws that change with x64, a forward that computes in float32 whatever the
# inputs), which says nothing about how accurate the rule should be.
ROUNDING_AT_MOST = 0.05


def default_rtol(dtype: str, reference: str) -> float:
    """The default relative tolerance of a rule in ``dtype`` against ``reference``
    (``"autodiff"`` or ``"numerical"``)."""
    return _RTOL[dtype][reference]


def default_atol(dtype: str, grad_scale: float) -> float:
    """The call's absolute floor: a few eps of the row's dtype times ``grad_scale`` (the
    largest reference cotangent of any leaf in the call)."""
    return FLOOR_EPS * float(jnp.finfo(dtype).eps) * grad_scale


def finite_scale(*arrays) -> float:
    """The largest finite ``|value|`` of ``arrays`` (0.0 when there is none)."""
    best = 0.0
    for a in arrays:
        a = np.abs(np.asarray(a, np.float64))
        best = max(best, float(np.max(a[np.isfinite(a)], initial=0.0)))
    return best


def leaf_atol(dtype: str, call_floor: float, pairs, autodiff_pair=None) -> float:
    """A leaf's absolute floor in a float32 or half-precision row: FLOOR_EPS times the
    larger of eps · (the leaf's own scale) and the rounding the leaf carries in this
    dtype, ``max |row − float64|`` over ``pairs`` of the leaf's values in the row's dtype
    and in float64 (the plain forward's autodiff against the float64 reference, the rule
    against the rule in float64; same cotangents); never above ``call_floor`` (the call's
    floor, :func:`default_atol`). A leaf a millionth of another's is then judged at its
    own size, while a leaf whose value is rounding noise (an exactly zero gradient, a sum
    that cancels) keeps a floor as large as that noise. Without pairs, or where one is
    not finite: ``call_floor``.

    ``autodiff_pair`` (the plain forward's autodiff in this dtype and in float64) lifts the
    floor to :data:`AUTODIFF_ROUNDING_FACTOR` times the rounding it shows, above the cap:
    an ill-conditioned function (a solve with a condition number of 10⁵) rounds every
    float32 computation of its gradient by far more than a few eps, autodiff's too, and
    a rule is then held to autodiff's own accuracy. A rule that rounds more than the
    plain forward does (a cast to a narrower dtype inside it) still fails. Only where
    that rounding is at most :data:`ROUNDING_AT_MOST` of the leaf's scale."""
    own = leaf_rounding(dtype, pairs)
    floor = call_floor if own is None else min(call_floor, own)
    measured = _noise_and_scale([autodiff_pair] if autodiff_pair is not None else [])
    if measured is not None:
        noise, scale = measured
        if noise <= ROUNDING_AT_MOST * scale:  # else float64 computes something else
            floor = max(floor, AUTODIFF_ROUNDING_FACTOR * noise)
    return floor


def leaf_rounding(dtype: str, pairs) -> float | None:
    """FLOOR_EPS times the larger of eps · (the leaf's own scale) and the rounding the leaf
    carries in ``dtype`` (see :func:`leaf_atol`); None without pairs or where one is not
    finite."""
    measured = _noise_and_scale(pairs)
    if measured is None:
        return None
    noise, scale = measured
    return FLOOR_EPS * max(float(jnp.finfo(dtype).eps) * scale, noise)


def _noise_and_scale(pairs) -> tuple[float, float] | None:
    """``max |low − high|`` and ``max |high|`` over ``(low, high)`` pairs (a value in a
    row's dtype beside the same in float64); None without pairs, or where a pair's shapes
    differ or a value is not finite."""
    if not pairs:
        return None
    noise, scale = 0.0, 0.0
    for low, high in pairs:
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        if low.shape != high.shape or not (np.isfinite(low).all() and np.isfinite(high).all()):
            return None
        noise = max(noise, float(np.max(np.abs(low - high), initial=0.0)))
        scale = max(scale, float(np.max(np.abs(high), initial=0.0)))
    return noise, scale


class Comparison(NamedTuple):
    """One leaf's rule cotangents against one reference, the worst over the cotangents.

    ``abs``: the largest absolute difference; ``rel``: that difference over the leaf's
    scale ``max |reference|`` (``inf`` when the scale is 0 and the difference is not);
    ``allowed``: ``atol + rtol · scale`` for that cotangent; ``passed``; ``reason`` says
    why it failed (``""`` when it passed).
    """

    abs: float
    rel: float
    allowed: float
    passed: bool
    reason: str


def compare(rule: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> Comparison:
    """Compare one leaf, shaped ``(K, *leaf.shape)``: K cotangents' rule results ``rule``
    against the reference's ``ref``. Computed in float64 with NumPy; NaN propagates to a
    failure, it never becomes a number."""
    rule = np.asarray(rule, np.float64)
    ref = np.asarray(ref, np.float64)
    k = rule.shape[0] if rule.ndim else 1
    rule = rule.reshape(k, -1)
    ref = ref.reshape(k, -1)
    if rule.shape != ref.shape:
        return Comparison(np.nan, np.nan, np.nan, False, f"shape {rule.shape} != {ref.shape}")
    if rule.shape[1] == 0:
        return Comparison(0.0, 0.0, atol, True, "")
    ref_finite = np.isfinite(ref)
    if not ref_finite.all():
        return Comparison(
            np.nan, np.nan, np.nan, False, "the reference is NaN/inf here: pick other inputs"
        )
    rule_bad = ~np.isfinite(rule)
    if rule_bad.any():
        where = int(np.argmax(rule_bad.reshape(-1))) % rule.shape[1]
        return Comparison(np.nan, np.nan, np.nan, False, f"NaN/inf in the rule (element {where})")
    diff = np.max(np.abs(rule - ref), axis=1)
    scale = np.max(np.abs(ref), axis=1)
    allowed = atol + rtol * scale
    ratio = diff / np.where(allowed > 0, allowed, np.inf)
    ratio = np.where((diff == 0) & (allowed == 0), 0.0, ratio)
    ratio = np.where((diff > 0) & (allowed == 0), np.inf, ratio)
    worst = int(np.lexsort((diff, ratio))[-1])  # the largest ratio, then the largest diff
    d, s = float(diff[worst]), float(scale[worst])
    rel = d / s if s > 0 else (0.0 if d == 0 else np.inf)
    passed = bool(np.all(ratio <= 1.0))
    a = float(allowed[worst])
    reason = "" if passed else f"off by {d:.2g} > allowed {a:.2g}"
    if not passed and s == 0:
        reason += " (the reference is exactly 0 here)"
    return Comparison(d, rel, a, passed, reason)


def worst(comparisons: list[Comparison]) -> Comparison | None:
    """The comparison that decides: the first failure, else the largest relative error."""
    if not comparisons:
        return None
    failed = [c for c in comparisons if not c.passed]
    if failed:
        return failed[0]
    return max(comparisons, key=lambda c: c.rel)
