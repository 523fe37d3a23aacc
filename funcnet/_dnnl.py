"""oneDNN's backward-weights convolution: the filter gradient of funcnet's channels-last
convolutions on CPU, through an XLA FFI handler.

XLA's CPU backend has no backward-weights kernel: it computes a filter gradient as a
forward convolution (x correlated with dout over the batch) on Eigen's kernels, 2–3× slower
than the backward-weights kernels PyTorch runs (DeepConvNet's five 3×3 layers: 16.8 ms
against 7.3, alone, docs/performance.md), and oneDNN's forward kernel does no better for
that shape. The ``onednn-cpu-gomp`` wheel (oneDNN 3.2, its C API in ``libdnnl.so.3``,
GNU OpenMP threads; a dependency on Linux x86-64) has them. This module binds the C API
with ``ctypes`` and registers, per geometry, a typed XLA FFI handler (a ``ctypes``
callback: no compiler needed) that runs the primitive on the operands' own buffers:
x (N, H, W, C) and dout (N, OH, OW, FN), both read in place as oneDNN's ``nhwc``, the
result written as (FN, C, FH, FW) through a reorder from oneDNN's blocked weights layout.

The handler is Python called from XLA's threads, and it holds the GIL for the whole call
(a few milliseconds of oneDNN): a Python thread that spins meanwhile slows the steps, and
JAX's own waits release the GIL. Two consequences of Python running inside a program are
handled: XLA runs small programs on the calling thread, so a Ctrl-C could land inside the
handler on the main thread (an exception there cannot cross XLA's C frames): the SIGINT
handler installed when the first plan is made defers it until the call returns
(:func:`funcnet._ffi_abi.defer_interrupts_during_handlers`); and at exit the programs
still running are waited for (after finalization a handler could not take the GIL, and
the process would hang).

Used only where it was checked: float32 operands of known non-zero sizes lowered for CPU
(``lax.platform_dependent``: GPU and TPU lowerings keep XLA's), the library loaded and
oneDNN 3.x, one device in the process (XLA cannot partition the call), not
``FUNCNET_ONEDNN=0``, and after :func:`available` has run the handler once per process on
a few geometries (non-square filter, unequal paddings, one channel) against a NumPy
reference. Everywhere else XLA's kernel runs, the same numbers up to float32 rounding;
:func:`kernel` says which one a function traced now uses. Its derivatives (a gradient of
a gradient through the backward rule) are XLA's convolutions.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import os
import platform
import sys
import sysconfig
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet import _ffi_abi as abi
from funcnet import _onednn

DISABLE_ENV = "FUNCNET_ONEDNN"
"""``FUNCNET_ONEDNN=0`` keeps every convolution, filter gradients included, on XLA's
kernels (e.g. for ``jax.export``, which refuses a custom call without a compatibility
guarantee)."""
_SONAME = "libdnnl.so.3"
_X86_64 = ("x86_64", "AMD64")
_PROBES = (  # (x shape NHWC, dout's channels, filter (FH, FW), pad (rows, columns))
    ((2, 6, 5, 3), 4, (3, 2), (2, 0)),
    ((3, 7, 7, 1), 5, (3, 3), (1, 1)),
    ((2, 5, 6, 4), 2, (2, 3), (0, 2)),
)
# oneDNN's C API: enum values and argument indices (oneapi/dnnl/dnnl_types.h, 3.x)
_CPU, _F32, _FORMAT_ANY, _IN_ORDER = 1, 3, 1, 1
_FORWARD_TRAINING, _CONVOLUTION_DIRECT = 64, 1
_QUERY_DIFF_WEIGHTS_MD = 132
_ARG_SRC, _ARG_DST, _ARG_DIFF_DST, _ARG_DIFF_WEIGHTS = 1, 17, 145, 161
_Dims = ctypes.c_int64 * 12


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int)]


def _library_candidates() -> list[str]:
    """Where the wheel puts the library (``<prefix>/lib``: its files are wheel data), then
    the system's loader path."""
    data = Path(sysconfig.get_paths()["data"])
    found = [str(p) for p in (data / "lib" / _SONAME, Path(sys.prefix) / "lib" / _SONAME)]
    system = ctypes.util.find_library("dnnl")
    return [p for p in found if Path(p).exists()] + ([system] if system else [])


