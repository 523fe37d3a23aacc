"""Convolution and max pooling of chapter 7 as ``jax.custom_vjp`` layers, with the book's
``im2col``/``col2im`` trick.

The book turns a convolution into one matrix product: :func:`im2col` lays every filter-sized
window of the input out as a row, so that the convolution is ``col · W_colᵀ`` and its
backward rule is the affine layer's (ch5), with :func:`col2im` (im2col's transpose) carrying
the gradient of ``col`` back to the image.

Two versions of each layer compute the same numbers:

- :func:`convolution_book`, :func:`pooling_book`: the book's ``Convolution`` and ``Pooling``
  layers (``common/layers.py``) line by line, the readable reference;
- :func:`convolution`, :func:`pooling`: the defaults, the same rules with the data laid
  out for speed (see each docstring and the README's profile).

Both are registered (:data:`REGISTRY_ENTRIES`) and verified three ways, and against XLA's
own convolution and ``reduce_window`` in ``tests/test_conv.py``.

Shapes follow the book: images ``x (N, C, H, W)``, filters ``W (FN, C, FH, FW)``, biases
``b (FN,)``; a layer with filter (or window) ``FH × FW``, ``stride`` and ``pad`` has
``out_h = ⌊(H + 2·pad − FH) / stride⌋ + 1`` (same for ``out_w``), floored as the book,
PyTorch and XLA do: when the stride does not tile the padded input (3×3, stride 2, pad 1
on an even size, the usual downsampling layer), the last rows or columns that no window
reaches take no part in the output and get a zero gradient. A channel mismatch, a filter
larger than the padded input and zero-size operands (no images, channels or filters) are
errors naming the shapes; :func:`im2col` and :func:`col2im` of an empty batch are empty.

``stride`` and ``pad`` are Python integers: shapes depend on them, so each ``(stride, pad)``
has its own compiled rule (made once and cached).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet import _dnnl, _onednn
from funcnet._checks import check_int, describe
from funcnet._reduce import max_keeping_nan
from funcnet.layers import LayerCase, RegisteredLayer, make_layer

# --------------------------------------------------------------------------------------
# Geometry and input checks


class Geometry(NamedTuple):
    """The sizes of a sliding-window layer: input (N, C, H, W), window FH × FW, output."""

    n: int
    c: int
    h: int
    w: int
    fh: int
    fw: int
    stride: int
    pad: int
    out_h: int
    out_w: int


def _out_size(size: int, window: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - window) // stride + 1


def geometry(input_shape, filter_h: int, filter_w: int, stride: int, pad: int) -> Geometry:
    """The window geometry of an (N, C, H, W) input (no checks: see :func:`check_geometry`)."""
    n, c, h, w = input_shape
    return Geometry(
        n,
        c,
        h,
        w,
        filter_h,
        filter_w,
        stride,
        pad,
        _out_size(h, filter_h, stride, pad),
        _out_size(w, filter_w, stride, pad),
    )


def check_geometry(
    where: str,
    x_shape,
    filter_h: int,
    filter_w: int,
    stride: int,
    pad: int,
    what: str,
    shown_shape=None,
) -> None:
    """The window fits in the padded input (height and width) of x ``(N, C, H, W)``.

    ``what`` names the window in messages, e.g. ``"W (30, 1, 5, 5)"`` or ``"pool 2×2"``;
    ``shown_shape`` the shape messages show for x (the caller's, e.g. channels last).
    A stride that does not tile the padded input is fine: the output size is floored
    (see the module docstring).

    Raises:
        ValueError: the window is larger than the padded input.
    """
    _, _, h, w = x_shape
    x_desc = f"x {tuple(x_shape if shown_shape is None else shown_shape)}"
    for axis, size, window in (("height", h, filter_h), ("width", w, filter_w)):
        padded = size + 2 * pad
        if window > padded:
            raise ValueError(
                f"{where}: the {axis} of {what} ({window}) exceeds the padded input's "
                f"({size} + 2·{pad} = {padded}); {x_desc}, {what}"
            )


def _check_stride_pad(where: str, stride, pad) -> tuple[int, int]:
    return check_int(where, "stride", stride, 1), check_int(where, "pad", pad, 0)


def _check_image(where: str, x) -> None:
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be 4-D (N, C, H, W), got x {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{where}: x holds an empty batch, x {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{where}: x has no channels (C = 0), x {tuple(x.shape)}")


def _check_floating(where: str, **arrays) -> None:
    for name, a in arrays.items():
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"{where}: {name} must be floating point, got {describe(a)}")


def _check_conv(where: str, stride: int, pad: int, x, W, b, *, channels_last=False) -> None:
    """x (N, C, H, W), or (N, H, W, C) with ``channels_last``; W (FN, C, FH, FW); b (FN,)."""
    _check_floating(where, x=x, W=W, b=b)
    (_check_image_nhwc if channels_last else _check_image)(where, x)
    if W.ndim != 4:
        raise ValueError(f"{where}: W must be 4-D (FN, C, FH, FW), got W {tuple(W.shape)}")
    if W.shape[0] == 0:
        raise ValueError(f"{where}: W has no filters (FN = 0), W {tuple(W.shape)}")
    if W.shape[2] == 0 or W.shape[3] == 0:
        raise ValueError(
            f"{where}: W's filters must be at least 1×1, got {W.shape[2]}×{W.shape[3]}; "
            f"W {tuple(W.shape)}"
        )
    channels = x.shape[3 if channels_last else 1]
    if channels != W.shape[1]:
        axis = " (its last axis)" if channels_last else ""
        raise ValueError(
            f"{where}: x has {channels} channels{axis} but W expects {W.shape[1]}; "
            f"x {tuple(x.shape)}, W {tuple(W.shape)}"
        )
    if b.shape != (W.shape[0],):
        raise ValueError(
            f"{where}: b must have shape ({W.shape[0]},), one bias per filter; "
            f"b {tuple(b.shape)}, W {tuple(W.shape)}"
        )
    nchw = _nchw_shape(x.shape) if channels_last else x.shape
    what = f"W {tuple(W.shape)}"
    check_geometry(where, nchw, W.shape[2], W.shape[3], stride, pad, what, x.shape)


# --------------------------------------------------------------------------------------
# im2col and col2im (the book's common/util.py)


def _spatial(h, w, other, channels_last: bool = False) -> tuple:
    """A per-axis tuple (an index or a padding) with ``h`` and ``w`` at the image's height
    and width axes and ``other`` at the rest: (N, C, H, W), or (N, H, W, C) with
    ``channels_last``."""
    return (other, h, w, other) if channels_last else (other, other, h, w)


def _pad_image(
    x: jax.Array, pad: int, value: float = 0.0, channels_last: bool = False
) -> jax.Array:
    if pad == 0:
        return x
    return jnp.pad(
        x, _spatial((pad, pad), (pad, pad), (0, 0), channels_last), constant_values=value
    )


def _windows(xp: jax.Array, g: Geometry, channels_last: bool = False) -> list[jax.Array]:
    """The FH·FW strided views of the padded input, (fy, fx) in row-major order: view
    ``fy·FW + fx`` holds ``xp[:, :, fy + stride·oy, fx + stride·ox]``, shape (N, C, OH, OW)
    (``xp[:, fy + stride·oy, fx + stride·ox, :]``, (N, OH, OW, C), with ``channels_last``)."""
    s = g.stride
    return [
        xp[
            _spatial(
                slice(fy, fy + s * (g.out_h - 1) + 1, s),
                slice(fx, fx + s * (g.out_w - 1) + 1, s),
                slice(None),
                channels_last,
            )
        ]
        for fy in range(g.fh)
        for fx in range(g.fw)
    ]


def _window_grid(x: jax.Array, g: Geometry) -> jax.Array:
    """The FH·FW strided views of the padded x stacked as (N, C, FH, FW, OH, OW): element
    ``[n, c, fy, fx, oy, ox] = x_padded[n, c, stride·oy + fy, stride·ox + fx]``.

    Stacked one filter row at a time, then the rows: XLA's CPU backend copies every operand
    of one big FH·FW-way stack before concatenating, which made im2col of the book's 5×5
    filters 3–4× slower than this two-level stack (0.87 ms vs 0.24 ms for 100 MNIST images)."""
    views = _windows(_pad_image(x, g.pad), g)
    rows = [jnp.stack(views[fy * g.fw : (fy + 1) * g.fw], axis=2) for fy in range(g.fh)]
    return jnp.stack(rows, axis=2)


def _unwindow(views: list[jax.Array], g: Geometry, channels_last: bool = False) -> jax.Array:
    """The transpose of :func:`_windows`: each (N, C, OH, OW) view added back at its strided
    positions of the padded image (overlaps sum), then the padding cut off: (N, C, H, W)
    (all channels last with ``channels_last``)."""
    s = g.stride
    hp, wp = g.h + 2 * g.pad, g.w + 2 * g.pad
    total = None
    for k, v in enumerate(views):
        fy, fx = divmod(k, g.fw)
        zero = jnp.zeros((), v.dtype)
        # A strided slice's transpose: interior padding stride − 1, offset (fy, fx).
        spread = lax.pad(
            v,
            zero,
            _spatial(
                (fy, hp - fy - s * (g.out_h - 1) - 1, s - 1),
                (fx, wp - fx - s * (g.out_w - 1) - 1, s - 1),
                (0, 0, 0),
                channels_last,
            ),
        )
        total = spread if total is None else total + spread
    return _crop_padding(total, g, channels_last)


def _crop_padding(xp: jax.Array, g: Geometry, channels_last: bool = False) -> jax.Array:
    """The padded image ``xp`` without its ``g.pad`` rows and columns on each side."""
    rows, cols = slice(g.pad, g.pad + g.h), slice(g.pad, g.pad + g.w)
    return xp[_spatial(rows, cols, slice(None), channels_last)]


def _check_im2col_args(where, input_shape, filter_h, filter_w, stride, pad) -> Geometry:
    check_int(where, "filter_h", filter_h, 1)
    check_int(where, "filter_w", filter_w, 1)
    stride, pad = _check_stride_pad(where, stride, pad)
    if len(input_shape) != 4:
        raise ValueError(f"{where}: the input must be 4-D (N, C, H, W), got {tuple(input_shape)}")
    what = f"filter {filter_h}×{filter_w}"
    check_geometry(where, input_shape, filter_h, filter_w, stride, pad, what)
    return geometry(tuple(int(d) for d in input_shape), filter_h, filter_w, stride, pad)


def im2col(x: jax.Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> jax.Array:
    """Every filter-sized window of ``x`` as one row (the book's ``im2col``, common/util.py).

    Shapes: x (N, C, H, W) -> col (N·out_h·out_w, C·filter_h·filter_w), rows in (n, oy, ox)
    order, columns in (c, fy, fx) order: ``col[(n·OH + oy)·OW + ox, (c·FH + fy)·FW + fx] =
    x_padded[n, c, stride·oy + fy, stride·ox + fx]``, with x zero-padded by ``pad`` on
    each side of H and W.
    """
    g = _check_im2col_args("im2col", jnp.shape(x), filter_h, filter_w, stride, pad)
    return _im2col(jnp.asarray(x), g)


def _im2col(x: jax.Array, g: Geometry) -> jax.Array:
    # The book fills col[:, :, fy, fx, :, :] = img[:, :, fy:fy_max:stride, fx:fx_max:stride].
    col = _window_grid(x, g)  # (N, C, FH, FW, OH, OW)
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(g.n * g.out_h * g.out_w, g.c * g.fh * g.fw)


def _input_shape(input_shape) -> tuple[int, int, int, int]:
    """col2im's ``input_shape``: four integers (N, C, H, W), none negative (an empty
    batch or image gives an empty result, as im2col's does)."""
    if isinstance(input_shape, str) or not hasattr(input_shape, "__len__") or len(input_shape) != 4:
        raise TypeError(f"col2im: input_shape must be (N, C, H, W), got {input_shape!r}")
    n, c, h, w = input_shape
    return (
        check_int("col2im", "input_shape[0] (N)", n, minimum=0),
        check_int("col2im", "input_shape[1] (C)", c, minimum=0),
        check_int("col2im", "input_shape[2] (H)", h, minimum=0),
        check_int("col2im", "input_shape[3] (W)", w, minimum=0),
    )


def col2im(
    col: jax.Array, input_shape, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0
) -> jax.Array:
    """The transpose of :func:`im2col` (the book's ``col2im``): rows of ``col`` added back
    into an image, overlapping windows summed, padding cut off.

    Shapes: col (N·out_h·out_w, C·filter_h·filter_w) -> (N, C, H, W) = ``input_shape``.
    For any x and c of matching shapes, ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
    """
    g = _check_im2col_args("col2im", _input_shape(input_shape), filter_h, filter_w, stride, pad)
    expected = (g.n * g.out_h * g.out_w, g.c * g.fh * g.fw)
    if jnp.shape(col) != expected:
        raise ValueError(
            f"col2im: col must have shape {expected} for input_shape {tuple(input_shape)}, "
            f"filter {filter_h}×{filter_w}, stride {stride}, pad {pad}; got col {jnp.shape(col)}"
        )
    return _col2im(jnp.asarray(col), g)


def _col2im(col: jax.Array, g: Geometry) -> jax.Array:
    # The book: img[:, :, fy:fy_max:stride, fx:fx_max:stride] += col[:, :, fy, fx, :, :].
    col = col.reshape(g.n, g.out_h, g.out_w, g.c, g.fh, g.fw).transpose(0, 3, 4, 5, 1, 2)
    views = [col[:, :, fy, fx] for fy in range(g.fh) for fx in range(g.fw)]
    return _unwindow(views, g)


def _dtype_token(x: jax.Array) -> jax.Array:
    """A zero-element array recording x's shape and dtype (a residual costing nothing)."""
    return jnp.zeros((0, *x.shape), x.dtype)


# --------------------------------------------------------------------------------------
# Convolution (ch7.4.3): the book's rule


def _conv_book_plain(x, W, b, stride: int, pad: int) -> jax.Array:
    """The book's ``Convolution`` (ch7.4.3): out = im2col(x) · W_colᵀ + b.

    Shapes: x (N, C, H, W), W (FN, C, FH, FW), b (FN,) -> (N, FN, OH, OW); W_col is W
    reshaped to (FN, C·FH·FW) and transposed. Residuals (the book's): col, W_col, and x
    and W only as zero-size tokens of their shapes. Backward (the book's, the affine rule
    on col): dout -> (N·OH·OW, FN); db = Σ dout; dW = colᵀ·dout -> (FN, C, FH, FW);
    dcol = dout·W_colᵀ; dx = col2im(dcol).
    """
    return _conv_book_fwd(x, W, b, stride, pad)[0]


def _conv_book_fwd(x, W, b, stride: int, pad: int):
    fn, _, fh, fw = W.shape
    g = geometry(x.shape, fh, fw, stride, pad)
    col = _im2col(x, g)  # (N·OH·OW, C·FH·FW)
    col_W = W.reshape(fn, -1).T  # (C·FH·FW, FN)
    out = jnp.dot(col, col_W) + b
    out = out.reshape(g.n, g.out_h, g.out_w, fn).transpose(0, 3, 1, 2)
    return out, (_dtype_token(x), _dtype_token(W), _dtype_token(b), col, col_W)


def _conv_book_bwd(stride: int, pad: int, res, dout):
    x_token, W_token, b_token, col, col_W = res
    fn, c, fh, fw = W_token.shape[1:]
    g = geometry(x_token.shape[1:], fh, fw, stride, pad)
    # The book's Convolution.backward, line by line:
    dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)  # (N·OH·OW, FN)
    db = jnp.sum(dout, axis=0)
    dW = jnp.dot(col.T, dout).transpose(1, 0).reshape(fn, c, fh, fw)
    dcol = jnp.dot(dout, col_W.T)
    dx = _col2im(dcol, g)
    return dx.astype(x_token.dtype), dW.astype(W_token.dtype), db.astype(b_token.dtype)


# --------------------------------------------------------------------------------------
# MaxPooling (ch7.5): the book's rule


def _pool_book_plain(x, pool_h: int, pool_w: int, stride: int, pad: int) -> jax.Array:
    """The book's ``Pooling`` (ch7.4.4): the max of each pool_h × pool_w window.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW). Forward: im2col(x) reshaped to one window per
    row, (N·OH·OW·C, pool_h·pool_w), its row maxima. Residual: the argmax of each row (the
    first maximum on ties, NumPy's argmax; a NaN counts as the maximum). Backward: each
    window's dout goes to its argmax (``dmax[arange, arg_max] = dout``), col2im adds the
    windows back. Padding is with zeros, as the book's im2col does: a window that overlaps
    the padding has a maximum of at least 0 (an all-negative window gives 0, and its
    gradient goes to the padding, i.e. nowhere).
    """
    return _pool_book_fwd(x, pool_h, pool_w, stride, pad)[0]


def _pool_book_fwd(x, pool_h: int, pool_w: int, stride: int, pad: int):
    g = geometry(x.shape, pool_h, pool_w, stride, pad)
    col = _im2col(x, g).reshape(-1, pool_h * pool_w)  # rows in (n, oy, ox, c) order
    arg_max = jnp.argmax(col, axis=1)
    out = max_keeping_nan(col, axis=1)
    out = out.reshape(g.n, g.out_h, g.out_w, g.c).transpose(0, 3, 1, 2)
    return out, (_dtype_token(x), arg_max)


def _pool_book_bwd(pool_h: int, pool_w: int, stride: int, pad: int, res, dout):
    x_token, arg_max = res
    g = geometry(x_token.shape[1:], pool_h, pool_w, stride, pad)
    # The book's Pooling.backward, line by line:
    dout = dout.transpose(0, 2, 3, 1)  # (N, OH, OW, C)
    pool_size = pool_h * pool_w
    dmax = jax.nn.one_hot(arg_max, pool_size, dtype=dout.dtype) * dout.reshape(-1, 1)
    dcol = dmax.reshape(dout.size // g.c, g.c * pool_size)
    return (_col2im(dcol, g).astype(x_token.dtype),)


# --------------------------------------------------------------------------------------
# The defaults: the same rules, laid out for speed


def _col_nchw(x: jax.Array, g: Geometry) -> jax.Array:
    """The book's col, per image and transposed, built directly from FH·FW strided views:
    (N, C·FH·FW, OH·OW), rows in (c, fy, fx) order (``col_nchw[n] == im2col(x[n:n+1]).T``)."""
    return _window_grid(x, g).reshape(g.n, g.c * g.fh * g.fw, g.out_h * g.out_w)


def _per_image(W_col: jax.Array, n: int) -> jax.Array:
    """W_col (FN, K) repeated for each of n images: (n, FN, K), the batched matmul's lhs."""
    return jnp.broadcast_to(W_col[None], (n, *W_col.shape))


def _bmm(a: jax.Array, b: jax.Array, contract: tuple[int, int]) -> jax.Array:
    """Per-image matmul over the leading batch axis, contracting a's and b's given axes."""
    return lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((0,), (0,))))


