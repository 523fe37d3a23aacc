"""Convolution and max pooling (ch7): im2col/col2im, every registered rule verified three
ways, against XLA's own convolution and reduce_window, the book's and the default rules
equal, the conventions (ties, zero padding, NaN) and the errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from funcnet import conv

CASES = [
    pytest.param(entry, case, id=f"{entry.name}-{case.name}")
    for entry in conv.REGISTRY_ENTRIES
    for case in entry.cases
]


def scalarized(fn, args, argnums, seed=1):
    out = jax.eval_shape(fn, *args)
    c = jnp.asarray(np.random.default_rng(seed).standard_normal(out.shape), out.dtype)

    def f(*diff):
        full = list(args)
        for i, d in zip(argnums, diff, strict=True):
            full[i] = d
        return jnp.sum(fn(*full) * c)

    return jax.jit(f)


def cotangent_for(shape, dtype, seed=1):
    """The fixed random cotangent c of Σ f(…)·c (the seed scalarized() uses)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def conv_rules(x, W, b, cot, stride, pad, with_xla):
    """In one compiled program, for the default rule, the book's rule and (``with_xla``)
    XLA's convolution with autodiff: the forward and its vjp of ``cot`` (dx, dW, db)."""
    fns = [conv.convolution_layer(stride, pad, book=book) for book in (False, True)]
    if with_xla:
        fns.append(lambda x, W, b: xla_conv(x, W, b, stride, pad))
    results = []
    for fn in fns:
        out, vjp = jax.vjp(fn, x, W, b)
        results.append((out, vjp(cot)))
    return results


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def pool_rules(x, cot, ph, pw, stride, pad, with_xla):
    """Like :func:`conv_rules` for max pooling: default, book's and (``with_xla``) XLA's
    reduce_window over the zero-padded x; each ``(out, (dx,))``."""
    fns = [conv.pooling_layer(ph, pw, stride, pad, book=book) for book in (False, True)]
    if with_xla:
        fns.append(lambda x: xla_max_pool(x, ph, pw, stride, pad))
    results = []
    for fn in fns:
        out, vjp = jax.vjp(fn, x)
        results.append((out, vjp(cot)))
    return results


# --------------------------------------------------------------------------------------
# im2col / col2im


def book_im2col(x, fh, fw, stride, pad):
    """The book's common/util.py im2col, verbatim in NumPy."""
    n, c, h, w = x.shape
    out_h = (h + 2 * pad - fh) // stride + 1
    out_w = (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((n, c, fh, fw, out_h, out_w))
    for y in range(fh):
        y_max = y + stride * out_h
        for xx in range(fw):
            x_max = xx + stride * out_w
            col[:, :, y, xx, :, :] = img[:, :, y:y_max:stride, xx:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1)


GEOMETRIES = [
    # (x shape, fh, fw, stride, pad)
    ((2, 3, 7, 5), 3, 3, 1, 0),
    ((1, 2, 7, 7), 3, 3, 2, 1),
    ((2, 1, 5, 4), 3, 2, 1, 2),
    ((1, 2, 6, 6), 4, 4, 2, 2),
    ((3, 1, 4, 4), 2, 2, 2, 0),
]


# The public functions compiled (one program each instead of one per eager operation).
im2col = jax.jit(conv.im2col, static_argnums=(1, 2, 3, 4))
col2im = jax.jit(conv.col2im, static_argnums=(1, 2, 3, 4, 5))


@pytest.mark.parametrize("shape, fh, fw, stride, pad", GEOMETRIES)
def test_im2col_equals_the_books_numpy_im2col(shape, fh, fw, stride, pad, x64):
    x = np.random.default_rng(0).standard_normal(shape)
    np.testing.assert_array_equal(
        np.asarray(im2col(x, fh, fw, stride, pad)), book_im2col(x, fh, fw, stride, pad)
    )


@pytest.mark.parametrize("shape, fh, fw, stride, pad", GEOMETRIES)
def test_col2im_is_the_transpose_of_im2col(shape, fh, fw, stride, pad, x64):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal(shape))
    col = im2col(x, fh, fw, stride, pad)
    c = jnp.asarray(rng.standard_normal(col.shape))
    lhs = float(np.vdot(col, c))
    rhs = float(np.vdot(x, col2im(c, shape, fh, fw, stride, pad)))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_col2im_sums_overlapping_windows_like_the_book(x64):
    # 3x3 windows at stride 1 over a 4x4 image: each pixel appears in as many windows as
    # cover it (the centre 2x2 in all four).
    ones = jnp.ones((4, 9))
    counts = np.asarray(conv.col2im(ones, (1, 1, 4, 4), 3, 3))[0, 0]
    np.testing.assert_array_equal(counts, [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])


