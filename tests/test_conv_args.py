"""col2im's input_shape and integers too large for JAX's int32 indices get clear errors."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from funcnet import _checks, conv


@pytest.mark.parametrize(
    "shape, error, message",
    [
        ((2.0, 3, 5, 5), TypeError, r"input_shape\[0\] \(N\) must be an integer, got float"),
        ((-1, 3, 5, 5), ValueError, r"input_shape\[0\] \(N\) must be an integer >= 0, got -1"),
        ((2, -3, 5, 5), ValueError, r"input_shape\[1\] \(C\) must be an integer >= 0"),
        (5, TypeError, r"input_shape must be \(N, C, H, W\), got 5"),
        ((2, 3, 5), TypeError, r"input_shape must be \(N, C, H, W\)"),
        ("2355", TypeError, r"input_shape must be \(N, C, H, W\)"),
    ],
)
def test_col2im_names_a_bad_input_shape(shape, error, message):
    with pytest.raises(error, match=f"col2im: {message}"):
        conv.col2im(jnp.ones((18, 27)), shape, 3, 3)


@pytest.mark.parametrize("stride", [2**31, 2**63, 2**70])
def test_a_stride_beyond_int32_is_named(stride):
    x, W, b = jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), jnp.zeros(1)
    with pytest.raises(ValueError, match="convolution: stride must be at most 2,147,483,647"):
        conv.convolution(x, W, b, stride, 0)
    with pytest.raises(ValueError, match="pooling: stride must be at most"):
        conv.pooling(x, 2, 2, stride, 0)
    assert _checks.check_int("f", "n", _checks.INT32_MAX) == _checks.INT32_MAX