_PER_IMAGE_MAX_K = 32
"""A filter with at most this many weights (C·FH·FW: a first layer over data, e.g.
SimpleConvNet's 1×5×5, DeepConvNet's 1×3×3) runs as the book's im2col rule: per image
(batched matmuls, NCHW in and out) in :func:`convolution`, as one 2-D matmul over a
channels-last col in :func:`convolution_nhwc` — except in float32 on CPU where oneDNN's
kernels are used (:mod:`funcnet._onednn`), which run it faster as a convolution; a
larger one on XLA's own convolution (stride 1, pad < filter) or the 2-D layout."""


def _conv_plain(x, W, b, stride: int, pad: int) -> jax.Array:
    """Convolution (ch7.4.3), the default: the book's rule, computed where XLA is fastest.

    Shapes: x (N, C, H, W), W (FN, C, FH, FW), b (FN,) -> (N, FN, OH, OW). The book
    multiplies im2col(x) (N·OH·OW, C·FH·FW) by W_colᵀ; the same sums are computed three
    ways, chosen by the filter's size K = C·FH·FW (:data:`_PER_IMAGE_MAX_K`) and the geometry:

    - K large, stride 1, pad < filter (every DeepConvNet layer after the first; and in
      float32 on CPU where oneDNN's kernels are used, a first layer too): XLA's own
      convolution (``lax.conv_general_dilated`` in NHWC, :func:`_conv_nhwc`, zero padding
      ``pad``), which reads x in place instead of writing and reading col (9× x for a 3×3
      filter): forward out = x ⋆ W + b, and backward with the same products as the book's
      rule written as convolutions — dx = col2im(dout·W_col) is the transposed
      convolution of dout with W (:func:`_transpose_conv_nhwc`), dW = doutᵀ·col the
      correlation of x with dout (:func:`_filter_grad_nhwc`), db = Σ dout: the
      channels-last rule (:func:`_conv_nhwc_plain`) between transposes. Residuals: x (in
      NHWC) and W.
    - K large, other strides or pads: colᵀ (C·FH·FW, N·OH·OW) built for the whole batch
      from x with its two leading axes swapped, (C, N, H, W) (:func:`_col_cnhw`);
      out = W_col · colᵀ is ONE 2-D matmul that XLA spreads over all cores (batched
      matmuls ran on one), swapped back to NCHW; dW = d · col, dcolᵀ = W_colᵀ · d (2-D
      matmuls, d = dout as (FN, N·OH·OW)), dx = col2im(dcol) on (C, N, H, W) planes.
      Residuals: colᵀ and W.
    - K small (a first layer over data): each image's col built transposed, col_n
      (C·FH·FW, OH·OW), out_n = W_col · col_n + b a batched matmul that writes NCHW, dout
      read in place, no transpose either way; dW = Σₙ dout_n · col_nᵀ, dcol_n = W_colᵀ ·
      dout_n, dx = col2im(dcol). When x is data, dx is unused and XLA drops it. Residuals:
      col and W (the book's col and W_col).
    """
    return _conv_fwd(x, W, b, stride, pad)[0]


