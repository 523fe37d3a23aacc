"""Shared fixtures: float64 is enabled per test, never globally."""

import jax
import pytest

# GPUs (TF32) and TPUs (bf16 passes) lower float32 matmul precision by default; gradient
# comparisons need full precision wherever the suite runs.
jax.config.update("jax_default_matmul_precision", "highest")

# The longest tests (node-id prefixes; the notebooks take 3-67 CPU-s each, the next longest
# test 30) go to the xdist workers first, so that no worker is left running one of them
# alone at the end of the run.
LONGEST_FIRST = ("tests/test_notebooks.py::test_notebook_runs_top_to_bottom_with_a_jupyter_kernel",)


def pytest_collection_modifyitems(items):
    """The longest tests first (a stable sort: the others keep their order)."""
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (jax_enable_x64), restored afterwards."""
    with jax.enable_x64(True):
        yield
