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

Precision: the batch's mean and variance, the normalisation and the backward rule's sums
are computed in float32 or wider (:func:`funcnet._checks.accumulation_dtype`): in float16
a deviation of 300 squares to 90,000, past float16's 65,504, and the variance was inf
(outputs 0). Outputs and cotangents are rounded once to their inputs' dtypes (the output
to x's, gamma's and beta's promoted dtype, as before).
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


def _wide(*arrays) -> Any:
    """The dtype the statistics are computed in: the arrays' dtypes with float32 or wider."""
    return _checks.accumulation_dtype(*(a.dtype for a in arrays))


def _normalize(x: jax.Array, gamma: jax.Array, beta: jax.Array):
    """The book's forward: ``(out, xc, xn, std)``, the statistics over the batch axis.

    xc, xn and std are in the wide dtype (float32 for half precision inputs); out in x's,
    gamma's and beta's promoted dtype."""
    wide = _wide(x, gamma, beta)
    x2 = _features(x).astype(wide)
    mu = jnp.mean(x2, axis=0)
    xc = x2 - mu
    var = jnp.mean(xc**2, axis=0)
    std = jnp.sqrt(var + EPS)
    xn = xc / std
    out = gamma.astype(wide) * xn + beta.astype(wide)
    return out.astype(jnp.result_type(x, gamma, beta)).reshape(x.shape), xc, xn, std


def _batch_norm_plain(x: jax.Array, gamma: jax.Array, beta: jax.Array) -> jax.Array:
    """Training-mode batch normalization node (book's BatchNormalization, ch6.3.2).

    Forward: mu = mean(x); xc = x − mu; var = mean(xc²); std = √(var + 1e-6);
    xn = xc/std; out = gamma·xn + beta (means over the batch axis N, per feature).
    Residuals: xc, xn, std, gamma (and zero-size tokens of x's and beta's dtypes; xc, xn and
    std in float32 for half precision inputs, as computed). Backward (the book's, from its
    graph, computed in float32 or wider and cast to each input's dtype):
    dbeta = Σ dout; dgamma = Σ xn·dout; dxn = gamma·dout; dxc = dxn/std;
    dstd = −Σ(dxn·xc)/std²; dvar = ½·dstd/std; dxc += (2/N)·xc·dvar; dmu = Σ dxc;
    dx = dxc − dmu/N.
    """
    return _normalize(x, gamma, beta)[0]


def _batch_norm_fwd(x, gamma, beta):
    out, xc, xn, std = _normalize(x, gamma, beta)
    # x's and beta's dtypes travel in zero-size tokens (xc may be wider than x, gamma has
    # its own): every cotangent takes its primal's dtype, as autodiff of the plain forward
    # gives.
    tokens = (jnp.zeros((0,), x.dtype), jnp.zeros((0,), beta.dtype))
    return out, (xc, xn, std, gamma, tokens)


def _batch_norm_bwd(res, dout):
    xc, xn, std, gamma, (x_token, beta_token) = res
    n = xc.shape[0]
    wide = _checks.accumulation_dtype(xc.dtype, dout.dtype)
    xc, xn, std = xc.astype(wide), xn.astype(wide), std.astype(wide)
    dout2 = dout.reshape(xc.shape).astype(wide)
    # The book's BatchNormalization.__backward, line by line.
    dbeta = jnp.sum(dout2, axis=0)
    dgamma = jnp.sum(xn * dout2, axis=0)
    dxn = gamma.astype(wide) * dout2
    dxc = dxn / std
    dstd = -jnp.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc = dxc + (2.0 / n) * xc * dvar
    dmu = jnp.sum(dxc, axis=0)
    dx = dxc - dmu / n
    return (
        dx.reshape(dout.shape).astype(x_token.dtype),
        dgamma.astype(gamma.dtype),
        dbeta.astype(beta_token.dtype),
    )


def _check_batch_norm(x, gamma, beta, where: str = "batch_norm") -> None:
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"{where}: x must be a non-empty batch (N, D) or (N, C, H, W), got x {x.shape}"
        )
    if where == "batch_norm" and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{where}: x must be floating point (the rule's dx is floating; convert with "
            f".astype(jnp.float32)), got {x.dtype}"
        )
    d = math.prod(x.shape[1:])
    for name, v in (("gamma", gamma), ("beta", beta)):
        v = _checks.host_view(v)
        if not jnp.issubdtype(v.dtype, jnp.floating):
            raise TypeError(f"{where}: {name} must be floating point, got {_checks.describe(v)}")
        if v.shape != (d,):
            raise ValueError(
                f"{where}: {name} must have shape ({d},), one value per feature of x "
                f"{x.shape} (the book normalises each of the C·H·W features); got {name} {v.shape}"
            )


