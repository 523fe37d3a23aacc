"""Networks of chapters 3-5 as pure functions over a params pytree.

The book's networks are objects holding their weights (``network.params``) with methods
``predict``, ``loss``, ``accuracy``, ``numerical_gradient`` and ``gradient``. Here the
weights are a plain dict of arrays passed explicitly, and every method is a function of
``(params, x, t)``:

- :func:`simple_net_predict`, :func:`simple_net_loss`: the 2×3 ``simpleNet`` of ch4.
- :func:`three_layer_net_predict`: the ch3 inference network (``predict(network, x)``).
- :func:`two_layer_net_predict`, :func:`two_layer_net_loss` and the gradients of the
  ch4/ch5 ``TwoLayerNet``, with ``activation="sigmoid"`` (ch4) or ``"relu"`` (ch5).
  :func:`two_layer_net` bundles them for one activation, like the book's class.

The two-layer net has three gradients with the params' pytree structure, which must agree:

- :func:`two_layer_net_gradient`: backpropagation through the hand-written rules of
  :mod:`funcnet.layers` (``jax.grad`` chains the custom_vjp rules, book ch5);
- :func:`two_layer_net_autodiff_gradient`: ``jax.grad`` of the same forward built from
  the layers' plain functions (``layer.fun``), with no hand-written rule involved;
- :func:`two_layer_net_numerical_gradient`: central differences (book ch4).

and, for the sigmoid net, the book's hand-derived ch4 gradient
:func:`two_layer_net_ch4_gradient` as a fourth, independent check.

Shapes: ``x`` is ``(N, D)`` (or ``(D,)`` for one example), scores are ``(N, C)``, ``t`` is
integer labels ``(N,)`` or one-hot rows ``(N, C)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet import functions, layers
from funcnet import gradient as _gradient
from funcnet._checks import check_labels

Params = dict[str, jax.Array]
"""A network's weights: a dict of arrays with the book's keys (``W1``, ``b1``, ...)."""

PredictFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
GradFn = Callable[[Any, jax.Array, jax.Array], Any]

ACTIVATIONS = ("relu", "sigmoid")

# ch4 simpleNet: the weights the book prints (4.4.2), used with x = [0.6, 0.9], t = [0, 0, 1].
SIMPLE_NET_BOOK_W = (
    (0.47355232, 0.9977393, 0.84668094),
    (0.85557411, 0.03563661, 0.69422093),
)

# --------------------------------------------------------------------------------------
# Accuracy (shared by every network)


def _labels(name: str, num_scores: int, classes: int, t: jax.Array) -> jax.Array:
    """Integer labels (N,) from labels (N,) or one-hot rows (N, C); validates the shapes."""
    t = jnp.asarray(t)
    if t.ndim == 2:
        if t.shape != (num_scores, classes):
            raise ValueError(
                f"{name}: one-hot t must have shape ({num_scores}, {classes}) to match the "
                f"scores, got t {t.shape}"
            )
        return jnp.argmax(t, axis=1)
    if t.shape != (num_scores,):
        raise ValueError(
            f"{name}: t must be labels ({num_scores},) or one-hot ({num_scores}, {classes}) "
            f"for {num_scores} examples, got t {t.shape}"
        )
    check_labels(name, t, classes)  # integer dtype; values in range when concrete
    return t


def _num_correct(scores: jax.Array, t: jax.Array) -> jax.Array:
    """Rows of ``scores (N, C)`` whose argmax is the label (labels or one-hot t): int32."""
    if scores.ndim != 2:
        raise ValueError(f"accuracy: predict must return scores (N, C), got {scores.shape}")
    labels = _labels("accuracy", scores.shape[0], scores.shape[1], t)
    return jnp.sum(jnp.argmax(scores, axis=1) == labels, dtype=jnp.int32)


def count_correct(
    predict: PredictFn,
    params: Any,
    x: jax.Array,
    t: jax.Array,
    *,
    batch_size: int | None = None,
) -> jax.Array:
    """Number of examples whose predicted class (argmax of the scores) is the label.

    Args:
        predict: ``predict(params, x) -> scores (N, C)`` (probabilities work too: the
            argmax is the same), e.g. :func:`three_layer_net_predict`.
        params: the network's weights.
        x: ``(N, ...)`` examples.
        t: integer labels ``(N,)`` or one-hot rows ``(N, C)``.
        batch_size: predict ``batch_size`` examples at a time (bounded memory, like the
            book's batched ch3 loop), the last partial batch on its own; ``None``
            predicts all at once. Works under ``jit``.

    Returns:
        An int32 scalar in ``[0, N]``.
    """
    x, t = jnp.asarray(x), jnp.asarray(t)
    n = x.shape[0] if x.ndim else 0
    if t.shape[:1] != (n,):
        raise ValueError(f"accuracy: x has {n} examples but t has shape {t.shape}")
    if n == 0:
        raise ValueError(f"accuracy: x holds no examples, x {x.shape}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"accuracy: batch_size must be >= 1 or None, got {batch_size}")
    if batch_size is None or batch_size >= n:
        return _num_correct(predict(params, x), t)
    full = n // batch_size * batch_size
    xs = x[:full].reshape(-1, batch_size, *x.shape[1:])
    ts = t[:full].reshape(-1, batch_size, *t.shape[1:])
    per_batch = jax.lax.map(lambda xt: _num_correct(predict(params, xt[0]), xt[1]), (xs, ts))
    correct = jnp.sum(per_batch)
    if full < n:
        correct = correct + _num_correct(predict(params, x[full:]), t[full:])
    return correct


def accuracy(
    predict: PredictFn,
    params: Any,
    x: jax.Array,
    t: jax.Array,
    *,
    batch_size: int | None = None,
) -> jax.Array:
    """Fraction of examples whose predicted class is the label (the book's ``accuracy``).

    ``functools.partial(accuracy, three_layer_net_predict)`` is the book's ch3
    ``accuracy(x, t)``; :func:`two_layer_net` bundles one for ch4-5. Arguments as for
    :func:`count_correct`.

    Returns:
        A float32 scalar in [0, 1].
    """
    correct = count_correct(predict, params, x, t, batch_size=batch_size)
    return correct.astype(jnp.float32) / jnp.shape(x)[0]


# --------------------------------------------------------------------------------------
# simpleNet (ch4.4.2)


def init_simple_net(key: jax.Array, dtype: Any = None) -> Params:
    """The ch4 ``simpleNet``: ``{"W": (2, 3)}`` drawn from a standard normal with ``key``."""
    return {"W": jax.random.normal(key, (2, 3), dtype or jnp.result_type(float))}


def simple_net_predict(params: Params, x: jax.Array) -> jax.Array:
    """Scores ``x · W``: x ``(2,)`` or ``(N, 2)`` -> ``(3,)`` or ``(N, 3)`` (ch4)."""
    x, W = jnp.asarray(x), params["W"]
    if x.shape[-1:] != W.shape[:1]:
        raise ValueError(f"simple_net_predict: x {x.shape} does not match W {W.shape}")
    return jnp.dot(x, W)


def simple_net_loss(params: Params, x: jax.Array, t: jax.Array) -> jax.Array:
    """``cross_entropy_error(softmax(x · W), t)`` exactly as the book's ``simpleNet.loss``.

    Uses the book's loss with its 1e-7 inside the log, so the printed figures match.
    """
    return functions.cross_entropy_error(functions.softmax(simple_net_predict(params, x)), t)


# --------------------------------------------------------------------------------------
# The ch3 inference network


def init_three_layer_net(
    key: jax.Array,
    input_size: int = 784,
    hidden_sizes: Sequence[int] = (50, 100),
    output_size: int = 10,
    weight_init_std: float = 0.01,
    dtype: Any = jnp.float32,
) -> Params:
    """Random weights for the ch3 network, the shapes of the book's ``sample_weight.pkl``.

    Returns ``{"W1" (D, H1), "b1" (H1,), "W2" (H1, H2), "b2" (H2,), "W3" (H2, C), "b3" (C,)}``
    with Gaussian weights of std ``weight_init_std`` and zero biases.
    """
    if len(hidden_sizes) != 2:
        raise ValueError(f"init_three_layer_net: need two hidden sizes, got {hidden_sizes}")
    sizes = (input_size, *hidden_sizes, output_size)
    keys = jax.random.split(key, 3)
    params = {}
    for i in range(3):
        params[f"W{i + 1}"] = weight_init_std * jax.random.normal(
            keys[i], (sizes[i], sizes[i + 1]), dtype
        )
        params[f"b{i + 1}"] = jnp.zeros((sizes[i + 1],), dtype)
    return params


def three_layer_net_predict(params: Params, x: jax.Array) -> jax.Array:
    """The book's ch3 ``predict(network, x)``: affine → sigmoid → affine → sigmoid →
    affine → softmax.

    Args:
        params: ``W1 b1 W2 b2 W3 b3`` (e.g. from ``funcnet.io.load_pickled_params``).
        x: one image ``(D,)`` or a batch ``(N, D)``.

    Returns:
        Class probabilities ``(C,)`` or ``(N, C)``, in x's floating dtype (float32 for
        the book's weights on float32 images).
    """
    missing = {"W1", "b1", "W2", "b2", "W3", "b3"} - set(params)
    if missing:
        raise ValueError(f"three_layer_net_predict: params lack {sorted(missing)}")
    x = jnp.asarray(x)
    dtype = jnp.result_type(x.dtype, params["W1"].dtype)
    a = x.astype(dtype)
    for i in (1, 2):
        a = functions.sigmoid(layers.affine(a, params[f"W{i}"], params[f"b{i}"]))
    return functions.softmax(layers.affine(a, params["W3"], params["b3"]))


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

    Returns:
        ``{"W1": (input_size, hidden_size), "b1": (hidden_size,),
        "W2": (hidden_size, output_size), "b2": (output_size,)}`` in ``dtype``.
    """
    for name, size in (
        ("input_size", input_size),
        ("hidden_size", hidden_size),
        ("output_size", output_size),
    ):
        if int(size) < 1:
            raise ValueError(f"init_two_layer_net: {name} must be >= 1, got {size}")
    k1, k2 = jax.random.split(key)
    return {
        "W1": weight_init_std * jax.random.normal(k1, (input_size, hidden_size), dtype),
        "b1": jnp.zeros((hidden_size,), dtype),
        "W2": weight_init_std * jax.random.normal(k2, (hidden_size, output_size), dtype),
        "b2": jnp.zeros((output_size,), dtype),
    }


def _check_two_layer(name: str, params: Params, x: jax.Array) -> None:
    missing = {"W1", "b1", "W2", "b2"} - set(params)
    if missing:
        raise ValueError(f"{name}: params lack {sorted(missing)}")
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
    return _loss(_ops(activation, rules=True), params, x, jnp.asarray(t))


def _plain_loss(params: Params, x: jax.Array, t: jax.Array, activation: str) -> jax.Array:
    """The same loss from the layers' plain forwards: no custom rule anywhere."""
    x, t = jnp.asarray(x), jnp.asarray(t)
    _check_two_layer("two_layer_net", params, x)
    if x.ndim == 2:
        _labels("two_layer_net", x.shape[0], params["W2"].shape[1], t)
    return _loss(_ops(activation, rules=False), params, x, t)


def two_layer_net_gradient(
    params: Params, x: jax.Array, t: jax.Array, *, activation: str = "relu"
) -> Params:
    """Backpropagation (book ch5 ``gradient``): ``jax.grad`` of :func:`two_layer_net_loss`,
    which chains the custom_vjp rules of affine, the activation and softmax_with_loss.

    Returns:
        A dict with the params' keys and shapes.
    """
    return jax.grad(functools.partial(two_layer_net_loss, activation=activation))(params, x, t)


def two_layer_net_autodiff_gradient(
    params: Params, x: jax.Array, t: jax.Array, *, activation: str = "relu"
) -> Params:
    """Reference gradient: ``jax.grad`` of the plain forward (each layer's ``.fun``), with
    JAX deriving every rule itself. Same structure as the params."""
    return jax.grad(_plain_loss)(params, x, t, activation)


def two_layer_net_numerical_gradient(
    params: Params, x: jax.Array, t: jax.Array, *, activation: str = "relu", h: float = 1e-4
) -> Params:
    """Central differences of the loss for every weight (book ch4 ``numerical_gradient``).

    Use float64 params and inputs: in float32 the step ``h`` leaves about 3 digits.
    """
    return _gradient.numerical_gradient(lambda p: _plain_loss(p, x, t, activation), params, h)


def two_layer_net_ch4_gradient(params: Params, x: jax.Array, t: jax.Array) -> Params:
    """The book's hand-derived gradient of the *sigmoid* net (ch4 ``TwoLayerNet.gradient``).

    Written out step by step like the book, with ``sigmoid_grad``::

        dy = (y - t) / N;  dW2 = z1ᵀ·dy;  db2 = Σₙ dy
        da1 = sigmoid_grad(a1) · (dy·W2ᵀ);  dW1 = xᵀ·da1;  db1 = Σₙ da1

    Args:
        params: ``W1 b1 W2 b2``; x: ``(N, D)``; t: labels ``(N,)`` or one-hot ``(N, C)``.
    """
    x, t = jnp.asarray(x), jnp.asarray(t)
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
    dy = (y - t_onehot) / batch_num
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