def test_col2im_rejects_a_col_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"col2im: col must have shape \(4, 9\).*got col \(4, 8\)"):
        conv.col2im(jnp.ones((4, 8)), (1, 1, 4, 4), 3, 3)


# --------------------------------------------------------------------------------------
# Every registered rule: the three-way check (rule, autodiff, finite differences, f64 and
# f32) and check_grads to second order run in tests/test_layers.py, which covers every
# entry of layers.REGISTRY, these included.


def _output_and_cotangents(layer, *args):
    out, vjp = jax.vjp(layer, *args)
    return out, vjp(jnp.ones_like(out))


@pytest.mark.parametrize("entry, case", CASES)
def test_rule_output_keeps_float32(entry, case):
    # Dtypes are fixed when the rule is traced: eval_shape runs the layer's validation, its
    # fwd and its bwd abstractly (what jit and eager execution would produce, uncompiled).
    args = case.make_inputs(np.random.default_rng(0), jnp.float32)
    out, cotangents = jax.eval_shape(functools.partial(_output_and_cotangents, entry.layer), *args)
    assert out.dtype == jnp.float32
    assert len(cotangents) == len(args)
    assert all(g.dtype == jnp.float32 for g in cotangents)


# --------------------------------------------------------------------------------------
# The default rules compute the book's numbers


@pytest.mark.parametrize("stride, pad", list(conv._CONV_CONFIGS))
def test_default_convolution_equals_the_books(stride, pad, x64):
    for case in conv._CONV_CONFIGS[(stride, pad)]:
        x, W, b = case.make_inputs(np.random.default_rng(3), jnp.float64)
        cot = cotangent_for(
            jax.eval_shape(conv.convolution_layer(stride, pad), x, W, b).shape, x.dtype
        )
        (out_f, gf), (out_b, gb) = conv_rules(x, W, b, cot, stride, pad, False)
        np.testing.assert_allclose(out_f, out_b, rtol=1e-13, atol=1e-13)
        for a, r in zip(gf, gb, strict=True):
            np.testing.assert_allclose(a, r, rtol=1e-13, atol=1e-13)


def _assert_default_pooling_equals_the_books(x, ph, pw, stride, pad):
    cot = cotangent_for(jax.eval_shape(conv.pooling_layer(ph, pw, stride, pad), x).shape, x.dtype)
    (out_f, (gf,)), (out_b, (gb,)) = pool_rules(x, cot, ph, pw, stride, pad, False)
    np.testing.assert_array_equal(out_f, out_b)
    np.testing.assert_array_equal(gf, gb)


@pytest.mark.parametrize("ph, pw, stride, pad", list(conv._POOL_CONFIGS))
def test_default_pooling_equals_the_books_exactly(ph, pw, stride, pad, x64):
    for case in conv._POOL_CONFIGS[(ph, pw, stride, pad)]:
        (x,) = case.make_inputs(np.random.default_rng(3), jnp.float64)
        _assert_default_pooling_equals_the_books(x, ph, pw, stride, pad)


@pytest.mark.parametrize("ph, pw, stride", [(5, 5, 5), (4, 5, 1)], ids=["tiled-5x5", "overlap-4x5"])
def test_default_pooling_of_windows_over_16_elements_equals_the_books(ph, pw, stride, x64):
    # Windows of more than 16 elements take the reduce path for the maximum, not the selects.
    x = conv._distinct(np.random.default_rng(5), (2, 2, 10, 10), jnp.float64)
    _assert_default_pooling_equals_the_books(x, ph, pw, stride, 0)


# --------------------------------------------------------------------------------------
# Against XLA: lax.conv_general_dilated and lax.reduce_window with autodiff

