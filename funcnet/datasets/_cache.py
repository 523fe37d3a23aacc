"""The cache directory: atomic writes, self-checking entries and verification stamps.

Layout under :func:`cache_dir` (``$FUNCNET_CACHE_DIR``, else ``~/.cache/funcnet``)::

    <name>/                    downloaded IDX files of data set <name> (e.g. mnist/)
    idx/<md5>.idx              a verified IDX file, decompressed; named by its MD5, which
                               is checked again on every read
    stamps/<key>.json          "the file at PATH with this size, inode, mtime and ctime has
                               been verified to have MD5 ..." (one per source file)
    mnist-5k/<key>.bin         the parsed embedded subset, sealed with its own MD5

Nothing here is trusted blindly: a cache entry whose digest does not match is ignored
(and rebuilt by the caller); a stamp that does not parse or no longer describes the file
is ignored. A stamp records the file's change time (ctime) as well as its modification
time: ``touch`` or ``os.utime`` can set the mtime back after an edit, but not the ctime,
so an edited file is verified again. A loader that trusts a stamp reads the cached copy,
whose MD5 is checked on every read, never the stamped file itself.

Every write goes to a temporary file in the same directory and is renamed into place,
so a crash never leaves a half-written entry under the final name. A cache directory
that cannot be written is not an error: the data is then simply not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from funcnet._atomic import atomic_file

CACHE_ENV = "FUNCNET_CACHE_DIR"
DATA_ENV = "FUNCNET_DATA_DIR"
OFFLINE_ENV = "FUNCNET_OFFLINE"

FILE_MODE = 0o644  # mkstemp creates 0600; cached and downloaded data is not secret
_SEAL_BYTES = 16  # an MD5 digest


def cache_dir() -> Path:
    """The cache directory: ``$FUNCNET_CACHE_DIR`` if set, else ``~/.cache/funcnet``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "funcnet"


def first_time(notice: str) -> bool:
    """True the first time this exact ``notice`` is asked about for this cache
    (:func:`cache_dir`), False afterwards: programs print a long notice once per cache,
    then a short line. A mark file under ``notices/`` records it; where the cache cannot
    be written, every time is the first."""
    mark = cache_dir() / "notices" / hashlib.sha256(notice.encode()).hexdigest()[:16]
    if mark.exists():
        return False
    try_atomic_write(mark, [notice.encode()])
    return True


def offline() -> bool:
    """True when ``$FUNCNET_OFFLINE`` is set to a non-empty value other than ``0``."""
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def atomic_write(path: Path, chunks) -> None:
    """Write the byte chunks to ``path`` through a temporary file and a rename
    (:func:`funcnet._atomic.atomic_file`: removed on errors, Ctrl-C and SIGTERM; left-over
    ones of killed processes are swept).

    Args:
        path: the final file name; its directory is created if needed.
        chunks: an iterable of bytes-like objects (bytes, memoryview, uint8 arrays).

    Raises:
        OSError: the directory cannot be written (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, FILE_MODE) as f:
        for chunk in chunks:
            f.write(chunk)


def try_atomic_write(path: Path, chunks) -> bool:
    """:func:`atomic_write`, returning False instead of raising when it cannot write."""
    try:
        atomic_write(path, chunks)
    except OSError:
        return False
    return True


def read_checked(path: Path, md5: str) -> np.ndarray | None:
    """The bytes of ``path`` as a writable uint8 array if their MD5 is ``md5``, else None.

    A missing file gives None; a file with another digest (a corrupt entry) is deleted
    and gives None, so the caller rebuilds it.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if hashlib.md5(data).hexdigest() == md5:
        return data
    Path(path).unlink(missing_ok=True)
    return None


def write_sealed(path: Path, data: np.ndarray) -> bool:
    """Cache a uint8 array's bytes followed by their MD5 digest (see :func:`read_sealed`)."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    return try_atomic_write(path, (data, hashlib.md5(data).digest()))


def read_sealed(path: Path) -> np.ndarray | None:
    """The bytes written by :func:`write_sealed`, or None if missing or corrupt (deleted)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    body, seal = data[:-_SEAL_BYTES], data[-_SEAL_BYTES:]
    if data.size >= _SEAL_BYTES and hashlib.md5(body).digest() == seal.tobytes():
        return body
    Path(path).unlink(missing_ok=True)
    return None


def _file_identity(path: Path) -> dict[str, object]:
    st = Path(path).stat()
    return {
        "path": str(Path(path).resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,  # set by the system on every change; utime cannot
        "inode": st.st_ino,
    }


def _stamp_path(path: Path) -> Path:
    key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()
    return cache_dir() / "stamps" / f"{key}.json"


def stamp_says_verified(path: Path, md5: str) -> bool:
    """True when a stamp records that this very file (same path, size, inode, mtime and
    ctime) has the MD5 ``md5``. A stamp that is unreadable or describes another state is
    ignored."""
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        return isinstance(stamp, dict) and stamp == {**_file_identity(path), "md5": md5}
    except (OSError, ValueError):
        return False


def write_stamp(path: Path, md5: str) -> bool:
    """Record that the file at ``path``, as it is now, has the MD5 ``md5``."""
    try:
        record = {**_file_identity(path), "md5": md5}
    except OSError:
        return False
    return try_atomic_write(_stamp_path(path), (json.dumps(record, indent=1).encode(),))


def remove_stamp(path: Path) -> None:
    """Forget that ``path`` was verified (after it failed a check); never raises."""
    try:
        _stamp_path(path).unlink(missing_ok=True)
    except OSError:
        pass
