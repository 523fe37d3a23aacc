"""The main job: the book's ch5 ``train_neuralnet.py`` with funcnet.

A 784-50-10 two-layer net (affine → ReLU → affine → softmax_with_loss, gradients by the
hand-written backward rules) trained with minibatch SGD: 10,000 iterations of 100
examples drawn with replacement, learning rate 0.1, train and test accuracy after every
epoch (the first after iteration 0), printed like the book::

    train acc, test acc | 0.1044, 0.1028

and, after the last iteration, the accuracy of the params it saves::

    final (iteration 10000) train acc, test acc | 1.0000, 0.9320

Writes to ``--out`` (default ``runs/ch05_train_neuralnet/DATASET``, one folder per data
set, so runs on different data do not overwrite each other):

- ``metrics.json``: settings, data set used, the final accuracies *of the saved params*
  and the iteration they were saved after, times, steps/s, the per-epoch accuracies;
- ``loss.png``: the minibatch loss of every iteration (book Fig. 4-11);
- ``accuracy.png``: train and test accuracy per epoch (book Fig. 4-12);
- ``predictions.png``: the first 25 test images with predicted and true class;
- ``confusion.png``: the test set's confusion matrix (which classes the net mixes up);
- ``params.npz``: the trained weights (``funcnet.io.load_params`` reads them back).

Run: ``python -m experiments.ch05_train_neuralnet [--dataset fashion-mnist]``. A progress
bar shows on a terminal; in CI logs (``$CI`` set, or output not a terminal) there is none.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import experiments
from experiments import _common, _distributed
from funcnet import nets
from funcnet.train import History, Progress, TrainingDiverged, fit

NAME = "ch05_train_neuralnet"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.parser(NAME, "Train the book's two-layer net (ch5) with minibatch SGD.")
    p.add_argument(
        "--iters",
        type=_common.positive_int,
        default=10000,
        help="iterations (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=_common.batch_size, default=100, help="minibatch size (default: 100)"
    )
    p.add_argument(
        "--lr",
        type=_common.positive_float,
        default=0.1,
        help="learning rate (default: %(default)s)",
    )
    p.add_argument(
        "--hidden",
        type=_common.positive_int,
        default=50,
        help="hidden units (default: %(default)s)",
    )
    p.add_argument(
        "--activation",
        choices=nets.ACTIVATIONS,
        default="relu",
        help="hidden activation: relu (ch5) or sigmoid (ch4) (default: %(default)s)",
    )
    _common.add_dataset_flag(p)
    p.add_argument(
        "--seed", type=_common.seed, default=0, help="random seed (default: %(default)s)"
    )
    _common.add_out_flag(p, NAME, per_dataset=True)
    _distributed.add_flag(p)
    return p.parse_args(argv)


def plot_loss(history: History, path: Path, title: str) -> Path:
    """Minibatch loss per iteration, with its mean over a sliding window."""
    loss = history.loss
    it = np.arange(loss.size)
    fig = _common.figure()
    ax = fig.add_subplot()
    ax.plot(it, loss, lw=0.6, alpha=0.45, color="tab:blue", label="minibatch loss")
    window = max(1, min(100, loss.size // 20))
    if window > 1 and np.all(np.isfinite(loss)):
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(it[window - 1 :], smooth, color="tab:blue", lw=1.6, label=f"mean of {window}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    finite = loss[np.isfinite(loss)]
    if finite.size:
        ax.set_ylim(0, max(float(np.max(finite)) * 1.05, 1e-3))
    ax.set_xlim(0, max(loss.size - 1, 1))
    ax.set_title(title)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return _common.save(fig, path)


def plot_accuracy(history: History, path: Path, title: str) -> Path:
    """Train and test accuracy per epoch, y from 0 to 1 (the book's Fig. 4-12)."""
    epochs = np.arange(history.train_acc.size)
    fig = _common.figure()
    ax = fig.add_subplot()
    markers = epochs.size <= 60  # the book's markers, unless they would blur the lines
    ax.plot(epochs, history.train_acc, marker="o" if markers else None, ms=4, label="train acc")
    ax.plot(
        epochs, history.test_acc, marker="s" if markers else None, ms=4, ls="--", label="test acc"
    )
    ax.set_xlabel("epochs")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.04)  # headroom: a curve at exactly 1.0 stays visible above the frame
    ax.set_xlim(0, max(epochs.size - 1, 1))
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _common.save(fig, path)