XLA_GEOMETRIES = [(s, p) for s in (1, 2) for p in (0, 1, 2)]
# float32: sums of up to 27 products in a different order; float64: rounding only.
XLA_RTOL = {jnp.float32: 2e-5, jnp.float64: 1e-12}


def xla_conv(x, W, b, stride, pad):
    out = lax.conv_general_dilated(
        x,
        W,
        (stride, stride),
        [(pad, pad), (pad, pad)],
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=lax.Precision.HIGHEST,
    )
    return out + b[None, :, None, None]


def close(a, b, rtol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.max(np.abs(a - b)) <= rtol * max(np.max(np.abs(b)), 1.0), np.max(np.abs(a - b))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("stride, pad", XLA_GEOMETRIES)
def test_convolution_equals_xla_conv_forward_and_gradients(stride, pad, dtype, x64):
    # Both rules (default and the book's) against XLA, in one compiled program.
    rng = np.random.default_rng(stride * 10 + pad)
    h = 9 if stride == 2 else 8  # (9 + 2·pad − 3) is even: stride 2 tiles
    x = jnp.asarray(rng.standard_normal((3, 2, h, h)), dtype)
    W = jnp.asarray(rng.standard_normal((4, 2, 3, 3)), dtype)
    b = jnp.asarray(rng.standard_normal(4), dtype)
    cot = cotangent_for(jax.eval_shape(conv.convolution_layer(stride, pad), x, W, b).shape, dtype)
    *rules, (xla_out, theirs) = conv_rules(x, W, b, cot, stride, pad, True)
    rtol = XLA_RTOL[dtype]
    for out, ours in rules:
        assert out.dtype == dtype
        close(out, xla_out, rtol)
        for a, r in zip(ours, theirs, strict=True):
            assert a.dtype == dtype
            close(a, r, rtol)


def xla_max_pool(x, ph, pw, stride, pad):
    """reduce_window over the zero-padded x: the book's padding (XLA's own pads with −inf)."""
    xp = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return lax.reduce_window(xp, -jnp.inf, lax.max, (1, 1, ph, pw), (1, 1, stride, stride), "VALID")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("stride, pad", XLA_GEOMETRIES)
def test_pooling_equals_xla_reduce_window_forward_and_gradients(stride, pad, dtype, x64):
    # Both rules (default and the book's) against XLA, in one compiled program.
    rng = np.random.default_rng(stride * 10 + pad)
    h = 8 if stride == 2 else 7  # (8 + 2·pad − 2) is even: stride 2 tiles
    x = conv._distinct(rng, (2, 3, h, h), dtype)  # no ties: XLA breaks them differently
    cot = cotangent_for(jax.eval_shape(conv.pooling_layer(2, 2, stride, pad), x).shape, dtype)
    *rules, (xla_out, (theirs,)) = pool_rules(x, cot, 2, 2, stride, pad, True)
    for out, (ours,) in rules:
        np.testing.assert_array_equal(out, xla_out)
        assert ours.dtype == dtype
        close(ours, theirs, XLA_RTOL[dtype])


# --------------------------------------------------------------------------------------
# Geometry: the output size floored like the book, PyTorch and XLA (strides that do not
# tile the padded input), against the book's im2col/col2im and XLA, default and book rules


def book_col2im(col, input_shape, fh, fw, stride, pad):
    """The book's common/util.py col2im, verbatim in NumPy."""
    n, c, h, w = input_shape
    out_h = (h + 2 * pad - fh) // stride + 1
    out_w = (w + 2 * pad - fw) // stride + 1
    col = col.reshape(n, out_h, out_w, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1))
    for y in range(fh):
        y_max = y + stride * out_h
        for xx in range(fw):
            x_max = xx + stride * out_w
            img[:, :, y:y_max:stride, xx:x_max:stride] += col[:, :, y, xx, :, :]
    return img[:, :, pad : h + pad, pad : w + pad]


