"""How funcnet compiles the programs it builds itself (``fit``'s and ``fit_many``'s loops).

On CPU, a program that holds convolutions is compiled with XLA's own (Eigen) convolution
kernels instead of YNNPACK's, which this JAX's XLA uses by default: for DeepConvNet's
training step (channels-last 3×3 convolutions, their dx and dW) the Eigen kernels
measured 14% faster (one process, interleaved, quiet: 53.1 -> 45.6 ms per iteration). It
is the XLA option ``xla_cpu_experimental_ynn_fusion_type`` set to YNNPACK's matmuls only
(:data:`CONVOLUTIONS_ON_EIGEN`). Programs without convolutions (the ch5 net, and
SimpleConvNet, whose small filter runs as an im2col matmul) and other backends compile
with XLA's defaults; a JAX whose XLA does not know the option compiles everything with
its defaults. The numbers differ from YNNPACK's in float32 rounding only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

CONVOLUTIONS_ON_EIGEN = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


@functools.cache
def _option_known() -> bool:
    """Whether this JAX's XLA accepts :data:`CONVOLUTIONS_ON_EIGEN` (compiled once)."""
    try:
        jax.jit(lambda x: x + 1).lower(jnp.zeros(())).compile(dict(CONVOLUTIONS_ON_EIGEN))
    except Exception:  # noqa: BLE001 - an XLA without the option: its defaults are used
        return False
    return True


def compiler_options(lowered: Any) -> dict[str, Any] | None:
    """The options for ``lowered`` (a ``jax.stages.Lowered``): :data:`CONVOLUTIONS_ON_EIGEN`
    for a CPU program holding a convolution, else None (XLA's defaults)."""
    if jax.default_backend() != "cpu":
        return None
    if "stablehlo.convolution" not in lowered.as_text():  # the op, not a function's name
        return None
    # only now: probing the option compiles a program (the first call in a process)
    return dict(CONVOLUTIONS_ON_EIGEN) if _option_known() else None


def compile_program(fn: Callable, *args: Any) -> Callable:
    """``jax.jit(fn)`` lowered for ``args`` and compiled ahead of time with
    :func:`compiler_options`."""
    lowered = jax.jit(fn).lower(*args)
    return lowered.compile(compiler_options(lowered))
