"""Chapter 5's computational graphs, drawn from code with forward and backward values.

Traces four functions with :func:`funcnet.graph.trace`, prints each graph's text table and
writes it as SVG and PNG:

1. ``apples``: buying apples (book Fig. 5-16): forward 100, 2 -> 200, 1.1 -> 220;
   backward 1, 1.1, 2.2, 110, 200;
2. ``apples_oranges``: apples and oranges (Fig. 5-17): forward 715; backward on the
   inputs 2.2, 110, 3.3, 165, 650;
3. ``sigmoid``: the sigmoid as x(-1), exp, +1 and / (Fig. 5-20); the backward value at
   the input is y(1 - y);
4. ``two_layer_net``: the loss of a two-layer net on a small batch, affine -> relu ->
   affine -> softmax_with_loss (Figs. 5-25 to 5-30), with the shape of every edge, drawn
   top to bottom so that it reads at page width (about 900 px wide).

The shopping and sigmoid graphs are traced in float64. Numbers are printed with
:func:`funcnet.graph.format_number` at 10 significant digits (``220``, ``3.3``; float64's
``220.00000000000003`` is rounding noise); the pictures use 4.

Run: ``python -m experiments.ch05_computational_graph [--out runs/ch05_computational_graph]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from experiments.ch05_buy_apple_orange import buy_apple, buy_apple_orange
from funcnet.graph import Graph, GraphvizNotFoundError, format_number, trace
from funcnet.layers import affine, relu, softmax_with_loss


def sigmoid(x: jax.Array) -> jax.Array:
    """The sigmoid written as the book's Fig. 5-20 draws it: x(-1), exp, +1, then 1/x."""
    return 1 / (1 + jnp.exp(-1 * x))


def two_layer_net_loss(
    x: jax.Array, W1: jax.Array, b1: jax.Array, W2: jax.Array, b2: jax.Array, t: jax.Array
) -> jax.Array:
    """The two-layer net's loss through the funcnet layers (ch5.7).

    Shapes: x (N, D), W1 (D, H), b1 (H,), W2 (H, C), b2 (C,), integer labels t (N,).
    """
    return softmax_with_loss(affine(relu(affine(x, W1, b1)), W2, b2), t)


def net_arguments(
    key: jax.Array, batch: int = 2, features: int = 4, hidden: int = 5, classes: int = 3
) -> tuple[jax.Array, ...]:
    """A small batch and weights for :func:`two_layer_net_loss`, from one PRNG key."""
    kx, k1, kb, k2, kt = jax.random.split(key, 5)
    x = jax.random.normal(kx, (batch, features))
    W1 = 0.5 * jax.random.normal(k1, (features, hidden))
    b1 = 0.1 * jax.random.normal(kb, (hidden,))
    W2 = 0.5 * jax.random.normal(k2, (hidden, classes))
    b2 = jnp.zeros(classes)
    t = jax.random.randint(kt, (batch,), 0, classes)
    return x, W1, b1, W2, b2, t


def build_graphs(key: jax.Array, batch: int = 2) -> dict[str, Graph]:
    """The four graphs of the chapter, by name."""
    with jax.enable_x64(True):
        graphs = {
            "apples": trace(buy_apple, 100.0, 2.0, 1.1),
            "apples_oranges": trace(buy_apple_orange, 100.0, 2.0, 150.0, 3.0, 1.1),
            "sigmoid": trace(sigmoid, 1.0),
        }
    graphs["two_layer_net"] = trace(two_layer_net_loss, *net_arguments(key, batch))
    return graphs


def _grad_gap(graph: Graph, f, args: tuple) -> float:
    """Largest |backward value on an input edge - jax.grad| over the float inputs."""
    floats = [i for i, a in enumerate(args) if jnp.issubdtype(jnp.result_type(a), jnp.inexact)]
    grads = jax.grad(f, argnums=tuple(floats))(*args)
    return max(
        float(np.max(np.abs(graph.values[graph.inputs[i]].backward - g)))
        for i, g in zip(floats, grads, strict=True)
    )


# How the experiments print numbers: 10 significant digits (220, 3.3, 0.1966119332).
DIGITS = 10
# The two-layer net drawn top to bottom, three numbers a line: it reads at page width.
DRAWING = {"two_layer_net": {"rankdir": "TB", "wrap": 3}}


def _numbers(*values) -> str:
    return " ".join(format_number(v, DIGITS) for v in values)


def main(argv: list[str] | None = None) -> dict[str, Graph]:
    parser = _common.ArgumentParser(
        prog="python -m experiments.ch05_computational_graph",
        description=__doc__.splitlines()[0],
    )
    _common.add_out_flag(parser, "ch05_computational_graph")
    parser.add_argument("--seed", type=_common.seed, default=0, help="PRNG seed for the net's data")
    parser.add_argument(
        "--batch",
        type=_common.int_in_range(1, 100, "every value of the graph is printed and drawn"),
        default=2,
        help="batch size of the net's graph, 1 to 100 (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    out = _common.claim(args.out, "ch05_computational_graph", args)
    _common.mark_written(out)  # the pictures below are written by Graph.render

    graphs = build_graphs(jax.random.key(args.seed), args.batch)
    for name, graph in graphs.items():
        print(f"== {name}")
        print(graph.table(digits=DIGITS))
        try:
            for suffix in (".svg", ".png"):
                print("wrote", graph.render(out / f"{name}{suffix}", **DRAWING.get(name, {})))
        except GraphvizNotFoundError as err:
            print(f"no picture: {err}")
        print()

    with jax.enable_x64(True):
        apples = graphs["apples"]
        print(
            "apples: price", _numbers(apples.output().forward),
            "| dapple, dapple_num, dtax =",
            _numbers(*(apples.input(n).backward for n in ("apple", "apple_num", "tax"))),
            "| max |backward - jax.grad| =", _grad_gap(apples, buy_apple, (100.0, 2.0, 1.1)),
        )  # fmt: skip
        both = graphs["apples_oranges"]
        names = ("apple", "apple_num", "orange", "orange_num", "tax")
        print(
            "apples & oranges: price", _numbers(both.output().forward),
            "| dapple, dapple_num, dorange, dorange_num, dtax =",
            _numbers(*(both.input(n).backward for n in names)),
        )  # fmt: skip
        sig = graphs["sigmoid"]
        y = sig.output().forward
        print(
            f"sigmoid at x = 1: y = {float(y):.6f}, backward at x = "
            f"{float(sig.input('x').backward):.6f}, y(1 - y) = {float(y * (1 - y)):.6f}"
        )
    net = graphs["two_layer_net"]
    gap = _grad_gap(net, two_layer_net_loss, net_arguments(jax.random.key(args.seed), args.batch))
    print(f"two-layer net: loss {float(net.output().forward):.6f}, "
          f"max |backward - jax.grad| on W1 b1 W2 b2 x = {gap:.2e}")  # fmt: skip
    return graphs


if __name__ == "__main__":
    _common.run(main)