# (H, W, FH, FW, stride, pad); the comment says which axis the stride does not tile
# ((H + 2·pad − FH) % stride): most do not, on purpose.
FLOOR_GEOMETRIES = [
    (8, 8, 3, 3, 2, 1),  # both: the usual downsampling layer, 3×3 stride 2 pad 1, even size
    (7, 6, 2, 3, 2, 0),  # both
    (5, 5, 2, 2, 2, 0),  # both: 2×2 pooling of an odd size
    (9, 8, 3, 3, 3, 0),  # width
    (5, 6, 4, 4, 3, 1),  # width
    (6, 5, 3, 3, 2, 2),  # height
    (4, 5, 5, 5, 2, 1),  # neither: one window high; width 2
    (3, 3, 3, 3, 3, 0),  # neither: one window, the whole image
    (4, 4, 3, 2, 1, 2),  # stride 1 always tiles
    (7, 7, 3, 3, 3, 1),  # both: stride 3 = window (pooling's interleave), a row left over
]


def _floor_id(g):
    return "h{}w{}-{}x{}-s{}p{}".format(*g)


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9))
def _everything(x, W, b, c, cot_conv, cot_pool, fh, fw, stride, pad):
    """In one compiled program: im2col(x), col2im(c), and the forward and every gradient
    of conv and (zero-padded) max pooling by XLA with autodiff, the default rules and the
    book's rules."""

    def conv_and_pool(conv_fn, pool_fn):
        conv_out, conv_vjp = jax.vjp(conv_fn, x, W, b)
        pool_out, pool_vjp = jax.vjp(pool_fn, x)
        return conv_out, conv_vjp(cot_conv), pool_out, pool_vjp(cot_pool)

    rules = {
        book: conv_and_pool(
            conv.convolution_layer(stride, pad, book=book),
            conv.pooling_layer(fh, fw, stride, pad, book=book),
        )
        for book in (False, True)
    }
    xla = conv_and_pool(
        lambda x, W, b: xla_conv(x, W, b, stride, pad),
        lambda x: xla_max_pool(x, fh, fw, stride, pad),
    )
    col = conv._im2col(x, conv.geometry(x.shape, fh, fw, stride, pad))
    img = conv._col2im(c, conv.geometry(x.shape, fh, fw, stride, pad))
    return col, img, xla, rules[False], rules[True]


@pytest.mark.parametrize("geometry", FLOOR_GEOMETRIES, ids=_floor_id)
def test_floored_geometry_equals_the_books_im2col_col2im_and_xla_for_both_rules(geometry, x64):
    h, w, fh, fw, stride, pad = geometry
    # 4 channels: 3×3 and larger filters (C·FH·FW > 32) take the default rule's 2-D
    # layout, 2×2 and 2×3 its per-image layout.
    n, c, fn = 2, 4, 3
    out_h, out_w = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    rng = np.random.default_rng(sum(geometry))
    x_np = np.asarray(conv._distinct(rng, (n, c, h, w), jnp.float64))  # no ties in any window
    W = jnp.asarray(rng.standard_normal((fn, c, fh, fw)))
    b = jnp.asarray(rng.standard_normal(fn))
    c_np = rng.standard_normal((n * out_h * out_w, c * fh * fw))
    cot_conv = jnp.asarray(rng.standard_normal((n, fn, out_h, out_w)))
    cot_pool = jnp.asarray(rng.standard_normal((n, c, out_h, out_w)))
    col, img, xla, default, book = _everything(
        jnp.asarray(x_np), W, b, jnp.asarray(c_np), cot_conv, cot_pool, fh, fw, stride, pad
    )
    # im2col and col2im: the book's formulas exactly (the public functions check the
    # arguments, then run the same code as inside the program above: their shapes, traced).
    assert jax.eval_shape(lambda x: conv.im2col(x, fh, fw, stride, pad), x_np).shape == col.shape
    np.testing.assert_array_equal(col, book_im2col(x_np, fh, fw, stride, pad))
    public_img = jax.eval_shape(lambda c: conv.col2im(c, x_np.shape, fh, fw, stride, pad), c_np)
    assert public_img.shape == x_np.shape
    np.testing.assert_allclose(
        img, book_col2im(c_np, x_np.shape, fh, fw, stride, pad), 1e-14, 1e-14
    )
    # Convolution and pooling, both rules, forward and every gradient, against XLA.
    reach_h, reach_w = stride * (out_h - 1) + fh - pad, stride * (out_w - 1) + fw - pad
    for ours in (default, book):
        for a, r in zip(jax.tree.leaves(ours), jax.tree.leaves(xla), strict=True):
            assert a.shape == r.shape
            close(a, r, XLA_RTOL[jnp.float64])
        # The rows and columns that no window reaches get a zero gradient, both layers.
        for dx in (ours[1][0], ours[3][0]):
            assert not np.asarray(dx[:, :, reach_h:, :]).any()
            assert not np.asarray(dx[:, :, :, reach_w:]).any()


