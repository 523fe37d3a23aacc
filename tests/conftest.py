"""Shared fixtures: float64 is enabled per test, never globally."""

import jax
import pytest

# GPUs (TF32) and TPUs (bf16 passes) lower float32 matmul precision by default; gradient
# comparisons need full precision wherever the suite runs.
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (jax_enable_x64), restored afterwards."""
    with jax.enable_x64(True):
        yield