@functools.cache
def _library() -> tuple[ctypes.PyDLL | None, str]:
    """(the loaded oneDNN 3.x library, "") or (None, why not)."""
    candidates = _library_candidates()
    if not candidates:
        return None, "no libdnnl.so.3 (pip install onednn-cpu-gomp)"
    try:  # PyDLL: calls hold the GIL (see _Plan.run)
        lib = ctypes.PyDLL(candidates[0])
    except OSError as e:  # e.g. no libgomp.so.1 on this machine
        return None, f"{candidates[0]} does not load: {e}"
    lib.dnnl_version.restype = ctypes.POINTER(_Version)
    version = lib.dnnl_version().contents
    if version.major != 3:
        return None, f"{candidates[0]} is oneDNN {version.major}.{version.minor}, not 3.x"
    lib.dnnl_primitive_desc_query_md.restype = ctypes.c_void_p
    lib.dnnl_primitive_desc_query_md.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    return lib, ""


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"oneDNN {what} failed with status {status}")


class _Plan:
    """One geometry's backward-weights primitive, the reorder of its blocked result into
    (FN, C, FH, FW), the memory objects of the operands as XLA lays them out (their
    buffers set per call) and one oneDNN stream; one call at a time (the blocked result
    buffer is the plan's)."""

    def __init__(self, lib, x_shape, fn: int, filt: tuple[int, int], pad: tuple[int, int]):
        n, h, w, c = x_shape
        oh, ow = h + 2 * pad[0] - filt[0] + 1, w + 2 * pad[1] - filt[1] + 1
        self.lib = lib
        self.engine = ctypes.c_void_p()
        _check(lib.dnnl_engine_create(ctypes.byref(self.engine), _CPU, 0), "engine")
        self.src = self._md([n, c, h, w], "acdb")  # NCHW dims, NHWC memory
        self.diff_dst = self._md([n, fn, oh, ow], "acdb")
        self.result = self._md([fn, c, *filt], "abcd")
        self.pd, self.primitive = self._backward_weights(self._md([fn, c, *filt], None), pad)
        self.reorder, self.blocked = self._reorder_of_the_result()
        self.stream = ctypes.c_void_p()  # one per plan: XLA's threads have no thread-local
        _check(lib.dnnl_stream_create(ctypes.byref(self.stream), self.engine, _IN_ORDER), "stream")
        self.memories = [self._memory(md) for md in (self.src, self.diff_dst, self.result)]
        x, dout, out = self.memories
        self.args = (_ExecArg * 3)(
            _ExecArg(_ARG_SRC, x),
            _ExecArg(_ARG_DIFF_DST, dout),
            _ExecArg(_ARG_DIFF_WEIGHTS, self.blocked),
        )
        self.rargs = (_ExecArg * 2)(_ExecArg(_ARG_SRC, self.blocked), _ExecArg(_ARG_DST, out))
        self.lock = threading.Lock()
        self.shapes = ((n, h, w, c), (n, oh, ow, fn), (fn, c, *filt))

    def _backward_weights(self, any_weights, pad) -> tuple[ctypes.c_void_p, ctypes.c_void_p]:
        """The primitive descriptor and primitive, the weights in the layout oneDNN picks
        (with plain (FN, C, FH, FW) weights it picks its GEMM kernel: conv2 8.05 ms against
        1.87 with its blocked layout and a reorder)."""
        lib = self.lib
        strides, dilations, padding = _Dims(1, 1), _Dims(0, 0), _Dims(*pad)
        fwd, pd, primitive = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        _check(
            lib.dnnl_convolution_forward_primitive_desc_create(
                ctypes.byref(fwd), self.engine, _FORWARD_TRAINING, _CONVOLUTION_DIRECT,
                self.src, any_weights, None, self.diff_dst, strides, dilations, padding,
                padding, None,
            ),
            "forward primitive descriptor (the backward's hint)",
        )  # fmt: skip
        _check(
            lib.dnnl_convolution_backward_weights_primitive_desc_create(
                ctypes.byref(pd), self.engine, _CONVOLUTION_DIRECT, self.src, any_weights,
                None, self.diff_dst, strides, dilations, padding, padding, fwd, None,
            ),
            "backward-weights primitive descriptor",
        )  # fmt: skip
        _check(lib.dnnl_primitive_create(ctypes.byref(primitive), pd), "primitive")
        return pd, primitive

    def _reorder_of_the_result(self) -> tuple[ctypes.c_void_p, ctypes.c_void_p]:
        """The reorder from the primitive's blocked weights to (FN, C, FH, FW), and the
        blocked buffer (allocated and owned by oneDNN)."""
        lib = self.lib
        blocked_md = ctypes.c_void_p(
            lib.dnnl_primitive_desc_query_md(self.pd, _QUERY_DIFF_WEIGHTS_MD, 0)
        )
        reorder_pd, reorder = ctypes.c_void_p(), ctypes.c_void_p()
        _check(
            lib.dnnl_reorder_primitive_desc_create(
                ctypes.byref(reorder_pd), blocked_md, self.engine, self.result, self.engine, None
            ),
            "reorder primitive descriptor",
        )
        _check(lib.dnnl_primitive_create(ctypes.byref(reorder), reorder_pd), "reorder")
        blocked = ctypes.c_void_p()
        allocate = ctypes.c_void_p(ctypes.c_size_t(-1).value)  # DNNL_MEMORY_ALLOCATE
        _check(
            lib.dnnl_memory_create(ctypes.byref(blocked), blocked_md, self.engine, allocate),
            "memory",
        )
        return reorder, blocked

    def _memory(self, md) -> ctypes.c_void_p:
        """A memory object of ``md`` without a buffer yet (DNNL_MEMORY_NONE)."""
        memory = ctypes.c_void_p()
        _check(self.lib.dnnl_memory_create(ctypes.byref(memory), md, self.engine, None), "memory")
        return memory

    def _md(self, dims, tag: str | None) -> ctypes.c_void_p:
        md, d = ctypes.c_void_p(), _Dims(*dims)
        if tag is None:
            status = self.lib.dnnl_memory_desc_create_with_tag(
                ctypes.byref(md), len(dims), d, _F32, _FORMAT_ANY
            )
        else:
            status = self.lib.dnnl_memory_desc_create_with_string_tag(
                ctypes.byref(md), len(dims), d, _F32, tag.encode()
            )
        _check(status, "memory descriptor")
        return md

    def run(self, x_ptr: int, dout_ptr: int, out_ptr: int) -> None:
        """dW into ``out_ptr`` from the buffers at ``x_ptr`` and ``dout_ptr``, one call at
        a time. The calls hold the GIL (the library is opened as ``PyDLL``): the handler
        then takes the GIL once per call, where releasing it around each foreign call made
        a busy Python thread cost up to a switch interval (5 ms) each time."""
        lib = self.lib
        with self.lock:
            for memory, ptr in zip(self.memories, (x_ptr, dout_ptr, out_ptr), strict=True):
                _check(lib.dnnl_memory_set_data_handle(memory, ctypes.c_void_p(ptr)), "memory")
            _check(lib.dnnl_primitive_execute(self.primitive, self.stream, 3, self.args), "run")
            _check(lib.dnnl_primitive_execute(self.reorder, self.stream, 2, self.rargs), "reorder")
            _check(lib.dnnl_stream_wait(self.stream), "stream wait")


