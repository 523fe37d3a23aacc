"""The multiplication and addition nodes (book ch5.4)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from funcnet.layers._rule import (
    LayerCase,
    RegisteredLayer,
    _normal,
    _shape_token,
    make_layer,
    unbroadcast,
)


def _check_broadcastable(name: str, x: jax.Array, y: jax.Array) -> None:
    try:
        jnp.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(
            f"{name}: x {x.shape} and y {y.shape} cannot be broadcast together"
        ) from None


# --------------------------------------------------------------------------------------
# MulLayer (ch5.4.1)


def _mul_plain(x: jax.Array, y: jax.Array) -> jax.Array:
    """Multiplication node x · y (book's MulLayer, ch5.4.1).

    Shapes: x and y broadcast together; the output has the broadcast shape.
    Backward: dx = g · y, dy = g · x ("swap the inputs"), each summed back to its input's shape.
    """
    return x * y


def _mul_fwd(x, y):
    return x * y, (x, y)


def _mul_bwd(res, g):
    x, y = res
    # The book's rule: swap the inputs. dx = g·y, dy = g·x.
    return unbroadcast(g * y, x.shape).astype(x.dtype), unbroadcast(g * x, y.shape).astype(y.dtype)


mul = make_layer(
    "mul", _mul_plain, _mul_fwd, _mul_bwd, functools.partial(_check_broadcastable, "mul")
)


# --------------------------------------------------------------------------------------
# AddLayer (ch5.4.2)


def _add_plain(x: jax.Array, y: jax.Array) -> jax.Array:
    """Addition node x + y (book's AddLayer, ch5.4.2).

    Shapes: x and y broadcast together; the output has the broadcast shape.
    Backward: dx = g, dy = g, each summed back to its input's shape.
    """
    return x + y


def _add_fwd(x, y):
    return x + y, (_shape_token(x), _shape_token(y))


def _add_bwd(res, g):
    x_token, y_token = res
    # The book's rule: pass the upstream gradient through, unchanged.
    return (
        unbroadcast(g, x_token.shape[1:]).astype(x_token.dtype),
        unbroadcast(g, y_token.shape[1:]).astype(y_token.dtype),
    )


add = make_layer(
    "add", _add_plain, _add_fwd, _add_bwd, functools.partial(_check_broadcastable, "add")
)


def _binary_cases(shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]):
    def make(x_shape, y_shape):
        def inputs(rng, dtype):
            return _normal(rng, x_shape, dtype), _normal(rng, y_shape, dtype)

        return inputs

    return tuple(LayerCase(name, make(xs, ys), (0, 1)) for name, (xs, ys) in shapes.items())


_MUL_ADD_SHAPES = {
    "scalars": ((), ()),
    "batch1": ((1, 5), (1, 5)),
    "odd": ((3, 7), (3, 7)),
    "broadcast": ((2, 3, 4), (4,)),
    "broadcast-ones": ((3, 1), (1, 5)),
}

REGISTRY_ENTRIES = (
    RegisteredLayer("mul", mul, _binary_cases(_MUL_ADD_SHAPES)),
    RegisteredLayer("add", add, _binary_cases(_MUL_ADD_SHAPES)),
)
