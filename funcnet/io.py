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

Arrays are returned as NumPy arrays (JAX functions accept them; ``jax.device_put`` places
them on a device).
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

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


# ---------------------------------------------------------------------------------------
# .npz with a JSON structure


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
    record = {"type": "leaf", "name": name, "dtype": array.dtype.name}
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


def save_params(path: str | Path, params: Params) -> None:
    """Save a pytree of arrays to ``path`` as ``.npz``, atomically.

    Each leaf is one array in the archive, named by its path in the tree (``W1``,
    ``layers/0/W``, ...); the structure is stored as JSON (no pickle). The file is
    written to a temporary file in the same directory and renamed over ``path`` only
    when complete, so an existing file is never left half-written. ``path`` is used as
    given (no ``.npz`` is appended).

    Args:
        path: the file to write; its directory must exist.
        params: dicts (str or int keys), lists, tuples, ``None``, other pytree nodes, and
            leaves that are arrays (NumPy or JAX, any numeric dtype incl. bfloat16) or
            Python numbers.

    Raises:
        ValueError: a leaf is not numeric, or two leaves would get the same name.
    """
    path = Path(path)
    leaves: dict[str, np.ndarray] = {}
    tree = _encode(params, (), leaves)
    header = json.dumps({"format": _FORMAT, "tree": tree})
    arrays = {_TREE_KEY: np.frombuffer(header.encode(), dtype=np.uint8)}
    for name, array in leaves.items():
        if array.dtype.name in _extension_dtypes():
            array = array.view(f"u{array.dtype.itemsize}")  # raw bits; dtype is in the JSON
        arrays[_LEAF_PREFIX + name] = array
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _restore_dtype(array: np.ndarray, dtype_name: str) -> np.ndarray:
    if array.dtype.name == dtype_name:
        return array
    return array.view(jax.numpy.dtype(dtype_name))  # bfloat16 & co., saved as raw bits


def _leaf_value(record: dict, arrays) -> Any:
    array = _restore_dtype(arrays[_LEAF_PREFIX + record["name"]], record["dtype"])
    return _PY_SCALARS[record["python"]](array.item()) if "python" in record else array


def _decode(node: dict, arrays) -> Any:
    kind = node["type"]
    if kind == "none":
        return None
    if kind == "leaf":
        return _leaf_value(node, arrays)
    if kind == "dict":
        return {
            (int(k) if t == "int" else str(k)): _decode(c, arrays)
            for (t, k), c in zip(node["keys"], node["children"], strict=True)
        }
    if kind in ("list", "tuple"):
        children = [_decode(c, arrays) for c in node["children"]]
        return children if kind == "list" else tuple(children)
    raise ValueError(
        f"the tree contains a {node['treedef']} node, which cannot be rebuilt from the "
        "file alone; pass a template of the same structure: load_params(path, like=...)"
    )


def _leaf_records(node: dict) -> dict[str, dict]:
    """Every leaf record of a JSON tree, by name."""
    if node["type"] == "leaf":
        return {node["name"]: node}
    children = node.get("children", []) + node.get("leaves", [])
    return {k: v for c in children for k, v in _leaf_records(c).items()}


def load_params(path: str | Path, like: Params | None = None) -> Params:
    """Load a pytree saved by :func:`save_params`.

    Args:
        path: the ``.npz`` file.
        like: optional template pytree. Without it the saved structure is rebuilt (dicts,
            lists, tuples, None, leaves as NumPy arrays or Python numbers); with it, the
            result has ``like``'s structure and each leaf is the saved array of the same
            name, checked to have the template leaf's shape.

    Returns:
        The params pytree, leaves as NumPy arrays.

    Raises:
        ValueError: not a funcnet params file, a custom node without ``like``, or a
            ``like`` whose leaves' names or shapes do not match the file.
    """
    with np.load(path, allow_pickle=False) as npz:
        if _TREE_KEY not in npz.files:
            raise ValueError(f"load_params: {path} is not a funcnet params file (no structure)")
        header = json.loads(npz[_TREE_KEY].tobytes().decode())
        if header.get("format") != _FORMAT:
            raise ValueError(f"load_params: {path}: unknown format {header.get('format')!r}")
        arrays = {name: npz[name] for name in npz.files if name != _TREE_KEY}
    tree = header["tree"]
    if like is None:
        try:
            return _decode(tree, arrays)
        except ValueError as e:
            raise ValueError(f"load_params: {path}: {e}") from None
    records = _leaf_records(tree)
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    leaves = []
    for sub, template in flat:
        name = _path_name(sub)
        if _LEAF_PREFIX + name not in arrays:
            raise ValueError(f"load_params: {path} has no leaf {name!r} (it has {sorted(records)})")
        array = _leaf_value(records[name], arrays)
        if np.shape(array) != np.shape(template):
            raise ValueError(
                f"load_params: leaf {name!r} of {path} has shape {np.shape(array)}, "
                f"but the template's has {np.shape(template)}"
            )
        leaves.append(array)
    if len(leaves) != len(records):
        raise ValueError(
            f"load_params: {path} has {len(records)} leaves, the template {len(leaves)}"
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
        raise ValueError(
            f"load_pickled_params: {path} holds a {type(obj).__name__}, expected a dict of "
            "arrays like the book's sample_weight.pkl (W1 b1 W2 b2 W3 b3)"
        )
    out = {}
    for key, value in obj.items():
        array = np.asarray(value) if isinstance(value, (np.generic, int, float)) else value
        if not isinstance(key, str) or not isinstance(array, np.ndarray):
            raise ValueError(
                f"load_pickled_params: {path}: entry {key!r} is a {type(value).__name__}; "
                "expected string keys and NumPy arrays"
            )
        if array.dtype.kind not in "biufc":
            raise ValueError(
                f"load_pickled_params: {path}: {key!r} has dtype {array.dtype}, not numeric"
            )
        out[key] = array
    return out


def load_pickled_params(path: str | Path) -> dict[str, np.ndarray]:
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
        pickle.UnpicklingError: the file refers to a disallowed object (the message names
            it), or is not a valid pickle.
        ValueError: it unpickles to something other than a dict of numeric arrays.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"load_pickled_params: {path}: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise pickle.UnpicklingError(
            f"load_pickled_params: {path} is not a valid weight pickle ({type(e).__name__}: {e})"
        ) from None
    return _check_weights(obj, path)


def load_weights(path: str | Path) -> Params:
    """Load weights saved either way: ``.pkl``/``.pickle`` through
    :func:`load_pickled_params`, anything else through :func:`load_params`."""
    if Path(path).suffix.lower() in (".pkl", ".pickle"):
        return load_pickled_params(path)
    return load_params(path)