def _per_image_layout(W_shape) -> bool:
    _, c, fh, fw = W_shape
    return c * fh * fw <= _PER_IMAGE_MAX_K


def _uses_xla_conv(W_shape, stride: int, pad: int, dtype=None) -> bool:
    """Whether the default rule runs on XLA's convolution (:func:`_conv_nhwc`): stride 1,
    a pad smaller than the filter (so that dx is a convolution of dout with non-negative
    padding), and a filter larger than :data:`_PER_IMAGE_MAX_K`, or a smaller one (a first
    layer over data) whose ``dtype`` convolution runs on oneDNN's kernels, where it beats
    the col matmul (alone, best of 7: DeepConvNet's conv1 forward 0.64 against 1.26 ms,
    dW 0.44 against 0.60; SimpleConvNet's 1.29 against 1.82, 0.97 against 1.66; on
    XLA's own kernels the forward is slower than the col matmul, 2.4 ms)."""
    _, _, fh, fw = W_shape
    if stride != 1 or pad >= min(fh, fw):
        return False
    if not _per_image_layout(W_shape):
        return True
    on_cpu = jax.default_backend() == "cpu"  # elsewhere the col rule, as before
    return dtype == jnp.float32 and on_cpu and _onednn.kernel() == "onednn"


def _conv_nhwc(lhs: jax.Array, rhs: jax.Array, pad: tuple[int, int]) -> jax.Array:
    """A stride-1 convolution, zero-padded by ``pad`` = (rows, columns) on each side, whose
    operands are laid out as XLA's CPU backend wants them for its fast (Eigen) convolution:
    lhs (batch, H, W, features), rhs (FH, FW, in, out), out (batch, OH, OW, out), all
    row-major. With NCHW operands the backend keeps NCHW inside a loop (a ``lax.scan`` over
    training steps) and falls back to a naive loop nest, 20–100× slower; the transposes
    here are cheap beside it. In float32 on CPU it runs on oneDNN's kernels where this
    jaxlib has them (:mod:`funcnet._onednn`: 1.1–1.7× faster than Eigen's on DeepConvNet's
    layers), the same numbers up to float32 rounding."""
    return _onednn.conv_nhwc(lhs, rhs, pad)