def test_stride_two_downsampling_of_an_even_size_has_the_floored_output_size():
    # The example: 3×3, stride 2, pad 1 on an 8×8 image gives 4×4 (PyTorch's
    # Conv2d(k=3, s=2, p=1) on 8×8 does too), not an error.
    out = conv.convolution(jnp.ones((1, 1, 8, 8)), jnp.ones((2, 1, 3, 3)), jnp.zeros(2), 2, 1)
    assert out.shape == (1, 2, 4, 4)
    assert conv.pooling(jnp.ones((1, 1, 5, 7)), 2, 2).shape == (1, 1, 2, 3)


@pytest.mark.parametrize("shape", [(0, 2, 5, 5), (2, 0, 5, 5)], ids=["empty-batch", "no-channels"])
def test_im2col_and_col2im_of_zero_size_inputs_are_empty(shape):
    col = conv.im2col(jnp.ones(shape), 3, 3, 2, 1)
    assert col.shape == (shape[0] * 9, shape[1] * 9)
    img = conv.col2im(col, shape, 3, 3, 2, 1)
    assert img.shape == shape


# --------------------------------------------------------------------------------------
# Conventions: ties, zero padding, NaN


@pytest.mark.parametrize("book", [False, True], ids=["default", "book"])
def test_pooling_sends_a_tie_to_the_first_maximum_like_numpys_argmax(book):
    x = jnp.asarray([[[[1.0, 3.0], [3.0, 3.0]]]])
    g = jax.grad(lambda x: jnp.sum(conv.pooling_layer(2, 2, 2, 0, book=book)(x)))(x)
    np.testing.assert_array_equal(g[0, 0], [[0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("book", [False, True], ids=["default", "book"])
def test_pooling_pads_with_zeros_so_an_all_negative_window_gives_zero(book):
    # One 2x2 image of negatives, pad 1, window 2x2, stride 2: every window holds three
    # padding zeros and one negative pixel, so the book's max is 0 and x gets no gradient;
    # reduce_window with XLA's −inf padding would return the pixels themselves.
    x = -jnp.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    layer = conv.pooling_layer(2, 2, 2, 1, book=book)
    np.testing.assert_array_equal(layer(x), jnp.zeros((1, 1, 2, 2)))
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(layer(x)))(x), jnp.zeros_like(x))
    neg_inf_padded = lax.reduce_window(
        x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), ((0, 0), (0, 0), (1, 1), (1, 1))
    )
    np.testing.assert_array_equal(neg_inf_padded, x)


@pytest.mark.parametrize("book", [False, True], ids=["default", "book"])
def test_pooling_propagates_nan_forward_and_routes_its_gradient_to_the_first_nan(book):
    x = jnp.asarray([[[[1.0, jnp.nan], [5.0, jnp.nan]]]])
    layer = conv.pooling_layer(2, 2, 2, 0, book=book)
    assert np.isnan(float(layer(x)[0, 0, 0, 0]))
    g = jax.grad(lambda x: jnp.sum(layer(x)))(x)
    np.testing.assert_array_equal(g[0, 0], [[0.0, 1.0], [0.0, 0.0]])


def _numpy_max_pool(x, size):
    """NumPy's max of each size × size window (stride = size, no padding): NaN wherever a
    window holds one."""
    n, c, h, w = x.shape
    oh, ow = h // size, w // size
    windows = x[:, :, : oh * size, : ow * size].reshape(n, c, oh, size, ow, size)
    return windows.max(axis=(3, 5))


