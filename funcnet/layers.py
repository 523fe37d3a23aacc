"""Computational-graph layers of chapter 5, each a ``jax.custom_vjp`` with the book's
hand-written backward rule.

The book's layers are objects: ``forward(x)`` remembers its inputs and ``backward(dout)``
uses them. Here each layer is a pure function. What the book's object remembers becomes
the *residuals* returned by ``fwd``; its ``backward`` method becomes ``bwd(residuals, g)``,
where ``g`` is the upstream gradient (the book's ``dout``). JAX chains the rules.

For each layer, in this order: the plain forward (an ordinary jnp function, the autodiff
reference), ``fwd``, ``bwd``, and the public layer made by :func:`make_layer`.
Every public layer ``L`` carries:

- ``L.fun``: the plain forward, so ``jax.grad`` of ``L.fun`` checks ``L``'s rule;
- ``L.rule``: the ``jax.custom_vjp`` object itself, without input validation.

Calling ``L`` validates shapes (and, outside ``jit``, label values) in Python, so bad
input raises a ``ValueError`` naming the argument and both shapes before XLA sees it.

:data:`REGISTRY` lists every layer with a function that makes valid random inputs; the
tests and ``python -m funcnet.check`` verify every registered rule from it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet import functions
from funcnet._checks import check_labels

# --------------------------------------------------------------------------------------
# Helpers


def make_layer(
    name: str,
    plain: Callable[..., jax.Array],
    fwd: Callable[..., tuple[jax.Array, Any]],
    bwd: Callable[[Any, jax.Array], tuple[Any, ...]],
    validate: Callable[..., None] | None = None,
) -> Callable[..., jax.Array]:
    """Wrap a plain forward and its hand-written rule into a validated public layer.

    The plain forward is renamed ``name`` so that traced graphs (``funcnet.graph``) and
    JAX's debug info show the layer under the book's name.
    """
    plain.__name__ = plain.__qualname__ = name
    rule = jax.custom_vjp(plain)
    rule.defvjp(fwd, bwd)

    @functools.wraps(plain)
    def layer(*args):
        args = tuple(jnp.asarray(a) for a in args)
        if validate is not None:
            validate(*args)
        return rule(*args)

    layer.fun = plain
    layer.rule = rule
    layer.fwd = fwd
    layer.bwd = bwd
    return layer


def _shape_token(x: jax.Array) -> jax.Array:
    """A zero-element array whose shape and dtype record x's (a residual costing nothing)."""
    return jnp.zeros((0, *jnp.shape(x)), jnp.result_type(x))