_FILTER_GRAD_INNER_PAD = 1
"""The filter gradient is computed with at most this much of the padding inside XLA's
convolution, the rest padded beforehand (same numbers): XLA's CPU backend ran it 2–20×
slower with padding 0 or 2 inside than with 1 (measured in NCHW: DeepConvNet's conv4,
pad 2: 645 ms with 2 inside, 69 ms with 0, 33 ms with 1; conv2, pad 1: 25 ms with 1,
105 ms with 0; loaded 2-core machine, one process, best of 5). Re-measured channels last
(Eigen, quiet, alone, best of 5): conv2 5.55 ms with 1 inside, 7.07 with 0; conv4 5.21
with 1, 5.03 with 0, 83.0 with 2; conv6 3.20 with 1, 3.75 with 0."""


def _col_cnhw(x: jax.Array, g: Geometry) -> jax.Array:
    """The book's col, transposed, for the whole batch: (C·FH·FW, N·OH·OW), rows in
    (c, fy, fx) order, columns in (n, oy, ox) order (``== im2col(x).T``). Built from x with
    its leading axes swapped, (C, N, H, W): each window is then a strided view of whole
    (N, H, W) blocks, stacked one filter row at a time (see :func:`_window_grid`)."""
    xt = _pad_image(x.transpose(1, 0, 2, 3), g.pad)  # (C, N, H + 2·pad, W + 2·pad)
    views = _windows(xt, g)  # FH·FW views (C, N, OH, OW)
    rows = [jnp.stack(views[fy * g.fw : (fy + 1) * g.fw], axis=1) for fy in range(g.fh)]
    grid = jnp.stack(rows, axis=1)  # (C, FH, FW, N, OH, OW)
    return grid.reshape(g.c * g.fh * g.fw, g.n * g.out_h * g.out_w)


def _conv_fwd(x, W, b, stride: int, pad: int):
    fn, _, fh, fw = W.shape
    g = geometry(x.shape, fh, fw, stride, pad)
    if _uses_xla_conv(W.shape, stride, pad, jnp.result_type(x, W)):  # NHWC, transposed
        out, res = _conv_nhwc_fwd(x.transpose(0, 2, 3, 1), W, b, stride, pad)
        return out.transpose(0, 3, 1, 2), res
    W_col = W.reshape(fn, g.c * fh * fw)
    if not _per_image_layout(W.shape):
        col_t = _col_cnhw(x, g)  # (C·FH·FW, N·OH·OW)
        out = jnp.dot(W_col, col_t).reshape(fn, g.n, g.out_h, g.out_w)  # one 2-D matmul
        out = out.transpose(1, 0, 2, 3) + b[None, :, None, None]
        return out, (_dtype_token(x), _dtype_token(b), col_t, W)
    col = _col_nchw(x, g)  # (N, C·FH·FW, OH·OW)
    out = _bmm(_per_image(W_col, g.n), col, (2, 1))  # (N, FN, OH·OW)
    out = out.reshape(g.n, fn, g.out_h, g.out_w) + b[None, :, None, None]
    return out, (_dtype_token(x), _dtype_token(b), col, W)


def _conv_bwd(stride: int, pad: int, res, dout):
    if len(res) == 3:  # the channels-last rule's residuals: x in NHWC, b's dtype, W
        dx, dW, db = _conv_nhwc_bwd(stride, pad, res, dout.transpose(0, 2, 3, 1))
        return dx.transpose(0, 3, 1, 2), dW, db
    x_token, b_token, col, W = res
    fn, c, fh, fw = W.shape
    g = geometry(x_token.shape[1:], fh, fw, stride, pad)
    if not _per_image_layout(W.shape):
        d = dout.transpose(1, 0, 2, 3).reshape(fn, g.n * g.out_h * g.out_w)  # (FN, N·OH·OW)
        db = jnp.sum(d, axis=1)
        dW = jnp.dot(d, col.T).reshape(W.shape)  # dout · col, one 2-D matmul
        dcol = jnp.dot(W.reshape(fn, c * fh * fw).T, d)  # (C·FH·FW, N·OH·OW)
        views = dcol.reshape(c, fh * fw, g.n, g.out_h, g.out_w)
        dx = _unwindow([views[:, k] for k in range(fh * fw)], g)  # (C, N, H, W)
        dx = dx.transpose(1, 0, 2, 3)
        return dx.astype(x_token.dtype), dW.astype(W.dtype), db.astype(b_token.dtype)
    dout = dout.reshape(g.n, fn, -1)  # (N, FN, OH·OW), NCHW read in place
    db = jnp.sum(dout, axis=(0, 2))
    dW = jnp.sum(_bmm(dout, col, (2, 2)), axis=0).reshape(W.shape)  # Σₙ dout_n · col_nᵀ
    dcol = _bmm(_per_image(W.reshape(fn, -1), g.n), dout, (1, 1))  # (N, C·FH·FW, OH·OW)
    views = dcol.reshape(g.n, c, fh * fw, g.out_h, g.out_w)
    dx = _unwindow([views[:, :, k] for k in range(fh * fw)], g)
    return dx.astype(x_token.dtype), dW.astype(W.dtype), db.astype(b_token.dtype)


def _window_stack(x: jax.Array, g: Geometry, channels_last: bool = False) -> jax.Array:
    """The book's pooling col without its transposes: every window of the (zero-)padded x
    along a new last axis, (N, C, OH, OW, pool_h·pool_w), (fy, fx) in row-major order
    ((N, OH, OW, C, ·) with ``channels_last``)."""
    views = _windows(_pad_image(x, g.pad, channels_last=channels_last), g, channels_last)
    return jnp.stack(views, axis=-1)


def _image_geometry(x_shape, pool_h: int, pool_w: int, stride: int, pad: int, channels_last):
    shape = _nchw_shape(x_shape) if channels_last else x_shape
    return geometry(shape, pool_h, pool_w, stride, pad)


def _pool_plain(
    x, pool_h: int, pool_w: int, stride: int, pad: int, channels_last: bool = False
) -> jax.Array:
    """Max pooling (ch7.4.4), the default: the book's rule on NCHW windows.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW). Forward: the windows of the (zero-)padded x
    stacked along a last axis, (N, C, OH, OW, pool_h·pool_w) (the book's col rows, kept in
    NCHW order so no transpose is needed), and their maxima. Residual: the argmax of each
    window (int8, int32 for windows of more than 127 elements; the first maximum on ties, a
    NaN counting as the maximum, NumPy's argmax; the maxima keep NaN too,
    :func:`funcnet._reduce.max_keeping_nan`). Backward: dout goes to that element of each
    window, overlapping windows add (the book's col2im; when the windows tile the input, as
    the book's 2×2 stride 2, one select and a reshape, :func:`_scatter_tiles`). Padding as
    in :func:`pooling_book` (zeros). With ``channels_last`` the same on x (N, H, W, C) ->
    (N, OH, OW, C).
    """
    g = _image_geometry(x.shape, pool_h, pool_w, stride, pad, channels_last)
    return max_keeping_nan(_window_stack(x, g, channels_last), axis=-1)


