"""oneDNN's convolution kernels for funcnet's channels-last convolutions on CPU.

jaxlib's XLA links oneDNN (the library PyTorch runs its CPU convolutions on) and runs an
HLO custom call ``__onednn$convolution`` on it (its ``OneDnnOpThunk``); its own compiler
does not emit that call in the public wheels, so XLA convolves with Eigen's kernels, which
run DeepConvNet's 3×3 layers 1.1–1.7× slower than oneDNN's. :func:`conv_nhwc` emits the
call itself (``jax.ffi.ffi_call`` with the backend config XLA's oneDNN rewriter writes)
for a float32 stride-1 convolution lowered for CPU, and XLA's convolution everywhere else
(other dtypes, GPU and TPU: ``lax.platform_dependent`` picks at lowering).

The call is an XLA internal, not a documented API: a config the running XLA reads
differently can abort the process (oneDNN's error is not an exception XLA returns), so
it is used only with the jaxlib versions and machines it was verified on
(:data:`VERIFIED_JAXLIB`, x86-64), and only after :func:`available` has compiled it once
per process for a few geometries (non-square filter, unequal paddings, one channel) and
compared it with a NumPy reference (a failure warns). XLA's kernels, which compute the
same numbers up to float32 rounding, run everything else:

- a process with several devices (XLA cannot partition the call: a sharded program would
  gather every batch onto each device), or ``FUNCNET_ONEDNN=0`` in the environment (for
  ``jax.export``, which refuses a custom call without a compatibility guarantee);
- zero-size operands (which oneDNN refuses) and symbolic sizes (``jax.export``);
- functions traced while JAX's persistent compilation cache is on: this jaxlib cannot
  serialize a program holding the call (the cache write fails with ``std::bad_alloc``
  and a warning), so the cache would keep none of them.

The choice is made when a function is traced (JAX reuses a traced function's program).
:func:`kernel` says which kernels a float32 CPU convolution traced now runs on.
Where the padding meets a non-finite weight, oneDNN skips the padded taps and XLA
multiplies them (0·inf = NaN): an infinite weight gives NaN on XLA's borders and ±inf or
a finite value on oneDNN's (its inside is non-finite either way).

Its derivatives (for ``jax.jvp`` and gradients of gradients through funcnet's backward
rules) are XLA's convolutions: the call itself has none.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxlib import version as jaxlib_version

TARGET = "__onednn$convolution"
DISABLE_ENV = "FUNCNET_ONEDNN"
"""``FUNCNET_ONEDNN=0`` keeps every convolution on XLA's kernels (e.g. for ``jax.export``,
which refuses a custom call without a compatibility guarantee)."""
_X86_64 = ("x86_64", "AMD64")
VERIFIED_JAXLIB = ("0.10.2",)
"""jaxlib versions whose XLA reads :func:`_backend_config` as written here (checked on
AVX-512 x86-64; the probe checks each process too)."""
_NHWC = ("NHWC", "HWIO", "NHWC")
_PROBES = (  # (x shape NHWC, filter shape HWIO, (pad rows, pad columns))
    ((2, 6, 5, 3), (3, 2, 3, 4), (2, 0)),
    ((3, 7, 7, 1), (3, 3, 1, 5), (1, 1)),
    ((2, 5, 6, 4), (2, 3, 4, 2), (0, 2)),
)


def xla_conv_nhwc(lhs: jax.Array, rhs: jax.Array, pad: tuple[int, int]) -> jax.Array:
    """XLA's stride-1 convolution: lhs (N, H, W, C), rhs (FH, FW, C, FN), zero padding
    ``pad`` = (rows, columns) on each side -> (N, OH, OW, FN)."""
    padding = ((pad[0], pad[0]), (pad[1], pad[1]))
    return lax.conv_general_dilated(lhs, rhs, (1, 1), padding, dimension_numbers=_NHWC)


def _backend_config(rhs_shape: tuple[int, ...], pad: tuple[int, int]) -> str:
    """The ``OneDnnConvolutionConfig`` (xla/service/cpu/onednn_config.proto) of an NHWC ⋆
    HWIO -> NHWC convolution, as XLA's rewriter writes it: dimension indices as they are,
    strides and paddings as they are, dilations as XLA's (oneDNN's + 1)."""
    data = {"batch_dim": 0, "feature_dim": 3, "spatial_dims": [1, 2]}
    kernel = {"input_feature_dim": 2, "output_feature_dim": 3, "spatial_dims": [0, 1]}
    window = {
        "size": list(rhs_shape[:2]),
        "pad_left": list(pad),
        "pad_right": list(pad),
        "strides": [1, 1],
        "window_dilations": [1, 1],
    }
    config = {
        "dims": 4,
        "input": {"dims": 4, "data": data},
        "kernel": {"dims": 4, "filter": dict(kernel, shape=list(rhs_shape))},
        "output": {"dims": 4, "data": data},
        "window": window,
        "feature_groups": 1,
    }
    return json.dumps({"onednn_conv_config": config})


def _out_shape(lhs_shape, rhs_shape, pad) -> tuple[int, int, int, int]:
    n, h, w, _ = lhs_shape
    fh, fw, _, fn = rhs_shape
    return n, h + 2 * pad[0] - fh + 1, w + 2 * pad[1] - fw + 1, fn


def _onednn_call(lhs: jax.Array, rhs: jax.Array, pad: tuple[int, int]) -> jax.Array:
    # XLA's convolution's result type, inside shard_map too (its manual mesh axes)
    out = jax.eval_shape(functools.partial(xla_conv_nhwc, pad=pad), lhs, rhs)
    call = jax.ffi.ffi_call(
        TARGET,
        out,
        vmap_method="sequential",
        custom_call_api_version=2,  # a backend config string, as XLA's rewriter emits
        legacy_backend_config=_backend_config(rhs.shape, pad),
    )
    return call(lhs, rhs)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _fast_conv(lhs: jax.Array, rhs: jax.Array, pad: tuple[int, int]) -> jax.Array:
    return lax.platform_dependent(
        lhs,
        rhs,
        cpu=functools.partial(_onednn_call, pad=pad),
        default=functools.partial(xla_conv_nhwc, pad=pad),
    )


@_fast_conv.defjvp
def _fast_conv_jvp(pad, primals, tangents):
    (lhs, rhs), (dlhs, drhs) = primals, tangents
    tangent = xla_conv_nhwc(dlhs, rhs, pad) + xla_conv_nhwc(lhs, drhs, pad)
    return _fast_conv(lhs, rhs, pad), tangent


def _numpy_conv(x: np.ndarray, w: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """The reference: the convolution as a sum over the filter's taps, in float64."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad[0],) * 2, (pad[1],) * 2, (0, 0)))
    n, oh, ow, fn = _out_shape(x.shape, w.shape, pad)
    out = np.zeros((n, oh, ow, fn))
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out += xp[:, i : i + oh, j : j + ow, :] @ w[i, j].astype(np.float64)
    return out


