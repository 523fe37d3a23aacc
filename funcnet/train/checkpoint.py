"""Checkpoints of a training run: the whole :class:`TrainState` and the history so far,
in one ``.npz`` written atomically by :func:`funcnet.io.save_params`.

Why not Orbax: a run here is one small pytree saved once an epoch; ``funcnet.io`` already
writes any pytree of arrays atomically (temporary file, then rename; cleaned up on
errors, Ctrl-C and SIGTERM) and reads it back with every leaf checked, without pickle.
Orbax would add a large dependency tree (tensorstore, ...) for the same guarantees.

A checkpoint is only resumed by the run that wrote it. It records a fingerprint: named
entries for the run's key, its initial params, model state and optimizer state (content
hashes), the train and test data (SHA-256 of their bytes, shapes and dtypes), the
schedule, the batch size, the state's structure, shapes and dtypes, the learning rate of
fit's default SGD, the programs the run computes (``loss_fn``, ``predict_fn`` and the
optimizer's ``init``/``update``, each traced at the run's shapes: see
:func:`program_hash`), and any settings the caller adds
(``fit(checkpoint_settings=...)``: a seed, a data set name). A resuming run must match
every entry; :class:`CheckpointMismatch` names those that differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from funcnet import io as fio
from funcnet.train.step import TrainState


class Record(NamedTuple):
    """What the host loop has recorded so far (plain Python/NumPy values)."""

    losses: list  # of (num,) arrays
    eval_iters: list  # of int
    accs: list  # of (train, test) float pairs
    last_acc: Any  # the accuracies of the state's params, (2,)


class CheckpointMismatch(ValueError):
    """The checkpoint file belongs to another run (other settings or another net)."""


Fingerprint = dict[str, str]
"""Named entries (``"key"``, ``"initial params"``, ``"train data"``, ``"lr"``, ...) whose
values are short content hashes or the settings' ``repr``."""