_TARGETS: dict[tuple, tuple[str, _Plan, object]] = {}
_TARGETS_LOCK = threading.Lock()


def _target(x_shape, fn: int, filt: tuple[int, int], pad: tuple[int, int]) -> str:
    """The FFI target name of this geometry's handler, registered with XLA on first use."""
    key = (tuple(x_shape), fn, filt, pad)
    with _TARGETS_LOCK:
        if key not in _TARGETS:
            lib, why = _library()
            if lib is None:
                raise RuntimeError(f"oneDNN is not available: {why}")
            if not _TARGETS:
                atexit.register(_finish_running_programs)
            abi.defer_interrupts_during_handlers()
            plan = _Plan(lib, x_shape, fn, filt, pad)
            name = "funcnet_dnnl_filter_grad_" + "_".join(
                str(v) for v in (*x_shape, fn, *filt, *pad)
            )
            handler = abi.handler(functools.partial(_execute, plan), name)
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(handler), platform="cpu")
            _TARGETS[key] = (name, plan, handler)  # the handler must outlive every program
        return _TARGETS[key][0]


def _finish_running_programs() -> None:
    """At exit, wait for the programs still running (a script that ends, or fails, right
    after dispatching a step): once the interpreter finalizes, a handler's thread can no
    longer take the GIL, and the process would hang joining XLA's threads."""
    for array in jax.live_arrays():
        try:
            array.block_until_ready()
        except Exception:  # noqa: BLE001, S112 - deleted or failed: nothing left to wait for
            continue


