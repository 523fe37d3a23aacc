"""Verified downloads: mirrors in turn, a timeout, progress through a callback.

A download streams into a temporary file ``.NAME.XXXXXXXX.part`` beside its destination.
Only when the whole file has arrived and the MD5 of its decompressed bytes is the one
the data set's spec lists is it renamed to its final name; otherwise the temporary file
is deleted and the next mirror is tried. An interrupted, truncated or corrupt download
therefore never leaves anything under a name the loader would read.

The temporary file is removed on every way out that Python sees: an error, Ctrl-C
(SIGINT), and SIGTERM (during a download in the main thread whose SIGTERM handler is
the default one, SIGTERM first unwinds the download, then terminates the process as it
would have). What no process can clean up after itself (SIGKILL, a power cut) is swept
at the next download into that directory: a partial file is stale when no running
download holds its lock (each download holds an ``flock`` on its own).
"""

from __future__ import annotations

import glob
import http.client
import math
import numbers
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from funcnet import _atomic
from funcnet.datasets import _args, _cache
from funcnet.datasets import files as _files
from funcnet.datasets.idx import md5_hex, read_decompressed
from funcnet.datasets.specs import IdxFile, IdxSpec

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for a connection or for the next block of data."""

_CHUNK = 1 << 16
_USER_AGENT = "funcnet (https://github.com; data set download)"


class DownloadProgress(NamedTuple):
    """One progress report: ``done`` of ``total`` bytes (None if the server did not say)
    of ``filename`` received from ``url``."""

    filename: str
    url: str
    done: int
    total: int | None


ProgressFn = Callable[[DownloadProgress], None]


class DownloadError(OSError):
    """No mirror delivered a file with the right checksum (the message lists each try)."""


class _ChecksumError(ValueError):
    pass


def check_timeout(timeout: object, where: str) -> float:
    """``timeout`` as a float, checked: a finite number of seconds greater than 0.

    Raises:
        TypeError: not a real number (naming ``where``).
        ValueError: zero, negative, NaN or infinite.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(
            f"{where}: timeout must be a number of seconds, got {type(timeout).__name__}"
        )
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(
            f"{where}: timeout must be a finite number of seconds > 0, got {timeout!r}"
        )
    return float(timeout)


def sweep_stale_parts(directory: str | Path, filenames: Iterable[str]) -> list[Path]:
    """Delete partial downloads of ``filenames`` in ``directory`` left by a process that
    was killed (``.NAME.*.part`` files that no running download holds).

    Returns:
        The files removed. Files that cannot be removed are left; nothing raises.
    """
    return _atomic.sweep_stale(directory, [f".{glob.escape(name)}.*.part" for name in filenames])


def download_file(
    urls: Sequence[str],
    dest_dir: str | Path,
    file: IdxFile,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressFn | None = None,
) -> Path:
    """Download ``file`` from the first of ``urls`` that delivers it intact.

    Args:
        urls: full URLs of the file, tried in order.
        dest_dir: the directory it goes to (created if needed).
        file: its name and the MD5 of its decompressed bytes.
        timeout: seconds to wait for a connection or for the next block of data.
        progress: called with a :class:`DownloadProgress` after every block received.

    Returns:
        The path of the verified file: ``dest_dir/file.filename``, or that name without
        ``.gz`` if a mirror served the file uncompressed.

    Raises:
        TypeError, ValueError: ``timeout`` is not a finite number of seconds > 0 (checked
            before anything is fetched).
        DownloadError: ``dest_dir`` cannot be created, or every URL failed (connection
            refused or timed out, HTTP error, truncated transfer, checksum mismatch); the
            message lists each failure. Nothing is left in ``dest_dir``, also when the
            process is interrupted (Ctrl-C) or terminated (SIGTERM) meanwhile; partial
            files of killed earlier runs are swept first (:func:`sweep_stale_parts`).
    """
    urls = _args.urls(urls, "download_file")
    timeout = check_timeout(timeout, "download_file")
    progress = _args.callback(progress, "download_file")
    dest_dir = _args.directory(dest_dir, "download_file", "dest_dir")
    if dest_dir is None:
        raise TypeError("download_file: dest_dir must be a str or os.PathLike folder, got None")
    if not isinstance(file, IdxFile):
        raise TypeError(f"download_file: file must be an IdxFile, got {type(file).__name__}")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{file.filename}: cannot create {dest_dir}: {e.strerror}") from None
    sweep_stale_parts(dest_dir, [file.filename])
    failures = []
    with _atomic.terminate_cleanly():
        for url in urls:
            try:
                return _download_one(url, dest_dir, file, timeout, progress)
            except (OSError, http.client.HTTPException, ValueError) as e:
                reason = e.reason if isinstance(e, urllib.error.URLError) else e
                failures.append(f"{url}: {type(e).__name__}: {reason}")
    if not failures:
        raise DownloadError(f"{file.filename}: no download URL is known")
    raise DownloadError(f"{file.filename}: every mirror failed: " + "; ".join(failures))


