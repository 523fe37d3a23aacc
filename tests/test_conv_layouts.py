"""The default convolution's three layouts (XLA's NHWC convolution, the 2-D col matmul,
the per-image col) compute the book's rule: each against ``convolution_book`` in float64,
and the XLA path's operands laid out so that XLA's CPU backend keeps its fast convolution
inside a ``lax.scan`` (in NCHW it fell back to a naive loop there, 12 s per DeepConvNet
training iteration)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from funcnet import _dnnl, conv
from funcnet.nets import convnet

# (x shape, W shape, stride, pad, the layout the default rule uses)
CASES = [
    ((2, 4, 5, 6), (3, 4, 3, 3), 1, 0, "xla"),
    ((2, 4, 5, 6), (3, 4, 3, 3), 1, 1, "xla"),
    ((1, 4, 4, 5), (2, 4, 3, 3), 1, 2, "xla"),  # DeepConvNet's conv4: pad 2, grows
    ((2, 4, 6, 5), (3, 4, 2, 5), 1, 1, "xla"),  # non-square filter
    ((2, 4, 6, 6), (3, 4, 3, 3), 2, 1, "2-d"),  # stride 2 (floored)
    ((1, 4, 5, 5), (2, 4, 3, 3), 1, 3, "2-d"),  # pad >= filter
    ((2, 1, 6, 5), (3, 1, 3, 3), 1, 1, "per-image"),  # a first layer over data
    ((2, 2, 7, 6), (3, 2, 3, 3), 2, 1, "per-image"),  # small filter, stride 2 (floored)
]


def _layout(w_shape, stride: int, pad: int) -> str:
    if conv._uses_xla_conv(w_shape, stride, pad):
        return "xla"
    return "per-image" if conv._per_image_layout(w_shape) else "2-d"


def _assert_rules_agree_in_float64(x_shape, w_shape, stride, pad, seed, rule, reference):
    """``rule`` and ``reference``, each ``(x, W, b, stride, pad) -> out`` on NCHW x, give
    the same output and gradients (dx, dW, db) in float64, to 1e-12, on random inputs."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        x = jnp.asarray(rng.standard_normal(x_shape))
        W = jnp.asarray(rng.standard_normal(w_shape))
        b = jnp.asarray(rng.standard_normal(w_shape[:1]))

        def outputs(layer, x, W, b, g):
            out, vjp = jax.vjp(lambda *a: layer(*a, stride, pad), x, W, b)
            return (out, *vjp(g))

        out_shape = jax.eval_shape(lambda: conv.convolution_book(x, W, b, stride, pad)).shape
        g = jnp.asarray(rng.standard_normal(out_shape))
        both = jax.jit(lambda *a: (outputs(rule, *a), outputs(reference, *a)))
        got, want = both(x, W, b, g)
        for name, a, e in zip(("out", "dx", "dW", "db"), got, want, strict=True):
            assert a.shape == e.shape and a.dtype == jnp.float64, name
            np.testing.assert_allclose(a, e, rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("x_shape, w_shape, stride, pad, layout", CASES)
def test_default_convolution_layouts_equal_the_books_rule_in_float64(
    x_shape, w_shape, stride, pad, layout
):
    assert _layout(w_shape, stride, pad) == layout
    seed = sum(x_shape) + 7 * pad
    _assert_rules_agree_in_float64(
        x_shape, w_shape, stride, pad, seed, conv.convolution, conv.convolution_book
    )


def test_deep_convnet_runs_its_later_convolutions_on_xla():
    layouts = []
    c = 1
    for filters, pad in convnet.DEEP_CONVNET_CONVS:
        layouts.append(_layout((filters, c, 3, 3), 1, pad))
        c = filters
    assert layouts == ["per-image"] + ["xla"] * 5


def test_xla_layout_keeps_nhwc_convolutions_inside_a_scan(monkeypatch):
    """Every convolution XLA compiles for the rule's forward and backward inside a
    ``lax.scan`` has its feature axis last (``b01f``/``01io``), the layout of XLA CPU's
    Eigen convolution; NCHW operands compile to ``bf01`` loops there. (The filter
    gradients on XLA's kernel too, as without oneDNN's library: funcnet._dnnl.)"""
    monkeypatch.setattr(_dnnl, "available", lambda: False)
    jax.clear_caches()
    x = jnp.ones((2, 4, 6, 6), jnp.float32)
    W = jnp.ones((3, 4, 3, 3), jnp.float32)
    b = jnp.zeros((3,), jnp.float32)

    def steps(W):
        def body(W, _):
            dW = jax.grad(lambda W: jnp.sum(conv.convolution(x, W, b, 1, 1) ** 2))(W)
            dx = jax.grad(lambda x: jnp.sum(conv.convolution(x, W, b, 1, 1) ** 2))(x)
            return W - 1e-3 * dW + 1e-3 * jnp.sum(dx), None

        return lax.scan(body, W, None, length=2)[0]

    hlo = jax.jit(steps).lower(W).compile().as_text()
    labels = [
        line.split("dim_labels=")[1].split(",")[0]
        for line in hlo.splitlines()
        if " convolution(" in line
    ]
    assert len(labels) >= 3, hlo
    for label in labels:
        lhs_rhs, out = label.split("->")
        lhs, rhs = lhs_rhs.split("_")
        assert lhs == "b01f" and rhs == "01io" and out == "b01f", labels


# --------------------------------------------------------------------------------------
# Channels last (convolution_nhwc, pooling_nhwc): the default rules moved to (N, H, W, C)


def _nhwc(a):
    return a.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("x_shape, w_shape, stride, pad, layout", CASES)
def test_channels_last_convolution_is_the_default_rule_moved_to_nhwc(
    x_shape, w_shape, stride, pad, layout
):
    del layout  # every layout: the NHWC rule's own (XLA, small filter), NCHW's in transposes

    def channels_last(x, W, b, stride, pad):  # NCHW in and out: exact transposes around it
        return conv.convolution_nhwc(_nhwc(x), W, b, stride, pad).transpose(0, 3, 1, 2)

    seed = sum(x_shape) + 11 * pad
    _assert_rules_agree_in_float64(
        x_shape, w_shape, stride, pad, seed, channels_last, conv.convolution
    )


@pytest.mark.parametrize(
    "x_shape, window, stride, pad",
    [
        ((2, 3, 6, 8), 2, 2, 0),  # DeepConvNet's pools
        ((1, 2, 7, 7), 2, 2, 0),  # odd size: the last row and column get no gradient
        ((2, 2, 7, 7), 3, 2, 1),  # overlapping windows
        ((2, 2, 4, 7), 3, 3, 1),  # tiling the padded input
    ],
)
def test_channels_last_pooling_is_the_default_rule_moved_to_nhwc(x_shape, window, stride, pad):
    with jax.enable_x64(True):
        rng = np.random.default_rng(window + 5 * pad)
        x = jnp.asarray(rng.permutation(int(np.prod(x_shape))).reshape(x_shape) * 0.1 - 2.0)
        ref, vjp_ref = jax.vjp(lambda x: conv.pooling(x, window, window, stride, pad), x)
        out, vjp = jax.vjp(lambda x: conv.pooling_nhwc(x, window, window, stride, pad), _nhwc(x))
        g = jnp.asarray(rng.standard_normal(ref.shape))
        np.testing.assert_array_equal(out.transpose(0, 3, 1, 2), ref)
        np.testing.assert_array_equal(vjp(_nhwc(g))[0].transpose(0, 3, 1, 2), vjp_ref(g)[0])


def test_channels_last_errors_name_the_callers_nhwc_shapes():
    x = jnp.ones((2, 5, 5, 3))
    with pytest.raises(ValueError, match=r"x has 3 channels \(its last axis\) but W expects 2"):
        conv.convolution_nhwc(x, jnp.ones((4, 2, 3, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match=r"exceeds the padded input.*x \(2, 2, 2, 3\)"):
        conv.convolution_nhwc(jnp.ones((2, 2, 2, 3)), jnp.ones((4, 3, 3, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, H, W, C\)"):
        conv.pooling_nhwc(jnp.ones((2, 5, 5)), 2, 2)
    with pytest.raises(TypeError, match="x must be floating point"):
        conv.pooling_nhwc(jnp.ones((1, 4, 4, 2), jnp.int32), 2, 2)


def test_deep_convnet_keeps_its_activations_channels_last_between_layers():
    """The default DeepConvNet's training step runs no NCHW convolution or pooling: one
    transpose in (the data), one out (before the affine layer), and the same gradient as
    the book's rules on NCHW."""
    params = convnet.init_deep_convnet(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 1, 28, 28))
    t = jnp.array([3, 7])
    key = jax.random.key(2)
    jaxpr = str(jax.make_jaxpr(convnet.deep_convnet_loss)(params, x, t, key))
    assert jaxpr.count("name=convolution_nhwc") == 6 and jaxpr.count("name=pooling_nhwc") == 3
    assert jaxpr.count("name=pooling\n") + jaxpr.count("name=pooling ") == 0
    assert jaxpr.count("name=convolution\n") + jaxpr.count("name=convolution ") == 0
    got = jax.grad(convnet.deep_convnet_loss)(params, x, t, key)
    want = jax.grad(lambda p: convnet.deep_convnet_loss(p, x, t, key, book=True))(params)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-4, atol=2e-6, err_msg=k)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("w_shape", [(4, 1, 3, 3), (4, 6, 3, 3)], ids=["per-image", "xla"])
def test_channels_last_convolution_in_half_precision_sums_in_float32(dtype, w_shape):
    """The half-precision rule's outputs and gradients keep the input dtype and stay
    within half-precision rounding of the float32 rule. dout = 1/3 everywhere: db sums 512
    of them (170.6), which a running sum in float16 (spacing 0.125 above 128) or bfloat16
    (spacing 1 above 128: it stops at 128) gets wrong by far more than the tolerance."""
    rng = np.random.default_rng(5)
    x32 = jnp.asarray(rng.standard_normal((2, 16, 16, w_shape[1])), jnp.float32)
    W32 = jnp.asarray(0.3 * rng.standard_normal(w_shape), jnp.float32)
    b32 = jnp.asarray(rng.standard_normal(w_shape[:1]), jnp.float32)
    g32 = jnp.full((2, 16, 16, 4), 1 / 3, jnp.float32)

    def grads(x, W, b, g):
        out, vjp = jax.vjp(lambda *a: conv.convolution_nhwc(*a, 1, 1), x, W, b)
        return (out, *vjp(g))

    half = jax.jit(grads)(*(a.astype(dtype) for a in (x32, W32, b32, g32)))
    full = jax.jit(grads)(x32, W32, b32, g32.astype(dtype).astype(jnp.float32))
    tol = {jnp.float16: 2e-2, jnp.bfloat16: 1e-1}[dtype]
    for name, h, f in zip(("out", "dx", "dW", "db"), half, full, strict=True):
        assert h.dtype == dtype, name
        scale = float(jnp.max(jnp.abs(f)))
        np.testing.assert_allclose(
            np.asarray(h, np.float32), f, rtol=0, atol=tol * scale + 1e-3, err_msg=name
        )


@pytest.mark.parametrize("w_shape", [(3, 2, 3, 3), (3, 4, 3, 3)], ids=["per-image", "xla"])
def test_channels_last_gradients_keep_the_precision_of_dout(w_shape):
    """x and W in bfloat16, b in float32: out and dout are float32, and db = Σ dout is
    summed in float32, not after rounding dout to bfloat16 (a relative error of ~1e-3)."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, w_shape[1])), jnp.bfloat16)
    W = jnp.asarray(rng.standard_normal(w_shape), jnp.bfloat16)
    b = jnp.zeros(w_shape[:1], jnp.float32)
    out, vjp = jax.vjp(lambda *a: conv.convolution_nhwc(*a, 1, 1), x, W, b)
    g = jnp.asarray(rng.standard_normal(out.shape), jnp.float32)
    assert out.dtype == jnp.float32
    db = vjp(g)[2]
    exact = np.asarray(g, np.float64).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(db, np.float64), exact, rtol=1e-5, atol=1e-5)