batch_norm = make_layer(
    "batch_norm", _batch_norm_plain, _batch_norm_fwd, _batch_norm_bwd, _check_batch_norm
)


# --------------------------------------------------------------------------------------
# Running statistics: state, not parameters


def init_batch_norm_state(num_features: int, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """``{"running_mean": zeros (D,), "running_var": zeros (D,)}``: the book starts both
    at zero (so early inference-mode outputs are scaled by 1/√1e-6 until they fill in).

    ``dtype`` must be floating (float16 ... float64): an integer state would truncate every
    running average (``0.9·0 + 0.1·2.3`` is 0 in int32) and is refused with ``TypeError``.
    """
    d = _checks.check_int("init_batch_norm_state", "num_features", num_features)
    _check_state_dtype("init_batch_norm_state", dtype)
    return {"running_mean": jnp.zeros((d,), dtype), "running_var": jnp.zeros((d,), dtype)}


def _check_state_dtype(where: str, dtype: Any) -> None:
    try:
        resolved = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: dtype must be a floating dtype, got {dtype!r}") from None
    if not jnp.issubdtype(resolved, jnp.floating):
        raise TypeError(
            f"{where}: dtype must be floating (e.g. float32): running statistics are averages "
            f"and an integer or bool state truncates them; got {resolved}"
        )


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
    _checks.check_model_state(name, state, "state")


def running_update(
    state: dict[str, jax.Array], x: jax.Array, momentum: float = MOMENTUM
) -> dict[str, jax.Array]:
    """The book's update ``running ← momentum·running + (1 − momentum)·batch statistic``
    of the mean and variance of ``x``'s batch, taken under ``stop_gradient`` (the state
    never receives a gradient). Returns the new state, in the state's dtypes.

    The state must be floating (integer or bool state raises ``TypeError``); integer x is
    promoted to the default float. The batch's mean and variance and the average are
    computed in float32 or wider (in float16, 1 − 0.9999 is not 1e-4, and a deviation of
    300 squares to inf) and cast to the state's dtype at the end. ``momentum`` must lie
    in [0, 1]; a concrete value outside (or NaN) raises ``ValueError``, a traced one (under
    ``jit``/``vmap``) makes the new state NaN.
    """
    where = "running_update"
    momentum = _checks.hyperparameter(where, "momentum", momentum, _checks.UNIT_CLOSED)
    x2 = jax.lax.stop_gradient(_features(_checks.floating(x)))
    _check_state(where, state, x2.shape[1])
    x2 = x2.astype(_wide(x2))
    mu = jnp.mean(x2, axis=0)
    var = jnp.mean((x2 - mu) ** 2, axis=0)

    def average(running, stat):
        wide = jnp.promote_types(jnp.promote_types(running.dtype, stat.dtype), jnp.float32)
        m = jnp.asarray(momentum, wide)
        new = m * running.astype(wide) + (1 - m) * stat.astype(wide)
        return new.astype(running.dtype)

    return {
        "running_mean": average(state["running_mean"], mu),
        "running_var": average(state["running_var"], var),
    }


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
    autodiff; no custom rule is needed). Shapes as for :data:`batch_norm`; integer x is
    promoted to the default float (NumPy's rule), gamma, beta and the state must be
    floating. Computed in float32 or wider (float16's ``x − running_mean`` can overflow),
    the output rounded to the promoted dtype of x, gamma, beta and the state."""
    where = "batch_norm_inference"
    x = _checks.floating(x)
    _check_batch_norm(x, gamma, beta, where)
    x2 = _features(x)
    _check_state(where, state, x2.shape[1])
    gamma, beta = jnp.asarray(gamma), jnp.asarray(beta)
    mean, var = jnp.asarray(state["running_mean"]), jnp.asarray(state["running_var"])
    arrays = (x2, gamma, beta, mean, var)
    wide = _wide(*arrays)
    xn = (x2.astype(wide) - mean.astype(wide)) / jnp.sqrt(var.astype(wide) + EPS)
    out = gamma.astype(wide) * xn + beta.astype(wide)
    return out.astype(jnp.result_type(*arrays)).reshape(x.shape)


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
