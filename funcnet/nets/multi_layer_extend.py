"""The book's ``MultiLayerNetExtend`` (ch6, ``common/multi_layer_net_extend.py``): the
multi-layer net with batch normalization and dropout, as pure functions.

Every hidden layer is ``affine → [batch_norm] → activation → [dropout]``; the last is
``affine → softmax_with_loss``. What the book's layer objects hide is explicit:

- params ``W1 b1 … W{L} b{L}`` plus, with batch norm, ``gamma{i} beta{i}`` for every hidden
  layer (ones and zeros at first) — the params say whether the net uses batch norm;
- the running statistics are the *model state*, ``{"BatchNorm{i}": {"running_mean",
  "running_var"}}``, returned by the training-mode loss and used by inference;
- dropout masks come from the ``key`` argument (layer i uses ``fold_in(key, i)``).

The loss ``(params, model_state, x, t, key) -> (loss, model_state)`` is training mode (batch
statistics, random masks); predict ``(params, model_state, x) -> scores`` is inference mode
(running statistics, ``x·(1 − ratio)``). These are :func:`funcnet.train.fit`'s stateful form.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet import _checks, layers
from funcnet import batch_norm as bn
from funcnet import dropout as do
from funcnet import gradient as _gradient
from funcnet.nets.accuracy import Params, check_t
from funcnet.nets.multi_layer import (
    _check_lambda,
    init_weights,
    num_layers,
    weight_decay,
)
from funcnet.nets.two_layer import ACTIVATIONS

State = dict[str, dict[str, jax.Array]]


def init_multi_layer_net_extend(
    key: jax.Array,
    input_size: int,
    hidden_size_list: Sequence[int],
    output_size: int,
    activation: str = "relu",
    weight_init_std: float | str = "relu",
    use_batchnorm: bool = False,
    dtype: Any = jnp.float32,
) -> tuple[Params, State]:
    """Weights as :func:`~funcnet.nets.init_multi_layer_net` (same key, same W and b),
    plus ``gamma{i}`` (ones) and ``beta{i}`` (zeros) per hidden layer with batch norm.

    Returns:
        ``(params, model_state)``; the state holds zero running statistics per batch-norm
        layer (``{}`` without batch norm).
    """
    params = init_weights(
        "init_multi_layer_net_extend",
        key,
        input_size,
        hidden_size_list,
        output_size,
        activation,
        weight_init_std,
        dtype,
    )
    state: State = {}
    if use_batchnorm:
        for i, size in enumerate(hidden_size_list, start=1):
            params[f"gamma{i}"] = jnp.ones((size,), dtype)
            params[f"beta{i}"] = jnp.zeros((size,), dtype)
            state[f"BatchNorm{i}"] = bn.init_batch_norm_state(size, dtype)
    return params, state


class _Ops(NamedTuple):
    affine: Any
    activation: Any
    batch_norm: Any
    apply_mask: Any
    softmax_with_loss: Any


def _ops(activation: str, rules: bool) -> _Ops:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    parts = (layers.affine, getattr(layers, activation), bn.batch_norm, do.apply_mask)
    parts += (layers.softmax_with_loss,)
    return _Ops(*parts) if rules else _Ops(*(p.fun for p in parts))


def _check(fn: str, params: Params, state: State, dropout_ratio: Any) -> tuple[int, Any]:
    """Validates params and state against each other; returns L and the dropout ratio
    (a float, or a tracer that is NaN where the traced value lies outside [0, 1))."""
    _checks.check_params(fn, params)
    L = num_layers(params)
    uses_bn = "gamma1" in params
    expected = {f"{p}{i}" for i in range(1, L + 1) for p in "Wb"}
    if uses_bn:
        expected |= {f"{p}{i}" for i in range(1, L) for p in ("gamma", "beta")}
    if L == 0 or set(params) != expected:
        raise ValueError(f"{fn}: params must be {sorted(expected)}, got {sorted(params)}")
    want = {f"BatchNorm{i}" for i in range(1, L)} if uses_bn else set()
    if not isinstance(state, dict) or set(state) != want:
        got = sorted(state) if isinstance(state, dict) else _checks.describe(state)
        raise ValueError(
            f"{fn}: model_state must hold {sorted(want) or 'nothing ({})'} for these params "
            f"(init_multi_layer_net_extend returns both), got {got}"
        )
    _checks.check_model_state(fn, state)
    ratio = _checks.hyperparameter(fn, "dropout_ratio", dropout_ratio, _checks.UNIT)
    return L, ratio


def _check_train_key(fn: str, key: Any, use_dropout: bool) -> None:
    """Training-mode dropout draws its masks from ``key``: it must be a jax.random key."""
    if not use_dropout:
        return
    try:
        _checks.check_key(fn, key)
    except TypeError as e:
        raise TypeError(
            f"{e} (use_dropout=True draws the training-mode masks from it; pass one key per "
            "step, e.g. jax.random.fold_in(run_key, step), or use multi_layer_net_extend_predict "
            "for inference)"
        ) from None


def _forward(ops, params, state, x, key, L, *, train, use_dropout, dropout_ratio):
    """Scores and the new state. ``train``: batch statistics and masks; else inference."""
    h, new_state = x, {}
    for i in range(1, L):
        a = ops.affine(h, params[f"W{i}"], params[f"b{i}"])
        if f"gamma{i}" in params:
            gamma, beta, s = params[f"gamma{i}"], params[f"beta{i}"], state[f"BatchNorm{i}"]
            if train:
                new_state[f"BatchNorm{i}"] = bn.running_update(s, a)
                a = ops.batch_norm(a, gamma, beta)
            else:
                new_state[f"BatchNorm{i}"] = s
                a = bn.batch_norm_inference(a, gamma, beta, s)
        h = ops.activation(a)
        if use_dropout:
            if train:
                mask = do.dropout_mask(jax.random.fold_in(key, i), h.shape, dropout_ratio)
                h = ops.apply_mask(h, mask)
            else:
                h = do.dropout_inference(h, dropout_ratio)
    scores = ops.affine(h, params[f"W{L}"], params[f"b{L}"])
    if use_dropout and train:  # a bool mask cannot hold NaN: a traced ratio outside [0, 1)
        ok = _checks.hyperparameter_ok(dropout_ratio, _checks.UNIT)
        scores = _checks.nan_unless_ok(scores, ok)
    return scores, new_state


def _loss(ops, params, state, x, t, key, L, weight_decay_lambda, use_dropout, dropout_ratio):
    scores, new_state = _forward(
        ops,
        params,
        state,
        x,
        key,
        L,
        train=True,
        use_dropout=use_dropout,
        dropout_ratio=dropout_ratio,
    )
    loss = ops.softmax_with_loss(scores, t)
    weights = {k: v for k, v in params.items() if k.startswith("W")}
    return loss + weight_decay(weights, weight_decay_lambda).astype(loss.dtype), new_state


def multi_layer_net_extend_loss(
    params: Params,
    model_state: State,
    x: jax.Array,
    t: jax.Array,
    key: jax.Array,
    *,
    activation: str = "relu",
    weight_decay_lambda: Any = 0.0,
    use_dropout: bool = False,
    dropout_ratio: float = 0.5,
) -> tuple[jax.Array, State]:
    """Training-mode loss ``softmax_with_loss + ½·λ·Σ‖Wᵢ‖²`` and the updated model state.

    Batch norm uses the batch's statistics (and updates the running ones); dropout draws
    its masks from ``key``. ``jax.grad(..., has_aux=True)`` of it runs the hand-written
    rules of every layer (affine, activation, batch_norm, dropout, softmax_with_loss).

    Args:
        params: from :func:`init_multi_layer_net_extend`.
        model_state: from :func:`init_multi_layer_net_extend`.
        x: ``(N, D)``.
        t: labels ``(N,)`` or one-hot ``(N, C)``.
        key: a ``jax.random`` key.
    """
    fn = "multi_layer_net_extend_loss"
    L, dropout_ratio = _check(fn, params, model_state, dropout_ratio)
    _check_train_key(fn, key, use_dropout)
    _check_lambda(fn, weight_decay_lambda)
    ops = _ops(activation, rules=True)
    # t as the caller gave it: the layer checks label values before any dtype narrowing.
    return _loss(
        ops, params, model_state, x, t, key, L, weight_decay_lambda, use_dropout, dropout_ratio
    )


def multi_layer_net_extend_predict(
    params: Params,
    model_state: State,
    x: jax.Array,
    *,
    activation: str = "relu",
    use_dropout: bool = False,
    dropout_ratio: float = 0.5,
) -> jax.Array:
    """Inference-mode scores ``(N, C)``: running statistics, dropout as ``x·(1 − ratio)``."""
    L, dropout_ratio = _check("multi_layer_net_extend_predict", params, model_state, dropout_ratio)
    scores, _ = _forward(
        _ops(activation, rules=True),
        params,
        model_state,
        jnp.asarray(x),
        None,
        L,
        train=False,
        use_dropout=use_dropout,
        dropout_ratio=dropout_ratio,
    )
    return scores


class MultiLayerNetExtend(NamedTuple):
    """The book's ``MultiLayerNetExtend`` for one setting, as pure functions in
    :func:`funcnet.train.fit`'s stateful form: ``loss(params, state, x, t, key) -> (loss,
    state)``, ``predict(params, state, x)``, and three gradients of the training-mode loss
    with respect to the params at a fixed state and key (``gradient``: the custom rules;
    ``autodiff_gradient``: the plain forwards; ``numerical_gradient``: central
    differences)."""

    loss: Any
    predict: Any
    gradient: Any
    autodiff_gradient: Any
    numerical_gradient: Any


def multi_layer_net_extend(
    activation: str = "relu",
    weight_decay_lambda: Any = 0.0,
    use_dropout: bool = False,
    dropout_ratio: float = 0.5,
) -> MultiLayerNetExtend:
    """The functions of a ``MultiLayerNetExtend``; batch norm follows from the params."""
    _ops(activation, rules=True)
    _check_lambda("multi_layer_net_extend", weight_decay_lambda)
    _checks.hyperparameter("multi_layer_net_extend", "dropout_ratio", dropout_ratio, _checks.UNIT)
    options = {"use_dropout": use_dropout, "dropout_ratio": dropout_ratio}
    loss = functools.partial(
        multi_layer_net_extend_loss,
        activation=activation,
        weight_decay_lambda=weight_decay_lambda,
        **options,
    )

    def plain_loss(params, state, x, t, key):
        L, ratio = _check("multi_layer_net_extend", params, state, dropout_ratio)
        _check_train_key("multi_layer_net_extend", key, use_dropout)
        ops = _ops(activation, rules=False)
        x = jnp.asarray(x)
        if x.ndim == 2:  # on the caller's t, before any dtype narrowing
            check_t("multi_layer_net_extend", x.shape[0], params[f"W{L}"].shape[1], t)
        args = (ops, params, state, x, jnp.asarray(t), key, L, weight_decay_lambda)
        return _loss(*args, use_dropout, ratio)[0]

    def gradient(params, state, x, t, key):
        return jax.grad(lambda p: loss(p, state, x, t, key)[0])(params)

    def autodiff_gradient(params, state, x, t, key):
        return jax.grad(plain_loss)(params, state, x, t, key)

    def numerical_gradient(params, state, x, t, key, h: float = 1e-5):
        # h = 1e-5, not the book's 1e-4: batch norm divides by std, which makes the loss
        # strongly curved, and the h² error of central differences at 1e-4 reaches ~1e-9 on
        # the first layer (float64); at 1e-5 it is ~1e-11 and rounding (~ε/h) still ~1e-11.
        f = jax.jit(
            lambda p: _gradient.numerical_gradient(lambda q: plain_loss(q, state, x, t, key), p, h)
        )
        return f(params)

    predict = functools.partial(multi_layer_net_extend_predict, activation=activation, **options)
    return MultiLayerNetExtend(loss, predict, gradient, autodiff_gradient, numerical_gradient)
