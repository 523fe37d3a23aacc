"""The book's ``MultiLayerNet`` (ch6, ``common/multi_layer_net.py``): a fully connected net
of any depth, with the ch6 weight initialisations and weight decay, as pure functions.

Layers: ``affine → activation`` once per hidden size, then ``affine → softmax_with_loss``.
Params ``W1, b1, …, W{L}, b{L}`` with ``L = len(hidden_size_list) + 1`` (biases start at
zero). With one hidden layer it is the two-layer net (same params, same numbers); with
none it is softmax regression (one affine layer).

The loss adds weight decay, ½·λ·Σᵢ‖Wᵢ‖² over the weights only (not the biases), so the
gradient of every weight is the book's ``dWᵢ + λ·Wᵢ`` and the biases' are unchanged.

Three gradients with the params' structure, which must agree (float64):
:func:`multi_layer_net_gradient` (``jax.grad`` through the hand-written rules of
:mod:`funcnet.layers`), :func:`multi_layer_net_autodiff_gradient` (``jax.grad`` of the
layers' plain forwards) and :func:`multi_layer_net_numerical_gradient` (central
differences).

Shapes: ``x (N, D)`` (or ``(D,)``), scores ``(N, C)``, ``t`` integer labels ``(N,)`` or
one-hot ``(N, C)``. Options of later chapters (batch normalization, dropout) will come as
further keyword arguments.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import gradient as _gradient
from funcnet._checks import NONNEGATIVE, check_key, describe, hyperparameter, is_concrete
from funcnet.nets.accuracy import GradFn, LossFn, Params, PredictFn, accuracy, check_t
from funcnet.nets.two_layer import ACTIVATIONS, _Ops, _ops, check_init_std, scaled_normal

WEIGHT_INIT_STDS = {"he": 2.0, "relu": 2.0, "xavier": 1.0, "sigmoid": 1.0}
"""Named initialisations: std = √(value / n_in), n_in the layer's fan-in (ch6.2.2-6.2.3)."""


# --------------------------------------------------------------------------------------
# Initialisation


def _check_size(fn: str, name: str, size: Any) -> int:
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"{fn}: {name} must be >= 1, got {size}")
    return int(size)


def _layer_sizes(
    fn: str, input_size: int, hidden_size_list: Sequence[int], output_size: int
) -> list[int]:
    """``[input_size, *hidden_size_list, output_size]``, each checked."""
    if isinstance(hidden_size_list, (str, bytes)) or not isinstance(
        hidden_size_list, (list, tuple)
    ):
        raise TypeError(
            f"{fn}: hidden_size_list must be a list of ints (e.g. [100, 100]), "
            f"got {type(hidden_size_list).__name__}"
        )
    return [
        _check_size(fn, "input_size", input_size),
        *(_check_size(fn, f"hidden_size_list[{i}]", s) for i, s in enumerate(hidden_size_list)),
        _check_size(fn, "output_size", output_size),
    ]


def _weight_scale(fn: str, weight_init_std: float | str | jax.Array, fan_in: int):
    """The book's ``__init_weight`` scale: a number as given, or √(2/n_in) / √(1/n_in).

    A number may be a Python or NumPy number, a 0-d array, or traced (``jit``/``vmap``
    over it): checked by :func:`~funcnet.nets.two_layer.check_init_std` (a traced value
    out of range or NaN gives NaN weights)."""
    if isinstance(weight_init_std, str):
        name = weight_init_std.lower()
        if name not in WEIGHT_INIT_STDS:
            raise ValueError(
                f"{fn}: weight_init_std must be a number or one of "
                f"{sorted(WEIGHT_INIT_STDS)}, got {weight_init_std!r}"
            )
        return math.sqrt(WEIGHT_INIT_STDS[name] / fan_in)
    try:
        return check_init_std(fn, weight_init_std)
    except TypeError:
        raise TypeError(
            f"{fn}: weight_init_std must be a number or a name ('he', 'xavier', ...), "
            f"got {describe(weight_init_std)}"
        ) from None