def _execute(plan: _Plan, args: list[abi.Buffer], rets: list[abi.Buffer]) -> None:
    want = plan.shapes
    got = tuple(b.shape for b in (*args, *rets))
    if len(args) != 2 or len(rets) != 1 or got != want or not all(b.is_f32 for b in (*args, *rets)):
        raise ValueError(f"buffers {got} do not match the plan's float32 {want}")
    plan.run(args[0].data, args[1].data, rets[0].data)


def _ffi_filter_grad(
    x: jax.Array, d: jax.Array, filt: tuple[int, int], pad: tuple[int, int]
) -> jax.Array:
    name = _target(x.shape, d.shape[-1], filt, pad)
    # XLA's convolution's result type, inside shard_map too (its manual mesh axes)
    out = jax.eval_shape(functools.partial(xla_filter_grad, filt=filt, pad=pad), x, d)
    return jax.ffi.ffi_call(name, out, vmap_method="sequential")(x, d)


def xla_filter_grad(
    x: jax.Array, d: jax.Array, filt: tuple[int, int], pad: tuple[int, int]
) -> jax.Array:
    """dW (FN, C, FH, FW) = x (N, H, W, C), zero-padded by ``pad`` = (rows, columns),
    correlated with dout (N, OH, OW, FN) over the batch: XLA's convolution with the batch
    as the contracted feature axis (the C axis as its batch)."""
    dims = ("NHWC", "HWIO", "NHWC")
    padding = ((pad[0], pad[0]), (pad[1], pad[1]))
    lhs, rhs = x.transpose(3, 1, 2, 0), d.transpose(1, 2, 0, 3)  # (C, H, W, N), (OH, OW, N, FN)
    _check_geometry(x.shape, d.shape, filt, pad)
    dW = lax.conv_general_dilated(lhs, rhs, (1, 1), padding, dimension_numbers=dims)
    return dW.transpose(3, 0, 1, 2)


def _check_geometry(x_shape, d_shape, filt, pad) -> None:
    """dout's (N, OH, OW) must be x's batch and the stride-1 output size of ``filt`` over
    x padded by ``pad``."""
    n, h, w, _ = x_shape
    want = (n, h + 2 * pad[0] - filt[0] + 1, w + 2 * pad[1] - filt[1] + 1)
    if len(d_shape) != 4 or tuple(d_shape[:3]) != want:
        raise ValueError(
            f"filter gradient: dout has shape {tuple(d_shape)}, expected (N, OH, OW) = {want} "
            f"for x {tuple(x_shape)}, filter {filt} and padding {pad}"
        )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _fast_filter_grad(x, d, filt, pad):
    return lax.platform_dependent(
        x,
        d,
        cpu=functools.partial(_onednn_filter_grad, filt=filt, pad=pad),
        default=functools.partial(xla_filter_grad, filt=filt, pad=pad),
    )