def _pool_fwd(x, pool_h: int, pool_w: int, stride: int, pad: int, channels_last: bool = False):
    g = _image_geometry(x.shape, pool_h, pool_w, stride, pad, channels_last)
    windows = _window_stack(x, g, channels_last)
    arg = jnp.argmax(windows, axis=-1).astype(jnp.int8 if pool_h * pool_w <= 127 else jnp.int32)
    if pool_h * pool_w > 16:
        return max_keeping_nan(windows, axis=-1), (_dtype_token(x), arg)
    # The maximum is the element at the argmax: picked from the views (elementwise selects
    # XLA fuses) rather than reduced a second time over the stacked windows.
    views = _windows(_pad_image(x, g.pad, channels_last=channels_last), g, channels_last)
    out = views[-1]
    for k in range(len(views) - 2, -1, -1):
        out = jnp.where(arg == k, views[k], out)
    return out, (_dtype_token(x), arg)


def _pool_bwd(
    pool_h: int, pool_w: int, stride: int, pad: int, res, dout, channels_last: bool = False
):
    x_token, arg = res
    g = _image_geometry(x_token.shape[1:], pool_h, pool_w, stride, pad, channels_last)
    if _tiles(g):
        dx = _scatter_tiles(arg, dout, g, channels_last)  # (N, C, OH·FH, OW·FW), or NHWC
        # Rows and columns of the padded input that no window reaches (a floored output
        # size) get no gradient: zeros after the scatter, then the padding cut off.
        hp, wp = g.h + 2 * g.pad, g.w + 2 * g.pad
        rest = _spatial((0, hp - g.out_h * g.fh), (0, wp - g.out_w * g.fw), (0, 0), channels_last)
        if any(r for _, r in rest):
            dx = jnp.pad(dx, rest)
        dx = _crop_padding(dx, g, channels_last)
    else:
        # dmax[arange, arg_max] = dout: one (N, C, OH, OW) plane per window element.
        zero = jnp.zeros((), dout.dtype)
        planes = [jnp.where(arg == k, dout, zero) for k in range(pool_h * pool_w)]
        dx = _unwindow(planes, g, channels_last)
    return (dx.astype(x_token.dtype),)


def _tiles(g: Geometry) -> bool:
    """Whether the windows lie side by side, no overlaps and no gaps between them (stride
    equal to both window sides, as the book's 2×2 stride 2); rows or columns after the
    last window may remain (a floored output size)."""
    return g.stride == g.fh == g.fw


def _scatter_tiles(
    arg: jax.Array, dout: jax.Array, g: Geometry, channels_last: bool = False
) -> jax.Array:
    """col2im of the pooling's dmax for windows that tile the input: each dout element put
    at its window's argmax, zeros elsewhere, (N, C, OH·FH, OW·FW) from arg and dout (N, C,
    OH, OW) (NHWC with ``channels_last``). Window element ``k = fy·FW + fx`` lies at row
    ``oy·FH + fy``, column ``ox·FW + fx``: dout where arg, broadcast over (FH, FW), equals
    the window index k, else 0, one select over (N, C, OH, FH, OW, FW) (or (N, OH, FH, OW,
    FW, C)), then a reshape. No overlap, so nothing to add; XLA's CPU backend runs it
    in one elementwise loop (DeepConvNet's first pooling with the ReLU mask beside it:
    0.88 against 1.44 ms for stacking the FH·FW planes, in the training step)."""
    k = jnp.arange(g.fh, dtype=arg.dtype)[:, None] * g.fw + jnp.arange(g.fw, dtype=arg.dtype)
    if channels_last:  # (N, OH, OW, C) -> (N, OH, FH, OW, FW, C)
        arg, dout, k = arg[:, :, None, :, None], dout[:, :, None, :, None], k[:, None, :, None]
        shape = (g.n, g.out_h * g.fh, g.out_w * g.fw, g.c)
    else:  # (N, C, OH, OW) -> (N, C, OH, FH, OW, FW)
        arg, dout = arg[:, :, :, None, :, None], dout[:, :, :, None, :, None]
        k = k[:, None, :]
        shape = (g.n, g.c, g.out_h * g.fh, g.out_w * g.fw)
    return jnp.where(arg == k, dout, jnp.zeros((), dout.dtype)).reshape(shape)


# --------------------------------------------------------------------------------------
# Channels last: the same rules on images laid out (N, H, W, C), for nets that keep their
# activations in that layout between layers (DeepConvNet, SimpleConvNet: no transpose
# around each layer)


def _nchw_shape(x_shape) -> tuple[int, int, int, int]:
    n, h, w, c = x_shape
    return n, c, h, w


def _conv_nhwc_plain(x, W, b, stride: int, pad: int) -> jax.Array:
    """Convolution (ch7.4.3) on channels-last images: x (N, H, W, C), W (FN, C, FH, FW) (the
    book's filters), b (FN,) -> (N, OH, OW, FN); equals ``convolution(x in NCHW)`` moved to
    NHWC. Where the default rule runs on XLA's convolution (stride 1, pad < filter, a
    filter of more than :data:`_PER_IMAGE_MAX_K` weights) the same rule without the
    transposes around it: forward x ⋆ W + b, backward dx the transposed convolution of
    dout with W, dW the correlation of x with dout, db = Σ dout (residuals x and W). A
    filter of at most :data:`_PER_IMAGE_MAX_K` weights (a first layer over data): the
    book's rule on a channels-last col (:func:`_col_nhwc`; out = col · W_mat, one 2-D
    matmul that writes NHWC; dW = colᵀ · dout; residuals col and W). Elsewhere (a larger
    filter with stride > 1 or pad ≥ filter) the NCHW default rule between transposes."""
    return _conv_nhwc_fwd(x, W, b, stride, pad)[0]


def _col_nhwc(x: jax.Array, g: Geometry) -> jax.Array:
    """im2col on channels-last x (N, H, W, C): (N·OH·OW, FH·FW·C), columns in (fy, fx, c)
    order, the FH·FW strided views stacked along the contiguous channel axis (the book's
    col with its columns in filter-position-major order)."""
    views = _windows(_pad_image(x, g.pad, channels_last=True), g, channels_last=True)
    return jnp.stack(views, axis=3).reshape(g.n * g.out_h * g.out_w, g.fh * g.fw * g.c)


def _filter_matrix_nhwc(W: jax.Array) -> jax.Array:
    """W (FN, C, FH, FW) as the (FH·FW·C, FN) matrix that multiplies :func:`_col_nhwc`."""
    fn, c, fh, fw = W.shape
    return W.transpose(2, 3, 1, 0).reshape(fh * fw * c, fn)


def _small_conv_nhwc_fwd(x, W, b, stride: int, pad: int):
    """The book's rule on channels-last images for a small filter (a first layer over
    data): out = col · W_mat + b, one 2-D matmul that writes (N, OH, OW, FN) in place."""
    fn, _, fh, fw = W.shape
    g = geometry(_nchw_shape(x.shape), fh, fw, stride, pad)
    dtype = jnp.result_type(x, W)
    col = _col_nhwc(x.astype(dtype), g)  # (N·OH·OW, FH·FW·C)
    out = jnp.dot(col, _filter_matrix_nhwc(W.astype(dtype)))
    return out.reshape(g.n, g.out_h, g.out_w, fn) + b, (_dtype_token(x), _dtype_token(b), col, W)


