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

Calling ``L`` validates shapes (and, outside ``jit``, label and target values) in Python,
on the values the caller passed (before any dtype conversion), so bad input raises a
``ValueError`` (``TypeError`` for non-numeric input) naming the argument and both shapes
before XLA sees it. NaN propagates through every layer, forward and backward (see
:mod:`funcnet.functions` for the conventions on labels and targets).

:data:`REGISTRY` lists every layer with a function that makes valid random inputs; the
tests and ``python -m funcnet.check`` verify every registered rule from it.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import functions
from funcnet._checks import (
    check_label_dtype,
    check_labels,
    check_targets,
    describe,
    host_view,
    nan_unless,
)

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
    arg_names = tuple(inspect.signature(plain).parameters)

    @functools.wraps(plain)
    def layer(*args):
        if len(args) != len(arg_names):
            raise TypeError(
                f"{name}: takes {len(arg_names)} arguments {arg_names}, got {len(args)}"
            )
        # Validators see the caller's values (NumPy views: int64 labels are not narrowed).
        views = tuple(host_view(a) for a in args)
        for arg, view in zip(arg_names, views, strict=True):
            if not (jnp.issubdtype(view.dtype, jnp.number) or view.dtype == jnp.bool_):
                raise TypeError(f"{name}: {arg} must be a numeric array, got {describe(view)}")
        if validate is not None:
            validate(*views)
        # Converted from the arguments themselves: Python scalars stay weakly typed.
        return rule(*(jnp.asarray(a) for a in args))

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
    stretched = tuple(
        i for i, (gs, s) in enumerate(zip(g.shape, shape, strict=True)) if s == 1 and gs != 1
    )
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
    a scalar. Forward: exact log-softmax cross-entropy, finite for logits of any size.
    Residuals: log y (y = softmax(x)) and t. Backward: dx = g · (y - t) / N; integer labels
    get no cotangent (None), float targets get d/dt = -g · log y / N.
    NaN in x, t or g gives NaN. Under ``jit`` (labels unchecked) a label outside [0, C)
    gives a NaN loss and a NaN row of dx, in the rule and in autodiff of this forward.
    """
    # Exact log-softmax cross-entropy: no 1e-7 inside the log (see DESIGN, "1e-7 delta").
    x2, t2 = _as_batch(x, t)
    return functions.mean_cross_entropy(functions.log_softmax(x2), t2)


def _softmax_with_loss_fwd(x, t):
    x2, t2 = _as_batch(x, t)
    logp = functions.log_softmax(x2)
    return functions.mean_cross_entropy(logp, t2), (logp, t)


def _softmax_with_loss_bwd(res, g):
    logp, t = res
    n, classes = logp.shape
    y = jnp.exp(logp)  # softmax(x)
    integer_labels = jnp.issubdtype(t.dtype, jnp.integer)
    # The book's rule (ch5.6.3): dx = (y - t) / N, times the upstream g that the book's
    # backward(dout=1) ignores.
    if integer_labels:
        labels = t.reshape(n)
        valid = (labels >= 0) & (labels < classes)  # out of range only under jit: NaN row
        one_hot = jax.nn.one_hot(labels, classes, dtype=logp.dtype)
        dx = g * (y - one_hot) / n * nan_unless(valid, logp.dtype)[:, None]
    else:
        t2 = t.reshape(n, classes).astype(logp.dtype)
        # y·Σt equals the book's y when each row of t sums to 1 (one-hot); keeping the sum
        # makes the rule exact for any t, which second derivatives with respect to t need.
        dx = g * (y * jnp.sum(t2, axis=1, keepdims=True) - t2) / n
    x_was_1d = t.ndim == (0 if integer_labels else 1)
    dx = dx.reshape(classes) if x_was_1d else dx
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


# --------------------------------------------------------------------------------------
# Registry: every custom-rule layer with valid sample inputs, for tests and funcnet.check


class LayerCase(NamedTuple):
    """One input configuration of a registered layer.

    ``make_inputs(rng, dtype)`` returns the layer's positional arguments, drawn from a
    ``numpy.random.Generator`` (test data: NumPy draws them without compiling anything);
    ``argnums`` are the arguments to differentiate (integer labels are never among them).
    """

    name: str
    make_inputs: Callable[[np.random.Generator, Any], tuple[jax.Array, ...]]
    argnums: tuple[int, ...] = (0,)


class RegisteredLayer(NamedTuple):
    """A layer with a custom backward rule and the cases it is verified on."""

    name: str
    layer: Callable[..., jax.Array]
    cases: tuple[LayerCase, ...]


def _normal(rng, shape, dtype, scale=1.0):
    return jnp.asarray(scale * rng.standard_normal(shape), dtype)


def _away_from_zero(rng, shape, dtype, margin=0.1):
    """Values with |x| >= margin, so finite differences never straddle ReLU's kink."""
    u = rng.standard_normal(shape)
    return jnp.asarray(np.sign(u) * (margin + np.abs(u)), dtype)


def _binary_cases(shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]):
    def make(x_shape, y_shape):
        def inputs(rng, dtype):
            return _normal(rng, x_shape, dtype), _normal(rng, y_shape, dtype)

        return inputs

    return tuple(LayerCase(name, make(xs, ys), (0, 1)) for name, (xs, ys) in shapes.items())


def _unary_cases(shapes: dict[str, tuple[int, ...]], sampler):
    def make(shape):
        return lambda rng, dtype: (sampler(rng, shape, dtype),)

    return tuple(LayerCase(name, make(shape)) for name, shape in shapes.items())


def _affine_case(name: str, x_shape: tuple[int, ...], out_features: int) -> LayerCase:
    in_features = x_shape[0] if len(x_shape) == 1 else math.prod(x_shape[1:])

    def inputs(rng, dtype):
        return (
            _normal(rng, x_shape, dtype),
            _normal(rng, (in_features, out_features), dtype, 0.5),
            _normal(rng, (out_features,), dtype),
        )

    return LayerCase(name, inputs, (0, 1, 2))


def _softmax_case(name: str, x_shape: tuple[int, ...], one_hot: bool) -> LayerCase:
    def inputs(rng, dtype):
        x = _normal(rng, x_shape, dtype, 2.0)
        labels = rng.integers(0, x_shape[-1], size=x_shape[:-1])
        if one_hot:
            return x, jnp.asarray(np.eye(x_shape[-1])[labels], dtype)
        return x, jnp.asarray(labels, jnp.int32)

    return LayerCase(name, inputs, (0, 1) if one_hot else (0,))


_MUL_ADD_SHAPES = {
    "scalars": ((), ()),
    "batch1": ((1, 5), (1, 5)),
    "odd": ((3, 7), (3, 7)),
    "broadcast": ((2, 3, 4), (4,)),
    "broadcast-ones": ((3, 1), (1, 5)),
}

REGISTRY: dict[str, RegisteredLayer] = {
    entry.name: entry
    for entry in (
        RegisteredLayer("mul", mul, _binary_cases(_MUL_ADD_SHAPES)),
        RegisteredLayer("add", add, _binary_cases(_MUL_ADD_SHAPES)),
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
}
"""Every custom-rule layer, keyed by name. Add an entry here and it is verified."""