def _onednn_filter_grad(x, d, filt, pad):
    return _ffi_filter_grad(x, d, filt, pad) + _padding_times_dout(d, x.shape[1:3], filt, pad)


def taps_reading_padding(
    out_hw: tuple[int, int], filt: tuple[int, int], image_hw: tuple[int, int], pad
) -> tuple[np.ndarray, np.ndarray]:
    """Which taps of a stride-1 window read the zero padding: (OH, FH) booleans for tap row
    i at output row h (a padded row), (OW, FW) for tap column j at output column w; ``pad``
    is (rows, columns) or one int for both. A tap reads padding where either is true."""
    pad_h, pad_w = (pad, pad) if np.ndim(pad) == 0 else pad
    rows = np.arange(out_hw[0])[:, None] + np.arange(filt[0])[None, :] - pad_h  # input row
    cols = np.arange(out_hw[1])[:, None] + np.arange(filt[1])[None, :] - pad_w
    return (rows < 0) | (rows >= image_hw[0]), (cols < 0) | (cols >= image_hw[1])


def _padding_times_dout(d: jax.Array, image_hw, filt, pad) -> jax.Array:
    """What the zero padding adds to dW in the book's rule (col's padding zeros times
    dout): 0, or NaN at each filter's taps that read padding at a position where dout is
    NaN or infinite (0·NaN = 0·inf = NaN). oneDNN skips the padding, so without this such
    taps came out finite. (FN, 1, FH, FW), or () without padding. A tap reads padding
    through a padded row or a padded column, so only dout's first and last ``pad`` rows
    and columns are read."""
    if pad == (0, 0):
        return jnp.zeros((), d.dtype)
    _, oh, ow, _ = d.shape
    row_out, col_out = taps_reading_padding((oh, ow), filt, image_hw, pad)
    pr, pc = min(pad[0], oh), min(pad[1], ow)  # the rows (columns) whose windows reach padding
    edge_rows = jnp.concatenate([d[:, :pr], d[:, oh - pr :]], axis=1)
    edge_cols = jnp.concatenate([d[:, :, :pc], d[:, :, ow - pc :]], axis=2)
    reads_row = np.concatenate([row_out[:pr], row_out[oh - pr :]]).astype(np.float32)
    reads_col = np.concatenate([col_out[:pc], col_out[ow - pc :]]).astype(np.float32)
    bad_rows = (~jnp.isfinite(edge_rows)).any(0).astype(jnp.float32)  # (2·pr, OW, FN)
    bad_cols = (~jnp.isfinite(edge_cols)).any(0).astype(jnp.float32)  # (OH, 2·pc, FN)
    by_row = jnp.einsum("rwf,ri->fi", bad_rows, reads_row, precision=lax.Precision.HIGHEST)
    by_col = jnp.einsum("hcf,cj->fj", bad_cols, reads_col, precision=lax.Precision.HIGHEST)
    hits = by_row[:, :, None] + by_col[:, None, :]  # (FN, FH, FW)
    return jnp.where(hits > 0, jnp.nan, 0.0).astype(d.dtype)[:, None]


@_fast_filter_grad.defjvp
def _fast_filter_grad_jvp(filt, pad, primals, tangents):
    (x, d), (dx, dd) = primals, tangents  # bilinear in (x, d)
    tangent = xla_filter_grad(dx, d, filt, pad) + xla_filter_grad(x, dd, filt, pad)
    return _fast_filter_grad(x, d, filt, pad), tangent


