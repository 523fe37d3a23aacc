"""The Affine node (book ch5.6.2)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from funcnet.layers._rule import (
    LayerCase,
    RegisteredLayer,
    _normal,
    _shape_token,
    make_layer,
)

# --------------------------------------------------------------------------------------
# Affine (ch5.6.2)


def _flatten_batch(x: jax.Array) -> jax.Array:
    """The book flattens input of rank >= 2 to (N, -1); a 1-D x is one example."""
    return x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)


def _affine_plain(x: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """Affine node x·W + b (book's Affine layer, ch5.6.2).

    Shapes: x (N, D), or (N, d1, d2, ...) flattened to (N, D) as in the book, or (D,) for
    one example; W (D, M); b (M,). Output (N, M) (or (M,) for a 1-D x).
    Residuals: x and W. Backward (eq. 5.13): dx = g·Wᵀ reshaped to x's shape, dW = xᵀ·g,
    db = Σₙ g.
    """
    out = jnp.dot(_flatten_batch(x), W) + b
    return out[0] if x.ndim == 1 else out


def _affine_fwd(x, W, b):
    # The book keeps x and W; b's zero-element token only records its dtype.
    return _affine_plain(x, W, b), (x, W, _shape_token(b))


def _affine_bwd(res, g):
    x, W, b_token = res
    x2 = _flatten_batch(x)
    g2 = g.reshape(x2.shape[0], -1)
    # Book eq. 5.13: dx = g·Wᵀ (back to x's shape), dW = xᵀ·g, db = Σₙ g.
    dx = jnp.dot(g2, W.T).reshape(x.shape)
    dW = jnp.dot(x2.T, g2)
    db = jnp.sum(g2, axis=0)
    # Cotangents take their primal's dtype (inputs of mixed precision stay mixed).
    return dx.astype(x.dtype), dW.astype(W.dtype), db.astype(b_token.dtype)


def _check_affine(x: jax.Array, W: jax.Array, b: jax.Array) -> None:
    if W.ndim != 2:
        raise ValueError(f"affine: W must be 2-D (in_features, out_features), got W {W.shape}")
    if x.ndim == 0:
        raise ValueError(f"affine: x must have at least one dimension, got x {x.shape}")
    if x.ndim >= 2 and x.shape[0] == 0:
        raise ValueError(f"affine: x holds an empty batch, x {x.shape}")
    features = x.shape[0] if x.ndim == 1 else math.prod(x.shape[1:])
    if features != W.shape[0]:
        raise ValueError(
            f"affine: x has {features} features but W has {W.shape[0]} rows; "
            f"x {x.shape}, W {W.shape}"
        )
    if b.shape != (W.shape[1],):
        raise ValueError(
            f"affine: b must have shape ({W.shape[1]},) to match W's {W.shape[1]} columns; "
            f"b {b.shape}, W {W.shape}"
        )


affine = make_layer("affine", _affine_plain, _affine_fwd, _affine_bwd, _check_affine)


def _affine_case(name: str, x_shape: tuple[int, ...], out_features: int) -> LayerCase:
    in_features = x_shape[0] if len(x_shape) == 1 else math.prod(x_shape[1:])

    def inputs(rng, dtype):
        return (
            _normal(rng, x_shape, dtype),
            _normal(rng, (in_features, out_features), dtype, 0.5),
            _normal(rng, (out_features,), dtype),
        )

    return LayerCase(name, inputs, (0, 1, 2))


REGISTRY_ENTRIES = (
    RegisteredLayer(
        "affine",
        affine,
        (
            _affine_case("batch1", (1, 3), 2),
            _affine_case("odd", (5, 7), 3),
            _affine_case("4d", (2, 3, 4, 5), 4),
            _affine_case("single", (7,), 3),
        ),
    ),
)
