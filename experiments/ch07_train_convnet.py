"""The book's ch7 ``train_convnet.py``: SimpleConvNet trained with Adam.

Conv (30 filters 5×5) → ReLU → max pool 2×2 → affine 100 → ReLU → affine 10 →
softmax_with_loss (:mod:`funcnet.nets.convnet`, the hand-written rules of
:mod:`funcnet.conv`), weight_init_std 0.01; the book's Adam (lr 0.001), minibatches of 100
drawn with replacement, ``--epochs`` epochs (20, as the book). After every epoch the
train and test accuracy on the first ``--eval-sample`` images of each set (1,000, the
book's ``evaluate_sample_num_per_epoch``); after the last iteration the test accuracy on
the whole test set (the book's final line). Prints::

    epoch 0 | train acc 0.1750, test acc 0.1900 (1,000 images each)
    epoch 1 | train acc 0.8640, test acc 0.8550 (1,000 images each)
    ...
    final (epoch 20) train acc 0.9706, test acc 0.9116 (whole sets: 10,000 test images)

(Fashion-MNIST, seed 0, as measured; the book reaches about 0.99 on MNIST.) The epoch
lines are ``fit``'s evaluations (``history.eval_iteration``); "final" is after the last
iteration, on the whole sets.

Writes to ``--out`` (default ``runs/ch07_train_convnet/DATASET``): ``metrics.json``
(settings, per-epoch accuracies, final accuracies, times), ``accuracy.png`` (train and
test accuracy per epoch, the book's figure), ``loss.png``, ``params.npz`` (the trained
weights: ``funcnet.io.load_params``; ``ch07_visualize_filter --params`` reads them) and
``params_init.npz`` (the initial weights, for the "before" filters). ``--checkpoint``
saves the whole training state every epoch and resumes from it.

Run: ``python -m experiments.ch07_train_convnet [--dataset fashion-mnist] [--epochs 20]``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import _common, _distributed
from funcnet import optimizers
from funcnet.nets import convnet
from funcnet.train import History, fit

NAME = "ch07_train_convnet"


def parse_args(argv):
    p = _common.parser(NAME, __doc__)
    p.add_argument("--epochs", type=_common.positive_int, default=20, help="epochs (default 20)")
    p.add_argument("--batch-size", type=_common.batch_size, default=100, help="default 100")
    p.add_argument("--lr", type=_common.positive_float, default=0.001, help="Adam's lr (0.001)")
    p.add_argument(
        "--eval-sample",
        type=_common.positive_int,
        default=1000,
        help="images of each set evaluated per epoch (default 1000)",
    )
    p.add_argument(
        "--train-size",
        type=_common.positive_int,
        default=None,
        help="train on the first N training images only (default: all)",
    )
    p.add_argument(
        "--test-size",
        type=_common.positive_int,
        default=None,
        help="evaluate on the first N test images only (default: all)",
    )
    p.add_argument("--seed", type=_common.seed, default=0, help="random seed (default 0)")
    p.add_argument(
        "--checkpoint",
        type=_common.checkpoint_file,
        default=None,
        help="save/resume the training state here",
    )
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME, per_dataset=True)
    _distributed.add_flag(p)
    return p.parse_args(argv)


def plot_accuracy(history: History, epochs_run: int, path: Path, title: str) -> Path:
    """Train and test accuracy per epoch (markers o and s, like the book's plot); the final
    accuracies, over the whole sets, as open markers at the last epoch."""
    fig = _common.figure()
    ax = fig.add_subplot()
    per_epoch = max(history.final_iteration / max(epochs_run, 1), 1)
    epochs = np.asarray(history.eval_iteration) / per_epoch
    ax.plot(epochs, history.train_acc, marker="o", label="train (sample)")
    ax.plot(epochs, history.test_acc, marker="s", label="test (sample)")
    ax.plot([epochs_run], [history.final_train_acc], "o", color="C0", mfc="none", ms=10)
    ax.plot(
        [epochs_run],
        [history.final_test_acc],
        "s",
        color="C1",
        mfc="none",
        ms=10,
        label="final, whole sets",
    )
    ax.set_xlabel("epochs")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.0)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _common.save(fig, path)


def plot_loss(history: History, path: Path, title: str) -> Path:
    fig = _common.figure()
    ax = fig.add_subplot()
    ax.plot(history.loss, lw=0.5, alpha=0.7)
    ax.set_xlabel("iteration")
    ax.set_ylabel("minibatch loss")
    ax.set_ylim(0, max(float(np.nanmax(history.loss)) * 1.05, 1e-3))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _common.save(fig, path)


def train(args, data) -> tuple[dict, dict, History]:
    """Initial params, trained params and the history of one run."""
    data = _common.first_examples(data, args.train_size, args.test_size)
    (x_train, t_train), (x_test, t_test) = data.train, data.test
    init_key, run_key = jax.random.split(jax.random.key(args.seed))
    params0 = convnet.init_simple_convnet(init_key, input_dim=x_train.shape[1:])
    params, history = fit(
        params0,
        (x_train, t_train),
        (x_test, t_test),
        key=run_key,
        loss_fn=convnet.simple_convnet_loss,
        predict_fn=convnet.simple_convnet_predict,
        optimizer=optimizers.adam(args.lr),
        batch_size=args.batch_size,
        epochs=args.epochs,
        eval_sample=args.eval_sample,
        eval_batch_size=1000,
        checkpoint_path=args.checkpoint,
        # a checkpoint of a run with another seed, lr, data set, ... is refused, naming them
        checkpoint_settings=_common.settings_of(args, data.name) if args.checkpoint else None,
    )
    return params0, params, history


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    writer = _distributed.start(args)  # False in the processes other than process 0
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir, flatten=False)
    out = _common.run_dir(args.out, NAME, data.name, args) if writer else None
    start = time.perf_counter()
    params0, params, history = train(args, data)
    seconds = time.perf_counter() - start
    if not writer:  # the same params as process 0, which writes them
        return {"final_test_acc": history.final_test_acc}
    used = _common.first_examples(data, args.train_size, args.test_size)  # as train() took
    n_train, n_test = len(used.train[0]), len(used.test[0])
    sizes = _common.sample_label(min(args.eval_sample, n_train), min(args.eval_sample, n_test))
    per_epoch = history.final_iteration / args.epochs
    for it, train_acc, test_acc in zip(
        history.eval_iteration, history.train_acc, history.test_acc, strict=True
    ):
        print(
            f"epoch {it / per_epoch:g} | train acc {train_acc:.4f}, test acc {test_acc:.4f} "
            f"({sizes})"
        )
    print(
        f"final (epoch {args.epochs}) train acc {history.final_train_acc:.4f}, "
        f"test acc {history.final_test_acc:.4f} (whole sets: {n_test:,} test images)"
    )
    iterations = history.iterations
    print(
        f"{iterations:,} iterations in {seconds:.1f} s ({history.compile_time:.1f} s compiling), "
        f"{1e3 * (seconds - history.compile_time) / max(iterations, 1):.1f} ms/iteration "
        "(training and evaluations, compilation excluded)"
    )
    _common.save_params(out / "params.npz", params)
    _common.save_params(out / "params_init.npz", params0)
    title = f"SimpleConvNet on {data.name}, Adam lr {args.lr}"
    plot_accuracy(history, args.epochs, out / "accuracy.png", title)
    plot_loss(history, out / "loss.png", title)
    metrics = {
        "dataset": data.name,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "epoch_train_acc": history.train_acc,
        "epoch_test_acc": history.test_acc,
        "eval_iteration": history.eval_iteration,
        "final_iteration": history.final_iteration,
        "final_train_acc": history.final_train_acc,
        "final_test_acc": history.final_test_acc,
        "seconds": seconds,
        "compile_seconds": history.compile_time,
        "ms_per_iteration_with_evaluations": 1e3
        * (seconds - history.compile_time)
        / max(iterations, 1),
    }
    _common.write_json(out / "metrics.json", metrics)
    print(f"wrote params.npz, params_init.npz, accuracy.png, loss.png, metrics.json to {out}")
    return metrics


if __name__ == "__main__":
    _common.run(main)