def init_multi_layer_net(
    key: jax.Array,
    input_size: int,
    hidden_size_list: Sequence[int],
    output_size: int,
    activation: str = "relu",
    weight_init_std: float | str = "relu",
    dtype: Any = jnp.float32,
) -> Params:
    """The book's ``MultiLayerNet.__init__`` weights: ``Wᵢ = scale · N(0, 1)``, ``bᵢ = 0``.

    Args:
        key: a ``jax.random`` key; layer i draws from ``jax.random.split(key, L)[i-1]``
            (so one hidden layer gives :func:`~funcnet.nets.init_two_layer_net`'s weights).
        input_size: D, >= 1.
        output_size: C, >= 1.
        hidden_size_list: sizes of the hidden layers, each >= 1; ``[]`` gives softmax
            regression (W1 ``(D, C)``).
        activation: ``"relu"`` or ``"sigmoid"``: checked here, like the book's
            constructor; :func:`multi_layer_net_predict` takes it again.
        weight_init_std: a number (the std of every layer), or ``"he"``/``"relu"``
            (√(2/n_in), He) or ``"xavier"``/``"sigmoid"`` (√(1/n_in), Xavier), with n_in the
            layer's fan-in; names are case-insensitive, like the book's. A number may be
            a 0-d array or traced (``jit``/``vmap`` over it; out of range or NaN: NaN
            weights).
        dtype: of the weights and biases.

    Returns:
        ``{"W1": (D, H1), "b1": (H1,), …, "W{L}": (H{L-1}, C), "b{L}": (C,)}``.
    """
    return init_weights(
        "init_multi_layer_net",
        key,
        input_size,
        hidden_size_list,
        output_size,
        activation,
        weight_init_std,
        dtype,
    )


def init_weights(
    fn: str,
    key: jax.Array,
    input_size: int,
    hidden_size_list: Sequence[int],
    output_size: int,
    activation: str,
    weight_init_std: float | str | jax.Array,
    dtype: Any,
) -> Params:
    """:func:`init_multi_layer_net`, its errors naming ``fn`` (the function called)."""
    check_key(fn, key)
    sizes = _layer_sizes(fn, input_size, hidden_size_list, output_size)
    _ops(activation, rules=True)  # validates the name
    scales = [_weight_scale(fn, weight_init_std, n_in) for n_in in sizes[:-1]]
    keys = jax.random.split(key, len(sizes) - 1)
    params: Params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        params[f"W{i}"] = scaled_normal(keys[i - 1], (n_in, n_out), scales[i - 1], dtype)
        params[f"b{i}"] = jnp.zeros((n_out,), dtype)
    return params


# --------------------------------------------------------------------------------------
# Forward, loss


def num_layers(params: Params) -> int:
    """L, the number of affine layers (``W1 … W{L}``)."""
    return sum(1 for k in params if k.startswith("W"))


def _check_params(fn: str, params: Params, x: jax.Array) -> int:
    """The params form a chain ``W1 b1 … W{L} b{L}`` that fits x; returns L."""
    if not isinstance(params, dict):
        raise TypeError(f"{fn}: params must be a dict of arrays, got {type(params).__name__}")
    L = num_layers(params)
    expected = {f"{p}{i}" for i in range(1, L + 1) for p in "Wb"}
    if L == 0 or set(params) != expected:
        raise ValueError(f"{fn}: params must be W1, b1, …, W{{L}}, b{{L}}; got {sorted(params)}")
    n_in = x.shape[-1] if x.ndim else None
    if x.ndim not in (1, 2) or n_in != params["W1"].shape[0]:
        raise ValueError(
            f"{fn}: x must be (N, {params['W1'].shape[0]}) or ({params['W1'].shape[0]},) to "
            f"match W1 {params['W1'].shape}, got x {x.shape}"
        )
    for i in range(1, L + 1):
        W, b = params[f"W{i}"], params[f"b{i}"]
        if W.ndim != 2 or W.shape[0] != n_in or b.shape != (W.shape[1],):
            raise ValueError(
                f"{fn}: W{i} must be ({n_in}, n) with b{i} (n,) to follow the previous "
                f"layer, got W{i} {W.shape}, b{i} {b.shape}"
            )
        n_in = W.shape[1]
    return L


def _scores(ops: _Ops, params: Params, x: jax.Array, L: int) -> jax.Array:
    h = x
    for i in range(1, L):
        h = ops.activation(ops.affine(h, params[f"W{i}"], params[f"b{i}"]))
    return ops.affine(h, params[f"W{L}"], params[f"b{L}"])


