"""Writing files so that no reader sees half of one and nothing is left behind.

- :func:`atomic_file`: write through a temporary file beside the target, renamed over it
  only when the block ends without an error; removed on an error, Ctrl-C (SIGINT) and
  SIGTERM.
- :func:`terminate_cleanly`: within a block, SIGTERM unwinds the stack (so cleanup code
  runs), then terminates the process with SIGTERM as the default action would have.
- A temporary file is locked (``flock``) by its writer while it is written;
  :func:`sweep_stale` removes those left by a process that was killed outright
  (SIGKILL, a power cut), and never one that a running writer holds.

Used by :mod:`funcnet.io` (weights), the data set cache and downloads.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

STALE_UNLOCKED_AFTER = 2.0
"""Seconds: an unlocked temporary file at least this old is left over (younger ones may
be between their creation and their writer's lock, or between close and rename)."""

STALE_WITHOUT_LOCKS_AFTER = 24 * 3600.0
"""Seconds: where the file system has no locks, a temporary file is left over after a day."""


class _Terminated(BaseException):
    """SIGTERM arrived inside :func:`terminate_cleanly` (never seen outside it)."""


def _raise_terminated(signum, frame):
    raise _Terminated


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Within this block, SIGTERM unwinds the stack (``finally`` and ``except
    BaseException`` clauses run, so temporary files are removed), then terminates the
    process with SIGTERM, as the default action would have.

    Only in the main thread and only while SIGTERM has its default action: a handler the
    program installed itself (or SIG_IGN) is left alone. Blocks may nest.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)  # terminates here, as SIGTERM would have
        raise  # pragma: no cover - only reached if SIGTERM is blocked
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def hold_lock(fd: int) -> None:
    """Lock a temporary file exclusively for as long as ``fd`` is open, so that
    :func:`sweep_stale` leaves it alone. Never raises (no locks: age decides)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass


def is_stale(path: Path, now: float | None = None) -> bool:
    """True when the temporary file ``path`` is left over: at least
    :data:`STALE_UNLOCKED_AFTER` seconds old and not locked by a running writer."""
    now = time.time() if now is None else now
    try:
        age = now - path.stat().st_mtime
        if age < STALE_UNLOCKED_AFTER:
            return False
        if fcntl is None:
            return age > STALE_WITHOUT_LOCKS_AFTER
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True  # nobody holds it; closing fd releases our lock
    except BlockingIOError:
        return False  # a running writer holds it
    except OSError:  # no locks on this file system
        return age > STALE_WITHOUT_LOCKS_AFTER
    finally:
        os.close(fd)


def sweep_stale(directory: str | Path, patterns: Iterable[str]) -> list[Path]:
    """Delete the left-over temporary files matching the glob ``patterns`` in
    ``directory`` (see :func:`is_stale`). Returns those removed; never raises."""
    directory, now, removed = Path(directory), time.time(), []
    for pattern in patterns:
        try:
            candidates = sorted(directory.glob(pattern))
        except OSError:
            continue
        for path in candidates:
            if is_stale(path, now):
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


def temp_pattern(path: Path, suffix: str) -> str:
    """The glob of the temporary files :func:`atomic_file` makes for ``path``."""
    return f".{glob.escape(path.name)}.*{suffix}"


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: int = 0o644, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """An open binary file that becomes ``path`` when the block ends without an error.

    Writes go to ``.NAME.XXXXXXXX<suffix>`` in ``path``'s directory (which must exist),
    locked while open; at the end it gets ``mode`` and is renamed over ``path``, so a
    reader sees the old file or the new one, never half of one. On an error, Ctrl-C or
    SIGTERM (see :func:`terminate_cleanly`) it is removed. Left-over temporary files of
    ``path`` from killed processes are swept first.

    Raises:
        OSError: the temporary file cannot be created, written or renamed (it is removed).
    """
    path = Path(path)
    sweep_stale(path.parent, [temp_pattern(path, suffix)])
    with terminate_cleanly():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        try:
            hold_lock(fd)
            with os.fdopen(fd, "wb") as f:
                yield f
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
