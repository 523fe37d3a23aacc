"""The ch4/ch5 ``TwoLayerNet`` (sigmoid or ReLU) as pure functions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet import functions, layers
from funcnet import gradient as _gradient
from funcnet._checks import (
    NONNEGATIVE,
    check_int,
    check_key,
    check_params,
    describe,
    host_view,
    hyperparameter,
    nan_unless,
)
from funcnet.nets.accuracy import GradFn, LossFn, Params, PredictFn, _labels, accuracy, check_t

ACTIVATIONS = ("relu", "sigmoid")
# --------------------------------------------------------------------------------------
# TwoLayerNet (ch4.5 with sigmoid, ch5.7 with ReLU)


class _Ops(NamedTuple):
    """The layers a forward pass is built from: hand-written rules or plain functions."""

    affine: Callable[..., jax.Array]
    activation: Callable[[jax.Array], jax.Array]
    softmax_with_loss: Callable[[jax.Array, jax.Array], jax.Array]


def _ops(activation: str, *, rules: bool) -> _Ops:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    act = getattr(layers, activation)
    if rules:
        return _Ops(layers.affine, act, layers.softmax_with_loss)
    return _Ops(layers.affine.fun, act.fun, layers.softmax_with_loss.fun)


def init_two_layer_net(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    output_size: int,
    weight_init_std: float = 0.01,
    dtype: Any = jnp.float32,
) -> Params:
    """The book's ``TwoLayerNet.__init__``: Gaussian weights times ``weight_init_std``,
    zero biases.

    Args:
        key: a ``jax.random`` key (``jax.random.key(0)``); sizes: ints >= 1;
        weight_init_std: a finite number >= 0 (a Python or NumPy number, a 0-d array,
            or traced under ``jit``/``vmap``: out of range or NaN gives NaN weights);
        dtype: a floating dtype.

    Returns:
        ``{"W1": (input_size, hidden_size), "b1": (hidden_size,),
        "W2": (hidden_size, output_size), "b2": (output_size,)}`` in ``dtype``.
    """
    where = "init_two_layer_net"
    check_key(where, key)
    input_size = check_int(where, "input_size", input_size)
    hidden_size = check_int(where, "hidden_size", hidden_size)
    output_size = check_int(where, "output_size", output_size)
    weight_init_std = check_init_std(where, weight_init_std)
    dtype = check_float_dtype(where, dtype)
    k1, k2 = jax.random.split(key)
    return {
        "W1": scaled_normal(k1, (input_size, hidden_size), weight_init_std, dtype),
        "b1": jnp.zeros((hidden_size,), dtype),
        "W2": scaled_normal(k2, (hidden_size, output_size), weight_init_std, dtype),
        "b2": jnp.zeros((output_size,), dtype),
    }


def check_init_std(where: str, weight_init_std) -> float:
    """A finite standard deviation >= 0: a float, or (traced, e.g. a vmapped init) a tracer
    that is NaN where the value is negative or NaN, so the weights come out NaN."""
    return hyperparameter(where, "weight_init_std", weight_init_std, NONNEGATIVE)


def scaled_normal(key: jax.Array, shape: tuple[int, ...], std, dtype) -> jax.Array:
    """``std · N(0, 1)`` of ``shape`` in ``dtype``: ``std`` (a Python float, or a 0-d or
    traced array of any float dtype, e.g. a float32 value vmapped over) is cast to
    ``dtype`` first, so the weights keep ``dtype`` (a float32 ``std`` would otherwise
    promote float16 weights) and a concrete and a traced ``std`` give the same numbers."""
    return jnp.asarray(std, dtype) * jax.random.normal(key, shape, dtype)


def check_float_dtype(where: str, dtype) -> Any:
    """A floating-point dtype (float16 ... float64), as a NumPy dtype."""
    try:
        resolved = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: dtype must be a floating dtype, got {dtype!r}") from None
    if not jnp.issubdtype(resolved, jnp.floating):
        raise TypeError(f"{where}: dtype must be a floating dtype (e.g. float32), got {resolved}")
    return resolved


def check_weights(name: str, params, keys: tuple[str, ...]) -> None:
    """``params`` is a dict of floating-point arrays holding ``keys``."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{name}: params must be a dict with keys {', '.join(keys)}, got {describe(params)}"
        )
    missing = set(keys) - set(params)
    if missing:
        raise ValueError(f"{name}: params lack {sorted(missing)}")
    check_params(name, {k: params[k] for k in keys})