def _small_conv_nhwc_bwd(stride: int, pad: int, res, dout):
    """dW = colᵀ · dout, db = Σ dout, dx = col2im(dout · W_matᵀ) (unused, and dropped by
    XLA, when x is data)."""
    x_token, b_token, col, W = res
    fn, c, fh, fw = W.shape
    g = geometry(_nchw_shape(x_token.shape[1:]), fh, fw, stride, pad)
    dtype = jnp.result_type(col, W, dout)  # dout's precision kept (a float64 b, say)
    d = dout.astype(dtype).reshape(-1, fn)  # (N·OH·OW, FN), read in place
    db = _channel_sum(d)
    dW = lax.dot_general(col.astype(dtype), d, (((0,), (0,)), ((), ())))  # (FH·FW·C, FN)
    dW = dW.reshape(fh, fw, c, fn).transpose(3, 2, 0, 1)
    dcol = jnp.dot(d, _filter_matrix_nhwc(W.astype(dtype)).T)  # (N·OH·OW, FH·FW·C)
    dcol = dcol.reshape(g.n, g.out_h, g.out_w, fh * fw, c)
    dx = _unwindow([dcol[:, :, :, k] for k in range(fh * fw)], g, channels_last=True)
    return dx.astype(x_token.dtype), dW.astype(W.dtype), db.astype(b_token.dtype)


def _conv_nhwc_fwd(x, W, b, stride: int, pad: int):
    dtype = jnp.result_type(x, W)
    if not _uses_xla_conv(W.shape, stride, pad, dtype):
        if _per_image_layout(W.shape):
            return _small_conv_nhwc_fwd(x, W, b, stride, pad)
        out, res = _conv_fwd(x.transpose(0, 3, 1, 2), W, b, stride, pad)
        return out.transpose(0, 2, 3, 1), res
    out = _conv_nhwc(x.astype(dtype), W.astype(dtype).transpose(2, 3, 1, 0), (pad, pad))
    return out + (b + _padding_times_weights(W, x.shape[1:3], pad, dtype)), (x, _dtype_token(b), W)


def _padding_times_weights(W, image_hw: tuple[int, int], pad: int, dtype) -> jax.Array:
    """What the zero padding adds to each output in the book's rule, where im2col's
    padding zeros are multiplied by the weights: 0, or NaN where a padded pixel of the
    window meets a NaN or infinite weight (0·NaN = 0·inf = NaN). XLA's and oneDNN's
    convolutions skip the padding, so without this a non-finite weight gave finite
    outputs along the border. (OH, OW, FN) for stride 1; () without padding. Which taps
    of which output read padding is known from the shapes (a constant (OH·OW, FH·FW)
    matrix); one small matmul with the filters' non-finite taps gives the rest (alone
    in DeepConvNet's step about 0.3 ms of 38, best of 24 interleaved; an XLA
    convolution of the padding mask cost 0.9)."""
    if pad == 0:
        return jnp.zeros((), dtype)
    fn, _, fh, fw = W.shape
    h, w = image_hw
    oh, ow = h + 2 * pad - fh + 1, w + 2 * pad - fw + 1
    row_out, col_out = _dnnl.taps_reading_padding((oh, ow), (fh, fw), image_hw, pad)
    outside = row_out[:, None, :, None] | col_out[None, :, None, :]  # (OH, OW, FH, FW)
    reads_padding = jnp.asarray(outside.reshape(oh * ow, fh * fw), jnp.float32)
    nonfinite = (~jnp.isfinite(W)).any(axis=1).reshape(fn, fh * fw).astype(jnp.float32)
    hits = jnp.dot(reads_padding, nonfinite.T, precision=lax.Precision.HIGHEST)
    return jnp.where(hits > 0, jnp.nan, 0.0).astype(dtype).reshape(oh, ow, fn)


def _conv_nhwc_bwd(stride: int, pad: int, res, dout):
    W = res[-1]
    if len(res) == 4:  # the col rules' residuals (:func:`_conv_nhwc_fwd` chose one)
        if _per_image_layout(W.shape):
            return _small_conv_nhwc_bwd(stride, pad, res, dout)
        dx, dW, db = _conv_bwd(stride, pad, res, dout.transpose(0, 3, 1, 2))
        return dx.transpose(0, 2, 3, 1), dW, db
    x, b_token, W = res
    dtype = jnp.result_type(x, W, dout)
    d = dout.astype(dtype)
    db = _channel_sum(d)
    dW = _filter_grad_nhwc(x.astype(dtype), d, pad)
    # dx only after dW: on CPU XLA otherwise runs Eigen's dW beside oneDNN's dx, and the
    # two share the same two threads. In this order DeepConvNet's step ran 0.5-3.5 ms
    # faster in 4 of 5 interleaved A/Bs of ~39 ms (best of 20-30; once 0.4 ms slower).
    # With dW on oneDNN's backward-weights kernel either order is the same (30.1 ms in
    # this order, 30.0 side by side, 29.8 dx first: best of 20). The same numbers.
    dW, d = lax.optimization_barrier((dW, d))
    dx = _transpose_conv_nhwc(d, W.astype(dtype), pad)
    return dx.astype(x.dtype), dW.astype(W.dtype), db.astype(b_token.dtype)


def _channel_sum(d: jax.Array) -> jax.Array:
    """db (FN,) = Σ dout over every axis but the last (channels-last dout (..., FN)), as a
    matrix-vector product with ones: XLA's CPU backend reduced DeepConvNet's (N·OH·OW, FN)
    douts with its loop emitter at a third of the speed (conv2's: 0.98 vs 0.57 ms)."""
    rows = d.reshape(-1, d.shape[-1])
    acc = jnp.promote_types(d.dtype, jnp.float32)  # half precision sums in float32
    ones = jnp.ones((rows.shape[0],), d.dtype)
    # HIGHEST: no TF32 or bfloat16 passes on accelerators, every term summed as given
    total = jnp.dot(ones, rows, precision=lax.Precision.HIGHEST, preferred_element_type=acc)
    return total.astype(d.dtype)


def _transpose_conv_nhwc(d: jax.Array, W: jax.Array, pad: int) -> jax.Array:
    """dx (N, H, W, C) = dout (N, OH, OW, FN) convolved with the flipped filters, padding
    FH − 1 − pad. (An earlier version padded one more pixel and cut the border off where
    no padding was left, DeepConvNet's conv4, which Eigen's kernel once ran faster; on
    oneDNN's the plain convolution is faster: 1.85 against 2.29 ms alone, best of 7.)"""
    _, _, fh, fw = W.shape
    Wt = jnp.flip(W, (2, 3)).transpose(2, 3, 0, 1)  # (FH, FW, FN, C)
    return _conv_nhwc(d, Wt, (fh - 1 - pad, fw - 1 - pad))


def _filter_grad_nhwc(x: jax.Array, d: jax.Array, pad: int) -> jax.Array:
    """dW (FN, C, FH, FW) = x (N, H, W, C) correlated with dout (N, OH, OW, FN) over the
    batch, with at most :data:`_FILTER_GRAD_INNER_PAD` pixels of the padding inside the
    kernel (the rest padded beforehand). In float32 on CPU it runs on oneDNN's
    backward-weights kernel where the library is installed (:mod:`funcnet._dnnl`:
    DeepConvNet's step 36 -> 31 ms), XLA's convolution (Eigen) otherwise; the same
    numbers up to float32 rounding. (oneDNN's *forward* kernel through
    :func:`_onednn.conv_nhwc` ran it faster alone but the step slower: 37.8 against
    36.4 ms.)"""
    filt = (x.shape[1] + 2 * pad - d.shape[1] + 1, x.shape[2] + 2 * pad - d.shape[2] + 1)
    inner = min(pad, _FILTER_GRAD_INNER_PAD)
    outer = pad - inner
    xp = jnp.pad(x, ((0, 0), (outer, outer), (outer, outer), (0, 0)))
    return _dnnl.filter_grad(xp, d, filt, (inner, inner))


def _pool_nhwc_plain(x, pool_h: int, pool_w: int, stride: int, pad: int) -> jax.Array:
    """Max pooling (ch7.4.4) on channels-last images: x (N, H, W, C) -> (N, OH, OW, C), the
    default rule (:func:`_pool_plain`) on the (N, H, W, C) axes: zero padding, the first
    maximum of each window gets dout, overlapping windows add."""
    return _pool_plain(x, pool_h, pool_w, stride, pad, channels_last=True)


