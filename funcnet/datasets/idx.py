"""Reading IDX files (the format of MNIST and Fashion-MNIST), gzip-compressed or raw.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the data
in C order. The magic number's bytes are ``0, 0, type code, number of dimensions``; the
data sets here use unsigned bytes (type code ``0x08``) and either 3 dimensions (images,
magic 2051) or 1 (labels, magic 2049).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension (N,)
_NDIM = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
_KIND_OF = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
_KIND = {"images": 3, "labels": 1}
_MAGIC_OF = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}
_UBYTE = 0x08
_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path, *, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw, told apart by content) into a uint8 array.

    Args:
        path: the file.
        shape: optional, the shape the file must have (e.g. ``(10000,)`` for a labels
            file); see :func:`parse_idx`.

    Returns:
        A writable uint8 array with the shape from the header: ``(N, rows, cols)`` for
        images (magic 2051), ``(N,)`` for labels (magic 2049).

    Raises:
        ValueError: naming the file and the problem: a broken gzip stream, a bad magic
            number, a type code other than unsigned byte, the wrong kind of file (images
            where labels were expected, or a labels file with the images' magic number),
            a header cut short, or data shorter or longer than the header announces.
        OSError: the file cannot be read.
    """
    return parse_idx(read_decompressed(path), source=str(path), shape=shape)


def read_decompressed(path: str | Path) -> np.ndarray:
    """The decompressed bytes of ``path`` as a writable uint8 array.

    gzip is recognised by its magic bytes, not by the file name, so a raw file named
    ``.gz`` or a compressed one without the suffix both work.

    Raises:
        ValueError: the file starts like gzip but does not decompress (naming the file).
    """
    path = Path(path)
    with path.open("rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    if not compressed:
        return np.fromfile(path, dtype=np.uint8)
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: not a valid gzip file ({e})") from e
    return np.frombuffer(bytearray(data), dtype=np.uint8)


def md5_hex(data: np.ndarray) -> str:
    """Hex MD5 of a uint8 buffer (the payload digest the data set specs list)."""
    return hashlib.md5(np.ascontiguousarray(data)).hexdigest()


def _check_magic(head: bytes, source: str) -> int:
    """The magic number of an unsigned-byte IDX file of a known kind, else ValueError."""
    magic = int.from_bytes(head, "big")
    if head[:2] != b"\0\0":
        raise ValueError(
            f"{source}: bad magic number 0x{magic:08x} ({magic}); an IDX file starts with "
            f"two zero bytes (expected {IMAGES_MAGIC} for images or {LABELS_MAGIC} for labels)"
        )
    if head[2] != _UBYTE:
        kind = _TYPE_NAMES.get(head[2], "unknown")
        raise ValueError(
            f"{source}: wrong type code 0x{head[2]:02x} ({kind}) in magic number {magic}; "
            f"only unsigned byte data (0x08) is supported"
        )
    if magic not in _NDIM:
        raise ValueError(
            f"{source}: bad magic number {magic} (unsigned byte data with {head[3]} "
            f"dimensions); expected {IMAGES_MAGIC} (images, 3 dimensions) or "
            f"{LABELS_MAGIC} (labels, 1 dimension)"
        )
    return magic


def _check_kind(magic: int, shape: tuple[int, ...] | None, source: str) -> None:
    """The magic number's kind (images or labels) must be the one ``shape`` asks for."""
    if shape is None or len(shape) == _NDIM[magic]:
        return
    want = next((k for k, n in _KIND.items() if n == len(shape)), f"{len(shape)}-d data")
    raise ValueError(
        f"{source}: wrong kind of file: its magic number {magic} marks an IDX "
        f"{_KIND_OF[magic]} file ({_NDIM[magic]} dimension(s)), but a {want} file of shape "
        f"{tuple(shape)} was expected (magic {_MAGIC_OF.get(want, '?')})"
    )


def _other_kind_fits(magic: int, data: np.ndarray) -> str | None:
    """If the file's size fits the *other* kind's layout exactly, that file, described."""
    if magic == IMAGES_MAGIC:  # labels: 8-byte header, then N bytes
        n = int.from_bytes(data[4:8].tobytes(), "big")
        if data.size == 8 + n:
            return f"a labels file of {n:,} labels (magic {LABELS_MAGIC})"
    elif data.size >= 16:  # images: 16-byte header, then N*rows*cols bytes
        dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i].tobytes(), "big") for i in range(3)]
        if data.size == 16 + math.prod(dims) and dims[1] * dims[2] > 1:
            shape = "×".join(map(str, dims))
            return f"an images file of shape {shape} (magic {IMAGES_MAGIC})"
    return None


def _size_error(magic, shape, actual, expected, data, source) -> ValueError:
    dims = "×".join(str(n) for n in shape)
    other = _other_kind_fits(magic, data)
    if other is not None:
        return ValueError(
            f"{source}: wrong magic number: {magic} marks an IDX {_KIND_OF[magic]} file, but "
            f"its {data.size:,} bytes do not fit the dimensions its header then gives; they "
            f"fit {other} exactly: probably that kind of file with a wrong magic number"
        )
    if actual > expected:
        return ValueError(
            f"{source}: {actual - expected:,} extra bytes after the {expected:,} bytes of data "
            f"the header announces ({dims})"
        )
    return ValueError(
        f"{source}: truncated: the header announces {dims} = {expected:,} bytes of data, "
        f"but only {actual:,} follow it"
    )


def parse_idx(
    data: np.ndarray, source: str = "<buffer>", *, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Interpret the bytes of an IDX file as an array, without copying.

    The magic number is checked first, then the header's dimensions against ``shape``
    (when given) and against the file's size, so that a file of the wrong kind is
    reported as such and not as a truncated file of an absurd size.

    Args:
        data: the whole decompressed file as a 1-D uint8 array.
        source: what to call the data in error messages (usually its file name).
        shape: optional, the shape the file must have, e.g. ``(60000, 28, 28)``; its
            length says the kind (1: labels, magic 2049; 3: images, magic 2051).

    Returns:
        A view of ``data`` past the header, shaped as the header says.

    Raises:
        ValueError: naming ``source``, for a bad magic number, a type code other than
            unsigned byte, a magic number of the wrong kind, a truncated header,
            dimensions other than ``shape``, or a data length that differs from the
            header's (truncated, extra bytes, or a size that fits the other kind).
    """
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError(
            f"parse_idx: data must be a 1-D uint8 array, got {data.dtype} {data.shape}"
        )
    if data.size < 4:
        raise ValueError(
            f"{source}: not an IDX file: {data.size} bytes, too short for the 4-byte magic number"
        )
    magic = _check_magic(data[:4].tobytes(), source)
    _check_kind(magic, shape, source)
    ndim = _NDIM[magic]
    header_size = 4 + 4 * ndim
    if data.size < header_size:
        raise ValueError(
            f"{source}: truncated header: magic {magic} announces {ndim} dimension(s), "
            f"which need {header_size} header bytes, but the file has {data.size} bytes"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i].tobytes(), "big") for i in range(ndim))
    expected, actual = math.prod(dims), data.size - header_size
    if shape is not None and dims != tuple(shape):
        size = "" if expected == actual else f" (and {actual:,} bytes of data follow it)"
        raise ValueError(
            f"{source}: the header announces shape {dims}{size}, but shape {tuple(shape)} "
            "was expected: a file of another data set or split, or a damaged header"
        )
    if actual != expected:
        raise _size_error(magic, dims, actual, expected, data, source)
    return data[header_size:].reshape(dims)