def _numpy_filter_grad(x: np.ndarray, d: np.ndarray, filt, pad) -> np.ndarray:
    """The reference in float64: Σ over the batch and positions of each tap's products."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad[0],) * 2, (pad[1],) * 2, (0, 0)))
    _, oh, ow, fn = d.shape
    out = np.zeros((fn, x.shape[-1], *filt))
    for i in range(filt[0]):
        for j in range(filt[1]):
            window = xp[:, i : i + oh, j : j + ow, :]
            out[:, :, i, j] = np.einsum("nhwc,nhwf->fc", window, d.astype(np.float64))
    return out


def _probe_passes() -> bool:
    """Whether the handler, compiled once for the CPU, equals the reference on each probe."""
    rng = np.random.default_rng(0)
    for x_shape, fn, filt, pad in _PROBES:
        n, h, w, _ = x_shape
        d_shape = (n, h + 2 * pad[0] - filt[0] + 1, w + 2 * pad[1] - filt[1] + 1, fn)
        x = rng.standard_normal(x_shape).astype(np.float32)
        d = rng.standard_normal(d_shape).astype(np.float32)
        call = functools.partial(_ffi_filter_grad, filt=filt, pad=pad)
        got = np.asarray(jax.jit(call).lower(x, d).compile()(x, d))
        want = _numpy_filter_grad(x, d, filt, pad)
        tolerance = 1e-4 * max(1.0, np.abs(want).max())  # float32 sums of a few terms
        if got.shape != want.shape or np.max(np.abs(got - want)) > tolerance:
            return False
    return True


@functools.cache
def available() -> bool:
    """Whether this process may run float32 CPU filter gradients on oneDNN, decided once:
    not with ``FUNCNET_ONEDNN=0``, nor off x86-64, nor with several devices (XLA cannot
    partition the call), nor without the library (a library that is installed but does not
    load warns once); otherwise the handler must equal a NumPy reference on
    :data:`_PROBES` (a failure warns once)."""
    if os.environ.get(DISABLE_ENV, "1") == "0" or platform.machine() not in _X86_64:
        return False
    lib, why = _library()
    if lib is None:
        if _library_candidates():
            warnings.warn(f"funcnet: oneDNN's filter gradient is not used: {why}", stacklevel=2)
        return False
    return _onednn.checked_on_one_cpu(_probe_passes, "oneDNN's filter gradient")


def kernel() -> str:
    """``"onednn"`` or ``"xla"``: the kernel the filter gradients of funcnet's default
    convolution rules (float32, stride 1, channels last) run on when a function is traced
    now for CPU (GPU and TPU lowerings use XLA's)."""
    return "onednn" if available() else "xla"


def filter_grad(
    x: jax.Array, d: jax.Array, filt: tuple[int, int], pad: tuple[int, int]
) -> jax.Array:
    """dW (FN, C, FH, FW) of a stride-1 convolution from x (N, H, W, C) and dout (N, OH,
    OW, FN), x zero-padded by ``pad`` = (rows, columns): oneDNN's backward-weights kernel
    on CPU for float32 operands where :func:`kernel` says so, XLA's convolution otherwise
    (the same numbers up to float32 rounding)."""
    filt, pad = (int(filt[0]), int(filt[1])), (int(pad[0]), int(pad[1]))
    if x.ndim != 4:
        raise ValueError(f"filter gradient: x must be (N, H, W, C), got shape {x.shape}")
    _check_geometry(x.shape, d.shape, filt, pad)
    if _eligible(x, d, filt, pad):
        return _fast_filter_grad(x, d, filt, pad)
    return xla_filter_grad(x, d, filt, pad)


def _eligible(x, d, filt, pad) -> bool:
    """float32 operands of known, non-zero sizes and oneDNN in use."""
    if not (x.dtype == d.dtype == jnp.float32):
        return False
    sizes = (*x.shape, *d.shape)
    if not all(isinstance(s, int) for s in sizes) or min(sizes) <= 0 or min(pad) < 0:
        return False
    return kernel() == "onednn"
