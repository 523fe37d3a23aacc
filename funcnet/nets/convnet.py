"""The convolutional nets of chapters 7 and 8 as pure functions over a params dict.

- :func:`init_simple_convnet`, :func:`simple_convnet_predict`, :func:`simple_convnet_loss`:
  the book's ch7 ``SimpleConvNet``: conv (30 filters 5×5, stride 1, pad 0) → relu →
  max pool 2×2 stride 2 → affine 100 → relu → affine 10 → softmax_with_loss, params
  ``W1 (30, 1, 5, 5) b1 (30,) W2 (4320, 100) b2 (100,) W3 (100, 10) b3 (10,)``.
- :func:`init_deep_convnet`, :func:`deep_convnet_predict`, :func:`deep_convnet_loss`: the
  book's ch8 ``DeepConvNet``: six 3×3 convs (16, 16, 32, 32, 64, 64 filters; pad 1 except
  the fourth, pad 2), a 2×2 max pool after every second, affine 50 → relu → dropout 0.5 →
  affine 10 → dropout 0.5, He initialisation; params ``W1 b1 … W8 b8``.

Images are ``x (N, C, H, W)``; flat rows ``(N, C·H·W)`` of square images are accepted and
reshaped (C from W1), like the book's ``load_mnist(flatten=False)``. Every function takes
``book=True`` to run the book's own rules (:func:`funcnet.conv.convolution_book`,
:func:`funcnet.conv.pooling_book`) instead of the faster defaults: same numbers.

The book's published weights (``ch07/params.pkl``, ``ch08/deep_convnet_params.pkl``) load
through :func:`load_convnet_params` (funcnet.io's restricted unpickler).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import conv, dropout, layers
from funcnet import io as fio
from funcnet._checks import check_int, check_key
from funcnet.gradient import numerical_gradient
from funcnet.nets.accuracy import Params, check_t
from funcnet.nets.two_layer import check_float_dtype, check_init_std, scaled_normal

SIMPLE_CONVNET_KEYS = ("W1", "b1", "W2", "b2", "W3", "b3")
DEEP_CONVNET_KEYS = tuple(f"{p}{i}" for i in range(1, 9) for p in "Wb")
DEEP_CONVNET_CONVS = ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))
"""The book's DeepConvNet convolutions: (filters, pad), every one 3×3 stride 1."""
DROPOUT_RATIO = 0.5


class _Ops(NamedTuple):
    convolution: Callable[..., jax.Array]  # (x, W, b, stride, pad)
    pooling: Callable[..., jax.Array]  # (x, pool_h, pool_w, stride)
    relu: Callable[[jax.Array], jax.Array]
    affine: Callable[..., jax.Array]
    softmax_with_loss: Callable[..., jax.Array]
    # channels-last convolution and pooling (x (N, H, W, C)); None: the book's rules, which
    # DeepConvNet runs on NCHW activations as the book does
    convolution_nhwc: Callable[..., jax.Array] | None
    pooling_nhwc: Callable[..., jax.Array] | None


def _ops(*, book: bool, rules: bool = True) -> _Ops:
    """The layers with their hand-written rules, or (``rules=False``) their plain forwards
    (autodiff then differentiates the same forward with no custom rule involved)."""

    def pick(layer):
        return layer if rules else layer.fun

    def convolution(x, W, b, stride, pad):
        return pick(conv.convolution_layer(stride, pad, book=book))(x, W, b)

    def pooling(x, pool_h, pool_w, stride):
        return pick(conv.pooling_layer(pool_h, pool_w, stride, 0, book=book))(x)

    def convolution_nhwc(x, W, b, stride, pad):
        return pick(conv.convolution_nhwc_layer(stride, pad))(x, W, b)

    def pooling_nhwc(x, pool_h, pool_w, stride):
        return pick(conv.pooling_nhwc_layer(pool_h, pool_w, stride, 0))(x)

    return _Ops(
        convolution,
        pooling,
        pick(layers.relu),
        pick(layers.affine),
        pick(layers.softmax_with_loss),
        None if book else convolution_nhwc,
        None if book else pooling_nhwc,
    )


# --------------------------------------------------------------------------------------
# Input and params checks


