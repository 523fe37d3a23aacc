"""Gradient descent on f(x0, x1) = x0² + x1² (book ch4.4, ``gradient_method.py`` and
``gradient_2d.py``), with the book's numerical gradient, in float64.

Prints the book's three runs from (-3, 4), 100 steps each::

    lr=0.1   -> [-6.11110793e-10  8.14814391e-10]   (converges to the minimum)
    lr=10    -> about [-2.6e+13 -1.3e+12]          (too large: diverges)
    lr=1e-10 -> [-2.99999994  3.99999992]          (too small: hardly moves)

and writes to ``--out`` (default ``runs/ch04_gradient_descent``):

- ``gradient_descent.png``: the first 20 points of the lr=0.1 trajectory (book Fig. 4-10);
- ``learning_rates.png``: distance to the minimum per step for the three learning rates;
- ``gradient_field.png``: the negative gradient as arrows on a grid (book Fig. 4-9).

Run: ``python -m experiments.ch04_gradient_descent``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet.gradient import gradient_descent, numerical_gradient

NAME = "ch04_gradient_descent"
INIT = (-3.0, 4.0)
LEARNING_RATES = (0.1, 10.0, 1e-10)


def function_2(x: jax.Array) -> jax.Array:
    """The book's ``function_2``: x0² + x1² (sum of squares over the last axis)."""
    return jnp.sum(x**2, axis=-1)


def plot_trajectory(history: np.ndarray, path: Path) -> Path:
    """Book Fig. 4-10: the points visited, axes dashed through the origin."""
    fig = _common.figure(width=5.6, height=6.2)
    ax = fig.add_subplot()
    ax.plot([-5, 5], [0, 0], "--b", lw=1)
    ax.plot([0, 0], [-5, 5], "--b", lw=1)
    ax.plot(history[:, 0], history[:, 1], "o")
    ax.set_xlim(-3.5, 3.5)
    ax.set_ylim(-4.5, 4.5)
    ax.set_xlabel("X0")
    ax.set_ylabel("X1")
    ax.set_title(f"gradient descent from {INIT}, lr=0.1, {len(history)} steps")
    return _common.save(fig, path)


def plot_learning_rates(histories: dict[float, np.ndarray], path: Path) -> Path:
    """Distance |x| to the minimum per step: lr 0.1 converges, 10 diverges, 1e-10 stalls."""
    fig = _common.figure()
    ax = fig.add_subplot()
    for lr, history in histories.items():
        ax.semilogy(np.linalg.norm(history, axis=1), label=f"lr = {lr:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("distance to the minimum |x|")
    ax.set_title(f"gradient descent on x0² + x1² from {INIT}")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return _common.save(fig, path)


def plot_gradient_field(points: np.ndarray, grads: np.ndarray, path: Path) -> Path:
    """Book Fig. 4-9: arrows of -∇f, pointing to the minimum, longer further from it."""
    fig = _common.figure(width=6.0, height=6.0)
    ax = fig.add_subplot()
    ax.quiver(points[:, 0], points[:, 1], -grads[:, 0], -grads[:, 1], angles="xy", color="#666666")
    ax.set_xlim(-2, 2)
    ax.set_ylim(-2, 2)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title("negative gradient of x0² + x1²")
    ax.grid()
    return _common.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run the three learning rates, print the end points, draw the figures.

    Returns the end point of each run (keys ``"lr=0.1"``, ...) and the 20-step trajectory
    (``"trajectory"``).
    """
    p = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description="Gradient descent on x0² + x1² (ch4)."
    )
    p.add_argument("--steps", type=int, default=100, help="steps per run (default: 100)")
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    out = _common.out_dir(args.out)
    result: dict[str, np.ndarray] = {}
    with jax.enable_x64(True):
        init = jnp.array(INIT)
        histories = {}
        for lr in LEARNING_RATES:
            x, history = gradient_descent(function_2, init, lr=lr, step_num=args.steps)
            x = np.asarray(x)
            histories[lr] = np.concatenate([np.asarray(history), x[None]])
            result[f"lr={lr:g}"] = x
            print(f"lr={lr:<6g} {args.steps} steps from {INIT}: {x}")
        _, trajectory = gradient_descent(function_2, init, lr=0.1, step_num=20)
        result["trajectory"] = np.asarray(trajectory)
        grid = np.arange(-2, 2.5, 0.25)
        points = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
        grads = jax.vmap(lambda q: numerical_gradient(function_2, q))(jnp.asarray(points))
    written = [
        plot_trajectory(result["trajectory"], out / "gradient_descent.png"),
        plot_learning_rates(histories, out / "learning_rates.png"),
        plot_gradient_field(points, np.asarray(grads), out / "gradient_field.png"),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