def _check_two_layer(name: str, params: Params, x: jax.Array) -> None:
    check_weights(name, params, ("W1", "b1", "W2", "b2"))
    W1 = params["W1"]
    if x.ndim not in (1, 2) or x.shape[-1] != W1.shape[0]:
        raise ValueError(
            f"{name}: x must be (N, {W1.shape[0]}) or ({W1.shape[0]},) to match "
            f"W1 {W1.shape}, got x {x.shape}"
        )


def _scores(ops: _Ops, params: Params, x: jax.Array) -> jax.Array:
    h = ops.activation(ops.affine(x, params["W1"], params["b1"]))
    return ops.affine(h, params["W2"], params["b2"])


def two_layer_net_predict(params: Params, x: jax.Array, *, activation: str = "relu") -> jax.Array:
    """Scores ``affine → activation → affine`` (the book's ``predict``, before softmax).

    Args:
        params: ``W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)``.
        x: ``(N, D)`` or ``(D,)``.
        activation: ``"relu"`` (ch5) or ``"sigmoid"`` (ch4).

    Returns:
        ``(N, C)`` (or ``(C,)``) scores.
    """
    x = jnp.asarray(x)
    _check_two_layer("two_layer_net_predict", params, x)
    return _scores(_ops(activation, rules=True), params, x)


def _loss(ops: _Ops, params: Params, x: jax.Array, t: jax.Array) -> jax.Array:
    return ops.softmax_with_loss(_scores(ops, params, x), t)


def two_layer_net_loss(
    params: Params, x: jax.Array, t: jax.Array, *, activation: str = "relu"
) -> jax.Array:
    """Mean cross-entropy of softmax(scores) through ``layers.softmax_with_loss`` (a scalar).

    Differentiating it with ``jax.grad`` runs the hand-written backward rules of every
    layer. The loss is the exact log-softmax form, without the book's 1e-7 (which the
    book's analytic gradients ignore too).
    """
    x = jnp.asarray(x)
    _check_two_layer("two_layer_net_loss", params, x)
    if x.ndim == 2:  # the caller's labels, checked before any narrowing
        check_t("two_layer_net_loss", x.shape[0], params["W2"].shape[1], t)
    return _loss(_ops(activation, rules=True), params, x, t)


def _plain_loss(params: Params, x: jax.Array, t: jax.Array, activation: str) -> jax.Array:
    """The same loss from the layers' plain forwards: no custom rule anywhere."""
    x = jnp.asarray(x)
    _check_two_layer("two_layer_net", params, x)
    if x.ndim == 2:
        check_t("two_layer_net", x.shape[0], params["W2"].shape[1], t)
    view = host_view(t)
    if jnp.issubdtype(view.dtype, jnp.integer):
        return _loss(_ops(activation, rules=False), params, x, jnp.asarray(view))
    return _loss(_ops(activation, rules=False), params, x, jnp.asarray(view, x.dtype))


def two_layer_net_gradient(
    params: Params, x: jax.Array, t: jax.Array, *, activation: str = "relu"
) -> Params:
    """Backpropagation (book ch5 ``gradient``): ``jax.grad`` of :func:`two_layer_net_loss`,
    which chains the custom_vjp rules of affine, the activation and softmax_with_loss.

    Returns:
        A dict with the params' keys and shapes.
    """
    _check_two_layer("two_layer_net_gradient", params, jnp.asarray(x))
    return jax.grad(functools.partial(two_layer_net_loss, activation=activation))(params, x, t)


