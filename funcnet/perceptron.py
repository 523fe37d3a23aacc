"""Perceptron logic gates (ch2): weights, a bias and a step, vectorised over arrays.

Each gate takes two arrays of 0/1 inputs (any broadcastable shapes) and returns an int32
array of 0/1 of the broadcast shape: ``and_gate(jnp.array([0, 1]), 1) -> [0, 1]``.

An int32 output cannot hold NaN, so non-finite inputs are refused: concrete NaN or inf
raise ``ValueError``. Under ``jit`` (values unknown) a NaN input gives 0, the result of
the comparison ``NaN > 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnet._checks import check_finite, host_view

# (w1, w2, b) from the book, ch2.3.
AND_PARAMS = (0.5, 0.5, -0.7)
NAND_PARAMS = (-0.5, -0.5, 0.7)
OR_PARAMS = (0.5, 0.5, -0.2)


def perceptron(
    x1: jax.Array, x2: jax.Array, w1: float, w2: float, b: float, *, name: str = "perceptron"
) -> jax.Array:
    """One perceptron: 1 where w1·x1 + w2·x2 + b > 0, else 0 (int32, broadcast shape).

    ``name`` is the gate reported in error messages.

    Raises:
        ValueError: shapes that do not broadcast, or concrete NaN/inf in an input.
    """
    for arg, x in (("x1", x1), ("x2", x2)):
        check_finite(name, arg, host_view(x), hint="a gate's inputs are 0 or 1")
    x1 = jnp.asarray(x1, dtype=jnp.float32)
    x2 = jnp.asarray(x2, dtype=jnp.float32)
    try:
        jnp.broadcast_shapes(x1.shape, x2.shape)
    except ValueError:
        raise ValueError(
            f"{name}: x1 {x1.shape} and x2 {x2.shape} cannot be broadcast together"
        ) from None
    return (w1 * x1 + w2 * x2 + b > 0).astype(jnp.int32)


def and_gate(x1: jax.Array, x2: jax.Array) -> jax.Array:
    """AND: w = (0.5, 0.5), b = -0.7. Shapes broadcast; returns int32 0/1."""
    return perceptron(x1, x2, *AND_PARAMS, name="and_gate")


def nand_gate(x1: jax.Array, x2: jax.Array) -> jax.Array:
    """NAND: w = (-0.5, -0.5), b = 0.7. Shapes broadcast; returns int32 0/1."""
    return perceptron(x1, x2, *NAND_PARAMS, name="nand_gate")


def or_gate(x1: jax.Array, x2: jax.Array) -> jax.Array:
    """OR: w = (0.5, 0.5), b = -0.2. Shapes broadcast; returns int32 0/1."""
    return perceptron(x1, x2, *OR_PARAMS, name="or_gate")


def xor_gate(x1: jax.Array, x2: jax.Array) -> jax.Array:
    """XOR as the book's two-layer perceptron: AND(NAND(x1, x2), OR(x1, x2))."""
    for arg, x in (("x1", x1), ("x2", x2)):
        check_finite("xor_gate", arg, host_view(x), hint="a gate's inputs are 0 or 1")
    return and_gate(nand_gate(x1, x2), or_gate(x1, x2))
