"""The book's ch4 ``train_neuralnet.py`` with *numerical* gradients, against backprop.

The ch4 two-layer net (affine → sigmoid → affine → softmax) trained with the gradient the
book computes first: central differences for every weight (``numerical_gradient``). That
takes thousands of forward passes per iteration, which is why the book moves on to
backpropagation. This experiment trains the same net, from the same weights on the same
minibatches, twice: with the numerical gradient and with backprop (the custom_vjp rules),
in float64. It prints both losses per iteration (they agree to about 1e-9), the loss
on the whole training set before and after, and how much slower a numerical iteration is.

Defaults are small so it runs in well under a minute: 10 hidden units, 20 iterations of
100 examples. The learning rate is 2.0 instead of the book's 0.1: from weights of std
0.01 the sigmoid net barely moves in its first iterations at 0.1, and the point here is to
see the loss fall within a few numerical iterations.

A numerical iteration takes two forward passes of the minibatch for every weight (about
2 s with the defaults on a laptop core), so its time grows with ``--hidden`` and
``--batch-size``: they are bounded (at most 100 hidden units, 1,000 examples, 10,000
iterations, the book's ``iters_num``), and the first line printed says what was used.

Writes ``loss.png`` (minibatch loss per iteration, both methods) and ``metrics.json`` to
``--out`` (default ``runs/ch04_train_neuralnet/<data set>``).

Run: ``python -m experiments.ch04_train_neuralnet [--iters 20] [--hidden 10]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.ticker import MaxNLocator

from experiments import _common
from funcnet import nets
from funcnet.train import sample_batch

NAME = "ch04_train_neuralnet"


def make_sgd(grad_fn, lr: float):
    """A jitted ``step(params, x, t) -> params - lr · grad_fn(params, x, t)`` (the book's
    ``params[key] -= learning_rate * grad[key]``)."""

    @jax.jit
    def step(params, x, t):
        grads = grad_fn(params, x, t)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

    return step


def train(step, loss_fn, params, x, t, keys, batch_size: int):
    """Run ``step`` on the minibatch of each key; returns params, losses, seconds per step.

    The loss of iteration i is measured after its update, on its minibatch, as in the
    book. Step times exclude the first (compiling) call.
    """
    losses, times = [], []
    for key in keys:
        idx = sample_batch(key, x.shape[0], batch_size)
        xb, tb = x[idx], t[idx]
        t0 = time.perf_counter()
        params = jax.block_until_ready(step(params, xb, tb))
        times.append(time.perf_counter() - t0)
        losses.append(float(loss_fn(params, xb, tb)))
    steady = times[1:] if len(times) > 1 else times
    return params, np.asarray(losses), float(np.median(steady))


def plot(losses: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Minibatch loss per iteration for both gradients (the curves coincide)."""
    fig = _common.figure()
    ax = fig.add_subplot()
    it = np.arange(len(losses["numerical"]))
    ax.plot(it, losses["backprop"], "-", lw=2.5, alpha=0.5, label="backprop (custom rules)")
    ax.plot(it, losses["numerical"], "o", ms=4, label="numerical gradient")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (minibatch)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _common.save(fig, path)


_SLOW = "the numerical gradient's time grows with it"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.parser(
        NAME, "Train the ch4 sigmoid net with numerical gradients and with backprop."
    )
    p.add_argument(
        "--iters",
        type=_common.int_in_range(1, 10_000, _SLOW),
        default=20,
        help="iterations, 1 to 10,000 (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=_common.int_in_range(1, 1000, _SLOW),
        default=100,
        help="minibatch, drawn with replacement, 1 to 1,000 (default: %(default)s)",
    )
    p.add_argument(
        "--hidden",
        type=_common.int_in_range(1, 100, _SLOW),
        default=10,
        help="hidden units, 1 to 100 (default: %(default)s)",
    )
    p.add_argument(
        "--lr", type=_common.positive_float, default=2.0, help="learning rate (default: 2.0)"
    )
    p.add_argument("--seed", type=_common.seed, default=0, help="random seed (default: 0)")
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME, per_dataset=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train with both gradients; returns the metrics written to ``metrics.json``."""
    args = parse_args(argv)
    if args.out is not None:
        _common.out_dir(args.out)  # an --out that is a file fails before any work
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.run_dir(args.out, NAME, data.name, args)
    net = nets.two_layer_net("sigmoid")
    k_init, k_batches = jax.random.split(jax.random.key(args.seed))
    keys = [jax.random.fold_in(k_batches, i) for i in range(args.iters)]

    with jax.enable_x64(True):
        x = jnp.asarray(data.train[0], jnp.float64)
        t = jnp.asarray(data.train[1])
        params0 = nets.init_two_layer_net(
            k_init, x.shape[1], args.hidden, len(data.class_names), dtype=jnp.float64
        )
        n_params = sum(v.size for v in params0.values())
        print(
            f"{x.shape[1]}-{args.hidden}-{len(data.class_names)} sigmoid net "
            f"({n_params:,} weights), {args.iters} iterations of {args.batch_size}, "
            f"lr {args.lr}, seed {args.seed}, float64"
        )
        loss_full = jax.jit(net.loss)
        initial = float(loss_full(params0, x, t))
        results = {}
        for method, grad_fn in (("numerical", net.numerical_gradient), ("backprop", net.gradient)):
            params, losses, per_step = train(
                make_sgd(grad_fn, args.lr), net.loss, params0, x, t, keys, args.batch_size
            )
            results[method] = {
                "losses": losses,
                "seconds_per_iteration": per_step,
                "train_loss_after": float(loss_full(params, x, t)),
            }
    num, bp = results["numerical"], results["backprop"]
    print("iteration  loss (numerical)  loss (backprop)")
    for i, (a, b) in enumerate(zip(num["losses"], bp["losses"], strict=True)):
        print(f"{i:9d}  {a:16.10f}  {b:15.10f}")
    ratio = num["seconds_per_iteration"] / bp["seconds_per_iteration"]
    print(
        f"loss on all {x.shape[0]:,} training images: {initial:.6f} before, "
        f"{num['train_loss_after']:.6f} after (numerical), {bp['train_loss_after']:.6f} "
        "after (backprop)"
    )
    print(
        f"seconds per iteration: numerical {num['seconds_per_iteration']:.4f}, backprop "
        f"{bp['seconds_per_iteration']:.6f}: the numerical gradient is {ratio:,.0f}x slower"
    )
    plot(
        {k: v["losses"] for k, v in results.items()},
        out / "loss.png",
        f"{data.name}: ch4 sigmoid net, {args.hidden} hidden, lr {args.lr}",
    )
    metrics = {
        "experiment": NAME,
        "settings": vars(args) | {"out": str(out)},
        "dataset": data.name,
        "train_loss_before": initial,
        "max_loss_difference": float(np.max(np.abs(num["losses"] - bp["losses"]))),
        "slowdown_numerical_vs_backprop": ratio,
    } | {f"{k}": v for k, v in results.items()}
    _common.write_json(out / "metrics.json", metrics)
    print(f"wrote loss.png, metrics.json to {out}")
    return metrics


if __name__ == "__main__":
    _common.run(main)