def confusion_matrix(predicted: np.ndarray, true: np.ndarray, classes: int) -> np.ndarray:
    """``m[i, j]``: test examples of true class i predicted as j."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (true, predicted), 1)
    return m


def plot_confusion(m: np.ndarray, class_names: tuple[str, ...], path: Path, title: str) -> Path:
    """The confusion matrix as an annotated heat map (rows: true, columns: predicted)."""
    k = m.shape[0]
    fig = _common.figure(width=7.6, height=6.6)
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8, label="test images")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if m[i, j] > m.max() / 2 else "black",
            )
    long_names = max(len(name) for name in class_names) > 2
    ax.set_xticks(
        range(k),
        class_names,
        rotation=45 if long_names else 0,
        ha="right" if long_names else "center",
    )
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return _common.save(fig, path)


def _accuracy(value: float) -> float | None:
    """Accuracies are counts / N: 6 decimals hold them exactly, without float32 noise;
    NaN (never expected: fit refuses non-finite data) is written as null, not a number."""
    return round(float(value), 6) if np.isfinite(value) else None


def _metrics(args, data, history: History, status: str) -> dict[str, Any]:
    done = history.iterations
    train_time = history.wall_time - history.compile_time
    per_epoch = (
        int(history.eval_iteration[1] - history.eval_iteration[0])
        if (history.eval_iteration.size > 1)
        else done
    )
    return {
        "experiment": NAME,
        "status": status,
        "settings": {
            "iters": args.iters,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "hidden": args.hidden,
            "activation": args.activation,
            "seed": args.seed,
            "weight_init_std": 0.01,
            "optimizer": "sgd",
        },
        "dataset": {
            "requested": args.dataset,
            "used": data.name,
            "train_size": len(data.train[0]),
            "test_size": len(data.test[0]),
            "notice": data.notice,
        },
        "iterations_run": done,
        "iters_per_epoch": per_epoch,
        # The saved params.npz: how many iterations it has seen and its accuracies (after a
        # divergence, those of the last finite params, not of the diverged ones).
        "params_iteration": history.final_iteration,
        "final_train_acc": _accuracy(history.final_train_acc),
        "final_test_acc": _accuracy(history.final_test_acc),
        "loss_first_iteration": float(history.loss[0]) if done else None,
        "loss_last_epoch_mean": float(np.mean(history.loss[-per_epoch:])) if done else None,
        "fit_time_s": history.wall_time,
        "compile_time_s": history.compile_time,
        "steps_per_s": done / train_time if train_time > 0 else None,
        "eval_iteration": history.eval_iteration,
        "train_acc": history.train_acc,
        "test_acc": history.test_acc,
        "machine": {
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "device": str(jax.devices()[0].device_kind),
            "cpu_count": _cpu_count(),
            "python": platform.python_version(),
        },
    }


def _cpu_count() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _reporter(args) -> tuple[Callable[[Progress], None], Callable[[], None]]:
    """The progress callback (the book's per-epoch line, a bar on a terminal) and a
    function that closes the bar."""
    bar = None
    if _common.progress_enabled():
        from tqdm import tqdm

        bar = tqdm(total=args.iters, unit="it", leave=False, dynamic_ncols=True)

    def on_progress(p: Progress) -> None:
        lines = []
        if p.epoch is not None:
            lines.append(f"train acc, test acc | {p.train_acc:.4f}, {p.test_acc:.4f}")
        if p.final:
            lines.append(
                f"final (iteration {p.iteration}) train acc, test acc | "
                f"{p.train_acc:.4f}, {p.test_acc:.4f}"
            )
        for line in lines:
            print(line) if bar is None else bar.write(line)
        if bar is not None:
            bar.set_postfix(loss=f"{p.loss:.3f}", refresh=False)
            bar.update(p.iteration - bar.n)

    return on_progress, (bar.close if bar is not None else (lambda: None))


def write_outputs(out: Path, data, net, params, history: History) -> list[str]:
    """The figures and ``params.npz``, all from the same ``params``; returns their names."""
    (x_train, _), (x_test, t_test) = data.train, data.test
    classes = len(data.class_names)
    hidden = params["W1"].shape[1]
    title = f"{data.name}: {x_train.shape[1]}-{hidden}-{classes} {net.activation} net"
    plot_loss(history, out / "loss.png", title)
    plot_accuracy(history, out / "accuracy.png", title)
    predicted = np.asarray(jnp.argmax(jax.jit(net.predict)(params, x_test), axis=1))
    _common.image_grid(
        x_test,
        predicted,
        t_test,
        data.class_names,
        out / "predictions.png",
        f"{data.name}: first 25 test images, params after iteration "
        f"{history.final_iteration} (red: wrong)",
    )
    plot_confusion(
        confusion_matrix(predicted, np.asarray(t_test), classes),
        data.class_names,
        out / "confusion.png",
        f"{data.name} test set, {len(t_test):,} images",
    )
    _common.save_params(out / "params.npz", params)
    return ["loss.png", "accuracy.png", "predictions.png", "confusion.png", "params.npz"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the job; returns the metrics written to ``metrics.json``.

    Raises ``SystemExit`` with a message if training diverges (the outputs are still
    written, from the last finite params, and say which iteration those are).
    """
    args = parse_args(argv)
    writer = _distributed.start(args)  # False in the processes other than process 0
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.run_dir(args.out, NAME, data.name, args) if writer else None
    (x_train, t_train), (x_test, t_test) = data.train, data.test
    classes = len(data.class_names)
    net = nets.two_layer_net(args.activation)
    k_init, k_fit = jax.random.split(jax.random.key(args.seed))
    params = nets.init_two_layer_net(k_init, x_train.shape[1], args.hidden, classes)
    print(
        f"{x_train.shape[1]}-{args.hidden}-{classes} {args.activation} net, {args.iters} "
        f"iterations, batch {args.batch_size}, lr {args.lr}"
    )
    on_progress, close_bar = _reporter(args)
    status, error = "ok", None
    try:
        params, history = fit(
            params,
            (x_train, t_train),
            (x_test, t_test),
            key=k_fit,
            loss_fn=net.loss,
            predict_fn=net.predict,
            iters=args.iters,
            batch_size=args.batch_size,
            lr=args.lr,
            callback=on_progress if writer else None,
        )
    except TrainingDiverged as e:
        params, history, status, error = e.params, e.history, "diverged", e
    finally:
        close_bar()
    if not writer:  # the same params as process 0, which writes them
        return {"status": status, "final_test_acc": history.final_test_acc}

    written = write_outputs(out, data, net, params, history)
    metrics = _metrics(args, data, history, status)
    metrics["job_time_s"] = time.perf_counter() - experiments.STARTED
    _common.write_json(out / "metrics.json", metrics)
    _report(metrics, history, out, [*written, "metrics.json"])
    if error is not None:
        raise SystemExit(
            f"error: {error}\nsaved: the params after iteration {history.final_iteration} "
            f"(train acc {history.final_train_acc:.4f}, test acc {history.final_test_acc:.4f})"
        )
    return metrics


def _report(metrics: dict[str, Any], history: History, out: Path, written: list[str]) -> None:
    steps = metrics["steps_per_s"]
    print(
        f"saved params after iteration {history.final_iteration}: train acc "
        f"{history.final_train_acc:.4f}, test acc {history.final_test_acc:.4f}"
    )
    print(
        f"time: fit {history.wall_time:.2f} s (compile {history.compile_time:.2f} s"
        + (f", {steps:.0f} steps/s" if steps else "")
        + f"); whole job {metrics['job_time_s']:.2f} s (imports, data, fit, figures; "
        "not Python's own start-up)"
    )
    # the files this run wrote (not whatever else the folder holds)
    print(f"wrote {', '.join(sorted(written))} to {out}")
    if (
        metrics["status"] == "ok"
        and metrics["loss_last_epoch_mean"] > metrics["loss_first_iteration"]
    ):
        print(
            "warning: the loss rose during training (last epoch's mean above the first "
            "iteration's): the learning rate is probably too large"
        )


if __name__ == "__main__":
    _common.run(main)
