"""Overfitting, and weight decay against it (book ch6.4, ``overfit_weight_decay.py``,
Figs. 6-20 and 6-21).

A 784-100×6-10 ReLU net with He initialisation trained on only the first 300 training
images: SGD lr 0.01, minibatches of 100, 201 epochs of 3 iterations (the book's loop
evaluates after iterations 0, 3, …, 600), once without weight decay (λ = 0) and once
with λ = 0.1 (the loss gains ½·λ·Σ‖Wᵢ‖², :func:`funcnet.nets.multi_layer_net_loss`).
Both runs start from the same weights and see the same minibatches
(:func:`funcnet.train.fit`, ``eval_every`` = one epoch). Train and test accuracy per
epoch, one panel per λ: without decay the training accuracy reaches 1.0 while the test
accuracy stays far below; with decay the gap narrows.

Prints the final accuracies and writes to ``--out`` (default
``runs/ch06_overfit_weight_decay``):

- ``accuracy.png``: the two panels (markers every 10 epochs, y from 0 to 1, as the book);
- ``metrics.json``: settings, data set, per λ the accuracy curves and final figures.

Run: ``python -m experiments.ch06_overfit_weight_decay [--epochs 201]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import _ch06, _common
from funcnet import nets, optimizers
from funcnet.train import iters_per_epoch

NAME = "ch06_overfit_weight_decay"
HIDDEN = [100] * 6


def plot(results: dict[float, _ch06.Result], path: Path, title: str) -> Path:
    """Book Figs. 6-20/6-21 side by side: train and test accuracy per epoch for each λ."""
    fig = _common.figure(width=11.0, height=4.6)
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False)[0]
    for ax, (lam, result) in zip(axes, results.items(), strict=True):
        h = result.history
        epochs = np.arange(h.train_acc.size)
        every = max(1, epochs.size // 20)
        ax.plot(epochs, h.train_acc, marker="o", markevery=every, ms=4, label="train")
        ax.plot(epochs, h.test_acc, marker="s", markevery=every, ms=4, label="test")
        ax.set_xlabel("epochs")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.0)
        ax.set_title(f"weight decay λ = {lam:g}" + (" (diverged)" if result.diverged else ""))
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _common.save(fig, path)


def _summary(result: _ch06.Result) -> dict[str, Any]:
    h = result.history
    reached = np.flatnonzero(h.train_acc >= 1.0)
    return {
        "diverged": result.diverged,
        "iterations": h.iterations,
        "final_train_acc": h.final_train_acc,
        "final_test_acc": h.final_test_acc,
        "gap": h.final_train_acc - h.final_test_acc,
        "max_test_acc": float(h.test_acc.max()) if h.test_acc.size else None,
        "first_epoch_train_acc_1": int(reached[0]) if reached.size else None,
        "train_acc": h.train_acc,
        "test_acc": h.test_acc,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train without and with weight decay; returns the metrics written to ``metrics.json``."""
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Overfitting 300 images, without and with weight decay (book Figs. 6-20/6-21).",
    )
    p.add_argument("--epochs", type=_common.positive_int, default=201, help="epochs (default: 201)")
    p.add_argument(
        "--train-size", type=_common.positive_int, default=300, help="training images (300)"
    )
    p.add_argument(
        "--batch-size", type=_common.batch_size, default=100, help="minibatch (default: 100)"
    )
    p.add_argument(
        "--lr", type=_common.positive_float, default=0.01, help="SGD learning rate (0.01)"
    )
    p.add_argument(
        "--weight-decay",
        type=_common.positive_float,
        default=0.1,
        help="λ of the second run (the first has none) (default: 0.1)",
    )
    _common.add_dataset_flag(p)
    p.add_argument(
        "--seed", type=_common.seed, default=0, help="random seed (default: %(default)s)"
    )
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    out = _common.out_dir(args.out)
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.claim(out, NAME, args, data.name)
    x_all, t_all = data.train
    if args.train_size > len(x_all):
        raise ValueError(
            f"--train-size {args.train_size} exceeds the {len(x_all):,} training images of "
            f"{data.name}"
        )
    data = data._replace(train=(x_all[: args.train_size], t_all[: args.train_size]))
    classes = len(data.class_names)
    every = iters_per_epoch(args.train_size, args.batch_size)
    iters = (args.epochs - 1) * every + 1  # evaluations after iterations 0, every, …
    k_init, k_fit = jax.random.split(jax.random.key(args.seed))
    params = nets.init_multi_layer_net(k_init, x_all.shape[1], HIDDEN, classes)
    lambdas = (0.0, args.weight_decay)
    runs = {
        lam: _ch06.Run(
            params,
            nets.multi_layer_net("relu", lam).loss,
            nets.multi_layer_net("relu").predict,
            optimizers.sgd(args.lr),
        )
        for lam in lambdas
    }
    print(
        f"{x_all.shape[1]}-{'-'.join(map(str, HIDDEN))}-{classes} ReLU net, He init, "
        f"{args.train_size} training images, SGD lr {args.lr}, batch {args.batch_size}, "
        f"{args.epochs} epochs ({iters} iterations, {every} per epoch)"
    )
    results = _ch06.train_runs(
        runs, data, key=k_fit, iters=iters, batch_size=args.batch_size, eval_every=every
    )
    summaries = {f"lambda={lam:g}": _summary(r) for lam, r in results.items()}
    for label, s in summaries.items():
        reached = s["first_epoch_train_acc_1"]
        print(
            f"{label:<11} final train acc {s['final_train_acc']:.4f}, test acc "
            f"{s['final_test_acc']:.4f} (gap {s['gap']:.4f}); best test acc "
            f"{s['max_test_acc']:.4f}; train acc 1.0 "
            + (f"from epoch {reached}" if reached is not None else "never reached")
        )
    metrics = {
        "experiment": NAME,
        "settings": {
            "epochs": args.epochs,
            "iters": iters,
            "iters_per_epoch": every,
            "train_size": args.train_size,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "weight_decay_lambdas": lambdas,
            "hidden": HIDDEN,
            "seed": args.seed,
        },
        "dataset": {
            "requested": args.dataset,
            "used": data.name,
            "train_size": args.train_size,
            "test_size": len(data.test[0]),
        },
        "runs": summaries,
    }
    title = f"{data.name}: {args.train_size} training images, 6 hidden layers of 100"
    written = [
        plot(results, out / "accuracy.png", title),
        _common.write_json(out / "metrics.json", metrics),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return metrics


if __name__ == "__main__":
    _common.run(main)