@pytest.mark.parametrize("size", [2, 5], ids=["2x2", "5x5"])  # 5x5: the max reduced, not picked
@pytest.mark.parametrize("rule", ["default", "nhwc", "book"])
def test_pooling_keeps_nan_in_large_inputs_eager_jitted_and_differentiated(rule, size):
    # XLA's CPU backend runs a stand-alone max reduction on YNNPACK, which skips NaN once
    # the array is large enough (a 64×64 image: every window of the default rule's plain
    # forward came out finite); the forward must keep NaN wherever a window holds one.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    x[rng.random(x.shape) < 0.02] = np.nan
    want = _numpy_max_pool(x, size)
    assert np.isnan(want).any() and not np.isnan(want).all()
    if rule == "nhwc":
        layer = conv.pooling_nhwc_layer(size, size, size, 0)
        xs = jnp.asarray(x.transpose(0, 2, 3, 1))
        want = want.transpose(0, 2, 3, 1)
    else:
        layer = conv.pooling_layer(size, size, size, 0, book=rule == "book")
        xs = jnp.asarray(x)
    for got in (layer(xs), jax.jit(layer)(xs), jax.vjp(layer, xs)[0]):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_max_keeping_nan_agrees_with_numpy_where_jnp_max_loses_nan():
    from funcnet._reduce import max_keeping_nan

    a = np.ones((4096, 4), np.float32)
    a[::3, 1] = np.nan
    for axis in (-1, 0, None, (0, 1)):
        want = np.max(a, axis=axis)
        np.testing.assert_array_equal(np.asarray(max_keeping_nan(jnp.asarray(a), axis)), want)
        jitted = jax.jit(lambda v, axis=axis: max_keeping_nan(v, axis))(jnp.asarray(a))
        np.testing.assert_array_equal(np.asarray(jitted), want)
    ints = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(np.asarray(max_keeping_nan(jnp.asarray(ints), 1)), [3, 7, 11])


@pytest.mark.parametrize("book", [False, True], ids=["default", "book"])
def test_convolution_propagates_nan_forward_and_backward(book):
    x = jnp.ones((1, 1, 4, 4)).at[0, 0, 1, 1].set(jnp.nan)
    W, b = jnp.ones((2, 1, 3, 3)), jnp.zeros(2)
    layer = conv.convolution_layer(1, 0, book=book)
    assert np.isnan(np.asarray(layer(x, W, b))).all()  # every window covers pixel (1, 1)
    dW = jax.grad(lambda W: jnp.sum(layer(x, W, b)))(W)
    assert np.isnan(np.asarray(dW)).any()
    dx = jax.grad(lambda x: jnp.sum(layer(x, W, b) * jnp.nan))(jnp.ones((1, 1, 4, 4)))
    assert np.isnan(np.asarray(dx)).all()


def test_first_layer_gradient_with_respect_to_weights_only_compiles_without_col2im():
    # The first conv layer's input is data: XLA drops the unused dx (no pad/add chain).
    x, W, b = jnp.ones((2, 1, 8, 8)), jnp.ones((3, 1, 3, 3)), jnp.zeros(3)
    hlo = (
        jax.jit(jax.grad(lambda W: jnp.sum(conv.convolution(x, W, b)))).lower(W).compile().as_text()
    )
    grad_both = (
        jax.jit(jax.grad(lambda x, W: jnp.sum(conv.convolution(x, W, b)), (0, 1)))
        .lower(x, W)
        .compile()
        .as_text()
    )
    assert hlo.count(" pad(") < grad_both.count(" pad(")


# --------------------------------------------------------------------------------------
# Errors


def test_convolution_names_both_shapes_on_a_channel_mismatch():
    with pytest.raises(
        ValueError, match=r"x has 3 channels but W expects 1; x \(2, 3, 8, 8\), W \(4, 1, 3, 3\)"
    ):
        conv.convolution(jnp.ones((2, 3, 8, 8)), jnp.ones((4, 1, 3, 3)), jnp.ones(4))


