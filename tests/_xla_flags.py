"""XLA's cheaper CPU compilation, for the test run only (tests/conftest.py applies it).

The suite compiles thousands of small programs and spends most of its time compiling
them: without LLVM's optimisations and with XLA's older elemental fusion emitters, a small
program compiles about 3× faster (a layer's gradient: 90 -> 24 ms on average over the
layer registry) and the suite takes about 40% less CPU time. The programs compute the same
operations, but results can differ from the default compilation in the last bits (over
the main job's 10,000 steps, a test accuracy of 0.931 instead of 0.930): the tests that
check a figure the README quotes run that program as a user does, in a process without
these flags (:func:`user_environment`).

Not used when an accelerator plugin is installed (the flags would slow its compilation
down) or when ``FUNCNET_TEST_XLA_DEFAULTS=1``. Set before JAX starts and inherited by every
process the tests start (notebook kernels, the experiments' command lines).
"""

from __future__ import annotations

import importlib.metadata
import os

FAST_COMPILE_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)


def _accelerator_plugin_installed() -> bool:
    names = (d.metadata["Name"] or "" for d in importlib.metadata.distributions())
    prefixes = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu")
    return any(n.lower().startswith(prefixes) for n in names)


def use_fast_compile_flags() -> bool:
    """Append :data:`FAST_COMPILE_FLAGS` to ``XLA_FLAGS`` in this process's environment
    (before JAX starts its backend). Returns whether they are used."""
    if os.environ.get("FUNCNET_TEST_XLA_DEFAULTS") == "1":
        return False
    if os.environ.get("JAX_PLATFORMS", "").lower() != "cpu" and _accelerator_plugin_installed():
        return False
    flags = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join([*flags, *(f for f in FAST_COMPILE_FLAGS if f not in flags)])
    return True


def user_environment() -> dict[str, str]:
    """This process's environment without :data:`FAST_COMPILE_FLAGS`: what a program
    started by a user would get."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if f not in FAST_COMPILE_FLAGS]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    return env
