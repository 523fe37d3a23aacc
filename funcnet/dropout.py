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


def _ratio(ratio):
    """The ratio checked (concrete: in [0, 1); traced: NaN unless in [0, 1))."""
    return _checks.hyperparameter("dropout", "ratio", ratio, _checks.UNIT)


def dropout_mask(key: jax.Array, shape: tuple[int, ...], ratio: float) -> jax.Array:
    """The book's mask ``rand(*shape) > ratio``: bool, True where a unit is kept
    (probability ``1 − ratio``). Drawn in float32 whatever the data's dtype, so the mask
    does not depend on the precision of x.

    A bool mask cannot hold NaN: with a traced ratio outside [0, 1) (or NaN) it is all
    False, and :func:`dropout` (which uses it) returns NaN.
    """
    _checks.check_key("dropout", key)
    return jax.random.uniform(key, shape, jnp.float32) > _ratio(ratio)


def dropout(x: jax.Array, key: jax.Array, ratio: float = 0.5) -> jax.Array:
    """Training-mode dropout: ``x · mask`` with ``mask = uniform(key, x.shape) > ratio``.

    Args:
        x: activations, any shape, floating (integer x is refused: the rule's cotangent
            is floating). key: a ``jax.random`` key (one per iteration, e.g.
            ``fold_in(run_key, step)``). ratio: the fraction dropped, in [0, 1); it may be
            traced (``jit``, ``vmap``, a ``fit_many`` search), and then a value outside
            [0, 1) or NaN makes the output NaN (a concrete one raises ``ValueError``).

    Returns:
        x's shape and dtype. NaN in x stays NaN (NaN · 0 is NaN, as in the book's NumPy).
    """
    x = jnp.asarray(x)
    out = apply_mask(x, dropout_mask(key, x.shape, ratio))
    return _checks.nan_unless_ok(out, _checks.hyperparameter_ok(ratio, _checks.UNIT))


def dropout_inference(x: jax.Array, ratio: float = 0.5) -> jax.Array:
    """Inference-mode dropout, the book's ``x · (1 − ratio)``. Shape (...,) -> (...,).

    Floating x keeps its dtype (1 − ratio is computed in float32 or x's wider dtype, then
    the product is cast back); integer or bool x is promoted to the default float, as the
    book's NumPy does (``[2, 4, 6]`` with ratio 0.5 gives ``[1., 2., 3.]``). A traced ratio
    outside [0, 1) or NaN gives NaN; a concrete one raises ``ValueError``.
    """
    keep = 1.0 - _ratio(ratio)
    x = _checks.floating(x)
    wide = jnp.promote_types(x.dtype, jnp.float32)
    return (x.astype(wide) * jnp.asarray(keep, wide)).astype(x.dtype)


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
