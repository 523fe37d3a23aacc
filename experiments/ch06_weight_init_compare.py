"""Three weight initialisations of the same deep net on MNIST (book ch6.2.4,
``weight_init_compare.py``, Fig. 6-15).

A 784-100-100-100-100-10 ReLU net (:func:`funcnet.nets.init_multi_layer_net`) started
with weights of std 0.01, Xavier √(1/n) and He √(2/n), trained with SGD lr 0.01
(:func:`funcnet.optimizers.sgd`), minibatches of 128, 2,000 iterations, with
:func:`funcnet.train.fit`. Every run draws its weights from the same key (the same
normal numbers, scaled) and sees the same minibatches. With std 0.01 the signal dies out
in the deep layers and the loss does not move; Xavier learns, He learns fastest. Prints
the minibatch loss every 100 iterations and each run's final loss and accuracy, and
writes to ``--out`` (default ``runs/ch06_weight_init_compare``):

- ``loss.png``: the smoothed training loss of each initialisation, y from 0 to 2.5, as
  Fig. 6-15;
- ``metrics.json``: settings, data set, per initialisation the final figures and every
  loss.

fit records the loss of iteration i at the weights *before* its update (the book after
it): the curves are shifted by one step.

Run: ``python -m experiments.ch06_weight_init_compare [--iters 2000]``.
"""

from __future__ import annotations

from typing import Any

import jax

from experiments import _ch06, _common
from funcnet import nets, optimizers

NAME = "ch06_weight_init_compare"
HIDDEN = [100, 100, 100, 100]
INITS = {"std=0.01": 0.01, "Xavier": "xavier", "He": "he"}  # the book's labels
MARKERS = {"std=0.01": "o", "Xavier": "s", "He": "D"}
LR = 0.01


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train the three nets; returns the metrics written to ``metrics.json``."""
    args = _ch06.loss_curve_args(
        NAME, "Three weight initialisations of a 4-hidden-layer ReLU net (book Fig. 6-15).", argv
    )
    out = _common.out_dir(args.out)
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.claim(out, NAME, args, data.name)
    classes = len(data.class_names)
    k_init, k_fit = jax.random.split(jax.random.key(args.seed))
    net = nets.multi_layer_net("relu")
    runs = {
        label: _ch06.Run(
            nets.init_multi_layer_net(
                k_init, data.train[0].shape[1], HIDDEN, classes, weight_init_std=std
            ),
            net.loss,
            net.predict,
            optimizers.sgd(LR),
        )
        for label, std in INITS.items()
    }
    print(
        f"{data.train[0].shape[1]}-{'-'.join(map(str, HIDDEN))}-{classes} ReLU net, "
        f"SGD lr {LR}, {args.iters} iterations of {args.batch_size}"
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
            "optimizer": f"sgd(lr={LR})",
            "weight_init_std": INITS,
        },
        "dataset": {
            "requested": args.dataset,
            "used": data.name,
            "train_size": len(data.train[0]),
            "test_size": len(data.test[0]),
        },
        "runs": summaries,
    }
    title = f"{data.name}: weight initialisations of a {len(HIDDEN)}-hidden-layer ReLU net"
    written = [
        _ch06.plot_losses(results, MARKERS, out / "loss.png", title, ylim=(0, 2.5)),
        _common.write_json(out / "metrics.json", metrics),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return metrics


if __name__ == "__main__":
    _common.run(main)
