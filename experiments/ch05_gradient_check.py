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

Run: ``python -m experiments.ch05_gradient_check [--activation sigmoid] [--dataset ...]``.
Writes nothing.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

from experiments import _common
from funcnet import nets

NAME = "ch05_gradient_check"


def mean_abs_differences(a: nets.Params, b: nets.Params) -> dict[str, float]:
    """Per parameter, the mean of |a - b| over its elements (the book's figure)."""
    return {k: float(jnp.mean(jnp.abs(a[k] - b[k]))) for k in sorted(a)}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print the differences; returns them as ``{comparison: {param: difference}}``."""
    p = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Check backprop against numerical and automatic differentiation (ch5).",
    )
    p.add_argument("--activation", choices=nets.ACTIVATIONS, default="relu")
    p.add_argument("--batch", type=int, default=3, help="training images used (default: 3)")
    p.add_argument("--hidden", type=int, default=50, help="hidden units (default: 50)")
    p.add_argument("--seed", type=int, default=0, help="key for the weights (default: 0)")
    _common.add_dataset_flag(p)
    args = p.parse_args(argv)
    data = _common.load_dataset(args.dataset)
    x_np, t_np = data.train[0][: args.batch], data.train[1][: args.batch]
    net = nets.two_layer_net(args.activation)
    with jax.enable_x64(True):
        x, t = jnp.asarray(x_np, jnp.float64), jnp.asarray(t_np)
        params = nets.init_two_layer_net(
            jax.random.key(args.seed), x.shape[1], args.hidden, 10, dtype=jnp.float64
        )
        backprop = net.gradient(params, x, t)
        results = {
            "backprop vs numerical": mean_abs_differences(
                backprop, net.numerical_gradient(params, x, t)
            ),
            "backprop vs autodiff": mean_abs_differences(
                backprop, net.autodiff_gradient(params, x, t)
            ),
        }
        if args.activation == "sigmoid":
            results["backprop vs book ch4 gradient"] = mean_abs_differences(
                backprop, nets.two_layer_net_ch4_gradient(params, x, t)
            )
    print(
        f"{x.shape[1]}-{args.hidden}-10 {args.activation} net, {args.batch} images, float64; "
        "mean |difference| per parameter:"
    )
    for name, diffs in results.items():
        print(f"{name}:")
        for key, value in diffs.items():
            print(f"  {key}: {value:.3e}")
    worst = max(results["backprop vs numerical"].values())
    print(f"largest backprop vs numerical difference: {worst:.3e}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
