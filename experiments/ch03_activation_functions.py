"""The book's chapter-3 activation functions drawn (ch3.2; ``step_function.py``,
``sigmoid.py``, ``sig_step_compare.py``, ``relu.py``).

Evaluates :mod:`funcnet.functions`' ``step_function``, ``sigmoid`` and ``relu`` on the
book's grid ``arange(-5.0, 5.0, 0.1)``, prints a few values the book prints
(``sigmoid([-1, 1, 2]) = [0.26894142 0.73105858 0.88079708]``,
``step_function([-1, 1, 2]) = [0 1 1]``), and writes to ``--out`` (default
``runs/ch03_activation_functions``):

- ``step_function.png``: the step function (book Fig. 3-6);
- ``sigmoid.png``: the sigmoid (book Fig. 3-7);
- ``sig_step_compare.png``: the sigmoid and, dashed, the step function (book Fig. 3-8);
- ``relu.png``: the ReLU (book Fig. 3-9).

Run: ``python -m experiments.ch03_activation_functions``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet.functions import relu, sigmoid, step_function

NAME = "ch03_activation_functions"
BOOK_X = (-1.0, 1.0, 2.0)  # the book's example input (ch3.2.4)


def book_grid(step: float = 0.1) -> np.ndarray:
    """The book's x axis: ``np.arange(-5.0, 5.0, step)``, float64 ``(n,)``."""
    return np.arange(-5.0, 5.0, step)


def curves(x: np.ndarray) -> dict[str, np.ndarray]:
    """``step_function``, ``sigmoid`` and ``relu`` of ``x`` ``(n,)`` (float64), by name."""
    with jax.enable_x64(True):
        xs = jnp.asarray(x, jnp.float64)
        return {
            "step_function": np.asarray(step_function(xs)),
            "sigmoid": np.asarray(sigmoid(xs)),
            "relu": np.asarray(relu(xs)),
        }


def _plot(x: np.ndarray, lines: list[tuple[np.ndarray, str, str]], ylim, title: str, path: Path):
    """One book-style line plot: (y, matplotlib format, label) per line."""
    fig = _common.figure(width=5.6, height=4.2)
    ax = fig.add_subplot()
    for y, fmt, label in lines:
        ax.plot(x, y, fmt, label=label)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    if len(lines) > 1:
        ax.legend(loc="upper left")
    return _common.save(fig, path)


def draw(x: np.ndarray, ys: dict[str, np.ndarray], out: Path) -> list[Path]:
    """The four figures of ch3.2 (Figs. 3-6 to 3-9), written under ``out``."""
    return [
        _plot(x, [(ys["step_function"], "-", "step")], (-0.1, 1.1),
              "step function (book Fig. 3-6)", out / "step_function.png"),
        _plot(x, [(ys["sigmoid"], "-", "sigmoid")], (-0.1, 1.1),
              "sigmoid function (book Fig. 3-7)", out / "sigmoid.png"),
        _plot(x, [(ys["sigmoid"], "-", "sigmoid"), (ys["step_function"], "k--", "step")],
              (-0.1, 1.1), "sigmoid and step function (book Fig. 3-8)",
              out / "sig_step_compare.png"),
        _plot(x, [(ys["relu"], "-", "ReLU")], (-1.0, 5.5),
              "ReLU function (book Fig. 3-9)", out / "relu.png"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    """Print the book's example values and draw the four figures.

    Returns ``"x"`` (the grid), the three curves on it, and ``"book_sigmoid"``,
    ``"book_step"`` (the functions at the book's [-1, 1, 2]).
    """
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="The step, sigmoid and ReLU functions drawn (ch3.2, Figs. 3-6 to 3-9).",
    )
    p.add_argument(
        "--step",
        type=_common.positive_float,
        default=0.1,
        help="spacing of the x grid over [-5, 5) (default: %(default)s, the book's)",
    )
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    if args.step > 5.0:
        p.error(f"argument --step: must be at most 5 (the grid spans [-5, 5)), got {args.step:g}")
    out = _common.claim(args.out, NAME, args)

    x = book_grid(args.step)
    ys = curves(x)
    book = curves(np.array(BOOK_X))
    print(f"x = {list(BOOK_X)}")
    print("step_function(x) =", book["step_function"].astype(int))
    print("sigmoid(x) =", np.array2string(book["sigmoid"], precision=8))
    print("relu(x) =", book["relu"])
    written = draw(x, ys, out)
    print(f"{len(x)} points from {x[0]:g} to {x[-1]:.4g}")
    print("wrote", ", ".join(str(w) for w in written))
    return {
        "x": x,
        **ys,
        "book_sigmoid": book["sigmoid"],
        "book_step": book["step_function"],
    }


if __name__ == "__main__":
    _common.run(main)
