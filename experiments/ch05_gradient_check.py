"""The book's ch5 ``gradient_check.py``: backpropagation against numerical differentiation.

A 784-50-10 two-layer net, the first 3 training images, float64. For every parameter it
prints the mean absolute difference between the backprop gradient (the hand-written
custom_vjp rules of :mod:`funcnet.layers`) and

- the numerical gradient (central differences, h = 1e-4), as the book does;
- ``jax.grad`` of the plain forward (no hand-written rule): should agree to rounding;
- with ``--activation sigmoid``, the book's hand-derived ch4 gradient too.

The book prints differences of about 1e-10 to 1e-7 (its loss adds 1e-7 inside the log,
which its analytic gradient ignores); funcnet's loss is exact, and every difference to the
numerical gradient stays below 1e-9.

``--batch`` (at most 100) and ``--hidden`` (at most 100) are bounded: the numerical
gradient takes two forward passes over the batch for every weight (79,520 passes for the
784-50-10 net), so its time grows with both. The first line printed says what was used.

Run: ``python -m experiments.ch05_gradient_check [--activation sigmoid] [--batch 3]
[--hidden 50] [--dataset ...]``. Writes nothing.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from experiments import _common
from funcnet import nets

NAME = "ch05_gradient_check"
MAX_BATCH = 100  # numerical gradient: 2 forward passes of the whole batch per weight
MAX_HIDDEN = 100


def mean_abs_differences(a: nets.Params, b: nets.Params) -> dict[str, float]:
    """Per parameter, the mean of |a - b| over its elements (the book's figure)."""
    return {k: float(jnp.mean(jnp.abs(a[k] - b[k]))) for k in sorted(a)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.parser(
        NAME, "Check backprop against numerical and automatic differentiation (ch5)."
    )
    p.add_argument(
        "--activation",
        choices=nets.ACTIVATIONS,
        default="relu",
        help="hidden activation: relu (the book's ch5 gradient_check.py) or sigmoid (the "
        "ch4 net, which adds a check against the book's hand-derived ch4 gradient) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--batch",
        type=_common.int_in_range(1, MAX_BATCH, "the numerical gradient's time grows with it"),
        default=3,
        help=f"use the first N training images, 1 to {MAX_BATCH} (default: %(default)s, as the "
        "book)",
    )
    p.add_argument(
        "--hidden",
        type=_common.int_in_range(1, MAX_HIDDEN, "the numerical gradient's time grows with it"),
        default=50,
        help=f"hidden units, 1 to {MAX_HIDDEN} (default: %(default)s)",
    )
    p.add_argument("--seed", type=_common.seed, default=0, help="key for the weights (default: 0)")
    _common.add_dataset_flag(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print the differences; returns them as ``{comparison: {param: difference}}``.

    Raises:
        ValueError: ``--batch`` asks for more images than the training set holds.
    """
    args = parse_args(argv)
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    available = len(data.train[0])
    if args.batch > available:
        raise ValueError(
            f"--batch {args.batch}: the {data.name} training set has only {available:,} images"
        )
    x_np, t_np = data.train[0][: args.batch], data.train[1][: args.batch]
    classes = len(data.class_names)
    net = nets.two_layer_net(args.activation)
    print(
        f"{x_np.shape[1]}-{args.hidden}-{classes} {args.activation} net (weights from key "
        f"{args.seed}), the first {args.batch} of {data.name}'s {available:,} training "
        "images, float64"
    )
    with jax.enable_x64(True):
        x, t = jnp.asarray(x_np, jnp.float64), jnp.asarray(t_np)
        params = nets.init_two_layer_net(
            jax.random.key(args.seed), x.shape[1], args.hidden, classes, dtype=jnp.float64
        )

        def compiled(gradient):
            # One compiled program per gradient, not op by op; x and t are checked while
            # tracing, on their values (constants of the program).
            return jax.jit(lambda p: gradient(p, x, t))(params)

        backprop = compiled(net.gradient)
        results = {
            "backprop vs numerical": mean_abs_differences(
                backprop, compiled(net.numerical_gradient)
            ),
            "backprop vs autodiff": mean_abs_differences(backprop, compiled(net.autodiff_gradient)),
        }
        if args.activation == "sigmoid":
            results["backprop vs book ch4 gradient"] = mean_abs_differences(
                backprop, compiled(nets.two_layer_net_ch4_gradient)
            )
    print("mean |difference| per parameter:")
    for name, diffs in results.items():
        print(f"{name}:")
        for key, value in diffs.items():
            print(f"  {key}: {value:.3e}")
    worst = max(results["backprop vs numerical"].values())
    print(f"largest backprop vs numerical difference: {worst:.3e}")
    return results


if __name__ == "__main__":
    _common.run(main)
