"""Random search over the learning rate and the weight decay (book ch6.5.3,
``hyperparameter_optimization.py``, Figs. 6-24/6-25) — every trial trained at once.

The book's protocol: the first 500 training images, shuffled, 20% held out for
validation (400 train / 100 validation); a MultiLayerNet of 6 hidden layers of 100 (ReLU,
He init) with weight decay λ; SGD, batch 100, 50 epochs (4 iterations each, 200 in all),
validation and training accuracy after every epoch; 100 trials with
lr = 10^U(−6, −2) and λ = 10^U(−8, −4).

The book trains the trials one after another. Here they train **as one compiled
program**: :func:`funcnet.train.fit_many` ``vmap``s the training loop over the trials'
initial params, keys and hyperparameters (split over the devices when there are
several). For comparison the same trials are also run as a loop of
:func:`funcnet.train.fit` calls (``--loop-trials`` of them, timed, then extrapolated),
which is what a user of the book's ``Trainer`` would write.

Prints the best 20 trials (validation accuracy, lr, λ) like the book, and writes to
``--out`` (default ``runs/ch06_hyperparameter_optimization``):

- ``best_trials.png``: the best 20 trials' validation (solid) and training (dashed)
  accuracy per epoch in a 4×5 grid (Fig. 6-25);
- ``search_scatter.png``: every trial's final validation accuracy over (lr, λ);
- ``results.json``: every trial's hyperparameters and curves, and both timings.

Run: ``python -m experiments.ch06_hyperparameter_optimization [--trials 100 --epochs 50]``.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from experiments import _common, _distributed
from funcnet import nets, parallel, train

NAME = "ch06_hyperparameter_optimization"
HIDDEN = [100] * 6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="The book's random search over lr and weight decay, all trials at once.",
    )
    p.add_argument(
        "--trials",
        type=_common.int_in_range(1, 10_000, "every trial's params are held in memory at once"),
        default=100,
        help="trials, at most 10,000 (default: 100)",
    )
    p.add_argument(
        "--epochs", type=_common.positive_int, default=50, help="epochs per trial (default: 50)"
    )
    p.add_argument(
        "--images",
        type=_common.positive_int,
        default=500,
        help="training images used, 20%% of them for validation (default: 500)",
    )
    p.add_argument(
        "--loop-trials",
        type=_common.nonnegative_int,
        default=5,
        help="trials also run one after another with fit(), to time the loop (default: 5; "
        "0 skips it)",
    )
    _common.add_dataset_flag(p)
    p.add_argument(
        "--seed", type=_common.seed, default=0, help="random seed (default: %(default)s)"
    )
    _common.add_out_flag(p, NAME)
    _distributed.add_flag(p)
    args = p.parse_args(argv)
    if args.loop_trials > args.trials:
        p.error(
            f"argument --loop-trials: at most --trials ({args.trials}), the trials it "
            f"reruns one by one; got {args.loop_trials}"
        )
    return args


def split_validation(x: np.ndarray, t: np.ndarray, images: int, key: jax.Array):
    """The book's split: the first ``images`` examples, shuffled, 20% for validation.

    Returns ``((x_train, t_train), (x_val, t_val))``.
    """
    if images > x.shape[0]:
        raise ValueError(f"--images {images}: the data set has only {x.shape[0]} training images")
    order = np.asarray(jax.random.permutation(key, images))
    x, t = np.asarray(x)[:images][order], np.asarray(t)[:images][order]
    num_val = int(images * 0.20)
    if num_val < 1 or num_val == images:
        raise ValueError(f"--images {images}: too few to hold 20% out for validation")
    return (x[num_val:], t[num_val:]), (x[:num_val], t[:num_val])


def sample_hparams(key: jax.Array, trials: int) -> dict[str, np.ndarray]:
    """The book's ranges: lr = 10^U(−6, −2), λ = 10^U(−8, −4), one pair per trial."""
    k_lr, k_wd = jax.random.split(key)
    return {
        "lr": np.asarray(10.0 ** jax.random.uniform(k_lr, (trials,), minval=-6, maxval=-2)),
        "lam": np.asarray(10.0 ** jax.random.uniform(k_wd, (trials,), minval=-8, maxval=-4)),
    }