@pytest.mark.parametrize(
    "fn", [conv.convolution, conv.convolution_book, conv.convolution_nhwc], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("w_shape", [(2, 1, 0, 3), (2, 1, 3, 0)])
def test_convolution_rejects_a_filter_of_zero_height_or_width(fn, w_shape):
    """Every rule names the empty filter (it used to pass the checks and fail inside
    im2col with "need at least one array to stack")."""
    with pytest.raises(ValueError, match=r"W's filters must be at least 1×1, got \d×\d; W \("):
        fn(jnp.ones((1, 1, 4, 4)), jnp.ones(w_shape), jnp.ones(2))


def test_convolution_rejects_a_filter_larger_than_the_padded_input():
    with pytest.raises(
        ValueError,
        match=r"convolution: the height of W \(2, 1, 7, 3\) \(7\) exceeds the padded "
        r"input's \(4 \+ 2·1 = 6\); x \(1, 1, 4, 4\)",
    ):
        conv.convolution(jnp.ones((1, 1, 4, 4)), jnp.ones((2, 1, 7, 3)), jnp.ones(2), 1, 1)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: conv.convolution(jnp.ones((1, 8, 8)), jnp.ones((2, 1, 3, 3)), jnp.ones(2)),
            ValueError,
            r"convolution: x must be 4-D \(N, C, H, W\), got x \(1, 8, 8\)",
        ),
        (
            lambda: conv.convolution(jnp.ones((1, 1, 8, 8)), jnp.ones((2, 1, 3, 3)), jnp.ones(3)),
            ValueError,
            r"b must have shape \(2,\), one bias per filter; b \(3,\)",
        ),
        (
            lambda: conv.convolution(
                jnp.ones((1, 1, 8, 8)), jnp.ones((2, 1, 3, 3)), jnp.ones(2), 1.0
            ),
            TypeError,
            r"convolution: stride must be an integer, got float 1.0",
        ),
        (
            lambda: conv.convolution(
                jnp.ones((1, 1, 8, 8)), jnp.ones((2, 1, 3, 3)), jnp.ones(2), 1, -1
            ),
            ValueError,
            r"convolution: pad must be an integer >= 0, got -1",
        ),
        (
            lambda: conv.convolution(
                jnp.ones((1, 1, 8, 8), int), jnp.ones((2, 1, 3, 3)), jnp.ones(2)
            ),
            TypeError,
            r"convolution: x must be floating point, got int",
        ),
        (
            lambda: conv.convolution(jnp.ones((0, 1, 8, 8)), jnp.ones((2, 1, 3, 3)), jnp.ones(2)),
            ValueError,
            r"x holds an empty batch",
        ),
        (
            lambda: conv.convolution(jnp.ones((2, 1, 8, 8)), jnp.ones((0, 1, 3, 3)), jnp.ones(0)),
            ValueError,
            r"convolution: W has no filters \(FN = 0\), W \(0, 1, 3, 3\)",
        ),
        (
            lambda: conv.convolution_book(
                jnp.ones((2, 0, 8, 8)), jnp.ones((3, 0, 3, 3)), jnp.ones(3)
            ),
            ValueError,
            r"convolution_book: x has no channels \(C = 0\), x \(2, 0, 8, 8\)",
        ),
        (
            lambda: conv.pooling_book(jnp.ones((0, 2, 4, 4)), 2, 2),
            ValueError,
            r"pooling_book: x holds an empty batch, x \(0, 2, 4, 4\)",
        ),
        (
            lambda: conv.pooling(jnp.ones((1, 1, 4, 4)), 0, 2),
            ValueError,
            r"pooling: pool_h must be an integer >= 1, got 0",
        ),
        (
            lambda: conv.im2col(jnp.ones((1, 1, 4, 4)), 5, 3),
            ValueError,
            r"im2col: the height of filter 5×3 \(5\) exceeds the padded input's",
        ),
    ],
    ids=[
        "x-3d",
        "b-shape",
        "float-stride",
        "negative-pad",
        "int-x",
        "empty",
        "no-filters",
        "no-channels",
        "pool-empty",
        "pool-0",
        "im2col",
    ],  # fmt: skip
)
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_layers_work_under_jit_with_traced_inputs():
    x, W, b = jnp.ones((2, 1, 6, 6)), jnp.ones((3, 1, 3, 3)), jnp.zeros(3)
    out = jax.jit(lambda x, W, b: conv.pooling(conv.convolution(x, W, b), 2, 2))(x, W, b)
    np.testing.assert_array_equal(out, jnp.full((2, 3, 2, 2), 9.0))
