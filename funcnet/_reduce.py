"""Reductions that keep NaN where XLA's CPU backend may lose it.

On CPU, this jaxlib's XLA runs a stand-alone max (or min) reduction on YNNPACK, whose
float max skips NaN: ``jnp.max`` of a (4096, 4) float32 array with a NaN in every row
returns 1.0 for each row, eagerly or under ``jit`` (a reduction fused with other
elementwise work runs on XLA's own loops and keeps the NaN; small arrays too). NumPy, and
funcnet's rule that NaN propagates and never turns into a number, want NaN wherever one
is reduced. :func:`max_keeping_nan` puts it back: one more elementwise test, fused with
the reduction under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def max_keeping_nan(x: jax.Array, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    """``jnp.max(x, axis)``, NaN wherever a NaN is among the reduced values (as NumPy's
    ``np.max``), whichever kernel XLA picks for the reduction. Shapes as ``jnp.max``."""
    m = jnp.max(x, axis=axis)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return m
    return jnp.where(jnp.any(jnp.isnan(x), axis=axis), jnp.asarray(jnp.nan, m.dtype), m)
