"""Dropout (book ch6.4.3) as a pure layer: the randomness is an argument.

The book's ``Dropout`` object draws ``self.mask = rand(*x.shape) > ratio`` in ``forward``
and remembers it for ``backward``. Here the mask comes from a ``jax.random`` key passed
in (same key, same mask: ``jax.grad`` through it is deterministic), and the hand-written
rule keeps the mask as its residual:

- training: ``out = x · mask``, backward ``dx = dout · mask``;
- inference: ``out = x · (1 − ratio)`` (the book's scaling at test time).

The rule itself is :data:`apply_mask` (``x · mask`` with the mask as residual), registered
and verified like every layer; :func:`dropout` draws the mask and applies it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnet import _checks
from funcnet.layers import LayerCase, RegisteredLayer, make_layer


def _apply_mask_plain(x: jax.Array, mask: jax.Array) -> jax.Array:
    """``x · mask`` (the Dropout node). Shapes: x (...,), mask bool of x's shape.

    Residual: the mask. Backward: dx = g · mask; the mask gets no cotangent.
    """
    return x * mask.astype(x.dtype)


def _apply_mask_fwd(x, mask):
    return x * mask.astype(x.dtype), mask


def _apply_mask_bwd(mask, g):
    # The book's Dropout.backward: dout * self.mask.
    return g * mask.astype(g.dtype), None


def _check_apply_mask(x, mask) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"dropout: x must be floating point, got {x.dtype}")
    if mask.dtype != jnp.bool_ or mask.shape != x.shape:
        raise ValueError(
            f"dropout: mask must be a bool array of x's shape; x {x.shape}, mask "
            f"{mask.dtype} {mask.shape}"
        )


apply_mask = make_layer(
    "dropout", _apply_mask_plain, _apply_mask_fwd, _apply_mask_bwd, _check_apply_mask
)


def _check_ratio(ratio) -> None:
    if not _checks.is_concrete(ratio):
        return
    _checks.check_float("dropout", "ratio", ratio)
    if not 0 <= float(ratio) < 1:
        raise ValueError(f"dropout: ratio must lie in [0, 1), got {float(ratio)}")


def dropout_mask(key: jax.Array, shape: tuple[int, ...], ratio: float) -> jax.Array:
    """The book's mask ``rand(*shape) > ratio``: bool, True where a unit is kept
    (probability ``1 − ratio``). Drawn in float32 whatever the data's dtype, so the mask
    does not depend on the precision of x."""
    _checks.check_key("dropout", key)
    _check_ratio(ratio)
    return jax.random.uniform(key, shape, jnp.float32) > ratio


def dropout(x: jax.Array, key: jax.Array, ratio: float = 0.5) -> jax.Array:
    """Training-mode dropout: ``x · mask`` with ``mask = uniform(key, x.shape) > ratio``.

    Args:
        x: activations, any shape. key: a ``jax.random`` key (one per iteration, e.g.
            ``fold_in(run_key, step)``). ratio: the fraction dropped, in [0, 1).

    Returns:
        x's shape and dtype. NaN in x stays NaN (NaN · 0 is NaN, as in the book's NumPy).
    """
    x = jnp.asarray(x)
    return apply_mask(x, dropout_mask(key, x.shape, ratio))


def dropout_inference(x: jax.Array, ratio: float = 0.5) -> jax.Array:
    """Inference-mode dropout, the book's ``x · (1 − ratio)``. Shape (...,) -> (...,)."""
    _check_ratio(ratio)
    x = jnp.asarray(x)
    return x * jnp.asarray(1.0 - ratio, x.dtype)


def _mask_case(name: str, shape: tuple[int, ...]) -> LayerCase:
    def inputs(rng, dtype):
        return jnp.asarray(rng.standard_normal(shape), dtype), jnp.asarray(rng.random(shape) > 0.3)

    return LayerCase(name, inputs, (0,))


REGISTRY_ENTRIES = (
    RegisteredLayer(
        "dropout", apply_mask, (_mask_case("vector", (7,)), _mask_case("4d", (2, 3, 4, 5)))
    ),
)
"""The dropout rule's entries for :data:`funcnet.layers.REGISTRY`."""

__all__ = ["REGISTRY_ENTRIES", "apply_mask", "dropout", "dropout_inference", "dropout_mask"]
