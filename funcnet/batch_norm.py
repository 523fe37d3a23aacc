"""Batch normalization (book ch6.3) as a pure layer, its running statistics as state.

The book's ``BatchNormalization`` object normalises in training mode with the batch's
mean and variance, updates ``running_mean``/``running_var`` as a side effect, and in test
mode uses those instead. Here:

- :data:`batch_norm` ``(x, gamma, beta)`` is the training-mode layer, a ``custom_vjp``
  with the book's backward written out from its computational graph (residuals ``xc``,
  ``xn``, ``std`` and ``gamma``, what the book's object keeps);
- the running statistics are a separate pytree, *state, not parameters*:
  :func:`batch_norm_train` returns the layer's output and the updated state (computed from
  the batch under ``stop_gradient``: no gradient ever flows into it), and
  :func:`batch_norm_inference` uses the state.

Shapes: ``x (N, D)``, or ``(N, C, H, W)`` normalised as the book does, over N for each of
the C·H·W features (not per channel); ``gamma``, ``beta`` and the statistics ``(D,)``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import _checks
from funcnet.layers import LayerCase, RegisteredLayer, make_layer

EPS = 1e-6
"""Added to the variance before the square root: the book writes ``10e-7``."""

MOMENTUM = 0.9
"""The book's running-average momentum: running ← 0.9·running + 0.1·batch statistic."""


def _features(x: jax.Array) -> jax.Array:
    """(N, D) view of x: the book reshapes a 4-D (N, C, H, W) input to (N, C·H·W)."""
    return x.reshape(x.shape[0], -1)


def _normalize(x: jax.Array, gamma: jax.Array, beta: jax.Array):
    """The book's forward: ``(out, xc, xn, std)``, the statistics over the batch axis."""
    x2 = _features(x)
    mu = jnp.mean(x2, axis=0)
    xc = x2 - mu
    var = jnp.mean(xc**2, axis=0)
    std = jnp.sqrt(var + EPS)
    xn = xc / std
    return (gamma * xn + beta).reshape(x.shape), xc, xn, std


def _batch_norm_plain(x: jax.Array, gamma: jax.Array, beta: jax.Array) -> jax.Array:
    """Training-mode batch normalization node (book's BatchNormalization, ch6.3.2).

    Forward: mu = mean(x); xc = x − mu; var = mean(xc²); std = √(var + 1e-6);
    xn = xc/std; out = gamma·xn + beta (means over the batch axis N, per feature).
    Residuals: xc, xn, std, gamma. Backward (the book's, from its graph):
    dbeta = Σ dout; dgamma = Σ xn·dout; dxn = gamma·dout; dxc = dxn/std;
    dstd = −Σ(dxn·xc)/std²; dvar = ½·dstd/std; dxc += (2/N)·xc·dvar; dmu = Σ dxc;
    dx = dxc − dmu/N.
    """
    return _normalize(x, gamma, beta)[0]


def _batch_norm_fwd(x, gamma, beta):
    out, xc, xn, std = _normalize(x, gamma, beta)
    return out, (xc, xn, std, gamma)


def _batch_norm_bwd(res, dout):
    xc, xn, std, gamma = res
    n = xc.shape[0]
    dout2 = dout.reshape(xc.shape)
    # The book's BatchNormalization.__backward, line by line.
    dbeta = jnp.sum(dout2, axis=0)
    dgamma = jnp.sum(xn * dout2, axis=0)
    dxn = gamma * dout2
    dxc = dxn / std
    dstd = -jnp.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc = dxc + (2.0 / n) * xc * dvar
    dmu = jnp.sum(dxc, axis=0)
    dx = dxc - dmu / n
    return dx.reshape(dout.shape), dgamma, dbeta


def _check_batch_norm(x, gamma, beta) -> None:
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"batch_norm: x must be a non-empty batch (N, D) or (N, C, H, W), got x {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"batch_norm: x must be floating point, got {x.dtype}")
    d = math.prod(x.shape[1:])
    for name, v in (("gamma", gamma), ("beta", beta)):
        if v.shape != (d,):
            raise ValueError(
                f"batch_norm: {name} must have shape ({d},), one value per feature of x "
                f"{x.shape} (the book normalises each of the C·H·W features); got {name} {v.shape}"
            )