def unbroadcast(g: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Sum a broadcast cotangent back to ``shape``: the reverse of numpy broadcasting."""
    shape = tuple(shape)
    extra = g.ndim - len(shape)
    if extra:
        g = jnp.sum(g, axis=tuple(range(extra)))
    stretched = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape, strict=True)) if s == 1 and gs != 1)
    if stretched:
        g = jnp.sum(g, axis=stretched, keepdims=True)
    return g.reshape(shape)


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
    return x * y


def _mul_fwd(x, y):
    return x * y, (x, y)


def _mul_bwd(res, g):
    x, y = res
    # The book's rule: swap the inputs. dx = g·y, dy = g·x.
    return unbroadcast(g * y, x.shape).astype(x.dtype), unbroadcast(g * x, y.shape).astype(y.dtype)


mul = make_layer("mul", _mul_plain, _mul_fwd, _mul_bwd, functools.partial(_check_broadcastable, "mul"))
mul.__doc__ = """Multiplication node x · y (book's MulLayer, ch5.4.1).

Shapes: x and y broadcast together; the output has the broadcast shape.
Backward: dx = g · y, dy = g · x ("swap the inputs"), each summed back to its input's shape.
"""


# --------------------------------------------------------------------------------------
# AddLayer (ch5.4.2)


def _add_plain(x: jax.Array, y: jax.Array) -> jax.Array:
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


add = make_layer("add", _add_plain, _add_fwd, _add_bwd, functools.partial(_check_broadcastable, "add"))
add.__doc__ = """Addition node x + y (book's AddLayer, ch5.4.2).

Shapes: x and y broadcast together; the output has the broadcast shape.
Backward: dx = g, dy = g, each summed back to its input's shape.
"""


# --------------------------------------------------------------------------------------
# Relu (ch5.5.1)


def _relu_plain(x: jax.Array) -> jax.Array:
    return functions.relu(x)


def _relu_fwd(x):
    mask = x > 0
    return jnp.where(mask, x, jnp.zeros_like(x)), mask


def _relu_bwd(mask, g):
    # The book's rule: the gradient flows where the input was > 0 and stops elsewhere
    # (at exactly 0 too, like the book's Relu layer and jax.nn.relu).
    return (jnp.where(mask, g, jnp.zeros_like(g)),)


relu = make_layer("relu", _relu_plain, _relu_fwd, _relu_bwd)
relu.__doc__ = """ReLU node max(0, x) (book's Relu layer, ch5.5.1). Shape (...,) -> (...,).

Residual: the mask x > 0. Backward: dx = g where x > 0, else 0 (0 at x == 0 exactly).
"""


# --------------------------------------------------------------------------------------
# Sigmoid (ch5.5.2)


def _sigmoid_plain(x: jax.Array) -> jax.Array:
    return functions.sigmoid(x)


def _sigmoid_fwd(x):
    y = functions.sigmoid(x)
    return y, y


def _sigmoid_bwd(y, g):
    # Book eq. 5.12: dx = g · y(1 - y), from the saved output alone.
    return (g * (1.0 - y) * y,)


sigmoid = make_layer("sigmoid", _sigmoid_plain, _sigmoid_fwd, _sigmoid_bwd)
sigmoid.__doc__ = """Sigmoid node 1 / (1 + exp(-x)) (book's Sigmoid layer, ch5.5.2).

Shape (...,) -> (...,). Residual: the output y. Backward: dx = g · (1 - y) · y.
"""


# --------------------------------------------------------------------------------------
# Affine (ch5.6.2)


def _flatten_batch(x: jax.Array) -> jax.Array:
    """The book flattens input of rank >= 2 to (N, -1); a 1-D x is one example."""
    return x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)


def _affine_plain(x: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    out = jnp.dot(_flatten_batch(x), W) + b
    return out[0] if x.ndim == 1 else out


def _affine_fwd(x, W, b):
    return _affine_plain(x, W, b), (x, W)


def _affine_bwd(res, g):
    x, W = res
    x2 = _flatten_batch(x)
    g2 = g.reshape(x2.shape[0], -1)
    # Book eq. 5.13: dx = g·Wᵀ (back to x's shape), dW = xᵀ·g, db = Σₙ g.
    dx = jnp.dot(g2, W.T).reshape(x.shape)
    dW = jnp.dot(x2.T, g2)
    db = jnp.sum(g2, axis=0)
    return dx, dW, db


def _check_affine(x: jax.Array, W: jax.Array, b: jax.Array) -> None:
    if W.ndim != 2:
        raise ValueError(f"affine: W must be 2-D (in_features, out_features), got W {W.shape}")
    if x.ndim == 0:
        raise ValueError(f"affine: x must have at least one dimension, got x {x.shape}")
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
affine.__doc__ = """Affine node x·W + b (book's Affine layer, ch5.6.2).

Shapes: x (N, D), or (N, d1, d2, ...) flattened to (N, D) as in the book, or (D,) for
one example; W (D, M); b (M,). Output (N, M) (or (M,) for a 1-D x).
Residuals: x and W. Backward (eq. 5.13): dx = g·Wᵀ reshaped to x's shape, dW = xᵀ·g,
db = Σₙ g.
"""


# --------------------------------------------------------------------------------------
# SoftmaxWithLoss (ch5.6.3)


def _as_batch(x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    if x.ndim == 1:
        return x.reshape(1, -1), (t.reshape(1, -1) if t.ndim == 1 else t.reshape(1))
    return x, t


def _one_hot_like(x2: jax.Array, t2: jax.Array) -> jax.Array:
    if jnp.issubdtype(t2.dtype, jnp.integer):
        return jax.nn.one_hot(t2, x2.shape[1], dtype=x2.dtype)
    return t2.astype(x2.dtype)


def _softmax_with_loss_plain(x: jax.Array, t: jax.Array) -> jax.Array:
    # Exact log-softmax cross-entropy: no 1e-7 inside the log (see DESIGN, "1e-7 delta").
    x2, t2 = _as_batch(x, t)
    return -jnp.sum(_one_hot_like(x2, t2) * functions.log_softmax(x2)) / x2.shape[0]


def _softmax_with_loss_fwd(x, t):
    x2, t2 = _as_batch(x, t)
    logp = functions.log_softmax(x2)
    loss = -jnp.sum(_one_hot_like(x2, t2) * logp) / x2.shape[0]
    return loss, (logp, t)


def _softmax_with_loss_bwd(res, g):
    logp, t = res
    n, classes = logp.shape
    y = jnp.exp(logp)  # softmax(x)
    integer_labels = jnp.issubdtype(t.dtype, jnp.integer)
    if integer_labels:
        t2 = jax.nn.one_hot(t.reshape(n), classes, dtype=logp.dtype)
    else:
        t2 = t.reshape(n, classes).astype(logp.dtype)
    # The book's rule (ch5.6.3): dx = (y - t) / N, times the upstream g that the book's
    # backward(dout=1) ignores.
    dx = g * (y - t2) / n
    x_was_1d = t.ndim == (0 if integer_labels else 1)
    dx = dx.reshape(classes) if x_was_1d else dx
    if integer_labels:
        return dx, None
    # Soft or one-hot float targets are differentiable too: d loss / dt = -log y / N.
    return dx, (-g * logp / n).reshape(t.shape).astype(t.dtype)


def _check_softmax_with_loss(x: jax.Array, t: jax.Array) -> None:
    if x.ndim not in (1, 2):
        raise ValueError(f"softmax_with_loss: x must be (N, C) or (C,), got x {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"softmax_with_loss: x must be floating point, got {x.dtype}")
    if jnp.issubdtype(t.dtype, jnp.integer):
        expected = (x.shape[0],) if x.ndim == 2 else ()
        if t.shape != expected:
            raise ValueError(
                f"softmax_with_loss: integer labels t must have shape {expected} for "
                f"x {x.shape}, got t {t.shape}"
            )
        check_labels("softmax_with_loss", t, x.shape[-1])
    elif t.shape != x.shape:
        raise ValueError(
            f"softmax_with_loss: one-hot t must have x's shape; x {x.shape}, t {t.shape}"
        )


softmax_with_loss = make_layer(
    "softmax_with_loss",
    _softmax_with_loss_plain,
    _softmax_with_loss_fwd,
    _softmax_with_loss_bwd,
    _check_softmax_with_loss,
)
softmax_with_loss.__doc__ = """Softmax followed by mean cross-entropy (book's SoftmaxWithLoss, ch5.6.3).

Shapes: x (N, C) scores, or (C,) for a batch of one; t one-hot of x's shape (any
probability rows) or integer labels (N,) (a scalar for 1-D x). Returns a scalar.
Forward: exact log-softmax cross-entropy, finite for logits of any size.
Residuals: log y (y = softmax(x)) and t. Backward: dx = g · (y - t) / N; integer labels
get no cotangent (None), float targets get d/dt = -g · log y / N.
"""
