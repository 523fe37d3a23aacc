"""Overfitting, and dropout against it (book ch6.4.3, ``overfit_dropout.py``, Figs.
6-22/6-23).

The book's ``MultiLayerNetExtend`` 784-100×6-10 ReLU net with He initialisation
(:mod:`funcnet.nets.multi_layer_extend`) trained on only the first 300 training images by
the book's ``Trainer``: SGD lr 0.01, minibatches of 100, 301 epochs of 3 iterations (903
iterations; train and test accuracy over the whole sets after iterations 0, 3, …, 900,
and once more after the last), once with dropout (ratio 0.2 after every hidden
activation) and once without. :func:`funcnet.train.fit` with ``epochs=`` is that loop.

Both runs start from the same weights and see the same minibatches. The dropout masks
come from the run's key: iteration i's minibatch key is ``fold_in(key, i)``, its loss key
is derived from that, and hidden layer l's mask from ``fold_in(loss key, l)``: the run is
reproducible and needs no hidden random state. Accuracy is measured in inference mode
(every unit kept, outputs scaled by 1 − ratio, the book's rule).

Without dropout the training accuracy reaches 1.0 while the test accuracy stays far
below; with dropout the training accuracy climbs more slowly and the gap narrows.

Prints the final accuracies and writes to ``--out`` (default ``runs/ch06_overfit_dropout``):

- ``accuracy.png``: two panels, without and with dropout (markers every 15 epochs,
  y from 0 to 1, as the book);
- ``metrics.json``: settings, data set, per run the accuracy curves and final figures.

Run: ``python -m experiments.ch06_overfit_dropout [--epochs 301 --dropout-ratio 0.2]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import _ch06, _common
from funcnet import optimizers
from funcnet.nets import multi_layer_extend as mle
from funcnet.train import TrainingDiverged, fit, iters_per_epoch

NAME = "ch06_overfit_dropout"
HIDDEN = [100] * 6


def plot(results: dict[str, _ch06.Result], path: Path, title: str) -> Path:
    """Book Fig. 6-23 side by side: train and test accuracy per epoch, without and with
    dropout."""
    fig = _common.figure(width=11.0, height=4.6)
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False)[0]
    for ax, (label, result) in zip(axes, results.items(), strict=True):
        h = result.history
        epochs = np.arange(h.train_acc.size)
        every = max(1, epochs.size // 20)
        ax.plot(epochs, h.train_acc, marker="o", markevery=every, ms=4, label="train")
        ax.plot(epochs, h.test_acc, marker="s", markevery=every, ms=4, label="test")
        ax.set_xlabel("epochs")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.0)
        ax.set_title(label + (" (diverged)" if result.diverged else ""))
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
        "wall_s": h.wall_time,
        "train_acc": h.train_acc,
        "test_acc": h.test_acc,
    }


def train_run(params, state, net, data, *, key, epochs, batch_size, lr) -> _ch06.Result:
    """``fit`` in the book's Trainer form (``epochs``, every epoch evaluated on the whole
    sets); a divergence keeps the history up to it."""
    try:
        _, history = fit(
            params,
            data.train,
            data.test,
            key=key,
            loss_fn=net.loss,
            predict_fn=net.predict,
            model_state=state,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizers.sgd(lr),
        )
        return _ch06.Result(history, False)
    except TrainingDiverged as e:
        print(e)
        return _ch06.Result(e.history, True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Overfitting 300 images, without and with dropout (book Fig. 6-23).",
    )
    p.add_argument("--epochs", type=_common.positive_int, default=301, help="epochs (default: 301)")
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
        "--dropout-ratio",
        type=_common.fraction,
        default=0.2,
        help="fraction of hidden units dropped, in [0, 1) (default: 0.2)",
    )
    _common.add_dataset_flag(p)
    p.add_argument(
        "--seed", type=_common.seed, default=0, help="random seed (default: %(default)s)"
    )
    _common.add_out_flag(p, NAME)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train without and with dropout; returns the metrics written to ``metrics.json``."""
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
    data = data._replace(train=(x_all[: args.train_size], t_all[: args.train_size]))
    classes = len(data.class_names)
    every = iters_per_epoch(args.train_size, args.batch_size)
    k_init, k_fit = jax.random.split(jax.random.key(args.seed))
    params, state = mle.init_multi_layer_net_extend(k_init, x_all.shape[1], HIDDEN, classes)
    nets = {
        "without dropout": mle.multi_layer_net_extend("relu"),
        f"with dropout (ratio {args.dropout_ratio:g})": mle.multi_layer_net_extend(
            "relu", use_dropout=True, dropout_ratio=args.dropout_ratio
        ),
    }
    print(
        f"{x_all.shape[1]}-{'-'.join(map(str, HIDDEN))}-{classes} ReLU net, He init, "
        f"{args.train_size} training images, SGD lr {args.lr}, batch {args.batch_size}, "
        f"{args.epochs} epochs ({args.epochs * every} iterations, {every} per epoch)"
    )
    results = {
        label: train_run(
            params,
            state,
            net,
            data,
            key=k_fit,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
        )
        for label, net in nets.items()
    }
    summaries = {label: _summary(r) for label, r in results.items()}
    for label, s in summaries.items():
        reached = s["first_epoch_train_acc_1"]
        print(
            f"{label:<26} final train acc {s['final_train_acc']:.4f}, test acc "
            f"{s['final_test_acc']:.4f} (gap {s['gap']:.4f}); best test acc "
            f"{s['max_test_acc']:.4f}; train acc 1.0 "
            + (f"from epoch {reached}" if reached is not None else "never reached")
            + f"; {s['wall_s']:.1f} s"
        )
    metrics = {
        "experiment": NAME,
        "settings": {
            "epochs": args.epochs,
            "iters": args.epochs * every,
            "iters_per_epoch": every,
            "train_size": args.train_size,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "dropout_ratio": args.dropout_ratio,
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
