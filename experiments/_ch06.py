"""Pieces shared by the chapter-6 training experiments: the book's ``smooth_curve``, several
nets trained on the same minibatches, and their loss curves."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import optax

from experiments import _common
from funcnet.train import History, TrainingDiverged, fit


def loss_curve_args(name: str, description: str, argv: list[str] | None) -> argparse.Namespace:
    """The flags shared by the ch6 loss-curve experiments (Figs. 6-9, 6-15): ``--iters``
    (2,000), ``--batch-size`` (128), ``--dataset``, ``--seed``, ``--out``; one-line errors."""
    p = _common.parser(name, description)
    p.add_argument(
        "--iters", type=_common.positive_int, default=2000, help="iterations (default: 2000)"
    )
    p.add_argument(
        "--batch-size", type=_common.batch_size, default=128, help="minibatch (default: 128)"
    )
    _common.add_dataset_flag(p)
    p.add_argument(
        "--seed", type=_common.seed, default=0, help="random seed (default: %(default)s)"
    )
    _common.add_out_flag(p, name)
    return p.parse_args(argv)


def smooth_curve(x: np.ndarray) -> np.ndarray:
    """The book's ``common/util.py`` ``smooth_curve``: a Kaiser window (length 11, β 2)
    moving average with mirrored ends; same length as ``x``.

    Shorter inputs get the longest odd window that fits (none below 3 values).
    """
    x = np.asarray(x, np.float64)
    window = min(11, x.size if x.size % 2 else x.size - 1)
    if window < 3:
        return x.copy()
    half = window // 2
    s = np.r_[x[window - 1 : 0 : -1], x, x[-1:-window:-1]]
    w = np.kaiser(window, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[half : len(y) - half]


class Run(NamedTuple):
    """One net to train: initial params, its loss and predict, and its optimizer."""

    params: Any
    loss_fn: Callable
    predict_fn: Callable
    optimizer: optax.GradientTransformation


class Result(NamedTuple):
    """What one run left: its history and whether it diverged (then the history stops)."""

    history: History
    diverged: bool


def train_runs(
    runs: dict[str, Run],
    data: Any,
    *,
    key: Any,
    iters: int,
    batch_size: int,
    eval_every: int | None = None,
) -> dict[str, Result]:
    """Train every run with :func:`funcnet.train.fit` on the same minibatches (same key:
    iteration i draws its batch with ``fold_in(key, i)`` in every run). By default the
    accuracies are measured only at the start and the end (``eval_every = iters``)."""
    results = {}
    for label, run in runs.items():
        try:
            _, history = fit(
                run.params,
                data.train,
                data.test,
                key=key,
                loss_fn=run.loss_fn,
                predict_fn=run.predict_fn,
                iters=iters,
                batch_size=batch_size,
                optimizer=run.optimizer,
                eval_every=eval_every or iters,
            )
            results[label] = Result(history, False)
        except TrainingDiverged as e:
            print(f"{label}: {e}")
            results[label] = Result(e.history, True)
    return results


def loss_summary(result: Result) -> dict[str, Any]:
    """Final figures of one run: last smoothed loss, mean of the last 100 minibatch losses,
    final accuracies (of the params fit returned)."""
    h = result.history
    loss = h.loss
    return {
        "diverged": result.diverged,
        "iterations": h.iterations,
        "final_smoothed_loss": float(smooth_curve(loss)[-1]) if loss.size else None,
        "mean_loss_last_100": float(np.mean(loss[-100:])) if loss.size else None,
        "final_train_acc": h.final_train_acc,
        "final_test_acc": h.final_test_acc,
        "loss": loss,
    }


def print_loss_table(results: dict[str, Result], every: int = 100) -> None:
    """The book's progress printout, as a table: each run's minibatch loss every
    ``every`` iterations."""
    n = max(r.history.iterations for r in results.values())
    steps = list(range(0, n, every))
    if n - 1 not in steps:
        steps.append(n - 1)
    print(f"{'iteration':>9}  " + "  ".join(f"{label:>10}" for label in results))
    for i in steps:
        cells = [
            f"{r.history.loss[i]:10.4f}" if i < r.history.iterations else f"{'-':>10}"
            for r in results.values()
        ]
        print(f"{i:>9}  " + "  ".join(cells))


def plot_losses(
    results: dict[str, Result],
    markers: dict[str, str],
    path: Path,
    title: str,
    ylim: tuple[float, float],
) -> Path:
    """Smoothed training loss per iteration, one line per run, a marker every 100
    iterations (the book's Figs. 6-9 and 6-15)."""
    fig = _common.figure()
    ax = fig.add_subplot()
    for label, result in results.items():
        loss = result.history.loss
        every = max(1, min(100, loss.size // 20))
        ax.plot(
            np.arange(loss.size),
            smooth_curve(loss),
            marker=markers.get(label),
            markevery=every,
            ms=5,
            label=label + (" (diverged)" if result.diverged else ""),
        )
    ax.set_xlabel("iterations")
    ax.set_ylabel("loss (smoothed)")
    ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _common.save(fig, path)
