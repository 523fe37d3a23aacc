"""Shared fixtures: float64 is enabled per test, never globally."""

import shutil
import tempfile

from _xla_flags import use_fast_compile_flags

use_fast_compile_flags()  # XLA's cheaper CPU compilation for the test run: see the module

import jax  # noqa: E402  (after XLA_FLAGS: XLA reads it when JAX starts its backend)
import pytest  # noqa: E402

# GPUs (TF32) and TPUs (bf16 passes) lower float32 matmul precision by default; gradient
# comparisons need full precision wherever the suite runs.
jax.config.update("jax_default_matmul_precision", "highest")

# The longest tests (node-id prefixes; the notebooks take 3-67 CPU-s each, the next longest
# test 30) go to the xdist workers first, so that no worker is left running one of them
# alone at the end of the run.
LONGEST_FIRST = ("tests/test_notebooks.py::test_notebook_runs_top_to_bottom_with_a_jupyter_kernel",)


_CACHE_FOLDER = pytest.StashKey[str]()


def pytest_configure(config):
    """Each test process keeps the programs it compiles in a persistent compilation cache
    of its own, removed when it ends. Many tests compile the same program (the same layer
    at the same shapes, wrapped in a new function, which JAX's in-memory cache does not
    recognise); a cache hit skips XLA's compilation, about half of a small test's time
    (the suite takes about a fifth less CPU time). One folder per process: no two
    processes ever read and write one entry at once."""
    folder = tempfile.mkdtemp(prefix="funcnet-test-jax-cache-")
    config.stash[_CACHE_FOLDER] = folder
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config):
    folder = config.stash.get(_CACHE_FOLDER, None)
    if folder is not None:
        jax.config.update("jax_compilation_cache_dir", None)
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(items):
    """The longest tests first (a stable sort: the others keep their order)."""
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (jax_enable_x64), restored afterwards."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def _release_output_folders():
    """A test that calls an experiment's ``main`` directly holds its output folder's lock
    (``experiments._common.claim``) until the claims are released, as ``_common.run``
    does when ``main`` returns: release them after each test, so that a later test (or a
    process it starts) may write into the same folder."""
    yield
    import sys

    common = sys.modules.get("experiments._common")
    if common is not None and hasattr(common, "release_claims"):
        common.release_claims()
