"""Saving and loading network weights.

- :func:`save_params` / :func:`load_params`: any pytree of arrays to and from ``.npz``.
  The tree's structure is stored beside the arrays as JSON (no pickle), so dicts, lists,
  tuples and ``None`` come back as they were, with dtypes (bfloat16 included) and
  shapes. Other pytree nodes (NamedTuples, dataclasses, optax states) are saved too and
  come back when :func:`load_params` is given a template (``like=``) of the same
  structure. Files are written to a temporary file and renamed into place.
- :func:`load_pickled_params`: the book's weight files (``sample_weight.pkl``, a pickled
  dict of NumPy arrays with keys ``W1 b1 W2 b2 W3 b3``) through a restricted unpickler:
  only NumPy arrays, dtypes, NumPy scalars and plain containers and numbers are
  admitted; anything else (e.g. a pickle whose reduce calls ``os.system``) is refused
  before it can run.
- :func:`load_weights`: either kind, chosen by the file's suffix (``.pkl``/``.pickle``).

Errors: a file that can be read but is not a valid weight file of the expected kind
(empty, truncated, plain text, a ``.npy`` array, a damaged archive, a malformed
structure, leaves whose dtype or shape disagree with their data, a pickle that is
refused or is no pickle) raises :class:`ParamsFileError` (a ``ValueError``), whose
message names the file and what is wrong. A file that cannot be read at all (missing,
a directory, no permission) raises the usual ``OSError``, also naming the file.

Arrays are returned as NumPy arrays (JAX functions accept them; ``jax.device_put`` places
them on a device).
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from funcnet._atomic import atomic_file

try:  # NumPy 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

Params = Any
"""A pytree of arrays (e.g. ``{"W1": ..., "b1": ...}``)."""

_TREE_KEY = "__funcnet_tree__"
_LEAF_PREFIX = "params/"
_FORMAT = "funcnet-params-v1"
_PY_SCALARS = {"bool": bool, "int": int, "float": float, "complex": complex}
_PY_SCALAR_KINDS = {"bool": "b", "int": "iu", "float": "f", "complex": "c"}
_NODE_TYPES = ("none", "leaf", "dict", "list", "tuple", "custom")
_HEAD_BYTES = 64


class ParamsFileError(ValueError):
    """A weight file that cannot be loaded as weights: empty, truncated, not the expected
    format (text, ``.npy``, ``.npz`` vs pickle), a malformed structure, or leaves that
    disagree with their data. The message names the file and what is wrong."""


class WeightPickleError(ParamsFileError, pickle.UnpicklingError):
    """A book-format weight pickle that is refused (it refers to an object that is not
    allowed; nothing was executed) or that is not a valid pickle at all."""


# ---------------------------------------------------------------------------------------
# files: reading the first bytes, saying what a file is


def _as_path(path: Any, where: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _os_error(e: OSError, message: str) -> OSError:
    """The same kind of OSError (FileNotFoundError, ...) with ``message`` in front, its
    ``errno`` kept, and no ``[Errno N]`` prefix in its text (``str(e)`` is what a command
    line prints)."""
    reason = e.strerror if e.errno is not None and e.strerror else str(e)
    error = type(e)(f"{message}: {reason}")
    error.errno = e.errno
    return error


def _read_head(path: Path, where: str) -> bytes:
    """The first bytes of ``path``; an OSError names the function and the file."""
    try:
        with open(path, "rb") as f:
            return f.read(_HEAD_BYTES)
    except OSError as e:
        raise _os_error(e, f"{where}: cannot read {path}") from None


def _describe(head: bytes) -> str:
    """What a file that starts with ``head`` looks like, as a phrase for messages."""
    if not head:
        return "it is empty (0 bytes)"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single NumPy .npy array (numpy.save), not an archive of params"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "it is a zip archive (.npz), funcnet's own format: load it with load_params"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed; decompress it first"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= pickle.HIGHEST_PROTOCOL:
        return (
            "it is a Python pickle (the book's weight format): load it with "
            "load_pickled_params, or give it the suffix .pkl for load_weights"
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with the bytes {head[:8].hex(' ')}"
    if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
        return f"it is a text file (it starts with {text[:24]!r})"
    return f"it starts with the bytes {head[:8].hex(' ')}"


# ---------------------------------------------------------------------------------------
# .npz with a JSON structure: saving


def _key_name(key) -> str:
    """One step of a JAX key path as text: a dict key, an index or an attribute."""
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey/FlattenedIndexKey, GetAttrKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _path_name(path) -> str:
    return "/".join(_key_name(k) for k in path) or "."


def _add_leaf(leaves: dict[str, np.ndarray], name: str, leaf: Any) -> dict:
    """Store one leaf under a unique name; returns its JSON record."""
    if name in leaves:
        raise ValueError(
            f"save_params: two leaves of params get the name {name!r}; use dict keys that "
            "do not contain '/' and are not both 1 and '1'"
        )
    leaves[name] = array = _as_leaf_array(leaf, name)
    record = {"type": "leaf", "name": name, "dtype": array.dtype.name, "shape": list(array.shape)}
    if type(leaf) in _PY_SCALARS.values():
        record["python"] = type(leaf).__name__
    return record


def _as_leaf_array(leaf: Any, name: str) -> np.ndarray:
    if isinstance(leaf, (np.ndarray, np.generic, jax.Array, bool, int, float, complex)):
        array = np.asarray(leaf)
        if array.dtype.kind in "biufc" or array.dtype.name in _extension_dtypes():
            return array
    raise ValueError(
        f"save_params: leaf {name!r} is a {type(leaf).__name__}, not a numeric array or "
        "number; params must be a pytree of arrays"
    )


def _extension_dtypes() -> set[str]:
    """Names of JAX's extra floating dtypes (bfloat16, float8_*), stored as raw bits."""
    import ml_dtypes

    return {
        name
        for name in dir(ml_dtypes)
        if isinstance(getattr(ml_dtypes, name), type)
        and issubclass(getattr(ml_dtypes, name), np.generic)
    }


