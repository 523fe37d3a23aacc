"""Shared fixtures: float64 is enabled per test, never globally."""

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (jax_enable_x64), restored afterwards."""
    with jax.enable_x64(True):
        yield
