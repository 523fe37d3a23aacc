"""The ReLU and sigmoid nodes (book ch5.5)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from funcnet import functions
from funcnet.layers._rule import (
    LayerCase,
    RegisteredLayer,
    _away_from_zero,
    _normal,
    make_layer,
)

# --------------------------------------------------------------------------------------
# Relu (ch5.5.1)


def _relu_plain(x: jax.Array) -> jax.Array:
    """ReLU node max(0, x) (book's Relu layer, ch5.5.1). Shape (...,) -> (...,).

    Residual: the book's mask ``x <= 0``. Forward: 0 where the mask is set, else x, so NaN
    (which is not <= 0) passes through. Backward: dx = 0 where the mask is set (at x == 0
    exactly too), else g: NaN upstream stays NaN, and a NaN input passes g on, as the
    book's layer and autodiff of this forward do.
    """
    return functions.relu(x)


def _relu_fwd(x):
    mask = x <= 0  # the book's self.mask
    return jnp.where(mask, jnp.zeros_like(x), x), mask


def _relu_bwd(mask, g):
    # The book's rule: dout[self.mask] = 0; the gradient flows everywhere else.
    return (jnp.where(mask, jnp.zeros_like(g), g),)


relu = make_layer("relu", _relu_plain, _relu_fwd, _relu_bwd)


# --------------------------------------------------------------------------------------
# Sigmoid (ch5.5.2)


def _sigmoid_plain(x: jax.Array) -> jax.Array:
    """Sigmoid node 1 / (1 + exp(-x)) (book's Sigmoid layer, ch5.5.2).

    Shape (...,) -> (...,). Residual: the output y. Backward: dx = g · (1 - y) · y.
    """
    return functions.sigmoid(x)


def _sigmoid_fwd(x):
    y = functions.sigmoid(x)
    return y, y


def _sigmoid_bwd(y, g):
    # Book eq. 5.12: dx = g · y(1 - y), from the saved output alone.
    return (g * (1.0 - y) * y,)


sigmoid = make_layer("sigmoid", _sigmoid_plain, _sigmoid_fwd, _sigmoid_bwd)


def _unary_cases(shapes: dict[str, tuple[int, ...]], sampler):
    def make(shape):
        return lambda rng, dtype: (sampler(rng, shape, dtype),)

    return tuple(LayerCase(name, make(shape)) for name, shape in shapes.items())


REGISTRY_ENTRIES = (
    RegisteredLayer(
        "relu",
        relu,
        _unary_cases({"vector": (7,), "batch1": (1, 5), "4d": (2, 3, 4, 5)}, _away_from_zero),
    ),
    RegisteredLayer(
        "sigmoid",
        sigmoid,
        _unary_cases(
            {"vector": (7,), "batch1": (1, 5), "odd": (3, 7)},
            functools.partial(_normal, scale=2.0),
        ),
    ),
)