def _probe_passes() -> bool:
    """Whether the call, compiled once for the CPU, equals the reference on every probe."""
    rng = np.random.default_rng(0)
    cases = [
        (
            rng.standard_normal(xs).astype(np.float32),
            rng.standard_normal(ws).astype(np.float32),
            pad,
        )
        for xs, ws, pad in _PROBES
    ]
    args = [a for x, w, _ in cases for a in (x, w)]

    def calls(*arrays):
        return [
            _onednn_call(arrays[2 * k], arrays[2 * k + 1], pad) for k, (*_, pad) in enumerate(cases)
        ]

    with warnings.catch_warnings():  # a persistent cache cannot store it (see kernel())
        warnings.filterwarnings("ignore", "Error writing persistent compilation cache")
        got = jax.jit(calls).lower(*args).compile()(*args)
    for (x, w, pad), out in zip(cases, got, strict=True):
        want = _numpy_conv(x, w, pad)
        if out.shape != want.shape or np.max(np.abs(np.asarray(out) - want)) > 1e-4:
            return False
    return True


@functools.cache
def available() -> bool:
    """Whether this process may run float32 CPU convolutions on oneDNN, decided once: not
    with ``FUNCNET_ONEDNN=0`` in the environment, nor on a jaxlib or machine the call was
    not verified on (:data:`VERIFIED_JAXLIB`, x86-64), nor with several devices (a sharded
    program: XLA cannot partition the call and would gather every batch onto each
    device); otherwise the call must compile and equal a NumPy reference on
    :data:`_PROBES` (a failure warns once)."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return False
    if jaxlib_version.__version__ not in VERIFIED_JAXLIB or platform.machine() not in _X86_64:
        return False
    return checked_on_one_cpu(_probe_passes, "oneDNN's convolution")


def checked_on_one_cpu(probe, what: str) -> bool:
    """Whether ``probe()`` (which compiles a call for the CPU and compares it with a
    reference) passes, run whatever the caller's context (eager values, transfers allowed,
    jit on, the CPU as default device); False without a CPU backend or with several
    devices (XLA cannot partition a custom call: a sharded program would gather every
    batch onto each device). A probe that raises or fails warns once, naming ``what``."""
    try:
        cpu = jax.devices("cpu")[0]
    except RuntimeError:  # no CPU backend in this process (JAX_PLATFORMS without cpu)
        return False
    if len(jax.devices()) > 1 or len(jax.devices("cpu")) > 1:
        return False
    try:
        with (
            jax.ensure_compile_time_eval(),
            jax.default_device(cpu),
            jax.transfer_guard("allow"),
            jax.disable_jit(False),
        ):
            passed = probe()
    except Exception as e:  # noqa: BLE001 - not in this jaxlib, another format, another ABI
        warnings.warn(f"funcnet: {what} failed its check ({e!r}); XLA's is used", stacklevel=3)
        return False
    if not passed:
        warnings.warn(f"funcnet: {what} differs from the reference; XLA's is used", stacklevel=3)
    return passed


def _persistent_cache_on() -> bool:
    """Whether JAX's persistent compilation cache is configured: this jaxlib cannot
    serialize a program holding the call (``std::bad_alloc``), so such a program would
    not be cached and each compilation would warn."""
    return bool(jax.config.jax_compilation_cache_dir)


def kernel() -> str:
    """``"onednn"`` or ``"xla"``: the kernels the forward and dx convolutions of funcnet's
    default rules (float32, stride 1) run on when a function is traced now for CPU (the
    filter gradient is :mod:`funcnet._dnnl`'s; GPU and TPU lowerings use XLA's; and so do
    functions traced while JAX's persistent compilation cache is on — a function traced
    before the cache was turned on keeps its traced program, whose compilation then
    warns that the cache cannot store it)."""
    return "onednn" if not _persistent_cache_on() and available() else "xla"


def conv_nhwc(lhs: jax.Array, rhs: jax.Array, pad: tuple[int, int]) -> jax.Array:
    """A stride-1 convolution, lhs (N, H, W, C) ⋆ rhs (FH, FW, C, FN) zero-padded by ``pad``
    = (rows, columns) on each side -> (N, OH, OW, FN): oneDNN's kernels on CPU for float32
    operands where :func:`kernel` says so, XLA's otherwise (the same numbers up to float32
    rounding)."""
    if _eligible(lhs, rhs, pad):
        return _fast_conv(lhs, rhs, (int(pad[0]), int(pad[1])))
    return xla_conv_nhwc(lhs, rhs, pad)


def _eligible(lhs, rhs, pad) -> bool:
    """float32 operands of known, non-zero sizes (oneDNN aborts the process on an empty
    one; a symbolic size, as ``jax.export`` traces, is XLA's), padding ≥ 0, and oneDNN's
    kernels in use."""
    if not (lhs.dtype == rhs.dtype == jnp.float32 and kernel() == "onednn"):
        return False
    sizes = (*lhs.shape, *rhs.shape)
    if not all(isinstance(d, int) for d in sizes) or min(pad) < 0:
        return False
    return min(sizes) > 0 and min(_out_shape(lhs.shape, rhs.shape, pad)) > 0
