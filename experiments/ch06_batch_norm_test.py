"""Batch normalization against the weight scale (book ch6.3.3, ``batch_norm_test.py``,
Fig. 6-18).

The book's ``MultiLayerNetExtend`` 784-100×5-10 ReLU net
(:mod:`funcnet.nets.multi_layer_extend`) trained on the first 1,000 training images, SGD
lr 0.01, minibatches of 100, 20 epochs of 10 iterations (the book's loop evaluates the
training accuracy on the 1,000 images after iterations 0, 10, …, 190 and stops), with
every weight drawn as ``w · N(0, 1)`` for 16 scales ``w = logspace(0, −4, 16)``, once with
batch norm (Affine → BatchNorm → ReLU in every hidden layer) and once without.

The 16 scales of each kind train as **one** :func:`funcnet.train.fit_many` call (16 runs
``vmap``-ed in one compiled program; two programs in all). Every run draws its weights
from the same key (the same normal numbers, scaled by w) and all 32 runs see the same
minibatches, so a panel compares batch norm with the plain net on identical data. A run
whose loss or weights become non-finite keeps going (its accuracy then says nothing) and
is flagged as diverged.

The book's Fig. 6-18: with batch norm the net learns fast at almost every scale; without
it, it learns only in a narrow band of scales (too large: the activations explode; too
small: the signal dies out in the deep layers).

Prints the final training accuracy of each scale with and without batch norm and writes
to ``--out`` (default ``runs/ch06_batch_norm_test``):

- ``batch_norm_test.png``: the grid of training-accuracy curves (batch norm solid,
  without dashed, y from 0 to 1; the book's panel titles "W: …");
- ``metrics.json``: settings, data set, per scale both curves and final figures, timings.

Run: ``python -m experiments.ch06_batch_norm_test [--epochs 20 --scales 16]``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet import optimizers, train
from funcnet.nets import multi_layer_extend as mle

NAME = "ch06_batch_norm_test"
HIDDEN = [100] * 5
KINDS = {"batch_norm": True, "plain": False}  # label -> use_batchnorm


def weight_scales(n: int) -> np.ndarray:
    """The book's ``np.logspace(0, -4, num=n)``: w from 1 down to 1e-4."""
    return np.logspace(0, -4, num=n)


def scale_label(w: float) -> str:
    """``"1.0"``, ``"0.541"``, ``"0.0001"``: three significant digits, at least one decimal."""
    text = f"{w:.3g}"
    return text if "." in text or "e" in text else text + ".0"


