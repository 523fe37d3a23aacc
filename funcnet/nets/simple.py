"""The ch4 ``simpleNet`` and the ch3 inference network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import functions, layers
from funcnet._checks import check_int, check_key
from funcnet.nets.accuracy import Params
from funcnet.nets.two_layer import check_float_dtype, check_init_std, check_weights, scaled_normal

# ch4 simpleNet: the weights the book prints (4.4.2), used with x = [0.6, 0.9], t = [0, 0, 1].
SIMPLE_NET_BOOK_W = (
    (0.47355232, 0.9977393, 0.84668094),
    (0.85557411, 0.03563661, 0.69422093),
)

# --------------------------------------------------------------------------------------
# simpleNet (ch4.4.2)


def init_simple_net(key: jax.Array, dtype: Any = None) -> Params:
    """The ch4 ``simpleNet``: ``{"W": (2, 3)}`` drawn from a standard normal with ``key``
    (a ``jax.random`` key), in ``dtype`` (default: JAX's default float)."""
    check_key("init_simple_net", key)
    dtype = check_float_dtype("init_simple_net", dtype or jnp.result_type(float))
    return {"W": jax.random.normal(key, (2, 3), dtype)}


def simple_net_predict(params: Params, x: jax.Array) -> jax.Array:
    """Scores ``x · W``: x ``(2,)`` or ``(N, 2)`` -> ``(3,)`` or ``(N, 3)`` (ch4)."""
    check_weights("simple_net_predict", params, ("W",))
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
    where = "init_three_layer_net"
    check_key(where, key)
    if not isinstance(hidden_sizes, Sequence) or len(hidden_sizes) != 2:
        raise ValueError(f"{where}: need two hidden sizes, got {hidden_sizes!r}")
    sizes = (
        check_int(where, "input_size", input_size),
        *(check_int(where, f"hidden_sizes[{i}]", h) for i, h in enumerate(hidden_sizes)),
        check_int(where, "output_size", output_size),
    )
    weight_init_std = check_init_std(where, weight_init_std)
    dtype = check_float_dtype(where, dtype)
    keys = jax.random.split(key, 3)
    params = {}
    for i in range(3):
        params[f"W{i + 1}"] = scaled_normal(
            keys[i], (sizes[i], sizes[i + 1]), weight_init_std, dtype
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
    check_weights("three_layer_net_predict", params, ("W1", "b1", "W2", "b2", "W3", "b3"))
    x = jnp.asarray(x)
    dtype = jnp.result_type(x.dtype, params["W1"].dtype)
    a = x.astype(dtype)
    for i in (1, 2):
        a = functions.sigmoid(layers.affine(a, params[f"W{i}"], params[f"b{i}"]))
    return functions.softmax(layers.affine(a, params["W3"], params["b3"]))