def content_hash(tree: Any) -> str:
    """SHA-256 (first 16 hex digits) of a pytree's structure and of each leaf's shape,
    dtype and bytes (typed PRNG keys by their key data). Arrays on a device are copied to
    the host; 60,000 x 784 float32 images (188 MB) take about 0.25 s."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        a = np.ascontiguousarray(_key_to_data(leaf))
        h.update(f"{a.shape}:{a.dtype}".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()[:16]


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def program_hash(f: Callable[..., Any], *args: Any) -> str:
    """SHA-256 (first 16 hex digits) of what ``f(*args)`` computes: the text of its jaxpr
    (``jax.make_jaxpr``, traced at the shapes and dtypes of ``args``, which may be
    ``jax.ShapeDtypeStruct``s) and the bytes of the arrays it closes over.

    Closed-over Python numbers (a learning rate inside an optimizer, β, a weight decay λ)
    are literals of the text; closed-over arrays are its constants, hashed by
    :func:`content_hash`. Memory addresses that a primitive's parameters may print
    (``<function f at 0x...>``) are left out, so the same program hashes the same in
    another process. Nothing is compiled; tracing a DeepConvNet's loss and gradient takes
    about 0.3 s the first time.
    """
    closed = jax.make_jaxpr(f)(*args)
    h = hashlib.sha256(_ADDRESS.sub("", str(closed.jaxpr)).encode())
    h.update(content_hash(list(closed.consts)).encode())
    return h.hexdigest()[:16]


def fingerprint(
    state: TrainState,
    settings: dict[str, Any],
    data: dict[str, Any] | None = None,
    programs: dict[str, tuple[Callable[..., Any], tuple] | str] | None = None,
) -> Fingerprint:
    """The fingerprint of a run that starts from ``state``.

    Args:
        state: the run's initial state (its key, params, optimizer and model state are
            hashed by content, its structure by shapes and dtypes).
        settings: named values (schedule, batch size, learning rate, the caller's own
            settings), recorded by ``repr``.
        data: named data (``{"train data": (x, t), ...}``), hashed by content.
        programs: named functions and their arguments (``{"optimizer": (f, args)}``),
            hashed by :func:`program_hash`, or such hashes already made.
    """
    leaves, treedef = jax.tree_util.tree_flatten(state)
    structure = [str(treedef)]
    structure += [f"{np.shape(leaf)}:{jax.numpy.result_type(leaf)}" for leaf in leaves]
    entries = {"net (state structure, shapes, dtypes)": _short("\n".join(structure))}
    entries["key"] = content_hash(state.key)
    entries["initial params"] = content_hash(state.params)
    entries["initial model_state"] = content_hash(state.model_state)
    entries["initial optimizer state"] = content_hash(state.opt_state)
    for name, value in (data or {}).items():
        entries[name] = content_hash(value)
    for name, program in (programs or {}).items():
        if not isinstance(program, str):
            f, args = program
            program = program_hash(f, *args)
        entries[name] = program
    for name, value in settings.items():
        entries[str(name)] = repr(value)
    return entries


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(found: Fingerprint, expected: Fingerprint) -> list[str]:
    """One phrase per entry that differs: ``"lr (checkpoint 0.001, this run 0.01)"``;
    hashes are named only (their digits would tell a reader nothing)."""
    out = []
    for name in list(found) + [n for n in expected if n not in found]:
        a, b = found.get(name), expected.get(name)
        if a == b:
            continue
        if a is None:
            out.append(f"{name} (not recorded in the checkpoint)")
        elif b is None:
            out.append(f"{name} (only in the checkpoint)")
        elif name in _PROGRAMS:
            out.append(f"{name} ({_PROGRAMS[name]})")
        elif name in _HASHED or name.endswith(" data"):
            out.append(name)
        else:
            out.append(f"{name} (checkpoint {_clip(a)}, this run {_clip(b)})")
    return out


_HASHED = (
    "net (state structure, shapes, dtypes)",
    "key",
    "initial params",
    "initial model_state",
    "initial optimizer state",
)


_PROGRAMS = {
    "optimizer": "another rule or other hyperparameters: its init/update compute otherwise",
    "loss_fn": "another loss: it computes otherwise at the run's shapes",
    "predict_fn": "another prediction: it computes otherwise at the run's shapes",
}
"""The entries hashed by :func:`program_hash`, with what a difference means."""


def fingerprint_entries() -> tuple[str, ...]:
    """The entry names ``fit`` fills in itself (a caller's settings may add ``lr``)."""
    return (
        *_HASHED,
        *_PROGRAMS,
        "train data",
        "test data",
        "plan",
        "batch_size",
        "eval_sample",
    )


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_to_data(leaf: Any) -> Any:
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


CHECKPOINT_ENTRIES = ("fingerprint", "state", "losses", "eval_iters", "accs", "last_acc")
"""The top-level entries of a checkpoint file (:func:`save_checkpoint`)."""


def is_checkpoint(tree: Any) -> bool:
    """True when ``tree`` (what :func:`funcnet.io.load_params` read from a file) is a
    checkpoint written by ``fit(checkpoint_path=...)``, not a params file: a reader of
    weights can then say so instead of failing on its unnamed state arrays."""
    return isinstance(tree, dict) and set(tree) == set(CHECKPOINT_ENTRIES)


def save_checkpoint(
    path: str | os.PathLike, state: TrainState, record: Record, tag: Fingerprint
) -> None:
    """Write ``state`` and ``record`` to ``path`` atomically (``tag`` from :func:`fingerprint`)."""
    leaves = [_key_to_data(leaf) for leaf in jax.tree_util.tree_leaves(jax.device_get(state))]
    fio.save_params(
        path,
        {
            "fingerprint": np.frombuffer(json.dumps(tag, sort_keys=True).encode(), np.uint8),
            "state": leaves,
            "losses": np.concatenate(record.losses) if record.losses else np.zeros(0, np.float32),
            "eval_iters": np.asarray(record.eval_iters, np.int64),
            "accs": np.asarray(record.accs, np.float64).reshape(-1, 2),
            "last_acc": np.asarray(record.last_acc, np.float64),
        },
    )


def check_checkpoint(path: str | os.PathLike, tag: Fingerprint) -> None:
    """Refuse the checkpoint at ``path``, if there is one, when another run wrote it (a
    check made before anything compiles).

    Raises:
        CheckpointMismatch: the file belongs to another run, naming what differs.
        funcnet.io.ParamsFileError: the file is damaged.
    """
    if Path(path).exists():
        _compare(fio.load_params(Path(path)), path, tag)


def _compare(saved: dict, path: str | os.PathLike, tag: Fingerprint) -> None:
    text = bytes(np.asarray(saved.get("fingerprint", []), np.uint8)).decode(errors="replace")
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise CheckpointMismatch(
            f"fit: the checkpoint {path} records no settings to compare (written by an older "
            "funcnet, or not a checkpoint); delete it or pass another checkpoint path to "
            "start afresh"
        )
    differences = _differences(found, tag)
    if differences:
        raise CheckpointMismatch(
            f"fit: the checkpoint {path} was written by another run; it differs in "
            f"{'; '.join(differences)}. Delete it or pass another checkpoint path to "
            "start afresh"
        )


def load_checkpoint(
    path: str | os.PathLike, template: TrainState, tag: Fingerprint
) -> tuple[TrainState, Record]:
    """Read a checkpoint written by :func:`save_checkpoint` for the same run.

    ``template`` (the run's initial state) gives the structure, dtypes and key type.

    Raises:
        CheckpointMismatch: the file belongs to another run.
        funcnet.io.ParamsFileError: the file is damaged.
    """
    saved = fio.load_params(Path(path))
    _compare(saved, path, tag)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    restored = []
    for like, value in zip(leaves, saved["state"], strict=True):
        if isinstance(like, jax.Array) and jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key):
            restored.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(like)))
        else:
            restored.append(np.asarray(value, dtype=jax.numpy.result_type(like)))
    state = jax.tree_util.tree_unflatten(treedef, restored)
    losses = np.asarray(saved["losses"])
    record = Record(
        losses=[losses] if losses.size else [],
        eval_iters=[int(i) for i in np.asarray(saved["eval_iters"])],
        accs=[tuple(map(float, a)) for a in np.asarray(saved["accs"])],
        last_acc=np.asarray(saved["last_acc"]),
    )
    return state, record