def _download_one(
    url: str, dest_dir: Path, file: IdxFile, timeout: float, progress: ProgressFn | None
) -> Path:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.length
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{file.filename}.", suffix=".part")
        try:
            _atomic.hold_lock(fd)  # held until the file is closed, after its rename
            with os.fdopen(fd, "wb") as out:
                done = _receive(response, out, file, url, total, progress)
                out.flush()
                return _verify_and_rename(Path(tmp), dest_dir, file, done, total)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _receive(response, out, file: IdxFile, url: str, total, progress) -> int:
    """Copy the response body to ``out``, reporting progress; returns the byte count."""
    done = 0
    while chunk := response.read(_CHUNK):
        out.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(DownloadProgress(file.filename, url, done, total))
    return done


def _verify_and_rename(tmp: Path, dest_dir: Path, file: IdxFile, done: int, total) -> Path:
    """Check the complete download's payload MD5, then give it its final name."""
    if total is not None and done != total:
        raise _ChecksumError(f"incomplete transfer: got {done:,} of {total:,} bytes")
    data = read_decompressed(tmp)  # ValueError for a broken gzip stream
    digest = md5_hex(data)
    if digest != file.md5:
        raise _ChecksumError(f"checksum mismatch: decompressed MD5 {digest}, expected {file.md5}")
    with open(tmp, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    final = dest_dir / (file.filename if compressed else file.filename.removesuffix(".gz"))
    os.chmod(tmp, _cache.FILE_MODE)
    os.replace(tmp, final)
    return final


def fetch(
    spec: IdxSpec,
    data_dir: str | Path | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressFn | None = None,
) -> tuple[Path, ...]:
    """Make all four files of ``spec`` present, downloading the missing ones.

    Files already found anywhere on the search path (see :mod:`funcnet.datasets.files`)
    are kept; missing ones are downloaded into :func:`~funcnet.datasets.files.download_dir`
    from ``spec.mirrors``. Checksums of files already present are not checked here.

    Returns:
        The four paths (train images, train labels, test images, test labels).

    Raises:
        TypeError, ValueError: ``timeout`` is not a finite number of seconds > 0.
        DatasetNotFoundError: a file is missing and could not be downloaded (or
            ``$FUNCNET_OFFLINE`` is set); the message names the file, the directories
            searched, why each mirror failed and how to place the files by hand. It is
            raised on its own (``from None``): the message holds the download errors.
    """
    spec = _args.spec(spec, "fetch")
    data_dir = _args.directory(data_dir, "fetch")
    timeout = check_timeout(timeout, "fetch")
    progress = _args.callback(progress, "fetch")
    dirs = _files.search_dirs(spec, data_dir)
    sweep_stale_parts(dirs[0], [f.filename for f in spec.files])
    found = _files.locate(spec, data_dir)
    missing = [s.file for s in found if s.path is None]
    if missing and _cache.offline():
        raise _files.DatasetNotFoundError(
            _files.missing_message(
                spec, missing, dirs, f"downloads are disabled ({_cache.OFFLINE_ENV} is set)"
            )
        )
    paths = []
    for i, status in enumerate(found):
        if status.path is not None:
            paths.append(status.path)
            continue
        try:
            urls = [base + status.file.filename for base in spec.mirrors]
            paths.append(
                download_file(urls, dirs[0], status.file, timeout=timeout, progress=progress)
            )
        except DownloadError as e:
            still = [s.file for s in found[i:] if s.path is None]
            raise _files.DatasetNotFoundError(
                _files.missing_message(spec, still, dirs, str(e))
            ) from None
    return tuple(paths)
