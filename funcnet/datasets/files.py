"""Finding an IDX data set's files on disk and loading them verified.

Where the files of data set ``name`` are looked for, in order (the first directory that
holds a file wins, file by file):

1. ``data_dir`` when given; otherwise ``$FUNCNET_DATA_DIR/<name>`` (if that variable is
   set), then ``<cache dir>/<name>`` (``~/.cache/funcnet/<name>``);
2. the directories an OS package installs the set into (Fashion-MNIST:
   ``/usr/share/datasets/fashion-mnist`` from Debian's ``dataset-fashion-mnist``).

Each file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or not
(``train-images-idx3-ubyte``). Downloads go to the first directory of step 1.

A file is verified once: its decompressed bytes must have the MD5 of the data set's
spec. The verified bytes are cached (named by that MD5, rechecked on every read) with a
stamp for the source file (path, size, inode, mtime and ctime), so later loads skip
decompression. :func:`verify_file` (used by ``python -m funcnet.datasets info`` and
``download``) ignores stamps and reads every byte.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from funcnet.datasets import _cache
from funcnet.datasets.idx import md5_hex, parse_idx, read_decompressed
from funcnet.datasets.specs import IdxFile, IdxSpec


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are missing and could not be downloaded (the message says
    which files, where they were looked for and how to get them)."""


class FileStatus(NamedTuple):
    """Where one file of a data set was found (``path`` is None when it is missing)."""

    file: IdxFile
    path: Path | None


def search_dirs(spec: IdxSpec, data_dir: str | Path | None = None) -> tuple[Path, ...]:
    """The directories searched for ``spec``'s files, in order (see the module docstring)."""
    if data_dir is not None:
        user: tuple[Path, ...] = (Path(data_dir).expanduser(),)
    else:
        env = os.environ.get(_cache.DATA_ENV)
        user = ((Path(env).expanduser() / spec.name,) if env else ()) + (
            _cache.cache_dir() / spec.name,
        )
    return user + tuple(Path(d) for d in spec.system_dirs)


def download_dir(spec: IdxSpec, data_dir: str | Path | None = None) -> Path:
    """Where downloads of ``spec``'s files go: ``data_dir``, else ``$FUNCNET_DATA_DIR/<name>``,
    else ``<cache dir>/<name>``."""
    return search_dirs(spec, data_dir)[0]


def candidate_names(file: IdxFile) -> tuple[str, ...]:
    """The names a file may have on disk: as distributed, and without ``.gz``."""
    name = file.filename
    return (name, name.removesuffix(".gz")) if name.endswith(".gz") else (name, name + ".gz")


def find_file(file: IdxFile, dirs: Sequence[Path]) -> Path | None:
    """The first existing copy of ``file`` in ``dirs`` (either of its names), or None."""
    for d in dirs:
        for name in candidate_names(file):
            if (d / name).is_file():
                return d / name
    return None


def locate(spec: IdxSpec, data_dir: str | Path | None = None) -> tuple[FileStatus, ...]:
    """Where each of ``spec``'s four files is (train images, train labels, test images,
    test labels); nothing is read or verified."""
    dirs = search_dirs(spec, data_dir)
    return tuple(FileStatus(f, find_file(f, dirs)) for f in spec.files)


def is_verified(path: Path, file: IdxFile) -> bool:
    """True when ``path`` is known (stamped) to hold ``file``'s data, without reading it."""
    return _cache.stamp_says_verified(path, file.md5)


def _cached_entry(file: IdxFile) -> Path:
    return _cache.cache_dir() / "idx" / f"{file.md5}.idx"


def load_verified(path: str | Path, file: IdxFile, spec: IdxSpec) -> np.ndarray:
    """Read ``path`` as ``spec``'s ``file``, checking its payload MD5 and shape.

    The first time, the file is decompressed, parsed and hashed (:func:`verify_file`);
    its bytes are then cached by MD5 and a stamp records that this file (path, size,
    inode, mtime and ctime) was verified. Later calls trust the stamp and read the cached
    bytes, whose MD5 is checked again, so the array returned is always the verified
    data: a corrupt cache entry is rebuilt from the source file, and a source file
    changed since (its size, mtime or ctime differ) is verified again.

    Args:
        path: the file (gzip or raw IDX).
        file: what it must contain (MD5 of the decompressed bytes, shape).
        spec: the data set, for messages.

    Returns:
        A writable uint8 array of shape ``file.shape``.

    Raises:
        ValueError: naming the file, when it is not valid IDX, or its MD5 or shape differ.
    """
    path = Path(path)
    if _cache.stamp_says_verified(path, file.md5):
        data = _cache.read_checked(_cached_entry(file), file.md5)
        if data is not None:
            return _checked_shape(parse_idx(data, str(path), shape=file.shape), path, file)
    return verify_file(path, file, spec)


def verify_file(path: str | Path, file: IdxFile, spec: IdxSpec) -> np.ndarray:
    """Read every byte of ``path`` and check it as ``spec``'s ``file``; no stamp is trusted.

    On success the verified bytes are cached and the file is stamped; on failure any
    stamp of the file is removed, so that later loads check it again too.

    Returns:
        A writable uint8 array of shape ``file.shape``.

    Raises:
        ValueError: naming the file: not valid IDX (the wrong kind of file, truncated, a
            broken gzip stream, ...), another shape, or another MD5.
        OSError: the file cannot be read.
    """
    path = Path(path)
    try:
        data = read_decompressed(path)
        array = parse_idx(data, str(path), shape=file.shape)  # structural errors say more
        digest = md5_hex(data)
        if digest != file.md5:
            raise ValueError(
                f"{path}: checksum mismatch: the decompressed data has MD5 {digest}, but "
                f"{spec.title}'s {file.filename} has MD5 {file.md5}. The file is corrupt or "
                f"not from {spec.title}; delete it and run "
                f"`python -m funcnet.datasets download {spec.name}`"
            )
    except ValueError:
        _cache.remove_stamp(path)
        raise
    if _cache.try_atomic_write(_cached_entry(file), (data,)):
        _cache.write_stamp(path, file.md5)
    return _checked_shape(array, path, file)


def _checked_shape(array: np.ndarray, path: Path, file: IdxFile) -> np.ndarray:
    if array.shape != tuple(file.shape):
        raise ValueError(
            f"{path}: has shape {array.shape}, expected {tuple(file.shape)} for {file.filename}"
        )
    return array


def missing_message(
    spec: IdxSpec,
    missing: Sequence[IdxFile],
    dirs: Sequence[Path],
    reason: str,
) -> str:
    """The error text for missing files: which, where we looked, why they were not
    downloaded, and how to get them by hand (URLs, target directory, OS package)."""
    target = dirs[0]
    lines = [
        f"{spec.title}: missing {', '.join(f.filename for f in missing)}.",
        "Looked in: " + ", ".join(str(d) for d in dirs),
        f"Not downloaded: {reason}",
        f"To get the files, run `python -m funcnet.datasets download {spec.name}`, or "
        f"download them by hand into {target} (any of the four may be gzip-compressed "
        f"or not):",
    ]
    base = spec.mirrors[0] if spec.mirrors else None
    lines += [f"  {base}{f.filename}" if base else f"  {f.filename}" for f in spec.files]
    lines.append(
        f"or set {_cache.DATA_ENV}=DIR and put them in DIR/{spec.name}, "
        f"or pass data_dir=DIR (--data-dir DIR)."
    )
    if spec.system_package:
        where = ", ".join(spec.system_dirs)
        lines.append(f"Or install the {spec.system_package}, which puts them in {where}.")
    return "\n".join(lines)