def multi_layer_net_predict(params: Params, x: jax.Array, *, activation: str = "relu") -> jax.Array:
    """Scores ``affine → activation → … → affine`` (the book's ``predict``, before softmax).

    Args:
        params: ``W1 (D, H1), b1 (H1,), …, W{L} (H{L-1}, C), b{L} (C,)``.
        x: ``(N, D)`` or ``(D,)``.
        activation: ``"relu"`` or ``"sigmoid"``.

    Returns:
        ``(N, C)`` (or ``(C,)``) scores.
    """
    x = jnp.asarray(x)
    L = _check_params("multi_layer_net_predict", params, x)
    return _scores(_ops(activation, rules=True), params, x, L)


def _check_lambda(fn: str, weight_decay_lambda: Any) -> None:
    if isinstance(weight_decay_lambda, (bool, np.bool_)) or not (
        isinstance(weight_decay_lambda, numbers.Real)
        or isinstance(weight_decay_lambda, (jax.Array, np.ndarray, np.generic))
    ):
        raise TypeError(
            f"{fn}: weight_decay_lambda must be a number, got {type(weight_decay_lambda).__name__}"
        )
    if np.ndim(weight_decay_lambda) != 0:
        raise ValueError(
            f"{fn}: weight_decay_lambda must be a scalar, got shape {np.shape(weight_decay_lambda)}"
        )
    if is_concrete(weight_decay_lambda):
        lam = float(weight_decay_lambda)
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"{fn}: weight_decay_lambda must be a finite number >= 0, got {lam}")


def weight_decay(params: Params, weight_decay_lambda: Any) -> jax.Array:
    """½·λ·Σᵢ‖Wᵢ‖² over the weights ``W1 … W{L}`` (not the biases): the book's
    ``weight_decay`` term of ``MultiLayerNet.loss``. Its gradient is λ·Wᵢ for each weight
    and 0 for each bias. ``weight_decay_lambda`` may be traced (a vmapped search); a
    traced λ < 0 or NaN makes the term NaN (a concrete one raises ``ValueError``)."""
    _check_lambda("weight_decay", weight_decay_lambda)
    lam = hyperparameter("weight_decay", "weight_decay_lambda", weight_decay_lambda, NONNEGATIVE)
    weights = [v for k, v in params.items() if k.startswith("W")]
    # In float32 or wider (a float16 λ of 1e-4 loses digits, Σ W² may overflow), cast back.
    dtype = jnp.result_type(*weights)
    wide = jnp.promote_types(dtype, jnp.float32)
    total = sum(jnp.sum(jnp.square(W.astype(wide))) for W in weights)
    return (0.5 * jnp.asarray(lam, wide) * total).astype(dtype)


def _loss(
    ops: _Ops, params: Params, x: jax.Array, t: jax.Array, L: int, weight_decay_lambda: Any
) -> jax.Array:
    loss = ops.softmax_with_loss(_scores(ops, params, x, L), t)
    if is_concrete(weight_decay_lambda) and float(weight_decay_lambda) == 0:
        return loss
    return loss + weight_decay(params, weight_decay_lambda).astype(loss.dtype)


def multi_layer_net_loss(
    params: Params,
    x: jax.Array,
    t: jax.Array,
    *,
    activation: str = "relu",
    weight_decay_lambda: Any = 0.0,
) -> jax.Array:
    """``softmax_with_loss(predict(x), t) + ½·λ·Σᵢ‖Wᵢ‖²`` (a scalar; the book's ``loss``).

    ``jax.grad`` of it runs the hand-written backward rules of every layer and adds λ·Wᵢ to
    each weight's gradient (book ch6.4.1). The cross-entropy is the exact log-softmax form,
    without the book's 1e-7.

    Args:
        params: as for :func:`multi_layer_net_predict`.
        x: as for :func:`multi_layer_net_predict`.
        t: integer labels ``(N,)`` or one-hot ``(N, C)``.
        activation: ``"relu"`` or ``"sigmoid"``.
        weight_decay_lambda: λ >= 0 (0: no decay); may be a traced scalar.
    """
    x = jnp.asarray(x)
    L = _check_params("multi_layer_net_loss", params, x)
    _check_lambda("multi_layer_net_loss", weight_decay_lambda)
    # t as the caller gave it: the layer checks label values before any dtype narrowing.
    return _loss(_ops(activation, rules=True), params, x, t, L, weight_decay_lambda)


