"""Activation, output and loss functions of the book (chapters 3-4), as plain jnp.

These are ordinary differentiable functions: JAX's autodiff goes straight through them.
The hand-written backward rules live in :mod:`funcnet.layers`.

Shapes: ``(...,)`` means any shape; ``(N, C)`` a batch of N rows of C classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnet._checks import check_labels

# The book's guard against log(0) in cross_entropy_error (ch4). Only the book-compatible
# loss uses it; the fused softmax_cross_entropy is exact.
CROSS_ENTROPY_DELTA = 1e-7


def step_function(x: jax.Array) -> jax.Array:
    """Step function (ch3): 1 where x > 0, else 0, in x's dtype. Shape (...,) -> (...,)."""
    x = jnp.asarray(x)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.int32
    return (x > 0).astype(dtype)


def sigmoid(x: jax.Array) -> jax.Array:
    """Logistic sigmoid 1 / (1 + exp(-x)) (ch3). Shape (...,) -> (...,).

    Computed by XLA's logistic primitive, which never overflows: sigmoid(±1000) is
    exactly 1 and 0 with no warning and no NaN, and small values keep full relative
    precision (unlike ``1 / (1 + exp(-x))``, which overflows for x < -709 in float64).
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return jax.lax.logistic(x)


def sigmoid_grad(x: jax.Array) -> jax.Array:
    """Derivative of the sigmoid, (1 - s) * s with s = sigmoid(x) (ch4). Shape (...,)."""
    s = sigmoid(x)
    return (1.0 - s) * s


def relu(x: jax.Array) -> jax.Array:
    """ReLU max(0, x) (ch3). Shape (...,) -> (...,).

    Written as ``where(x > 0, x, 0)`` so that its autodiff derivative at exactly 0 is 0,
    the convention of the book's Relu layer and of ``jax.nn.relu``.
    """
    x = jnp.asarray(x)
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def identity_function(x: jax.Array) -> jax.Array:
    """The identity, the output function for regression (ch3). Shape (...,) -> (...,)."""
    return jnp.asarray(x)


def softmax(x: jax.Array) -> jax.Array:
    """Softmax over the last axis (ch3). Shape (C,) or (N, C) -> the same shape.

    The maximum along the last axis is subtracted first, so logits of 1e4 stay finite.
    """
    x = jnp.asarray(x)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def log_softmax(x: jax.Array) -> jax.Array:
    """log(softmax(x)) over the last axis, computed stably. Shape (C,) or (N, C)."""
    x = jnp.asarray(x)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def sum_squares_error(y: jax.Array, t: jax.Array) -> jax.Array:
    """Sum of squares error 0.5 * Σ (y - t)² over all elements (ch4). Returns a scalar."""
    y, t = jnp.asarray(y), jnp.asarray(t)
    if y.shape != t.shape:
        raise ValueError(f"sum_squares_error: y {y.shape} and t {t.shape} must have the same shape")
    return 0.5 * jnp.sum((y - t) ** 2)


def _as_batch(y: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The book's convention: a 1-D y (and its t) is a batch of one."""
    if y.ndim == 1:
        y = y.reshape(1, -1)
        t = t.reshape(1, -1) if t.size == y.size else t.reshape(1)
    return y, t


def _label_indices(name: str, y: jax.Array, t: jax.Array) -> jax.Array:
    """Turn one-hot t (same size as y) or integer t into label indices of shape (N,)."""
    if y.ndim != 2:
        raise ValueError(f"{name}: expected scores of shape (N, C) or (C,), got {y.shape}")
    if t.size == y.size:
        if t.shape != y.shape:
            raise ValueError(
                f"{name}: one-hot t must have the shape of y; y {y.shape}, t {t.shape}"
            )
        return jnp.argmax(t, axis=1)
    if t.shape != (y.shape[0],):
        raise ValueError(
            f"{name}: t must be one-hot {y.shape} or integer labels ({y.shape[0]},); "
            f"y {y.shape}, t {t.shape}"
        )
    check_labels(name, t, y.shape[1])
    return t.astype(jnp.int32)


def cross_entropy_error(y: jax.Array, t: jax.Array) -> jax.Array:
    """Mean cross-entropy error, exactly as the book's ch4 ``cross_entropy_error``.

    Args:
        y: probabilities, shape (N, C), or (C,) for a batch of one.
        t: one-hot labels of y's shape (recognised by ``t.size == y.size``) or integer
            labels of shape (N,) (or a scalar for a 1-D y).

    Returns:
        Scalar ``-Σ log(y[n, t_n] + 1e-7) / N``. The 1e-7 keeps log(0) finite; it is the
        book's, and it makes this loss differ from the exact one by about 1e-7.
    """
    y, t = _as_batch(jnp.asarray(y), jnp.asarray(t))
    labels = _label_indices("cross_entropy_error", y, t)
    picked = jnp.take_along_axis(y, labels[:, None], axis=1)[:, 0]
    return -jnp.sum(jnp.log(picked + CROSS_ENTROPY_DELTA)) / y.shape[0]


def softmax_cross_entropy(logits: jax.Array, t: jax.Array) -> jax.Array:
    """Mean cross-entropy of softmax(logits), fused and exact (log-softmax based).

    Args:
        logits: scores, shape (N, C), or (C,) for a batch of one.
        t: one-hot (or any probability rows) of logits' shape, or integer labels (N,).

    Returns:
        Scalar ``-Σₙ Σ_c t[n, c] · log_softmax(logits)[n, c] / N``; finite for any finite
        logits, including ±1e4 and probabilities that underflow to zero.
    """
    logits, t = _as_batch(jnp.asarray(logits), jnp.asarray(t))
    logp = log_softmax(logits)
    if t.size == logits.size:
        if t.shape != logits.shape:
            raise ValueError(
                f"softmax_cross_entropy: one-hot t must have the shape of logits; "
                f"logits {logits.shape}, t {t.shape}"
            )
        return -jnp.sum(t * logp) / logits.shape[0]
    labels = _label_indices("softmax_cross_entropy", logits, t)
    return -jnp.sum(jnp.take_along_axis(logp, labels[:, None], axis=1)) / logits.shape[0]
