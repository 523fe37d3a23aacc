"""A typed XLA FFI handler written in Python: the C structures XLA passes a handler
(``xla/ffi/api/c_api.h``, API version 0.3, as jaxlib ships it under
``jax.ffi.include_dir()``) mirrored with ``ctypes``, and :func:`handler`, which turns a
Python function of the call's buffers into a C function pointer XLA can call.

What the C++ FFI does for a compiled handler is done here by hand: answer XLA's metadata
query (the API version the handler was written against), run only at the execute stage,
check the structures' sizes, and return an ``XLA_FFI_Error`` (made with XLA's own
``XLA_FFI_Error_Create``) instead of raising across the C boundary: a Python exception
becomes an error of the XLA call, which JAX raises in the caller.
"""

from __future__ import annotations

import _thread
import ctypes
import dataclasses
import functools
import signal
import threading
import traceback
from collections.abc import Callable

API_VERSION = (0, 3)
_EXTENSION_METADATA = 1
_STAGE_EXECUTE = 3
_DATATYPE_F32 = 11
_ERROR_INTERNAL = 13


class _ExtensionBase(ctypes.Structure):
    pass


_ExtensionBase._fields_ = [
    ("struct_size", ctypes.c_size_t),
    ("type", ctypes.c_int),
    ("next", ctypes.POINTER(_ExtensionBase)),
]


class _ApiVersion(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("major_version", ctypes.c_int),
        ("minor_version", ctypes.c_int),
    ]


class _Metadata(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("api_version", _ApiVersion),
        ("traits", ctypes.c_uint32),
    ]


class _MetadataExtension(ctypes.Structure):
    _fields_ = [("extension_base", _ExtensionBase), ("metadata", ctypes.POINTER(_Metadata))]


class _ErrorCreateArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("message", ctypes.c_char_p),
        ("errc", ctypes.c_int),
    ]


class _Api(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("api_version", _ApiVersion),
        ("internal_api", ctypes.c_void_p),
        ("error_create", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(_ErrorCreateArgs))),
    ]


class _List(ctypes.Structure):  # XLA_FFI_Args and XLA_FFI_Rets have the same layout
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("size", ctypes.c_int64),
        ("types", ctypes.POINTER(ctypes.c_int)),
        ("items", ctypes.POINTER(ctypes.c_void_p)),
    ]


class _Attrs(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("size", ctypes.c_int64),
        ("types", ctypes.c_void_p),
        ("names", ctypes.c_void_p),
        ("attrs", ctypes.c_void_p),
    ]


class _CallFrame(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.POINTER(_ExtensionBase)),
        ("api", ctypes.POINTER(_Api)),
        ("ctx", ctypes.c_void_p),
        ("stage", ctypes.c_int),
        ("args", _List),
        ("rets", _List),
        ("attrs", _Attrs),
        ("future", ctypes.c_void_p),
    ]


class _Buffer(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("rank", ctypes.c_int64),
        ("dims", ctypes.POINTER(ctypes.c_int64)),
    ]


@dataclasses.dataclass(frozen=True)
class Buffer:
    """One argument or result of the call: its address, shape and whether it is float32."""

    data: int
    shape: tuple[int, ...]
    is_f32: bool


_HANDLER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(_CallFrame))


def _buffers(items: _List) -> list[Buffer]:
    out = []
    for i in range(items.size):
        b = ctypes.cast(items.items[i], ctypes.POINTER(_Buffer)).contents
        shape = tuple(b.dims[k] for k in range(b.rank))
        out.append(Buffer(b.data or 0, shape, b.dtype == _DATATYPE_F32))
    return out


def _metadata(frame: _CallFrame) -> None:
    extension = ctypes.cast(frame.extension_start, ctypes.POINTER(_MetadataExtension)).contents
    metadata = extension.metadata.contents
    major, minor = API_VERSION
    metadata.api_version = _ApiVersion(ctypes.sizeof(_ApiVersion), None, major, minor)
    metadata.traits = 0


def _error(frame: _CallFrame, message: str) -> int | None:
    args = _ErrorCreateArgs(
        ctypes.sizeof(_ErrorCreateArgs), None, message.encode(), _ERROR_INTERNAL
    )
    return frame.api.contents.error_create(ctypes.byref(args))


def _inside_a_handler(frame) -> bool:
    while frame is not None:
        if frame.f_code is _CALL_CODE:
            return True
        frame = frame.f_back
    return False


def _deferring(previous):
    """A SIGINT handler that runs ``previous`` (Python's, which raises KeyboardInterrupt)
    except while the main thread is inside a handler: XLA runs small programs on the
    calling thread, and an exception raised there (at the handler's first bytecode, before
    any ``try``) would leave the C return value unset, which XLA frees as an error. The
    signal is then sent again a few milliseconds later, until it lands outside."""

    def deferring(signum, frame):
        if _inside_a_handler(frame):
            threading.Timer(0.005, _thread.interrupt_main, args=(signum,)).start()
            return None
        return previous(signum, frame)

    deferring.funcnet_defers = previous
    return deferring


def defer_interrupts_during_handlers() -> None:
    """Wrap the SIGINT handler in :func:`_deferring` (from the main thread only, where a
    Python handler is installed; once): a Ctrl-C during a call reaches the caller as
    KeyboardInterrupt after the call, never inside it."""
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGINT)
    if callable(current) and not hasattr(current, "funcnet_defers"):
        signal.signal(signal.SIGINT, _deferring(current))


def handler(execute: Callable[[list[Buffer], list[Buffer]], None], name: str):
    """A C function pointer (keep a reference for as long as XLA may call it) that runs
    ``execute(args, rets)`` at the execute stage of each call; an exception it raises
    becomes the call's error, prefixed with ``name``. Call
    :func:`defer_interrupts_during_handlers` too."""
    return _HANDLER(functools.partial(_call, execute, name))


def _call(execute, name, frame_ptr):
    frame = frame_ptr.contents
    try:
        if frame.struct_size < _CallFrame.future.offset:  # XLA's size stops at attrs
            return _error(frame, f"{name}: XLA's call frame is older than API {API_VERSION}")
        if frame.extension_start and frame.extension_start.contents.type == _EXTENSION_METADATA:
            _metadata(frame)
            return None
        if frame.stage != _STAGE_EXECUTE:
            return None
        execute(_buffers(frame.args), _buffers(frame.rets))
        return None
    except BaseException as e:  # noqa: BLE001 - nothing may unwind through XLA's C frames
        detail = "".join(traceback.format_exception_only(e)).strip()
        return _error(frame, f"{name}: {detail}")


_CALL_CODE = _call.__code__