batch_norm = make_layer(
    "batch_norm", _batch_norm_plain, _batch_norm_fwd, _batch_norm_bwd, _check_batch_norm
)


# --------------------------------------------------------------------------------------
# Running statistics: state, not parameters


def init_batch_norm_state(num_features: int, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """``{"running_mean": zeros (D,), "running_var": zeros (D,)}``: the book starts both
    at zero (so early inference-mode outputs are scaled by 1/√1e-6 until they fill in)."""
    d = _checks.check_int("init_batch_norm_state", "num_features", num_features)
    return {"running_mean": jnp.zeros((d,), dtype), "running_var": jnp.zeros((d,), dtype)}


def _check_state(name: str, state: Any, d: int) -> None:
    if not isinstance(state, dict) or set(state) != {"running_mean", "running_var"}:
        raise ValueError(
            f"{name}: state must be a dict with running_mean and running_var "
            f"(init_batch_norm_state), got {_checks.describe(state)}"
        )
    for key, value in state.items():
        if jnp.shape(value) != (d,):
            raise ValueError(
                f"{name}: state['{key}'] must have shape ({d},), got {jnp.shape(value)}"
            )


def running_update(
    state: dict[str, jax.Array], x: jax.Array, momentum: float = MOMENTUM
) -> dict[str, jax.Array]:
    """The book's update ``running ← momentum·running + (1 − momentum)·batch statistic``
    of the mean and variance of ``x``'s batch, taken under ``stop_gradient`` (the state
    never receives a gradient). Returns the new state, in the state's dtypes."""
    x2 = jax.lax.stop_gradient(_features(jnp.asarray(x)))
    _check_state("batch_norm_train", state, x2.shape[1])
    mu = jnp.mean(x2, axis=0)
    var = jnp.mean((x2 - mu) ** 2, axis=0)
    new = {
        "running_mean": momentum * state["running_mean"] + (1 - momentum) * mu,
        "running_var": momentum * state["running_var"] + (1 - momentum) * var,
    }
    return {k: v.astype(state[k].dtype) for k, v in new.items()}


def batch_norm_train(
    x: jax.Array,
    gamma: jax.Array,
    beta: jax.Array,
    state: dict[str, jax.Array],
    momentum: float = MOMENTUM,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Training mode: the :data:`batch_norm` layer and :func:`running_update` of the state.
    Returns ``(out, state)``; out has x's shape."""
    return batch_norm(x, gamma, beta), running_update(state, x, momentum)


def batch_norm_inference(
    x: jax.Array, gamma: jax.Array, beta: jax.Array, state: dict[str, jax.Array]
) -> jax.Array:
    """Inference mode: ``gamma · (x − running_mean)/√(running_var + 1e-6) + beta`` (plain
    autodiff; no custom rule is needed). Shapes as for :data:`batch_norm`."""
    x = jnp.asarray(x)
    x2 = _features(x)
    _check_state("batch_norm_inference", state, x2.shape[1])
    xn = (x2 - state["running_mean"]) / jnp.sqrt(state["running_var"] + EPS)
    return (gamma * xn + beta).reshape(x.shape)


def _bn_case(name: str, x_shape: tuple[int, ...]) -> LayerCase:
    d = math.prod(x_shape[1:])

    def inputs(rng, dtype):
        # Every feature gets a spread of at least ~1 over the batch: with a tiny variance the
        # loss is so curved that central differences (h = 1e-4) lose their 1e-7 accuracy.
        n = x_shape[0]
        spread = np.stack([rng.permutation(np.linspace(-1.5, 1.5, n)) for _ in range(d)], 1)
        x = rng.standard_normal((n, d)) + 2.0 * spread + 0.5
        return (
            jnp.asarray(x.reshape(x_shape), dtype),
            jnp.asarray(1.0 + 0.5 * rng.standard_normal(d), dtype),
            jnp.asarray(rng.standard_normal(d), dtype),
        )

    return LayerCase(name, inputs, (0, 1, 2))


REGISTRY_ENTRIES = (
    RegisteredLayer(
        "batch_norm", batch_norm, (_bn_case("batch5", (5, 4)), _bn_case("4d", (3, 2, 2, 3)))
    ),
)
"""The batch-norm rule's entries for :data:`funcnet.layers.REGISTRY`."""