def loss_for(hp: dict[str, jax.Array]):
    """The trial's loss: softmax_with_loss + ½·λ·Σ‖W‖² with the trial's λ."""
    return functools.partial(nets.multi_layer_net_loss, weight_decay_lambda=hp["lam"])


def optimizer_for(hp: dict[str, jax.Array]) -> optax.GradientTransformation:
    return optax.sgd(hp["lr"])


def run_search(args, train_data, val_data, input_size: int, classes: int):
    """Every trial at once with fit_many. Returns ``(hparams, history)``."""
    # seed + 1 (the search's own key), modulo 2**32: jax.random.key keeps 32 bits
    k_hp, k_init, k_fit = jax.random.split(jax.random.key((args.seed + 1) % 2**32), 3)
    hparams = sample_hparams(k_hp, args.trials)
    init = functools.partial(
        nets.init_multi_layer_net,
        input_size=input_size,
        hidden_size_list=HIDDEN,
        output_size=classes,
    )
    init_keys = jax.random.split(k_init, args.trials)
    params = jax.vmap(init)(init_keys)
    keys = jax.random.split(k_fit, args.trials)
    devices = len(jax.devices())
    mesh = parallel.make_mesh() if devices > 1 and args.trials % devices == 0 else None
    iters = args.epochs * train.iters_per_epoch(len(train_data[0]), 100)
    _, history = train.fit_many(
        params,
        train_data,
        val_data,
        keys=keys,
        loss_fn=loss_for,
        predict_fn=nets.multi_layer_net_predict,
        optimizer=optimizer_for,
        hparams=hparams,
        iters=iters,
        batch_size=100,
        mesh=mesh,
    )
    return hparams, (init_keys, keys, iters), history


def time_loop(args, train_data, val_data, hparams, keys_and_iters, input_size, classes):
    """The first ``--loop-trials`` trials one after another with ``fit`` (compiling each,
    as a loop over the book's Trainer would). Returns ``(seconds, final val accs)``."""
    init_keys, keys, iters = keys_and_iters
    accs, t0 = [], time.perf_counter()
    for r in range(args.loop_trials):
        params = nets.init_multi_layer_net(init_keys[r], input_size, HIDDEN, classes)
        hp = {k: v[r] for k, v in hparams.items()}
        _, h = train.fit(
            params,
            train_data,
            val_data,
            key=keys[r],
            loss_fn=loss_for(hp),
            predict_fn=nets.multi_layer_net_predict,
            optimizer=optimizer_for(hp),
            iters=iters,
            batch_size=100,
        )
        accs.append(h.final_test_acc)
    return time.perf_counter() - t0, np.asarray(accs)


def plot_best(history, order: np.ndarray, hparams, path: Path) -> Path:
    """The best 20 (or fewer) trials' curves in a grid of 5 columns (Fig. 6-25)."""
    shown = order[:20]
    rows = int(np.ceil(len(shown) / 5))
    fig = _common.figure(width=13, height=2.3 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, 5, sharex=True, sharey=True)).reshape(-1)
    epochs = np.arange(history.test_acc.shape[1])
    for rank, (ax, r) in enumerate(zip(axes, shown, strict=False), start=1):
        ax.plot(epochs, history.test_acc[r], color="tab:blue", label="validation")
        ax.plot(epochs, history.train_acc[r], "--", color="tab:gray", lw=1, label="train")
        ax.set_title(
            f"Best-{rank}: val {history.final_test_acc[r]:.2f}\n"
            f"lr {hparams['lr'][r]:.1e}, λ {hparams['lam'][r]:.1e}",
            fontsize=8,
        )
        ax.set_ylim(0, 1.0)
        ax.tick_params(labelsize=7)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.supxlabel("epoch")
    fig.supylabel("accuracy")
    return _common.save(fig, path)