def _plain_loss(
    params: Params, x: jax.Array, t: jax.Array, activation: str, weight_decay_lambda: Any
) -> jax.Array:
    """The same loss from the layers' plain forwards: no custom rule anywhere."""
    x = jnp.asarray(x)
    L = _check_params("multi_layer_net", params, x)
    _check_lambda("multi_layer_net", weight_decay_lambda)
    if x.ndim == 2:  # on the caller's t, before any dtype narrowing
        check_t("multi_layer_net", x.shape[0], params[f"W{L}"].shape[1], t)
    return _loss(_ops(activation, rules=False), params, x, jnp.asarray(t), L, weight_decay_lambda)


# --------------------------------------------------------------------------------------
# Gradients


def multi_layer_net_gradient(
    params: Params,
    x: jax.Array,
    t: jax.Array,
    *,
    activation: str = "relu",
    weight_decay_lambda: Any = 0.0,
) -> Params:
    """Backpropagation (the book's ``gradient``): ``jax.grad`` of
    :func:`multi_layer_net_loss` through the custom_vjp rules; weights get ``dWᵢ + λ·Wᵢ``.

    Returns:
        A dict with the params' keys and shapes.
    """
    loss = functools.partial(
        multi_layer_net_loss, activation=activation, weight_decay_lambda=weight_decay_lambda
    )
    return jax.grad(loss)(params, x, t)


def multi_layer_net_autodiff_gradient(
    params: Params,
    x: jax.Array,
    t: jax.Array,
    *,
    activation: str = "relu",
    weight_decay_lambda: Any = 0.0,
) -> Params:
    """Reference gradient: ``jax.grad`` of the plain forward (each layer's ``.fun``)."""
    return jax.grad(_plain_loss)(params, x, t, activation, weight_decay_lambda)


def multi_layer_net_numerical_gradient(
    params: Params,
    x: jax.Array,
    t: jax.Array,
    *,
    activation: str = "relu",
    weight_decay_lambda: Any = 0.0,
    h: float = 1e-4,
) -> Params:
    """Central differences of the loss for every weight (the book's
    ``numerical_gradient``). Use float64: in float32 the step ``h`` leaves about 3 digits."""
    return _gradient.numerical_gradient(
        lambda p: _plain_loss(p, x, t, activation, weight_decay_lambda), params, h
    )


# --------------------------------------------------------------------------------------
# The bundle


class MultiLayerNet(NamedTuple):
    """The book's ``MultiLayerNet`` methods for one activation and λ, as pure functions:
    ``net.loss(params, x, t)``, ``net.gradient(params, x, t)``, ``net.accuracy(params, x, t)``."""

    activation: str
    weight_decay_lambda: Any
    predict: PredictFn
    loss: LossFn
    accuracy: Callable[..., jax.Array]
    gradient: GradFn
    autodiff_gradient: GradFn
    numerical_gradient: GradFn


def multi_layer_net(activation: str = "relu", weight_decay_lambda: Any = 0.0) -> MultiLayerNet:
    """The multi-layer net's functions for ``activation`` ("relu" or "sigmoid") and weight
    decay λ (``weight_decay_lambda`` >= 0; it may be traced, e.g. inside a ``vmap`` over λ).

    Any depth: the params say how many layers there are (:func:`init_multi_layer_net`).
    """
    _ops(activation, rules=True)  # validates the name
    _check_lambda("multi_layer_net", weight_decay_lambda)
    options = {"activation": activation, "weight_decay_lambda": weight_decay_lambda}
    predict = functools.partial(multi_layer_net_predict, activation=activation)
    return MultiLayerNet(
        activation=activation,
        weight_decay_lambda=weight_decay_lambda,
        predict=predict,
        loss=functools.partial(multi_layer_net_loss, **options),
        accuracy=functools.partial(accuracy, predict),
        gradient=functools.partial(multi_layer_net_gradient, **options),
        autodiff_gradient=functools.partial(multi_layer_net_autodiff_gradient, **options),
        numerical_gradient=functools.partial(multi_layer_net_numerical_gradient, **options),
    )


__all__ = [
    "ACTIVATIONS",
    "WEIGHT_INIT_STDS",
    "MultiLayerNet",
    "init_multi_layer_net",
    "multi_layer_net",
    "multi_layer_net_autodiff_gradient",
    "multi_layer_net_gradient",
    "multi_layer_net_loss",
    "multi_layer_net_numerical_gradient",
    "multi_layer_net_predict",
    "num_layers",
    "weight_decay",
]