def _stack(trees: list[Any]) -> Any:
    """Stack pytrees of the same structure along a new leading axis (one row per run)."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def train_kind(
    use_batchnorm: bool,
    scales: np.ndarray,
    data_train: tuple[Any, Any],
    data_test: tuple[Any, Any],
    *,
    k_init: jax.Array,
    k_fit: jax.Array,
    iters: int,
    every: int,
    batch_size: int,
    lr: float,
    classes: int,
) -> train.ManyHistory:
    """One net per weight scale (same init key, weights scaled), all trained at once by
    ``fit_many`` on the same minibatches (every run has the key ``k_fit``)."""
    inits = [
        mle.init_multi_layer_net_extend(
            k_init,
            data_train[0].shape[1],
            HIDDEN,
            classes,
            weight_init_std=float(w),
            use_batchnorm=use_batchnorm,
        )
        for w in scales
    ]
    params = _stack([p for p, _ in inits])
    state = _stack([s for _, s in inits])
    net = mle.multi_layer_net_extend("relu")
    _, history = train.fit_many(
        params,
        data_train,
        data_test,
        keys=jnp.stack([k_fit] * len(scales)),
        loss_fn=net.loss,
        predict_fn=net.predict,
        optimizer=optimizers.sgd(lr),
        model_state=state,
        iters=iters,
        batch_size=batch_size,
        eval_every=every,
    )
    return history


def plot(
    scales: np.ndarray, histories: dict[str, train.ManyHistory], path: Path, title: str
) -> Path:
    """Book Fig. 6-18: one panel per scale, training accuracy per epoch, batch norm solid
    and without it dashed; y labels on the first column, x labels on the last row."""
    n = len(scales)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = _common.figure(width=2.6 * cols + 0.6, height=2.1 * rows + 0.6)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    bn, plain = histories["batch_norm"], histories["plain"]
    epochs = np.arange(bn.train_acc.shape[1])
    for i, (ax, w) in enumerate(zip(axes, scales, strict=False)):
        ax.plot(epochs, bn.train_acc[i], label="Batch Normalization", markevery=2)
        ax.plot(
            epochs, plain.train_acc[i], ls="--", label="Normal (without BatchNorm)", markevery=2
        )
        notes = [f"{k} diverged" for k, h in (("BN", bn), ("plain", plain)) if h.diverged[i]]
        ax.set_title(f"W: {scale_label(w)}" + (f" ({', '.join(notes)})" if notes else ""))
        ax.set_ylim(0, 1.0)
        ax.grid(alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
        if i >= n - cols:
            ax.set_xlabel("epochs")
            ax.tick_params(labelbottom=True)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[n - 1].legend(loc="lower right", fontsize=7)
    fig.suptitle(title)
    return _common.save(fig, path)


def _summaries(scales: np.ndarray, histories: dict[str, train.ManyHistory]) -> list[dict]:
    rows = []
    for i, w in enumerate(scales):
        row: dict[str, Any] = {"weight_init_std": float(w)}
        for label, h in histories.items():
            row[label] = {
                "final_train_acc": float(h.final_train_acc[i]),
                "final_test_acc": float(h.final_test_acc[i]),
                "diverged": bool(h.diverged[i]),
                "train_acc": h.train_acc[i],
            }
        rows.append(row)
    return rows


def _print_table(rows: list[dict]) -> None:
    print(f"{'w':>8}  {'with BN':>8}  {'without':>8}   (final training accuracy)")
    for row in rows:
        cells = []
        for label in KINDS:
            r = row[label]
            cells.append(f"{r['final_train_acc']:8.4f}" + ("*" if r["diverged"] else " "))
        print(f"{scale_label(row['weight_init_std']):>8}  " + " ".join(cells))
    if any(row[label]["diverged"] for row in rows for label in KINDS):
        print("* diverged: a loss or weight became non-finite; its accuracy says nothing")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Batch norm vs the plain net over 16 weight scales (book Fig. 6-18).",
    )
    p.add_argument(
        "--epochs", type=_common.positive_int, default=20, help="evaluations (default: 20)"
    )
    p.add_argument(
        "--scales",
        type=_common.positive_int,
        default=16,
        help="weight scales logspace(0, -4, N) (default: 16)",
    )
    p.add_argument(
        "--train-size", type=_common.positive_int, default=1000, help="training images (1000)"
    )
    p.add_argument(
        "--batch-size", type=_common.batch_size, default=100, help="minibatch (default: 100)"
    )
    p.add_argument(
        "--lr", type=_common.positive_float, default=0.01, help="SGD learning rate (0.01)"
    )
    _common.add_dataset_flag(p)
    p.add_argument(
        "--seed", type=_common.seed, default=0, help="random seed (default: %(default)s)"
    )
    _common.add_out_flag(p, NAME)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train both kinds over every scale; returns the metrics written to ``metrics.json``."""
    args = parse_args(argv)
    out = _common.out_dir(args.out)
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.claim(out, NAME, args, data.name)
    x_all, t_all = data.train
    if args.train_size > len(x_all):
        raise ValueError(
            f"--train-size {args.train_size} exceeds the {len(x_all):,} training images of "
            f"{data.name}"
        )
    train_data = (x_all[: args.train_size], t_all[: args.train_size])
    classes = len(data.class_names)
    every = train.iters_per_epoch(args.train_size, args.batch_size)
    iters = (args.epochs - 1) * every + 1  # evaluations after iterations 0, every, …
    scales = weight_scales(args.scales)
    k_init, k_fit = jax.random.split(jax.random.key(args.seed))
    print(
        f"{x_all.shape[1]}-{'-'.join(map(str, HIDDEN))}-{classes} ReLU net, "
        f"{args.train_size} training images, SGD lr {args.lr}, batch {args.batch_size}, "
        f"{args.epochs} evaluations ({iters} iterations, {every} per epoch), "
        f"{args.scales} weight scales from 1 to 1e-4, with and without batch norm"
    )
    histories = {}
    for label, use_bn in KINDS.items():
        histories[label] = train_kind(
            use_bn,
            scales,
            train_data,
            data.test,
            k_init=k_init,
            k_fit=k_fit,
            iters=iters,
            every=every,
            batch_size=args.batch_size,
            lr=args.lr,
            classes=classes,
        )
        h = histories[label]
        print(
            f"{label}: {args.scales} runs in one fit_many call, {h.wall_time:.1f} s "
            f"({h.compile_time:.1f} s compiling)"
        )
    rows = _summaries(scales, histories)
    _print_table(rows)
    metrics = {
        "experiment": NAME,
        "settings": {
            "epochs": args.epochs,
            "iters": iters,
            "iters_per_epoch": every,
            "train_size": args.train_size,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "hidden": HIDDEN,
            "weight_init_stds": scales,
            "seed": args.seed,
        },
        "dataset": {
            "requested": args.dataset,
            "used": data.name,
            "train_size": args.train_size,
            "test_size": len(data.test[0]),
        },
        "timing": {
            label: {"wall_s": h.wall_time, "compile_s": h.compile_time}
            for label, h in histories.items()
        },
        "scales": rows,
    }
    title = f"{data.name}, {args.train_size} images: batch norm (solid), without (dashed)"
    written = [
        plot(scales, histories, out / "batch_norm_test.png", title),
        _common.write_json(out / "metrics.json", metrics),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return metrics


if __name__ == "__main__":
    _common.run(main)
