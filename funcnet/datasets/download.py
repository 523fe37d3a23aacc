"""Verified downloads: mirrors in turn, a timeout, progress through a callback.

A download streams into a temporary file beside its destination. Only when the whole
file has arrived and the MD5 of its decompressed bytes is the one the data set's spec
lists is it renamed to its final name; otherwise the
temporary file is deleted and the next mirror is tried. An interrupted, truncated or
corrupt download therefore never leaves anything under a name the loader would read.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from funcnet.datasets import _cache
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
        DownloadError: every URL failed (connection refused or timed out, HTTP error,
            truncated transfer, checksum mismatch); the message lists each failure.
            Nothing is left in ``dest_dir``.
    """
    dest_dir = Path(dest_dir)
    failures = []
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
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{file.filename}.", suffix=".part")
        try:
            done = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(DownloadProgress(file.filename, url, done, total))
            if total is not None and done != total:
                raise _ChecksumError(f"incomplete transfer: got {done:,} of {total:,} bytes")
            data = read_decompressed(tmp)  # ValueError for a broken gzip stream
            digest = md5_hex(data)
            if digest != file.md5:
                raise _ChecksumError(
                    f"checksum mismatch: decompressed MD5 {digest}, expected {file.md5}"
                )
            with open(tmp, "rb") as f:
                compressed = f.read(2) == b"\x1f\x8b"
            name = file.filename if compressed else file.filename.removesuffix(".gz")
            final = dest_dir / name
            os.chmod(tmp, _cache.FILE_MODE)
            os.replace(tmp, final)
            return final
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


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
        DatasetNotFoundError: a file is missing and could not be downloaded (or
            ``$FUNCNET_OFFLINE`` is set); the message names the file, the directories
            searched and how to place the files by hand.
    """
    dirs = _files.search_dirs(spec, data_dir)
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
            ) from e
    return tuple(paths)