def _encode(node: Any, path: tuple, leaves: dict[str, np.ndarray]) -> dict:
    """The JSON description of ``node``; its leaves are added to ``leaves`` by name."""
    if node is None:
        return {"type": "none"}
    if isinstance(node, dict) and all(type(k) in (str, int) for k in node):
        keys = list(node)
        return {
            "type": "dict",
            "keys": [[type(k).__name__, k] for k in keys],
            "children": [_encode(node[k], (*path, k), leaves) for k in keys],
        }
    if type(node) in (list, tuple):
        return {
            "type": type(node).__name__,
            "children": [_encode(c, (*path, i), leaves) for i, c in enumerate(node)],
        }
    flat, treedef = jax.tree_util.tree_flatten_with_path(node)
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:  # a leaf
        return _add_leaf(leaves, "/".join(str(p) for p in path) or ".", node)
    # any other pytree node: its leaves are kept, its class needs load_params(like=...)
    records = [
        _add_leaf(leaves, "/".join([*(str(p) for p in path), _path_name(sub)]), leaf)
        for sub, leaf in flat
    ]
    return {"type": "custom", "treedef": str(treedef), "leaves": records}


def _check_target(path: Path) -> None:
    """Fail before any temporary file exists when ``path`` cannot be written."""
    if path.is_dir():
        raise IsADirectoryError(
            21, f"save_params: {path} is a directory; give the name of the file to write"
        )
    if not path.parent.is_dir():
        what = "is not a directory" if path.parent.exists() else "does not exist"
        raise FileNotFoundError(
            2, f"save_params: cannot write {path}: the directory {path.parent} {what}"
        )


def save_params(path: str | os.PathLike, params: Params) -> None:
    """Save a pytree of arrays to ``path`` as ``.npz``, atomically.

    Each leaf is one array in the archive, named by its path in the tree (``W1``,
    ``layers/0/W``, ...); the structure is stored as JSON (no pickle), with each leaf's
    dtype and shape. The file is written to a temporary file in the same directory and
    renamed over ``path`` only when complete, so an existing file is never left
    half-written, and the temporary file is removed on errors, Ctrl-C and SIGTERM.
    ``path`` is used as given (no ``.npz`` is appended).

    Args:
        path: the file to write; its directory must exist.
        params: dicts (str or int keys), lists, tuples, ``None``, other pytree nodes, and
            leaves that are arrays (NumPy or JAX, any numeric dtype incl. bfloat16) or
            Python numbers.

    Raises:
        TypeError: ``path`` is not a str or path.
        ValueError: a leaf is not numeric, or two leaves would get the same name.
        OSError: the file cannot be written (naming ``path``, never a temporary file):
            ``FileNotFoundError`` when its directory does not exist,
            ``IsADirectoryError`` when ``path`` is a directory.
    """
    path = _as_path(path, "save_params")
    leaves: dict[str, np.ndarray] = {}
    tree = _encode(params, (), leaves)
    header = json.dumps({"format": _FORMAT, "tree": tree})
    arrays = {_TREE_KEY: np.frombuffer(header.encode(), dtype=np.uint8)}
    for name, array in leaves.items():
        if array.dtype.name in _extension_dtypes():
            array = array.view(f"u{array.dtype.itemsize}")  # raw bits; dtype is in the JSON
        arrays[_LEAF_PREFIX + name] = array
    _check_target(path)
    try:
        with atomic_file(path, 0o644) as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise _os_error(e, f"save_params: cannot write {path}") from None


