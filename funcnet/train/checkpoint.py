"""Checkpoints of a training run: the whole :class:`TrainState` and the history so far,
in one ``.npz`` written atomically by :func:`funcnet.io.save_params`.

Why not Orbax: a run here is one small pytree saved once an epoch; ``funcnet.io`` already
writes any pytree of arrays atomically (temporary file, then rename; cleaned up on
errors, Ctrl-C and SIGTERM) and reads it back with every leaf checked, without pickle.
Orbax would add a large dependency tree (tensorstore, ...) for the same guarantees.

A checkpoint is only resumed by a run like the one that wrote it: it records a fingerprint
of the run's schedule, batch size, data shapes and the state's structure, shapes and
dtypes, and a mismatch is a clear error. Hyperparameter *values* hidden inside the loss
or the optimizer (a learning rate) are not part of it: resuming with another learning
rate continues with that one.
"""

from __future__ import annotations

import hashlib
import os
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


def fingerprint(state: TrainState, settings: dict[str, Any]) -> str:
    """A short hash of the run's settings and of the state's structure, shapes and dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    parts = [str(treedef), repr(sorted(settings.items()))]
    parts += [f"{np.shape(leaf)}:{jax.numpy.result_type(leaf)}" for leaf in leaves]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _key_to_data(leaf: Any) -> Any:
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def save_checkpoint(path: str | os.PathLike, state: TrainState, record: Record, tag: str) -> None:
    """Write ``state`` and ``record`` to ``path`` atomically (``tag`` from :func:`fingerprint`)."""
    leaves = [_key_to_data(leaf) for leaf in jax.tree_util.tree_leaves(jax.device_get(state))]
    fio.save_params(
        path,
        {
            "fingerprint": np.frombuffer(tag.encode(), np.uint8),
            "state": leaves,
            "losses": np.concatenate(record.losses) if record.losses else np.zeros(0, np.float32),
            "eval_iters": np.asarray(record.eval_iters, np.int64),
            "accs": np.asarray(record.accs, np.float64).reshape(-1, 2),
            "last_acc": np.asarray(record.last_acc, np.float64),
        },
    )


def load_checkpoint(
    path: str | os.PathLike, template: TrainState, tag: str
) -> tuple[TrainState, Record]:
    """Read a checkpoint written by :func:`save_checkpoint` for the same run.

    ``template`` (the run's initial state) gives the structure, dtypes and key type.

    Raises:
        CheckpointMismatch: the file belongs to another run.
        funcnet.io.ParamsFileError: the file is damaged.
    """
    saved = fio.load_params(Path(path))
    found = bytes(np.asarray(saved.get("fingerprint", []), np.uint8)).decode(errors="replace")
    if found != tag:
        raise CheckpointMismatch(
            f"fit: the checkpoint {path} was written by another run (other settings, data "
            "shapes or net); delete it or pass another checkpoint path to start afresh"
        )
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