def _check_image_nhwc(where: str, x) -> None:
    shape = tuple(x.shape)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be 4-D (N, H, W, C), got x {shape}")
    if shape[0] == 0:
        raise ValueError(f"{where}: x holds an empty batch, x {shape}")
    if shape[3] == 0:
        raise ValueError(f"{where}: x has no channels (C = 0), x {shape}")


# --------------------------------------------------------------------------------------
# Public layers: one compiled rule per (stride, pad), validated


class _Rule(NamedTuple):
    plain: Callable[..., jax.Array]
    fwd: Callable[..., tuple[jax.Array, Any]]
    bwd: Callable[..., tuple[Any, ...]]


@functools.cache
def _conv_layer(name: str, stride: int, pad: int) -> Callable[..., jax.Array]:
    """The validated custom_vjp layer ``name(x, W, b)`` for one stride and pad."""
    rule = _CONV_RULES[name]

    def plain(x, W, b):
        return rule.plain(x, W, b, stride, pad)

    plain.__doc__ = rule.plain.__doc__
    return make_layer(
        name,
        plain,
        lambda x, W, b: rule.fwd(x, W, b, stride, pad),
        functools.partial(rule.bwd, stride, pad),
        functools.partial(_NHWC_CHECKS.get(name, _check_conv), name, stride, pad),
    )


@functools.cache
def _pool_layer(name: str, pool_h: int, pool_w: int, stride: int, pad: int):
    """The validated custom_vjp layer ``name(x)`` for one window, stride and pad."""
    rule = _POOL_RULES[name]

    def plain(x):
        return rule.plain(x, pool_h, pool_w, stride, pad)

    plain.__doc__ = rule.plain.__doc__
    return make_layer(
        name,
        plain,
        lambda x: rule.fwd(x, pool_h, pool_w, stride, pad),
        functools.partial(rule.bwd, pool_h, pool_w, stride, pad),
        functools.partial(_NHWC_CHECKS.get(name, _check_pool), name, pool_h, pool_w, stride, pad),
    )


def _check_pool(
    where: str, pool_h: int, pool_w: int, stride: int, pad: int, x, *, channels_last=False
) -> None:
    """x (N, C, H, W), or (N, H, W, C) with ``channels_last``."""
    _check_floating(where, x=x)
    (_check_image_nhwc if channels_last else _check_image)(where, x)
    nchw = _nchw_shape(x.shape) if channels_last else x.shape
    what = f"pool {pool_h}×{pool_w}"
    check_geometry(where, nchw, pool_h, pool_w, stride, pad, what, x.shape)


def convolution_layer(stride: int = 1, pad: int = 0, *, book: bool = False):
    """The custom_vjp layer ``f(x, W, b)`` of :func:`convolution` (or, with ``book=True``,
    :func:`convolution_book`) for one stride and pad, with ``.fun`` (its plain forward),
    ``.rule``, ``.fwd``, ``.bwd`` like every layer of :mod:`funcnet.layers`."""
    name = "convolution_book" if book else "convolution"
    stride, pad = _check_stride_pad(name, stride, pad)
    return _conv_layer(name, stride, pad)


def convolution_nhwc_layer(stride: int = 1, pad: int = 0):
    """The custom_vjp layer ``f(x, W, b)`` of :func:`convolution_nhwc` for one stride and
    pad (``.fun``, ``.rule``, ``.fwd``, ``.bwd`` as :func:`convolution_layer`)."""
    stride, pad = _check_stride_pad("convolution_nhwc", stride, pad)
    return _conv_layer("convolution_nhwc", stride, pad)


def pooling_nhwc_layer(pool_h: int, pool_w: int, stride: int = 2, pad: int = 0):
    """The custom_vjp layer ``f(x)`` of :func:`pooling_nhwc` for one window, stride, pad."""
    pool_h = check_int("pooling_nhwc", "pool_h", pool_h, 1)
    pool_w = check_int("pooling_nhwc", "pool_w", pool_w, 1)
    stride, pad = _check_stride_pad("pooling_nhwc", stride, pad)
    return _pool_layer("pooling_nhwc", pool_h, pool_w, stride, pad)


def pooling_layer(pool_h: int, pool_w: int, stride: int = 2, pad: int = 0, *, book: bool = False):
    """The custom_vjp layer ``f(x)`` of :func:`pooling` (or :func:`pooling_book`) for one
    window, stride and pad."""
    name = "pooling_book" if book else "pooling"
    pool_h = check_int(name, "pool_h", pool_h, 1)
    pool_w = check_int(name, "pool_w", pool_w, 1)
    stride, pad = _check_stride_pad(name, stride, pad)
    return _pool_layer(name, pool_h, pool_w, stride, pad)


def convolution(x, W, b, stride: int = 1, pad: int = 0) -> jax.Array:
    """Convolution layer (book ch7.4.3): the book's im2col rule, laid out for speed.

    Shapes: x (N, C, H, W), W (FN, C, FH, FW), b (FN,) -> (N, FN, OH, OW) with
    OH = ⌊(H + 2·pad − FH) / stride⌋ + 1 (same for OW; input rows and columns that no
    window reaches get a zero gradient). Computes the same numbers as
    :func:`convolution_book` (up to the order of the sums); see :func:`_conv_plain`.

    Raises:
        TypeError: a non-floating input, or a stride or pad that is not an integer.
        ValueError: x or W not 4-D, x's channels differ from W's, b not (FN,), the filter
            larger than the padded input, or an empty batch, no channels or no filters
            (names both shapes).
    """
    return convolution_layer(stride, pad)(x, W, b)


def pooling(x, pool_h: int, pool_w: int, stride: int = 2, pad: int = 0) -> jax.Array:
    """Max pooling layer (book ch7.4.4), the book's rule without im2col.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW), OH = ⌊(H + 2·pad − pool_h) / stride⌋ + 1.
    Backward: dout to the first maximum of each window (NumPy's argmax). Padding is with
    zeros, as in the book: a window overlapping the padding has a maximum ≥ 0, so an
    all-negative window gives 0 (not its largest element, as ``lax.reduce_window`` with
    −inf padding would) and passes no gradient to x. Same numbers as :func:`pooling_book`.

    Raises:
        TypeError, ValueError: as :func:`convolution`, for the window pool_h × pool_w.
    """
    return pooling_layer(pool_h, pool_w, stride, pad)(x)


def convolution_nhwc(x, W, b, stride: int = 1, pad: int = 0) -> jax.Array:
    """:func:`convolution` on channels-last images, for nets that keep that layout between
    layers (no transpose around each layer; the default path of DeepConvNet and
    SimpleConvNet).

    Shapes: x (N, H, W, C), W (FN, C, FH, FW) (the book's filters), b (FN,) ->
    (N, OH, OW, FN); ``convolution_nhwc(x, W, b) == convolution(x.transpose(0, 3, 1, 2),
    W, b).transpose(0, 2, 3, 1)`` up to the order of the sums. See
    :func:`_conv_nhwc_plain`. Raises as :func:`convolution` (messages name x's NHWC shape).
    """
    return convolution_nhwc_layer(stride, pad)(x, W, b)


def pooling_nhwc(x, pool_h: int, pool_w: int, stride: int = 2, pad: int = 0) -> jax.Array:
    """:func:`pooling` on channels-last images: x (N, H, W, C) -> (N, OH, OW, C), the same
    numbers and gradients (zero padding, the first maximum of each window gets dout)."""
    return pooling_nhwc_layer(pool_h, pool_w, stride, pad)(x)


def convolution_book(x, W, b, stride: int = 1, pad: int = 0) -> jax.Array:
    """The book's ``Convolution`` layer (ch7.4.3) with its backward rule, as written there.

    Shapes: x (N, C, H, W), W (FN, C, FH, FW), b (FN,) -> (N, FN, OH, OW). See
    :func:`_conv_book_plain` for the rule; :func:`convolution` computes the same numbers
    faster.
    """
    return convolution_layer(stride, pad, book=True)(x, W, b)