# ---------------------------------------------------------------------------------------
# .npz with a JSON structure: reading, every part checked against the others


class _Malformed(Exception):
    """Internal: what is wrong with a params file (load_params adds the file's name)."""


_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member of the archive; only numeric data, never unpickled."""
    name = info.filename.removesuffix(".npy")
    if not info.filename.endswith(".npy"):
        raise _Malformed(f"it holds {info.filename!r}, which is not a .npy array")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        reader = _NPY_HEADER_READERS.get(version)
        if reader is None:
            raise _Malformed(f"array {name!r} uses .npy format {version}, never written here")
        shape, fortran, dtype = reader(f)
        if dtype.kind not in "biufc":
            raise _Malformed(
                f"array {name!r} has dtype {dtype}; a params file holds only numeric arrays "
                "(funcnet never unpickles objects from it)"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise _Malformed(f"array {name!r} is cut short: {len(data):,} of {nbytes:,} bytes")
        if f.read():  # reading to the end also checks the member's CRC
            raise _Malformed(f"array {name!r} has extra bytes after its {nbytes:,} bytes")
    array = np.frombuffer(bytearray(data), dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive at ``path`` by name; ParamsFileError for anything else."""
    head = _read_head(path, "load_params")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ParamsFileError(
            f"load_params: {path} is not a funcnet params file: {_describe(head)}"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            return {
                info.filename.removesuffix(".npy"): _read_member(zf, info) for info in zf.infolist()
            }
    except _Malformed as e:
        raise ParamsFileError(f"load_params: {path}: {e}") from None
    except (
        zipfile.BadZipFile,
        EOFError,
        zlib.error,
        ValueError,
        NotImplementedError,  # an unknown compression method
        RuntimeError,  # "encrypted, password required"
        OSError,  # a seek to a negative offset named in a damaged directory
    ) as e:
        raise ParamsFileError(
            f"load_params: {path} is a truncated or damaged .npz archive "
            f"({type(e).__name__}: {e}); save it again with save_params"
        ) from None


def _read_header(arrays: dict[str, np.ndarray]) -> dict:
    """The JSON structure record, checked to be a dict of this format with a tree."""
    if _TREE_KEY not in arrays:
        raise _Malformed(
            "an .npz without funcnet's structure record, so not a funcnet params file "
            "(save params with funcnet.io.save_params)"
        )
    raw = arrays.pop(_TREE_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _Malformed(f"the structure record is {raw.dtype} {raw.shape}, not bytes")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Malformed(f"the structure record is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _Malformed(f"the structure record is a JSON {type(header).__name__}, not an object")
    if header.get("format") != _FORMAT:
        raise _Malformed(f"unknown format {header.get('format')!r} (expected {_FORMAT!r})")
    if "tree" not in header:
        raise _Malformed("the structure record has no tree")
    return header


def _check_leaf_record(node: dict) -> None:
    if not isinstance(node.get("name"), str) or not isinstance(node.get("dtype"), str):
        raise _Malformed(f"a leaf record without a name or dtype: {node!r:.80}")
    name = node["name"]
    if "python" in node and node["python"] not in tuple(_PY_SCALARS):
        raise _Malformed(f"leaf {name!r}: unknown Python type {node['python']!r}")
    shape = node.get("shape", [])
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise _Malformed(f"leaf {name!r}: shape {shape!r} is not a list of sizes")


def _check_dict_keys(keys: Any, n_children: int) -> None:
    ok = isinstance(keys, list) and len(keys) == n_children
    ok = ok and all(
        isinstance(k, list)
        and len(k) == 2
        and ((k[0] == "str" and isinstance(k[1], str)) or (k[0] == "int" and type(k[1]) is int))
        for k in keys
    )
    if not ok:
        raise _Malformed("a dict record whose keys do not match its children")
    if len({(t, k) for t, k in keys}) != len(keys):
        raise _Malformed(f"a dict record with a repeated key: {[k for _, k in keys]}")


def _check_tree(node: Any, records: dict[str, dict]) -> None:
    """Check one node of the JSON tree and below; collect its leaf records by name."""
    kind = node.get("type") if isinstance(node, dict) else None
    if kind not in _NODE_TYPES:
        raise _Malformed(f"the structure holds an unknown node {node!r:.80}")
    if kind == "leaf":
        _check_leaf_record(node)
        if node["name"] in records:
            raise _Malformed(f"two leaves are named {node['name']!r}")
        records[node["name"]] = node
        return
    children = node.get("leaves" if kind == "custom" else "children", [])
    if kind != "none" and not isinstance(children, list):
        raise _Malformed(f"a {kind} record without a list of children")
    if kind == "dict":
        _check_dict_keys(node.get("keys"), len(children))
    if kind == "custom" and (
        not isinstance(node.get("treedef"), str)
        or not all(isinstance(c, dict) and c.get("type") == "leaf" for c in children)
    ):
        raise _Malformed("a custom-node record without its treedef or leaf records")
    for child in children if kind != "none" else ():
        _check_tree(child, records)


def _dtype_named(name: str, leaf: str) -> np.dtype:
    if name in _extension_dtypes():
        return jax.numpy.dtype(name)
    try:
        dtype = np.dtype(name)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biufc" or dtype.name != name:
        raise _Malformed(f"leaf {leaf!r}: {name!r} is not a numeric dtype")
    return dtype


def _leaf_array(record: dict, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The array of one leaf record, checked against the record's dtype and shape."""
    name = record["name"]
    stored = arrays.get(_LEAF_PREFIX + name)
    if stored is None:
        raise _Malformed(f"the structure lists leaf {name!r}, but the archive has no data for it")
    dtype = _dtype_named(record["dtype"], name)
    if stored.dtype.name == dtype.name:
        array = stored
    elif (
        record["dtype"] in _extension_dtypes() and stored.dtype.name == f"uint{8 * dtype.itemsize}"
    ):
        array = stored.view(dtype)  # bfloat16 & co., saved as raw bits
    else:
        raise _Malformed(
            f"leaf {name!r}: the structure says dtype {record['dtype']}, but its data is "
            f"{stored.dtype.name} with shape {stored.shape}"
        )
    if "shape" in record and tuple(record["shape"]) != array.shape:
        raise _Malformed(
            f"leaf {name!r}: the structure says shape {tuple(record['shape'])}, but its data "
            f"has shape {array.shape}"
        )
    python = record.get("python")
    if python is not None and (
        array.shape != () or array.dtype.kind not in _PY_SCALAR_KINDS[python]
    ):
        raise _Malformed(
            f"leaf {name!r}: the structure says a Python {python}, but its data is "
            f"{array.dtype.name} with shape {array.shape}"
        )
    return array


def _leaf_value(record: dict, arrays: dict[str, np.ndarray]) -> Any:
    array = _leaf_array(record, arrays)
    return _PY_SCALARS[record["python"]](array.item()) if "python" in record else array


def _decode(node: dict, values: dict[str, Any]) -> Any:
    """Rebuild a checked JSON tree; ``values`` holds every leaf's value by name."""
    kind = node["type"]
    if kind == "none":
        return None
    if kind == "leaf":
        return values[node["name"]]
    if kind == "dict":
        return {
            (int(k) if t == "int" else str(k)): _decode(c, values)
            for (t, k), c in zip(node["keys"], node["children"], strict=True)
        }
    if kind in ("list", "tuple"):
        children = [_decode(c, values) for c in node["children"]]
        return children if kind == "list" else tuple(children)
    raise _Malformed(
        f"the tree contains a {node['treedef']} node, which cannot be rebuilt from the "
        "file alone; pass a template of the same structure: load_params(path, like=...)"
    )


def _read_params_file(path: Path) -> tuple[dict, dict[str, Any]]:
    """The checked JSON tree and every leaf's value by name."""
    arrays = _read_npz(path)
    try:
        tree = _read_header(arrays)["tree"]
        records: dict[str, dict] = {}
        _check_tree(tree, records)
        values = {name: _leaf_value(record, arrays) for name, record in records.items()}
    except RecursionError:
        raise ParamsFileError(f"load_params: {path}: the structure is nested too deeply") from None
    except _Malformed as e:
        raise ParamsFileError(f"load_params: {path}: {e}") from None
    unlisted = sorted(set(arrays) - {_LEAF_PREFIX + name for name in records})
    if unlisted:
        raise ParamsFileError(
            f"load_params: {path} holds arrays that its structure does not list: {unlisted}"
        )
    return tree, values


def _kind(dtype: Any) -> str:
    """'f' for every floating dtype (bfloat16 and float8 too), else NumPy's kind letter."""
    if jax.numpy.issubdtype(dtype, jax.numpy.floating):
        return "f"
    try:
        return np.dtype(dtype).kind
    except TypeError:  # not a NumPy dtype (a jax.random key's): no kind to compare
        return "?"


def _check_leaf_kind(path: Path, name: str, value: Any, template: Any) -> None:
    """A saved leaf must be of the template leaf's kind: floating for floating (any
    precision: float64 into a float32 template is fine), and so on; a complex or bool array
    would otherwise be cast (imaginary part dropped) or used as weights."""
    want, got = jax.numpy.result_type(template), jax.numpy.result_type(value)
    kinds = {"f": "floating", "i": "integer", "u": "integer", "b": "bool", "c": "complex"}
    if kinds.get(_kind(want), "?") != kinds.get(_kind(got), "?"):
        raise ParamsFileError(
            f"load_params: leaf {name!r} of {path} has dtype {np.dtype(got).name}, but the "
            f"template's is {np.dtype(want).name} ({kinds.get(_kind(want), 'other')} expected)"
        )


def load_params(path: str | os.PathLike, like: Params | None = None) -> Params:
    """Load a pytree saved by :func:`save_params`.

    Every part of the file is checked against the others before anything is returned:
    the archive, the JSON structure, and each leaf's dtype, shape (files written since
    the shape was recorded) and, for Python numbers, that it is one number. Nothing is
    unpickled.

    Args:
        path: the ``.npz`` file.
        like: optional template pytree. Without it the saved structure is rebuilt (dicts,
            lists, tuples, None, leaves as NumPy arrays or Python numbers); with it, the
            result has ``like``'s structure and each leaf is the saved array of the same
            name, checked to have the template leaf's shape and kind of dtype (a float
            leaf for a float template leaf, of any precision; never complex or bool for
            float).

    Returns:
        The params pytree, leaves as NumPy arrays.

    Raises:
        ParamsFileError: (a ValueError) naming the file: it is empty, truncated, text, a
            ``.npy`` array, a pickle, a damaged archive, not a funcnet params file, has a
            malformed structure or a leaf whose data disagrees with it, holds a custom node
            and ``like`` is missing, or ``like``'s leaves' names, shapes or kinds of dtype
            differ.
        OSError: the file cannot be read (missing, a directory, no permission).
    """
    path = _as_path(path, "load_params")
    tree, values = _read_params_file(path)
    if like is None:
        try:
            return _decode(tree, values)
        except RecursionError:
            raise ParamsFileError(
                f"load_params: {path}: the structure is nested too deeply"
            ) from None
        except _Malformed as e:
            raise ParamsFileError(f"load_params: {path}: {e}") from None
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    leaves = []
    for sub, template in flat:
        name = _path_name(sub)
        if name not in values:
            raise ParamsFileError(
                f"load_params: {path} has no leaf {name!r} (it has {sorted(values)})"
            )
        if np.shape(values[name]) != np.shape(template):
            raise ParamsFileError(
                f"load_params: leaf {name!r} of {path} has shape {np.shape(values[name])}, "
                f"but the template's has {np.shape(template)}"
            )
        _check_leaf_kind(path, name, values[name], template)
        leaves.append(values[name])
    if len(leaves) != len(values):
        raise ParamsFileError(
            f"load_params: {path} has {len(values)} leaves, the template {len(leaves)}"
        )
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ---------------------------------------------------------------------------------------
# the book's pickled weights, safely


def _safe_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy.ndarray may be reconstructed")
    return _multiarray._reconstruct(subtype, shape, dtype)


def _safe_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("only numeric NumPy scalars are allowed")
    return _multiarray.scalar(dtype, *args)


def _safe_frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("only numeric NumPy arrays are allowed")
    return _numeric._frombuffer(buf, dtype, shape, order)


def _latin1_encode(text, encoding="latin1"):  # how protocols 0-2 store bytes
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("_codecs.encode is only allowed for latin1 text")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.multiarray", "scalar"): _safe_scalar,
    ("numpy._core.multiarray", "scalar"): _safe_scalar,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED``; every other reference is refused."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only NumPy arrays, dtypes, plain "
                "containers and numbers are allowed in a weight file (nothing was executed)"
            ) from None


def _check_weights(obj: Any, path: Path) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise ParamsFileError(
            f"load_pickled_params: {path} holds a {type(obj).__name__}, expected a dict of "
            "arrays like the book's sample_weight.pkl (W1 b1 W2 b2 W3 b3)"
        )
    out = {}
    for key, value in obj.items():
        array = np.asarray(value) if isinstance(value, (np.generic, int, float)) else value
        if not isinstance(key, str) or not isinstance(array, np.ndarray):
            raise ParamsFileError(
                f"load_pickled_params: {path}: entry {key!r} is a {type(value).__name__}; "
                "expected string keys and NumPy arrays"
            )
        if array.dtype.kind not in "iuf":
            what = "not real numbers" if array.dtype.kind in "bc" else "not numeric"
            raise ParamsFileError(
                f"load_pickled_params: {path}: {key!r} has dtype {array.dtype}, {what} "
                "(weights must be float or integer arrays)"
            )
        out[key] = array
    return out


_UNPICKLING_FAILURES = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    OverflowError,
    RecursionError,
    MemoryError,
)


def _not_a_pickle(path: Path, data: bytes, e: BaseException) -> WeightPickleError:
    """The error for bytes that do not unpickle: what the file is, when that is clear."""
    what = _describe(data[:_HEAD_BYTES])
    if what.startswith(("it is a Python pickle", "it starts with")):
        what = "it is damaged, truncated, or not a pickle"
    if what.startswith(("it is damaged", "it is a text file")):  # the parser's word helps
        what += f" ({type(e).__name__}: {' '.join(str(e).split())})"
    return WeightPickleError(f"load_pickled_params: {path} is not a valid weight pickle: {what}")


def load_pickled_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a weight file in the book's format, a pickled dict of NumPy arrays, safely.

    The unpickler admits only NumPy arrays, dtypes and scalars, plain containers (dict,
    list, tuple, OrderedDict) and numbers; Python 2 pickles are read with
    ``encoding="latin1"`` as NumPy recommends. A reference to anything else (``os.system``,
    ``builtins.eval``, any class) is refused when it is first met, before it can be
    called.

    Args:
        path: e.g. the book's ``ch03/sample_weight.pkl`` (``W1`` (784, 50), ``b1`` (50,),
            ``W2`` (50, 100), ``b2`` (100,), ``W3`` (100, 10), ``b3`` (10,)).

    Returns:
        The dict of arrays, keys as in the file.

    Raises:
        WeightPickleError: (a :class:`ParamsFileError` and a ``pickle.UnpicklingError``)
            the file refers to a disallowed object (the message names it; nothing was
            run), or it is not a valid pickle: empty, truncated, text, an ``.npz`` or
            ``.npy`` file (the message says which).
        ParamsFileError: it unpickles to something other than a dict of real (float or
            integer) arrays: bool and complex arrays are refused.
        OSError: the file cannot be read (missing, a directory, no permission).
    """
    path = _as_path(path, "load_pickled_params")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _os_error(e, f"load_pickled_params: cannot read {path}") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refusing to load"):
            raise WeightPickleError(f"load_pickled_params: {path}: {e}") from None
        raise _not_a_pickle(path, data, e) from None
    except _UNPICKLING_FAILURES as e:
        raise _not_a_pickle(path, data, e) from None
    return _check_weights(obj, path)


def load_weights(path: str | os.PathLike) -> Params:
    """Load weights saved either way: ``.pkl``/``.pickle`` through
    :func:`load_pickled_params`, anything else through :func:`load_params`.

    Raises:
        ParamsFileError: the file is not a valid weight file of the kind its suffix
            names (the message says what it is, e.g. a pickle named ``.npz``).
        OSError: the file cannot be read.
    """
    path = _as_path(path, "load_weights")
    if path.suffix.lower() in (".pkl", ".pickle"):
        return load_pickled_params(path)
    return load_params(path)