def _check_params(where: str, params: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(params, dict):
        raise TypeError(f"{where}: params must be a dict of arrays, got {type(params).__name__}")
    if set(params) != set(keys):
        raise ValueError(f"{where}: params must hold {', '.join(keys)}; got {sorted(params)}")
    if np.ndim(params["W1"]) != 4:
        raise ValueError(
            f"{where}: W1 must be 4-D (FN, C, FH, FW), got W1 {tuple(np.shape(params['W1']))}"
        )


def as_images(where: str, x: Any, channels: int) -> jax.Array:
    """x as (N, C, H, W): images unchanged, flat rows (N, C·H·W) of square images reshaped.

    Raises:
        ValueError: x is neither, its rows are not ``channels`` square images, its batch
            is empty, or its images do not have ``channels`` channels (named in the
            caller's NCHW terms, before the default rules move them channels last).
        TypeError: x is not floating point.
    """
    x = jnp.asarray(x)
    images = _images_of(where, x, channels)
    # what the convolution layers check, here on the shape the caller passed (the default
    # rules move the images channels last before any layer sees them)
    conv._check_floating(where, x=x)
    if x.shape[0] == 0:
        raise ValueError(f"{where}: x holds an empty batch, x {tuple(x.shape)}")
    if images.shape[1] != channels:
        raise ValueError(
            f"{where}: x has {images.shape[1]} channels (axis 1 of (N, C, H, W)) but W1 "
            f"expects {channels}; got x {tuple(x.shape)}"
        )
    return images


def _images_of(where: str, x: jax.Array, channels: int) -> jax.Array:
    if x.ndim == 4:
        return x
    if x.ndim == 2 and x.shape[1] % channels == 0:
        side = math.isqrt(x.shape[1] // channels)
        if channels * side * side == x.shape[1]:
            return x.reshape(x.shape[0], channels, side, side)
    raise ValueError(
        f"{where}: x must be images (N, {channels}, H, W) or flat rows of {channels} square "
        f"image(s) (N, {channels}·H·W); got x {tuple(x.shape)}"
    )


def _check_input_dim(where: str, input_dim: Any) -> tuple[int, int, int]:
    """``(C, H, W)``: three integers >= 1."""
    if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3:
        raise TypeError(
            f"{where}: input_dim must be (C, H, W), three integers, got {input_dim!r:.60}"
        )
    c, h, w = (check_int(where, f"input_dim[{i}]", v) for i, v in enumerate(input_dim))
    return c, h, w


def _check_image_size(where: str, x: jax.Array, rows: int, features: Callable, what: str) -> None:
    """The first affine layer's rows (``rows``) must equal the features the convolutions
    leave of x's images (``features(h, w)``, None when a window does not fit): else say
    which image size the params were made for, not the affine layer's shapes."""
    _, c, h, w = x.shape
    if features(h, w) == rows:
        return
    sizes = [side for side in range(1, 1025) if features(side, side) == rows]
    expected = f"{c}×{sizes[0]}×{sizes[0]} images" if sizes else "another image size"
    raise ValueError(
        f"{where}: these params expect {expected} ({what} has {rows} rows, one per feature "
        f"the convolutions leave); got x {tuple(x.shape)} ({c}×{h}×{w} images)"
    )


# --------------------------------------------------------------------------------------
# SimpleConvNet (ch7.5)


def init_simple_convnet(
    key: jax.Array,
    input_dim: tuple[int, int, int] = (1, 28, 28),
    filter_num: int = 30,
    filter_size: int = 5,
    pad: int = 0,
    stride: int = 1,
    hidden_size: int = 100,
    output_size: int = 10,
    weight_init_std: float = 0.01,
    dtype: Any = jnp.float32,
) -> Params:
    """The book's ``SimpleConvNet.__init__``: ``W = weight_init_std · N(0, 1)``, ``b = 0``.

    Shapes: W1 (filter_num, C, filter_size, filter_size), W2 (filter_num·(OH/2)·(OW/2),
    hidden_size), W3 (hidden_size, output_size), OH = (H + 2·pad − filter_size)/stride + 1;
    for the defaults W1 (30, 1, 5, 5), W2 (4320, 100), W3 (100, 10). W1, W2, W3 draw from
    ``jax.random.split(key, 3)``.
    """
    fn = "init_simple_convnet"
    check_key(fn, key)
    c, h, w = _check_input_dim(fn, input_dim)
    filter_num = check_int(fn, "filter_num", filter_num)
    filter_size = check_int(fn, "filter_size", filter_size)
    pad = check_int(fn, "pad", pad, 0)
    stride = check_int(fn, "stride", stride)
    hidden_size = check_int(fn, "hidden_size", hidden_size)
    output_size = check_int(fn, "output_size", output_size)
    std = check_init_std(fn, weight_init_std)
    dtype = check_float_dtype(fn, dtype)
    conv.check_geometry(fn, (1, c, h, w), filter_size, filter_size, stride, pad, "filter")
    out_h = (h + 2 * pad - filter_size) // stride + 1
    out_w = (w + 2 * pad - filter_size) // stride + 1
    conv.check_geometry(fn, (1, filter_num, out_h, out_w), 2, 2, 2, 0, "pool 2×2")
    pooled = filter_num * (out_h // 2) * (out_w // 2)
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "W1": scaled_normal(k1, (filter_num, c, filter_size, filter_size), std, dtype),
        "b1": jnp.zeros((filter_num,), dtype),
        "W2": scaled_normal(k2, (pooled, hidden_size), std, dtype),
        "b2": jnp.zeros((hidden_size,), dtype),
        "W3": scaled_normal(k3, (hidden_size, output_size), std, dtype),
        "b3": jnp.zeros((output_size,), dtype),
    }


def _simple_scores(ops: _Ops, params: Params, x: jax.Array, stride: int, pad: int):
    """The default rules run the convolution and the pool channels last (one 2-D matmul
    over an NHWC col instead of a batched one per image, about 20% less time per training
    iteration on CPU) and flatten in the book's NCHW order; the book's rules on NCHW."""
    if ops.convolution_nhwc is not None:
        h = x.transpose(0, 2, 3, 1)
        h = ops.relu(ops.convolution_nhwc(h, params["W1"], params["b1"], stride, pad))
        h = ops.pooling_nhwc(h, 2, 2, 2).transpose(0, 3, 1, 2)
    else:
        h = ops.relu(ops.convolution(x, params["W1"], params["b1"], stride, pad))
        h = ops.pooling(h, 2, 2, 2)
    h = ops.relu(ops.affine(h, params["W2"], params["b2"]))
    return ops.affine(h, params["W3"], params["b3"])


def _simple_inputs(where: str, params: Params, x: Any, stride: Any, pad: Any) -> jax.Array:
    _check_params(where, params, SIMPLE_CONVNET_KEYS)
    x = as_images(where, x, np.shape(params["W1"])[1])
    stride, pad = check_int(where, "stride", stride), check_int(where, "pad", pad, 0)
    fn, _, fh, fw = np.shape(params["W1"])

    def features(h: int, w: int) -> int | None:
        oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
        return fn * (oh // 2) * (ow // 2) if oh >= 2 and ow >= 2 else None

    _check_image_size(where, x, np.shape(params["W2"])[0], features, "W2")
    return x


def simple_convnet_predict(
    params: Params, x: Any, *, stride: int = 1, pad: int = 0, book: bool = False
) -> jax.Array:
    """Scores (N, output_size) of x (N, C, H, W) (or flat (N, C·H·W)), before softmax.

    ``stride`` and ``pad`` are the first convolution's (the book's ``conv_param``).
    """
    x = _simple_inputs("simple_convnet_predict", params, x, stride, pad)
    return _simple_scores(_ops(book=book), params, x, stride, pad)


def simple_convnet_loss(
    params: Params, x: Any, t: Any, *, stride: int = 1, pad: int = 0, book: bool = False
) -> jax.Array:
    """Mean cross-entropy of softmax(scores) against t (labels (N,) or one-hot (N, C))."""
    x = _simple_inputs("simple_convnet_loss", params, x, stride, pad)
    ops = _ops(book=book)
    # t as the caller gave it: the layer checks label values before any dtype narrowing.
    return ops.softmax_with_loss(_simple_scores(ops, params, x, stride, pad), t)


def _checked_labels(where: str, params: Params, x: jax.Array, t: Any) -> jax.Array:
    """t checked on the caller's values (before any narrowing), then as an array."""
    check_t(where, x.shape[0], params["W3"].shape[1], t)
    return jnp.asarray(t)


def _simple_plain_loss(params, x, t, stride, pad, book):
    ops = _ops(book=book, rules=False)
    return ops.softmax_with_loss(_simple_scores(ops, params, x, stride, pad), t)


def simple_convnet_gradient(
    params: Params, x: Any, t: Any, *, stride: int = 1, pad: int = 0, book: bool = False
) -> Params:
    """Backpropagation (the book's ``gradient``): ``jax.grad`` through the layers'
    hand-written rules. Same keys and shapes as params."""
    return jax.grad(simple_convnet_loss)(params, x, t, stride=stride, pad=pad, book=book)


def simple_convnet_autodiff_gradient(
    params: Params, x: Any, t: Any, *, stride: int = 1, pad: int = 0, book: bool = False
) -> Params:
    """``jax.grad`` of the same forward built from the layers' plain functions (no
    hand-written rule involved): the reference for :func:`simple_convnet_gradient`."""
    x = _simple_inputs("simple_convnet_autodiff_gradient", params, x, stride, pad)
    t = _checked_labels("simple_convnet_autodiff_gradient", params, x, t)
    return jax.grad(_simple_plain_loss)(params, x, t, stride, pad, book)


def simple_convnet_numerical_gradient(
    params: Params, x: Any, t: Any, *, stride: int = 1, pad: int = 0, h: float = 1e-4
) -> Params:
    """Central differences of the loss (the book's ``numerical_gradient``); use float64."""
    x = _simple_inputs("simple_convnet_numerical_gradient", params, x, stride, pad)
    t = _checked_labels("simple_convnet_numerical_gradient", params, x, t)
    return numerical_gradient(lambda p: _simple_plain_loss(p, x, t, stride, pad, True), params, h)


# --------------------------------------------------------------------------------------
# DeepConvNet (ch8.1)


def deep_convnet_fan_ins(input_dim: tuple[int, int, int] = (1, 28, 28), hidden_size: int = 50):
    """The fan-in of each of W1 … W8 (the book's ``pre_node_nums``): for (1, 28, 28) input
    1·9, 16·9, 16·9, 32·9, 32·9, 64·9, 64·4·4, 50."""
    c, h, w = input_dim
    fan_ins = []
    for i, (filters, pad) in enumerate(DEEP_CONVNET_CONVS):
        fan_ins.append(c * 9)
        conv.check_geometry("init_deep_convnet", (1, c, h, w), 3, 3, 1, pad, f"conv{i + 1} 3×3")
        c, h, w = filters, h + 2 * pad - 2, w + 2 * pad - 2
        if i % 2 == 1:
            conv.check_geometry("init_deep_convnet", (1, c, h, w), 2, 2, 2, 0, "pool 2×2")
            h, w = h // 2, w // 2
    return (*fan_ins, c * h * w, hidden_size)


def init_deep_convnet(
    key: jax.Array,
    input_dim: tuple[int, int, int] = (1, 28, 28),
    hidden_size: int = 50,
    output_size: int = 10,
    dtype: Any = jnp.float32,
) -> Params:
    """The book's ``DeepConvNet.__init__``: He initialisation ``W = √(2/fan_in) · N(0, 1)``
    with the fan-ins of :func:`deep_convnet_fan_ins`, ``b = 0``.

    Shapes: W1 (16, 1, 3, 3), W2 (16, 16, 3, 3), W3 (32, 16, 3, 3), W4 (32, 32, 3, 3),
    W5 (64, 32, 3, 3), W6 (64, 64, 3, 3), W7 (1024, 50), W8 (50, 10); b_i (outputs,).
    W1 … W8 draw from ``jax.random.split(key, 8)``.
    """
    fn = "init_deep_convnet"
    check_key(fn, key)
    input_dim = _check_input_dim(fn, input_dim)
    hidden_size = check_int(fn, "hidden_size", hidden_size)
    output_size = check_int(fn, "output_size", output_size)
    dtype = check_float_dtype(fn, dtype)
    fan_ins = deep_convnet_fan_ins(input_dim, hidden_size)
    channels = [input_dim[0]] + [f for f, _ in DEEP_CONVNET_CONVS]
    shapes = [(channels[i + 1], channels[i], 3, 3) for i in range(6)]
    shapes += [(fan_ins[6], hidden_size), (hidden_size, output_size)]
    keys = jax.random.split(key, 8)
    params: Params = {}
    for i, (shape, fan_in) in enumerate(zip(shapes, fan_ins, strict=True), start=1):
        params[f"W{i}"] = math.sqrt(2.0 / fan_in) * jax.random.normal(keys[i - 1], shape, dtype)
        params[f"b{i}"] = jnp.zeros(shape[:1] if i <= 6 else shape[1:], dtype)
    return params


def _deep_features(ops: _Ops, params: Params, x: jax.Array) -> jax.Array:
    """The six convolutions and three pools: x (N, C, H, W) -> (N, 64, H', W') (NCHW, the
    order the book flattens for W7). The default rules keep the activations channels last
    from the first convolution to the last pool (:func:`funcnet.conv.convolution_nhwc`:
    no transpose around each layer, about 8% less time per training iteration on CPU); the
    book's rules run on NCHW activations, as the book does."""
    channels_last = ops.convolution_nhwc is not None
    h = x.transpose(0, 2, 3, 1) if channels_last else x
    for i, (_, pad) in enumerate(DEEP_CONVNET_CONVS, start=1):
        W, b = params[f"W{i}"], params[f"b{i}"]
        if channels_last:
            h = ops.relu(ops.convolution_nhwc(h, W, b, 1, pad))
        else:
            h = ops.relu(ops.convolution(h, W, b, 1, pad))
        if i % 2 == 0:
            h = ops.pooling_nhwc(h, 2, 2, 2) if channels_last else ops.pooling(h, 2, 2, 2)
    return h.transpose(0, 3, 1, 2) if channels_last else h


def _deep_scores(ops: _Ops, params: Params, x: jax.Array, key: jax.Array | None, train: bool):
    h = _deep_features(ops, params, x)
    keys = jax.random.split(key) if train else (None, None)

    def drop(h, k):
        if train:
            return dropout.dropout(h, k, DROPOUT_RATIO)
        return dropout.dropout_inference(h, DROPOUT_RATIO)

    h = drop(ops.relu(ops.affine(h, params["W7"], params["b7"])), keys[0])
    return drop(ops.affine(h, params["W8"], params["b8"]), keys[1])


def _deep_inputs(where: str, params: Params, x: Any, key: Any, train: bool) -> jax.Array:
    _check_params(where, params, DEEP_CONVNET_KEYS)
    if train:
        check_key(where, key)
    x = as_images(where, x, np.shape(params["W1"])[1])

    def features(h: int, w: int) -> int | None:
        for i, (_, pad) in enumerate(DEEP_CONVNET_CONVS):
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            if h < 1 or w < 1 or (i % 2 == 1 and (h < 2 or w < 2)):
                return None
            if i % 2 == 1:
                h, w = h // 2, w // 2
        return DEEP_CONVNET_CONVS[-1][0] * h * w

    _check_image_size(where, x, np.shape(params["W7"])[0], features, "W7")
    return x


def deep_convnet_predict(
    params: Params,
    x: Any,
    *,
    train: bool = False,
    key: jax.Array | None = None,
    book: bool = False,
) -> jax.Array:
    """Scores (N, 10) of x (N, 1, 28, 28) (or flat (N, 784)).

    ``train=False`` (inference, the book's default): each dropout scales by 1 − 0.5;
    ``train=True`` drops units with masks drawn from ``key`` (required then).
    """
    x = _deep_inputs("deep_convnet_predict", params, x, key, train)
    return _deep_scores(_ops(book=book), params, x, key, train)


def deep_convnet_loss(
    params: Params,
    x: Any,
    t: Any,
    key: jax.Array | None = None,
    *,
    train: bool = True,
    book: bool = False,
) -> jax.Array:
    """The book's ``loss(x, t)``: softmax_with_loss of the training-mode scores (dropout
    masks from ``key``); ``train=False`` gives the inference-mode loss without a key."""
    x = _deep_inputs("deep_convnet_loss", params, x, key, train)
    ops = _ops(book=book)
    return ops.softmax_with_loss(_deep_scores(ops, params, x, key, train), t)


# --------------------------------------------------------------------------------------
# The book's published weights


def load_convnet_params(
    path: str | os.PathLike, keys: tuple[str, ...] = SIMPLE_CONVNET_KEYS, dtype: Any = None
) -> Params:
    """Weights from the book's pickle (``ch07/params.pkl``: :data:`SIMPLE_CONVNET_KEYS`;
    ``ch08/deep_convnet_params.pkl``: pass ``keys=DEEP_CONVNET_KEYS``), read by
    :func:`funcnet.io.load_pickled_params` (nothing but arrays is unpickled).

    Returns:
        ``{key: jax.Array}`` in ``dtype`` (default: float32, or the file's float64 when
        x64 is enabled).

    Raises:
        funcnet.io.ParamsFileError: not a valid pickle of arrays, or keys missing or extra.
    """
    raw = fio.load_pickled_params(path)
    if set(raw) != set(keys):
        raise fio.ParamsFileError(
            f"load_convnet_params: {path} holds {sorted(raw)}, expected {list(keys)}"
        )
    for k in keys:
        if raw[k].dtype.kind not in "iuf":
            raise fio.ParamsFileError(
                f"load_convnet_params: {path}: {k!r} must hold real numbers (weights are "
                f"converted to {jnp.dtype(dtype or jnp.float32).name}), got {raw[k].dtype} "
                f"{raw[k].shape}"
            )
    if dtype is None:
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return {k: jnp.asarray(raw[k], dtype) for k in keys}