def pooling_book(x, pool_h: int, pool_w: int, stride: int = 2, pad: int = 0) -> jax.Array:
    """The book's ``Pooling`` layer (ch7.4.4, max pooling) with its backward rule.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW). The book's class defaults to stride 1; here
    (as in every call the book makes) the default is 2. Zero padding: see
    :func:`_pool_book_plain`.
    """
    return pooling_layer(pool_h, pool_w, stride, pad, book=True)(x)


_CONV_RULES = {
    "convolution": _Rule(_conv_plain, _conv_fwd, _conv_bwd),
    "convolution_book": _Rule(_conv_book_plain, _conv_book_fwd, _conv_book_bwd),
    "convolution_nhwc": _Rule(_conv_nhwc_plain, _conv_nhwc_fwd, _conv_nhwc_bwd),
}
_POOL_RULES = {
    "pooling": _Rule(_pool_plain, _pool_fwd, _pool_bwd),
    "pooling_book": _Rule(_pool_book_plain, _pool_book_fwd, _pool_book_bwd),
    "pooling_nhwc": _Rule(
        _pool_nhwc_plain,
        functools.partial(_pool_fwd, channels_last=True),
        functools.partial(_pool_bwd, channels_last=True),
    ),
}
_NHWC_CHECKS = {
    "convolution_nhwc": functools.partial(_check_conv, channels_last=True),
    "pooling_nhwc": functools.partial(_check_pool, channels_last=True),
}


# --------------------------------------------------------------------------------------
# Registry entries: every rule on odd sizes, strides 1-3, pads 0-2 (strides that do not
# tile the padded input among them), a batch of one


def _conv_case(name: str, x_shape, w_shape) -> LayerCase:
    def inputs(rng: np.random.Generator, dtype):
        return (
            jnp.asarray(rng.standard_normal(x_shape), dtype),
            jnp.asarray(0.5 * rng.standard_normal(w_shape), dtype),
            jnp.asarray(rng.standard_normal(w_shape[:1]), dtype),
        )

    return LayerCase(name, inputs, (0, 1, 2))


def _distinct(rng: np.random.Generator, shape, dtype) -> jax.Array:
    """Values 0.1 apart in random order, none within 0.05 of 0: no ties in any window (nor
    with the zero padding), and finite differences (h = 1e-4) never change an argmax."""
    size = int(np.prod(shape))
    values = (rng.permutation(size) - size / 2 + 0.5) * 0.1
    return jnp.asarray(values.reshape(shape), dtype)


def _pool_case(name: str, x_shape) -> LayerCase:
    return LayerCase(name, lambda rng, dtype: (_distinct(rng, x_shape, dtype),))


# (stride, pad): cases with x (N, C, H, W) and W (FN, C, FH, FW)
_CONV_CONFIGS = {
    (1, 0): (
        _conv_case("odd", (2, 3, 7, 5), (4, 3, 3, 3)),
        _conv_case("batch1", (1, 1, 6, 6), (2, 1, 3, 3)),
        _conv_case("wide", (1, 4, 5, 4), (2, 4, 3, 3)),  # C·FH·FW = 36: XLA's convolution
    ),
    (2, 1): (
        _conv_case("odd", (2, 2, 7, 7), (3, 2, 3, 3)),
        _conv_case("batch1", (1, 3, 5, 5), (2, 3, 3, 3)),
        # stride 2 does not tile (6 + 2 − 3 = 5): the last row and column are not reached;
        # C·FH·FW = 36: the 2-D layout
        _conv_case("floor", (1, 4, 6, 6), (2, 4, 3, 3)),
    ),
    (3, 0): (_conv_case("floor", (1, 2, 7, 6), (2, 2, 3, 3)),),  # height: 4 rows, 1 left
    # C·FH·FW = 36, stride 1, pad < filter: XLA's convolution (DeepConvNet's conv2, conv4)
    (1, 1): (_conv_case("wide", (2, 4, 5, 4), (3, 4, 3, 3)),),
    (1, 2): (
        _conv_case("odd", (2, 2, 5, 3), (3, 2, 3, 2)),
        _conv_case("wide", (1, 4, 4, 5), (2, 4, 3, 3)),
    ),
    (2, 2): (_conv_case("batch1", (1, 2, 6, 6), (2, 2, 4, 4)),),
}
# (pool_h, pool_w, stride, pad): cases with x (N, C, H, W)
_POOL_CONFIGS = {
    (2, 2, 2, 0): (
        _pool_case("odd", (2, 3, 6, 8)),
        _pool_case("batch1", (1, 2, 4, 4)),
        _pool_case("floor", (1, 2, 5, 7)),  # odd sizes: the last row and column dropped
    ),
    (3, 3, 1, 0): (_pool_case("overlap", (2, 2, 5, 5)),),
    (3, 3, 2, 1): (
        _pool_case("batch1", (1, 2, 7, 7)),
        _pool_case("floor", (1, 1, 6, 6)),  # 6 + 2 − 3 = 5: stride 2 does not tile
    ),
    (2, 3, 1, 2): (_pool_case("odd", (1, 2, 3, 5)),),
    (3, 3, 3, 1): (_pool_case("tiled", (2, 2, 4, 7)),),  # windows tile the padded input
}


def _channels_last(case: LayerCase) -> LayerCase:
    """``case`` with its image moved to (N, H, W, C) (the first input)."""

    def inputs(rng: np.random.Generator, dtype):
        x, *rest = case.make_inputs(rng, dtype)
        return (x.transpose(0, 2, 3, 1), *rest)

    return case._replace(make_inputs=inputs)


# The channels-last rules on the geometries where they run their own code (XLA's
# convolution: stride 1, pad < filter, more than 32 weights per filter; the col rule for
# filters of at most 32 weights, the "odd" and "batch1" cases; pooling: tiling and
# overlapping windows) and one where the convolution runs the NCHW rule between transposes.
_NHWC_CONV_CONFIGS = ((1, 1), (1, 2), (2, 1))
_NHWC_POOL_CONFIGS = ((2, 2, 2, 0), (3, 3, 2, 1), (3, 3, 3, 1))


def _nhwc_registry_entries() -> list[RegisteredLayer]:
    entries = []
    for stride, pad in _NHWC_CONV_CONFIGS:
        cases = tuple(_channels_last(c) for c in _CONV_CONFIGS[stride, pad])
        layer = convolution_nhwc_layer(stride, pad)
        entries.append(RegisteredLayer(f"convolution_nhwc_s{stride}p{pad}", layer, cases))
    for ph, pw, stride, pad in _NHWC_POOL_CONFIGS:
        cases = tuple(_channels_last(c) for c in _POOL_CONFIGS[ph, pw, stride, pad])
        layer = pooling_nhwc_layer(ph, pw, stride, pad)
        entries.append(RegisteredLayer(f"pooling_nhwc_{ph}x{pw}s{stride}p{pad}", layer, cases))
    return entries


def _registry_entries() -> tuple[RegisteredLayer, ...]:
    entries = []
    for book in (False, True):
        for (stride, pad), cases in _CONV_CONFIGS.items():
            layer = convolution_layer(stride, pad, book=book)
            entries.append(RegisteredLayer(f"{layer.__name__}_s{stride}p{pad}", layer, cases))
        for (ph, pw, stride, pad), cases in _POOL_CONFIGS.items():
            layer = pooling_layer(ph, pw, stride, pad, book=book)
            name = f"{layer.__name__}_{ph}x{pw}s{stride}p{pad}"
            entries.append(RegisteredLayer(name, layer, cases))
    return tuple(entries) + tuple(_nhwc_registry_entries())


REGISTRY_ENTRIES: tuple[RegisteredLayer, ...] = _registry_entries()
"""The convolution and pooling rules (default, book's and channels-last), one entry per
stride and pad, for ``funcnet.layers.REGISTRY`` (verified by tests/test_conv.py)."""
