"""Ctrl-C always stops a command: while it starts, and when Python swallows it.

- **While a command starts** (``python -m experiments.NAME`` importing JAX, matplotlib
  and the experiment, before :func:`experiments._common.run` takes over), Ctrl-C prints
  ``interrupted`` and exits with status 130 at once: nothing has been written yet, and an
  interrupted import would otherwise end in a traceback.
- **A swallowed Ctrl-C**: Python reports an exception raised inside a garbage-collection
  callback (JAX's ``_xla_gc_callback`` runs in every collection) as "Exception ignored"
  and carries on, so a Ctrl-C that lands there was lost and the run went on to finish
  with status 0. :func:`deliver_swallowed_interrupts` hands such a ``KeyboardInterrupt``
  back to the main thread, where it stops the run as any Ctrl-C does.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading

_RESEND_AFTER_S = 0.05


def _module_run() -> str | None:
    """The module of ``python -m MODULE`` that started this process, if any."""
    argv = list(getattr(sys, "orig_argv", []))
    return next((m for f, m in zip(argv, argv[1:], strict=False) if f == "-m"), None)


def launched_as_command() -> bool:
    """Whether this process is ``python -m experiments.NAME``."""
    return (_module_run() or "").startswith("experiments.")


def exit_now(status: int) -> None:
    """Exit with ``status`` without the interpreter's teardown. After a Ctrl-C during
    training, tearing the interpreter down crashed the process in about half of the
    tries (SIGSEGV in jaxlib's ``nanobind::detail::nb_module_free`` as its module is
    freed, so the exit status was -11, not 130); an error that stops a run mid-way
    leaves the same state. Everything the program writes is already whole: files are
    renamed into place complete, and the unwinding that brought the interrupt here
    removed any temporary file. Only the standard streams are left to flush."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to say
            pass
    os._exit(status)


def _exit_while_starting(signum, frame) -> None:
    print(f"python -m {_module_run() or 'experiments'}: interrupted", file=sys.stderr)
    exit_now(130)


def exit_on_ctrl_c_while_starting() -> None:
    """Install :func:`_exit_while_starting` for SIGINT, where SIGINT has Python's own
    handler (a shell that ignores it for a background job keeps it ignored)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_while_starting)


def raise_on_ctrl_c() -> None:
    """From here on Ctrl-C raises ``KeyboardInterrupt`` (Python's own handler) again,
    where the start-up handler was installed."""
    if signal.getsignal(signal.SIGINT) is _exit_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def deliver_swallowed_interrupts() -> None:
    """Chain a ``sys.unraisablehook`` that re-raises a swallowed ``KeyboardInterrupt`` in
    the main thread (``_thread.interrupt_main``, from a timer thread); every other
    unraisable exception goes to the hook that was there. Installed once."""
    previous = sys.unraisablehook
    if getattr(previous, "delivers_interrupts", False):
        return

    def hook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            # From another thread, a moment later: raised here, in the hook, it would be
            # swallowed again. Should it land in a gc callback again, this hook resends it.
            threading.Timer(_RESEND_AFTER_S, _thread.interrupt_main).start()
            return
        previous(unraisable)

    hook.delivers_interrupts = True
    sys.unraisablehook = hook
