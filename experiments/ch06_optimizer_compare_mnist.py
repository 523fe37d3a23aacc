"""SGD, Momentum, AdaGrad and Adam training the same deep net on MNIST (book ch6.1.8,
``optimizer_compare_mnist.py``, Fig. 6-9).

A 784-100-100-100-100-10 ReLU net with He initialisation
(:func:`funcnet.nets.init_multi_layer_net`), one copy per optimizer at the book's
defaults (:mod:`funcnet.optimizers`: SGD lr 0.01, Momentum 0.01/0.9, AdaGrad 0.01, Adam
0.001), minibatches of 128, 2,000 iterations, trained with :func:`funcnet.train.fit`.
Every run starts from the same weights and sees the same minibatches (the book draws
each net's weights separately and shares the minibatches). Prints the minibatch loss
every 100 iterations (like the book) and each run's final loss and accuracy, and writes
to ``--out`` (default ``runs/ch06_optimizer_compare_mnist``):

- ``loss.png``: the smoothed training loss of each optimizer (the book's
  ``smooth_curve``), y from 0 to 1, as Fig. 6-9;
- ``metrics.json``: settings, data set, per optimizer the final figures and every loss.

fit records the loss of iteration i at the weights *before* its update (the book after
it): the curves are shifted by one step.

Run: ``python -m experiments.ch06_optimizer_compare_mnist [--iters 2000]``.
"""

from __future__ import annotations

from typing import Any

import jax

from experiments import _ch06, _common
from funcnet import nets, optimizers

NAME = "ch06_optimizer_compare_mnist"
HIDDEN = [100, 100, 100, 100]
OPTIMIZERS = ("sgd", "momentum", "adagrad", "adam")  # the book leaves RMSprop out
MARKERS = {"SGD": "o", "Momentum": "x", "AdaGrad": "s", "Adam": "D"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train the four nets; returns the metrics written to ``metrics.json``."""
    args = _ch06.loss_curve_args(
        NAME, "Four optimizers on a 4-hidden-layer ReLU net (book Fig. 6-9).", argv
    )
    out = _common.out_dir(args.out)
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.claim(out, NAME, args, data.name)
    classes = len(data.class_names)
    k_init, k_fit = jax.random.split(jax.random.key(args.seed))
    params = nets.init_multi_layer_net(k_init, data.train[0].shape[1], HIDDEN, classes)
    net = nets.multi_layer_net("relu")
    runs = {
        optimizers.BOOK_NAMES[name]: _ch06.Run(
            params, net.loss, net.predict, optimizers.OPTIMIZERS[name]()
        )
        for name in OPTIMIZERS
    }
    print(
        f"{data.train[0].shape[1]}-{'-'.join(map(str, HIDDEN))}-{classes} ReLU net, He init, "
        f"{args.iters} iterations of {args.batch_size}, optimizers at the book's defaults"
    )
    results = _ch06.train_runs(runs, data, key=k_fit, iters=args.iters, batch_size=args.batch_size)
    _ch06.print_loss_table(results)
    summaries = {label: _ch06.loss_summary(r) for label, r in results.items()}
    for label, s in summaries.items():
        print(
            f"{label:<9} final loss {s['final_smoothed_loss']:.4f} (smoothed), "
            f"{s['mean_loss_last_100']:.4f} (mean of the last 100); "
            f"train acc {s['final_train_acc']:.4f}, test acc {s['final_test_acc']:.4f}"
        )
    metrics = {
        "experiment": NAME,
        "settings": {
            "iters": args.iters,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "hidden": HIDDEN,
            "activation": "relu",
            "weight_init_std": "he",
        },
        "dataset": {
            "requested": args.dataset,
            "used": data.name,
            "train_size": len(data.train[0]),
            "test_size": len(data.test[0]),
        },
        "runs": summaries,
    }
    title = f"{data.name}: optimizers on a {len(HIDDEN)}-hidden-layer ReLU net"
    written = [
        _ch06.plot_losses(results, MARKERS, out / "loss.png", title, ylim=(0, 1)),
        _common.write_json(out / "metrics.json", metrics),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return metrics


if __name__ == "__main__":
    _common.run(main)
