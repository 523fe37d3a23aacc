"""Make weights for the book's ch3 network here, offline: train it and save ``params.npz``.

Chapter 3 runs inference with trained weights (the book's ``sample_weight.pkl``, which
needs a download). This program trains the same 784-50-100-10 network (affine → sigmoid
→ affine → sigmoid → affine → softmax) on the available data and saves its weights, so
that ``ch03_neuralnet_mnist`` runs end to end without the pickle::

    python -m experiments.ch03_train_three_layer_net
    python -m experiments.ch03_neuralnet_mnist \\
        --weights runs/ch03_train_three_layer_net/mnist-5k/params.npz

The loss is built from :mod:`funcnet.layers` (``affine``, ``sigmoid``,
``softmax_with_loss``: their hand-written backward rules give the gradient) and the
accuracy from ``nets.three_layer_net_predict`` (the network ch3 runs). Training follows
the book's ch4/ch5 loop (``funcnet.train.fit``: minibatches of 100 drawn with
replacement, SGD, weights of std 0.01, accuracies after every epoch), with a learning
rate of 1.0 instead of 0.1: two sigmoid layers of small weights shrink the gradient of
the first layers, and at 0.1 the net reaches about 0.91 test accuracy on the subset after
10,000 iterations (about 0.93 at 1.0).

Writes to ``--out`` (default ``runs/ch03_train_three_layer_net/<data set>``):
``params.npz`` (keys ``W1 b1 W2 b2 W3 b3``, float32), ``metrics.json`` (settings, data
set, the final params' accuracies and iteration, the per-epoch curve) and
``accuracy.png`` (train and test accuracy per epoch; the final params' figures marked).

Run: ``python -m experiments.ch03_train_three_layer_net [--iters 10000] [--lr 1.0]
[--dataset ...] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax

from experiments import _common
from funcnet import layers, nets
from funcnet.train import History, Progress, TrainingDiverged, fit

NAME = "ch03_train_three_layer_net"


def three_layer_net_loss(params: nets.Params, x: jax.Array, t: jax.Array) -> jax.Array:
    """The ch3 network's training loss through funcnet's layers (their backward rules):
    ``softmax_with_loss(affine(sigmoid(affine(sigmoid(affine(x, W1, b1)), W2, b2)), W3,
    b3), t)``. x ``(N, D)``, t integer labels ``(N,)`` or one-hot ``(N, C)`` -> a scalar."""
    a = x
    for i in (1, 2):
        a = layers.sigmoid(layers.affine(a, params[f"W{i}"], params[f"b{i}"]))
    return layers.softmax_with_loss(layers.affine(a, params["W3"], params["b3"]), t)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.parser(NAME, __doc__)
    p.add_argument(
        "--iters", type=_common.positive_int, default=10000, help="iterations (default: 10000)"
    )
    p.add_argument(
        "--batch-size",
        type=_common.positive_int,
        default=100,
        help="minibatch size, at most the training set's size (default: %(default)s)",
    )
    p.add_argument(
        "--lr", type=_common.positive_float, default=1.0, help="SGD learning rate (default: 1.0)"
    )
    p.add_argument(
        "--hidden",
        type=_common.positive_int,
        nargs=2,
        default=[50, 100],
        metavar=("H1", "H2"),
        help="units of the two hidden layers (default: 50 100, the book's sample_weight.pkl)",
    )
    p.add_argument(
        "--weight-init-std",
        type=_common.positive_float,
        default=0.01,
        help="std of the initial Gaussian weights (default: 0.01)",
    )
    p.add_argument("--seed", type=_common.seed, default=0, help="random seed (default: 0)")
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME, per_dataset=True)
    return p.parse_args(argv)


def plot_accuracy(history: History, path: Path, title: str) -> Path:
    """Train and test accuracy per epoch, and the final params' accuracies marked."""
    fig = _common.figure()
    ax = fig.add_subplot()
    it = history.eval_iteration
    ax.plot(it, history.train_acc, "-", label="train")
    ax.plot(it, history.test_acc, "--", label="test")
    last = history.final_iteration
    ax.plot([last], [history.final_train_acc], "o", color="C0", label="final params, train")
    ax.plot([last], [history.final_test_acc], "s", color="C1", label="final params, test")
    ax.set_xlabel("iteration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)  # headroom: a train curve at 1.0 stays visible
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _common.save(fig, path)


def _print_progress(p: Progress) -> None:
    """The book's line per epoch (the final params' line comes after ``fit``)."""
    if p.train_acc is not None and not p.final:
        print(  # the label ch05_train_neuralnet uses: the 0-based index of the last iteration
            f"after iteration {p.iteration - 1:,}: train acc {p.train_acc:.4f}, "
            f"test acc {p.test_acc:.4f}"
        )


def _metrics(args, data, history: History, status: str, seconds: float) -> dict[str, Any]:
    return {
        "experiment": NAME,
        "status": status,
        "settings": {
            "iters": args.iters,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "optimizer": "sgd",
            "hidden": list(args.hidden),
            "weight_init_std": args.weight_init_std,
            "seed": args.seed,
        },
        "dataset": {
            "requested": args.dataset,
            "used": data.name,
            "train_size": len(data.train[0]),
            "test_size": len(data.test[0]),
        },
        "iterations_run": history.iterations,
        # What params.npz holds: the params after this many iterations, these accuracies.
        "saved_params_iteration": history.final_iteration,
        "final_train_acc": round(float(history.final_train_acc), 6),
        "final_test_acc": round(float(history.final_test_acc), 6),
        "eval_iteration": history.eval_iteration,
        "train_acc": history.train_acc,
        "test_acc": history.test_acc,
        "fit_time_s": history.wall_time,
        "compile_time_s": history.compile_time,
        "main_time_s": seconds,  # from main(), start-up and imports not counted
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train and save; returns the metrics written to ``metrics.json``.

    Raises:
        ValueError: ``--batch-size`` above the training set's size.
        RuntimeError: training diverged (the last finite params are saved first, and
            ``metrics.json`` says which iteration they are from).
    """
    t_start = time.perf_counter()
    args = parse_args(argv)
    if args.out is not None:
        _common.out_dir(args.out)  # an --out that is a file fails before any work
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    (x_train, _), (x_test, _) = data.train, data.test
    if args.batch_size > len(x_train):
        raise ValueError(
            f"--batch-size {args.batch_size}: the {data.name} training set has only "
            f"{len(x_train):,} images"
        )
    out = _common.run_dir(args.out, NAME, data.name, args)
    sizes = (x_train.shape[1], *args.hidden, len(data.class_names))
    k_init, k_fit = jax.random.split(jax.random.key(args.seed))
    params = nets.init_three_layer_net(
        k_init, sizes[0], args.hidden, sizes[-1], weight_init_std=args.weight_init_std
    )
    print(
        f"{'-'.join(map(str, sizes))} sigmoid net (ch3), {args.iters:,} iterations of "
        f"{args.batch_size}, SGD lr {args.lr}, weight std {args.weight_init_std}, seed "
        f"{args.seed}, float32"
    )

    status, error = "ok", None
    try:
        params, history = fit(
            params,
            data.train,
            data.test,
            key=k_fit,
            loss_fn=three_layer_net_loss,
            predict_fn=nets.three_layer_net_predict,
            iters=args.iters,
            batch_size=args.batch_size,
            lr=args.lr,
            callback=_print_progress,
        )
    except TrainingDiverged as e:
        params, history, status, error = e.params, e.history, "diverged", e

    _common.save_params(out / "params.npz", params)
    metrics = _metrics(args, data, history, status, time.perf_counter() - t_start)
    _common.write_json(out / "metrics.json", metrics)
    plot_accuracy(
        history, out / "accuracy.png", f"{data.name}: {'-'.join(map(str, sizes))} sigmoid net"
    )
    print(
        f"saved the params after {history.final_iteration:,} iterations: train acc "
        f"{metrics['final_train_acc']:.4f}, test acc {metrics['final_test_acc']:.4f} "
        f"({len(x_test):,} test images); training {history.wall_time:.1f} s (compile "
        f"{history.compile_time:.1f} s), main() {metrics['main_time_s']:.1f} s "
        "(start-up and imports not counted)"
    )
    print(f"wrote params.npz, metrics.json, accuracy.png to {out}")
    if error is not None:
        raise RuntimeError(
            f"training diverged: a loss or weight became non-finite at iteration "
            f"{error.iteration} (counted from 0); params.npz holds the last finite params, "
            f"those after {history.final_iteration:,} iterations; try a smaller --lr"
        )
    dataset_flag = "" if args.dataset == "auto" else f" --dataset {data.name}"
    print(
        f"next: python -m experiments.ch03_neuralnet_mnist --weights {out / 'params.npz'}"
        f"{dataset_flag}"
    )
    return metrics


if __name__ == "__main__":
    _common.run(main)
