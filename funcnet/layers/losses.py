"""The SoftmaxWithLoss node (book ch5.6.3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import functions
from funcnet._checks import (
    accumulation_dtype,
    check_label_dtype,
    check_labels,
    check_targets,
    nan_unless,
)
from funcnet.layers._rule import (
    LayerCase,
    RegisteredLayer,
    _normal,
    make_layer,
)

# --------------------------------------------------------------------------------------
# SoftmaxWithLoss (ch5.6.3)


def _as_batch(x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    if x.ndim == 1:
        return x.reshape(1, -1), (t.reshape(1, -1) if t.ndim == 1 else t.reshape(1))
    return x, t


def _softmax_with_loss_plain(x: jax.Array, t: jax.Array) -> jax.Array:
    """Softmax followed by mean cross-entropy (book's SoftmaxWithLoss, ch5.6.3).

    Shapes: x (N, C) scores, or (C,) for a batch of one; t one-hot of x's shape (any
    probability rows, floating point) or integer labels (N,) (a scalar for 1-D x). Returns
    a scalar of x's dtype. Forward: exact log-softmax cross-entropy, finite for logits of
    any size. Residuals: log y (y = softmax(x)) and t. Backward: dx = g · (y - t) / N;
    integer labels get no cotangent (None), float targets get d/dt = -g · log y / N.
    NaN in x, t or g gives NaN. Under ``jit`` (labels unchecked) a label outside [0, C)
    gives a NaN loss and a NaN row of dx, in the rule and in autodiff of this forward.
    Half precision: for float16/bfloat16 x the forward and the rule compute in float32
    (log y is kept in float32; the sums over the batch and the ``/ N`` overflow or round
    away in float16) and round the loss and the cotangents once to their inputs' dtypes.
    """
    # Exact log-softmax cross-entropy: no 1e-7 inside the log (see DESIGN, "1e-7 delta").
    x2, t2 = _as_batch(x, t)
    return functions.mean_cross_entropy(functions.wide_log_softmax(x2), t2, dtype=x.dtype)


def _softmax_with_loss_fwd(x, t):
    x2, t2 = _as_batch(x, t)
    logp = functions.wide_log_softmax(x2)  # in float32 for half x: the rule's residual
    # x's dtype travels in a zero-size token (logp may be wider): dx takes x's dtype.
    x_token = jnp.zeros((0,), x.dtype)
    return functions.mean_cross_entropy(logp, t2, dtype=x.dtype), (logp, t, x_token)


def _softmax_with_loss_bwd(res, g):
    logp, t, x_token = res
    n, classes = logp.shape
    wide = accumulation_dtype(logp.dtype, g.dtype)
    logp, g = logp.astype(wide), g.astype(wide)
    y = jnp.exp(logp)  # softmax(x)
    integer_labels = jnp.issubdtype(t.dtype, jnp.integer)
    # The book's rule (ch5.6.3): dx = (y - t) / N, times the upstream g that the book's
    # backward(dout=1) ignores.
    if integer_labels:
        labels = t.reshape(n)
        valid = (labels >= 0) & (labels < classes)  # out of range only under jit: NaN row
        one_hot = jax.nn.one_hot(labels, classes, dtype=wide)
        dx = g * (y - one_hot) / n * nan_unless(valid, wide)[:, None]
    else:
        t2 = t.reshape(n, classes).astype(wide)
        # y·Σt equals the book's y when each row of t sums to 1 (one-hot); keeping the sum
        # makes the rule exact for any t, which second derivatives with respect to t need.
        dx = g * (y * jnp.sum(t2, axis=1, keepdims=True) - t2) / n
    x_was_1d = t.ndim == (0 if integer_labels else 1)
    dx = (dx.reshape(classes) if x_was_1d else dx).astype(x_token.dtype)
    if integer_labels:
        return dx, None
    # Soft or one-hot float targets are differentiable too: d loss / dt = -log y / N.
    return dx, (-g * logp / n).reshape(t.shape).astype(t.dtype)


def _check_softmax_with_loss(x, t) -> None:
    """Shapes and dtypes always; label range and probability rows when concrete."""
    if x.ndim not in (1, 2):
        raise ValueError(f"softmax_with_loss: x must be (N, C) or (C,), got x {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"softmax_with_loss: x must be floating point, got {x.dtype}")
    if x.shape[-1] == 0:
        raise ValueError(
            f"softmax_with_loss: x has no classes (its last axis is empty), x {x.shape}"
        )
    if x.ndim == 2 and x.shape[0] == 0:
        raise ValueError(f"softmax_with_loss: x holds an empty batch, x {x.shape}")
    if t.ndim == x.ndim - 1:  # integer labels
        check_label_dtype("softmax_with_loss", t)
        if t.shape != x.shape[:-1]:
            raise ValueError(
                f"softmax_with_loss: integer labels t must have shape {x.shape[:-1]} for "
                f"x {x.shape}, got t {t.shape}"
            )
        check_labels("softmax_with_loss", t, x.shape[-1])
        return
    if t.shape != x.shape:
        raise ValueError(
            f"softmax_with_loss: one-hot t must have x's shape; x {x.shape}, t {t.shape}"
        )
    if not jnp.issubdtype(t.dtype, jnp.floating):
        raise ValueError(
            f"softmax_with_loss: one-hot t must be floating point (it has a gradient); got "
            f"{t.dtype} {t.shape}: pass t.astype(x.dtype), or integer labels {x.shape[:-1]}"
        )
    check_targets("softmax_with_loss", t)


softmax_with_loss = make_layer(
    "softmax_with_loss",
    _softmax_with_loss_plain,
    _softmax_with_loss_fwd,
    _softmax_with_loss_bwd,
    _check_softmax_with_loss,
)


def _softmax_case(name: str, x_shape: tuple[int, ...], one_hot: bool) -> LayerCase:
    def inputs(rng, dtype):
        x = _normal(rng, x_shape, dtype, 2.0)
        labels = rng.integers(0, x_shape[-1], size=x_shape[:-1])
        if one_hot:
            return x, jnp.asarray(np.eye(x_shape[-1])[labels], dtype)
        return x, jnp.asarray(labels, jnp.int32)

    return LayerCase(name, inputs, (0, 1) if one_hot else (0,))


REGISTRY_ENTRIES = (
    RegisteredLayer(
        "softmax_with_loss",
        softmax_with_loss,
        (
            _softmax_case("one-hot", (4, 5), one_hot=True),
            _softmax_case("labels", (4, 5), one_hot=False),
            _softmax_case("batch1-labels", (1, 3), one_hot=False),
            _softmax_case("odd-labels", (7, 11), one_hot=False),
            _softmax_case("1d-one-hot", (6,), one_hot=True),
            _softmax_case("1d-label", (6,), one_hot=False),
        ),
    ),
)