def plot_scatter(history, hparams, path: Path) -> Path:
    """Every trial's final validation accuracy over (lr, λ), log axes."""
    fig = _common.figure(width=6.4, height=4.8)
    ax = fig.add_subplot()
    acc = np.where(np.isfinite(history.final_test_acc), history.final_test_acc, 0.0)
    points = ax.scatter(hparams["lr"], hparams["lam"], c=acc, cmap="viridis", vmin=0, vmax=1)
    bad = ~np.isfinite(history.final_test_acc)
    if bad.any():
        ax.scatter(
            hparams["lr"][bad], hparams["lam"][bad], marker="x", color="red", label="diverged (NaN)"
        )
        ax.legend(loc="upper left")
    fig.colorbar(points, ax=ax, label="validation accuracy")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("weight decay λ")
    ax.set_title(f"{len(acc)} trials: validation accuracy after training")
    return _common.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the search; returns what ``results.json`` holds."""
    args = parse_args(argv)
    writer = _distributed.start(args)  # False in the processes other than process 0
    out = _common.out_dir(args.out) if writer else None
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.claim(out, NAME, args, data.name) if writer else None
    train_data, val_data = split_validation(*data.train, args.images, jax.random.key(args.seed))
    input_size, classes = int(np.prod(train_data[0].shape[1:])), len(data.class_names)
    print(
        f"{args.trials} trials, {len(train_data[0])} train / {len(val_data[0])} validation "
        f"images, {args.epochs} epochs, {len(jax.devices())} device(s)"
    )
    hparams, keys_and_iters, history = run_search(args, train_data, val_data, input_size, classes)
    order = np.argsort(-np.nan_to_num(history.final_test_acc, nan=-1.0), kind="stable")
    print("=========== Hyper-Parameter Optimization Result ===========")
    for rank, r in enumerate(order[:20], start=1):
        print(
            f"Best-{rank}(val acc:{history.final_test_acc[r]:.2f}) | lr:{hparams['lr'][r]:.3g}, "
            f"weight decay:{hparams['lam'][r]:.3g}"
        )
    loop_s, loop_acc = time_loop(
        args, train_data, val_data, hparams, keys_and_iters, input_size, classes
    )
    results = {
        "experiment": NAME,
        "dataset": data.name,
        "trials": args.trials,
        "epochs": args.epochs,
        "train_size": len(train_data[0]),
        "val_size": len(val_data[0]),
        "devices": len(jax.devices()),
        "vmapped_s": history.wall_time,
        "vmapped_compile_s": history.compile_time,
        "loop_trials": args.loop_trials,
        "loop_s": loop_s,
        "loop_s_per_trial": loop_s / args.loop_trials if args.loop_trials else None,
        "loop_matches_vmapped": bool(
            np.allclose(loop_acc, history.final_test_acc[: args.loop_trials], atol=0.011)
        ),
        "lr": hparams["lr"],
        "weight_decay": hparams["lam"],
        "final_val_acc": history.final_test_acc,
        "final_train_acc": history.final_train_acc,
        "diverged": history.diverged,
        "val_acc": history.test_acc,
        "train_acc": history.train_acc,
    }
    print(
        f"all {args.trials} trials at once (fit_many): {history.wall_time:.2f} s "
        f"(compile {history.compile_time:.2f} s)"
    )
    if args.loop_trials:
        per_trial = loop_s / args.loop_trials
        print(
            f"one after another (fit per trial): {per_trial:.2f} s a trial, "
            f"{per_trial * args.trials:.1f} s for {args.trials} (from {args.loop_trials} "
            f"timed); vmapped is {per_trial * args.trials / history.wall_time:.1f}x faster; "
            f"same accuracies: {results['loop_matches_vmapped']}"
        )
    if not writer:  # every trial's results are in every process; process 0 writes them
        return results
    plot_best(history, order, hparams, out / "best_trials.png")
    plot_scatter(history, hparams, out / "search_scatter.png")
    _common.write_json(out / "results.json", results)
    print(f"wrote best_trials.png, search_scatter.png, results.json to {out}")
    return results


if __name__ == "__main__":
    _common.run(main)