def two_layer_net_autodiff_gradient(
    params: Params, x: jax.Array, t: jax.Array, *, activation: str = "relu"
) -> Params:
    """Reference gradient: ``jax.grad`` of the plain forward (each layer's ``.fun``), with
    JAX deriving every rule itself. Same structure as the params."""
    _check_two_layer("two_layer_net_autodiff_gradient", params, jnp.asarray(x))
    return jax.grad(_plain_loss)(params, x, t, activation)


def two_layer_net_numerical_gradient(
    params: Params, x: jax.Array, t: jax.Array, *, activation: str = "relu", h: float = 1e-4
) -> Params:
    """Central differences of the loss for every weight (book ch4 ``numerical_gradient``).

    Use float64 params and inputs: in float32 the step ``h`` leaves about 3 digits.
    """
    _check_two_layer("two_layer_net_numerical_gradient", params, jnp.asarray(x))
    return _gradient.numerical_gradient(lambda p: _plain_loss(p, x, t, activation), params, h)


def two_layer_net_ch4_gradient(params: Params, x: jax.Array, t: jax.Array) -> Params:
    """The book's hand-derived gradient of the *sigmoid* net (ch4 ``TwoLayerNet.gradient``).

    Written out step by step like the book, with ``sigmoid_grad``::

        dy = (y - t) / N;  dW2 = z1ᵀ·dy;  db2 = Σₙ dy
        da1 = sigmoid_grad(a1) · (dy·W2ᵀ);  dW1 = xᵀ·da1;  db1 = Σₙ da1

    Args:
        params: ``W1 b1 W2 b2``; x: ``(N, D)``; t: labels ``(N,)`` or one-hot ``(N, C)``.
    """
    x = jnp.asarray(x)
    _check_two_layer("two_layer_net_ch4_gradient", params, x)
    if x.ndim != 2:
        raise ValueError(f"two_layer_net_ch4_gradient: x must be a batch (N, D), got {x.shape}")
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    batch_num = x.shape[0]
    a1 = jnp.dot(x, W1) + b1
    z1 = functions.sigmoid(a1)
    a2 = jnp.dot(z1, W2) + b2
    y = functions.softmax(a2)
    labels = _labels("two_layer_net_ch4_gradient", batch_num, a2.shape[1], t)
    t_onehot = jax.nn.one_hot(labels, a2.shape[1], dtype=y.dtype)
    # Under jit a label outside [0, C) cannot be checked: its row of dy becomes NaN.
    valid = (labels >= 0) & (labels < a2.shape[1])
    dy = (y - t_onehot) / batch_num * nan_unless(valid, y.dtype)[:, None]
    dz1 = jnp.dot(dy, W2.T)
    da1 = functions.sigmoid_grad(a1) * dz1
    return {
        "W1": jnp.dot(x.T, da1),
        "b1": jnp.sum(da1, axis=0),
        "W2": jnp.dot(z1.T, dy),
        "b2": jnp.sum(dy, axis=0),
    }


class TwoLayerNet(NamedTuple):
    """The book's ``TwoLayerNet`` methods for one activation, as pure functions.

    Every field takes the params explicitly: ``net.loss(params, x, t)``,
    ``net.gradient(params, x, t)``, ``net.accuracy(params, x, t)``.
    """

    activation: str
    predict: PredictFn
    loss: LossFn
    accuracy: Callable[..., jax.Array]
    gradient: GradFn
    autodiff_gradient: GradFn
    numerical_gradient: GradFn


def two_layer_net(activation: str = "relu") -> TwoLayerNet:
    """The two-layer net's functions for ``activation`` ("relu", ch5, or "sigmoid", ch4)."""
    _ops(activation, rules=True)  # validates the name
    predict = functools.partial(two_layer_net_predict, activation=activation)
    return TwoLayerNet(
        activation=activation,
        predict=predict,
        loss=functools.partial(two_layer_net_loss, activation=activation),
        accuracy=functools.partial(accuracy, predict),
        gradient=functools.partial(two_layer_net_gradient, activation=activation),
        autodiff_gradient=functools.partial(two_layer_net_autodiff_gradient, activation=activation),
        numerical_gradient=functools.partial(
            two_layer_net_numerical_gradient, activation=activation
        ),
    )
