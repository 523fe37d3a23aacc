"""funcnet._compile: the programs funcnet compiles itself (fit's loop) run their
convolutions on XLA's Eigen kernels on CPU, everything else with XLA's defaults."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from funcnet import _compile, conv

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU compiler option")


def _conv_loss(x, W):
    return jnp.sum(lax.conv_general_dilated(x, W, (1, 1), "SAME") ** 2)


@cpu_only
def test_a_program_with_a_convolution_gets_eigen_and_one_without_gets_the_defaults():
    x, W = jnp.ones((2, 3, 6, 6)), jnp.ones((4, 3, 3, 3))
    with_conv = jax.jit(jax.grad(_conv_loss, 1)).lower(x, W)
    without = jax.jit(lambda a: a @ a.T).lower(jnp.ones((4, 4)))
    assert _compile.compiler_options(with_conv) == _compile.CONVOLUTIONS_ON_EIGEN
    assert _compile.compiler_options(without) is None

    def convolution_in_name_only(a):  # a function's name is not a convolution
        return a * 2

    named = jax.jit(convolution_in_name_only).lower(jnp.ones(3))
    assert _compile.compiler_options(named) is None


def _library_convolutions(hlo: str) -> list[str]:
    """The convolutions inside library (custom, e.g. YNNPACK) fusions of compiled HLO."""
    called = set(re.findall(r"kind=kCustom, calls=%?([\w.]+)", hlo))
    found = []
    for name, body in re.findall(r"\n%?([\w.]+) [^\n]*\{\n(.*?)\n\}", hlo, re.S):
        if name in called:
            found += [line for line in body.splitlines() if " convolution(" in line]
    return found


@cpu_only
def test_compiled_convolutions_are_xla_s_own_not_library_fusions():
    # large enough that this XLA gives two of the three convolutions to YNNPACK by default
    x = jax.random.normal(jax.random.key(0), (32, 14, 14, 16))
    W, b = 0.1 * jax.random.normal(jax.random.key(1), (32, 16, 3, 3)), jnp.zeros(32)

    def loss(W):
        return jnp.sum(conv.convolution_nhwc(x, W, b, 1, 1) ** 2)

    compiled = _compile.compile_program(jax.grad(loss), W)
    hlo = compiled.as_text()
    assert " convolution(" in hlo
    assert _library_convolutions(hlo) == []
    default = jax.jit(jax.grad(loss)).lower(W).compile()
    np.testing.assert_allclose(compiled(W), default(W), rtol=1e-4, atol=1e-3)
