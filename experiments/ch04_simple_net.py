"""The book's ch4 ``simpleNet`` (4.4.2): a 2×3 weight matrix, its loss and numerical gradient.

Prints, in float64, the figures the book prints for its fixed weights::

    W = [[0.47355232 0.9977393  0.84668094]
         [0.85557411 0.03563661 0.69422093]]
    predict([0.6, 0.9]) = [1.05414809 0.63071653 1.1328074 ]   argmax 2
    loss(t = [0, 0, 1]) = 0.92806828578...
    dW = [[ 0.21924757  0.14356243 -0.36281   ]
          [ 0.32887136  0.21534364 -0.544215  ]]

then the same for weights drawn from a seeded ``jax.random`` key (the book's
``np.random.randn(2, 3)``). The loss is the book's ``cross_entropy_error`` (with its 1e-7)
of ``softmax(x·W)``; dW is ``funcnet.gradient.numerical_gradient`` of it, a pure function
of W (the book's version mutates W through a lambda that ignores its argument).

Run: ``python -m experiments.ch04_simple_net [--seed 0]``. Writes nothing.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet import nets
from funcnet.gradient import numerical_gradient

NAME = "ch04_simple_net"


def simple_net_figures(params: nets.Params, x: jax.Array, t: jax.Array) -> dict[str, Any]:
    """predict, argmax, loss and numerical gradient dW of the simple net (NumPy values)."""
    scores = nets.simple_net_predict(params, x)
    return {
        "W": np.asarray(params["W"]),
        "predict": np.asarray(scores),
        "argmax": int(jnp.argmax(scores)),
        "loss": float(nets.simple_net_loss(params, x, t)),
        "dW": np.asarray(numerical_gradient(lambda p: nets.simple_net_loss(p, x, t), params)["W"]),
    }


def _print(label: str, figures: dict[str, Any]) -> None:
    print(f"--- {label}")
    print("W =", np.array2string(figures["W"], precision=8, prefix="W = "))
    print("predict(x) =", np.array2string(figures["predict"], precision=8))
    print("argmax =", figures["argmax"])
    print("loss =", figures["loss"])
    print("dW =", np.array2string(figures["dW"], precision=8, prefix="dW = "))


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Print the book's figures and a seeded random net's; returns both as dicts."""
    p = _common.parser(NAME, "The book's ch4 simpleNet.")
    p.add_argument(
        "--seed",
        type=_common.seed,
        default=0,
        help="key for the random W: jax.random.key(SEED) (default: 0)",
    )
    args = p.parse_args(argv)
    with jax.enable_x64(True):
        x = jnp.array([0.6, 0.9])
        t = jnp.array([0.0, 0.0, 1.0])
        print("x =", np.asarray(x), " t =", np.asarray(t))
        book = simple_net_figures({"W": jnp.array(nets.SIMPLE_NET_BOOK_W)}, x, t)
        _print("the book's W (ch4.4.2)", book)
        random = simple_net_figures(nets.init_simple_net(jax.random.key(args.seed)), x, t)
        _print(f"W from jax.random.key({args.seed})", random)
    return {"book": book, "random": random}


if __name__ == "__main__":
    _common.run(main)
