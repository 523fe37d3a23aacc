"""A NaN or infinite weight gives the outputs the book's rule gives: im2col multiplies the
zero padding by every weight (0·NaN = 0·inf = NaN), while XLA's and oneDNN's convolutions,
which the default rule runs on, skip the padding and gave finite border outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import conv


def _cases():
    for dtype in ("float32", "float64"):
        for pad in (1, 2):
            for bad in (np.nan, np.inf, -np.inf):
                for tap in ((0, 0, 0, 0), (1, 3, 2, 1), (0, 2, 1, 1)):
                    yield dtype, pad, bad, tap


def _default_nchw(x, W, b, pad):
    return conv.convolution(x, W, b, 1, pad)


def _default_nhwc(x, W, b, pad):
    out = conv.convolution_nhwc(x.transpose(0, 2, 3, 1), W, b, 1, pad)
    return out.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("layer", [_default_nchw, _default_nhwc])
@pytest.mark.parametrize("dtype, pad, bad, tap", list(_cases()))
def test_nonfinite_weights_give_the_books_outputs(layer, dtype, pad, bad, tap, x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 4, 6, 5)), dtype)  # C·FH·FW = 36: XLA's path
    W = jnp.asarray(rng.standard_normal((3, 4, 3, 3)), dtype).at[tap].set(bad)
    b = jnp.asarray(rng.standard_normal(3), dtype)
    dout = jnp.asarray(rng.standard_normal((2, 3, 4 + 2 * pad, 3 + 2 * pad)), dtype)
    out, pullback = jax.vjp(lambda x, W, b: layer(x, W, b, pad), x, W, b)
    book, book_pullback = jax.vjp(lambda x, W, b: conv.convolution_book(x, W, b, 1, pad), x, W, b)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(book))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(book))
    # The gradients are never finite where the book's are not (XLA's transposed
    # convolution also multiplies dout's padding by the weights, so dx can hold NaN at
    # pixels where the book's col2im adds no such term).
    for got, want in zip(pullback(dout), book_pullback(dout), strict=True):
        assert not np.any(np.isfinite(got) & ~np.isfinite(want))


def test_finite_weights_are_untouched():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 4, 6, 5)), jnp.float32)
    W = jnp.asarray(rng.standard_normal((3, 4, 3, 3)), jnp.float32)
    b = jnp.zeros(3, jnp.float32)
    assert conv._padding_times_weights(W, (6, 5), 1, jnp.float32).shape == (6, 5, 3)
    assert not np.any(conv._padding_times_weights(W, (6, 5), 1, jnp.float32))
    np.testing.assert_allclose(
        conv.convolution(x, W, b, 1, 1), conv.convolution_book(x, W, b, 1, 1), rtol=1e-5, atol=1e-5
    )


NONFINITE_BORDER = """
import jax, jax.numpy as jnp, numpy as np
from funcnet import conv
jax.config.update("jax_enable_x64", True)
for dtype in ("float32", "float64"):
    x = jnp.ones((1, 4, 5, 5), dtype)
    for bad in (np.nan, np.inf):
        W = jnp.ones((2, 4, 3, 3), dtype).at[0, 0, 0, 0].set(bad)
        b = jnp.zeros(2, dtype)
        got = np.isfinite(conv.convolution(x, W, b, 1, 1)).sum()
        want = np.isfinite(conv.convolution_book(x, W, b, 1, 1)).sum()
        print(dtype, bad, got, want)
        assert got == want == 25, (dtype, bad, got, want)  # filter 1 only: 25 finite
"""


def test_nonfinite_weights_at_the_border_as_programs_compile_outside_the_tests():
    # The suite compiles with XLA's cheaper passes (tests/_xla_flags.py) and its
    # persistent cache (so XLA's kernels, not oneDNN's): there the padding happens to be
    # multiplied too. A fresh process compiles as a user's program does.
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")
    }
    child = subprocess.run(
        [sys.executable, "-c", NONFINITE_BORDER], cwd=Path(__file__).resolve().parents[1],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == 0, child.stdout + child.stderr
