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

from funcnet import conv
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
]


def _layout(w_shape, stride: int, pad: int) -> str:
    if conv._uses_xla_conv(w_shape, stride, pad):
        return "xla"
    return "per-image" if conv._per_image_layout(w_shape) else "2-d"


@pytest.mark.parametrize("x_shape, w_shape, stride, pad, layout", CASES)
def test_default_convolution_layouts_equal_the_books_rule_in_float64(
    x_shape, w_shape, stride, pad, layout
):
    assert _layout(w_shape, stride, pad) == layout
    with jax.enable_x64(True):
        rng = np.random.default_rng(sum(x_shape) + 7 * pad)
        x = jnp.asarray(rng.standard_normal(x_shape))
        W = jnp.asarray(rng.standard_normal(w_shape))
        b = jnp.asarray(rng.standard_normal(w_shape[:1]))

        @jax.jit
        def both(x, W, b, g):
            out, vjp = jax.vjp(lambda *a: conv.convolution(*a, stride, pad), x, W, b)
            ref, vjp_ref = jax.vjp(lambda *a: conv.convolution_book(*a, stride, pad), x, W, b)
            return (out, *vjp(g)), (ref, *vjp_ref(g))

        out_shape = jax.eval_shape(lambda: conv.convolution_book(x, W, b, stride, pad)).shape
        g = jnp.asarray(rng.standard_normal(out_shape))
        got, want = both(x, W, b, g)
        for name, a, e in zip(("out", "dx", "dW", "db"), got, want, strict=True):
            assert a.shape == e.shape and a.dtype == jnp.float64, name
            np.testing.assert_allclose(a, e, rtol=0, atol=1e-12, err_msg=name)


def test_deep_convnet_runs_its_later_convolutions_on_xla():
    layouts = []
    c = 1
    for filters, pad in convnet.DEEP_CONVNET_CONVS:
        layouts.append(_layout((filters, c, 3, 3), 1, pad))
        c = filters
    assert layouts == ["per-image"] + ["xla"] * 5


def test_xla_layout_keeps_nhwc_convolutions_inside_a_scan():
    """Every convolution XLA compiles for the rule's forward and backward inside a
    ``lax.scan`` has its feature axis last (``b01f``/``01io``), the layout of XLA CPU's
    Eigen convolution; NCHW operands compile to ``bf01`` loops there."""
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
