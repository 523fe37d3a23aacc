"""Gradient descent on f(x0, x1) = x0² + x1² (book ch4.4, ``gradient_method.py`` and
``gradient_2d.py``), with the book's numerical gradient, in float64.

Prints the book's three runs from (-3, 4), 100 steps each::

    lr=0.1   -> [-6.11110793e-10  8.14814391e-10]   (converges to the minimum)
    lr=10    -> about [-2.6e+13 -1.3e+12]          (too large: diverges)
    lr=1e-10 -> [-2.99999994  3.99999992]          (too small: hardly moves)

The lr=10 run stops moving after 10 steps, near |x| = 2.6e13, and not because it converged:
there the spacing of float64 numbers is about 0.004, so x ± h (h = 1e-4) rounds back to x,
f(x + h) - f(x - h) is exactly 0 and so is the numerical gradient (the true gradient 2x is
about 5e13). The program says so, and marks it on the figure.

Writes to ``--out`` (default ``runs/ch04_gradient_descent``):

- ``gradient_descent.png``: the first 20 points of the lr=0.1 trajectory (book Fig. 4-10);
- ``learning_rates.png``: distance to the minimum per step for the three learning rates;
- ``gradient_field.png``: the negative gradient as arrows on a grid (book Fig. 4-9, also
  drawn by ``ch04_gradient_2d``).

Run: ``python -m experiments.ch04_gradient_descent``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from experiments.ch04_gradient_2d import function_2, gradient_grid, plot_gradient_field
from funcnet.gradient import gradient_descent, numerical_gradient

NAME = "ch04_gradient_descent"
INIT = (-3.0, 4.0)
LEARNING_RATES = (0.1, 10.0, 1e-10)


H = 1e-4  # numerical_gradient's step, the book's


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


class Stall(NamedTuple):
    """Where a run stopped moving although the true gradient is not 0.

    ``step`` is the first step after which x never changes; ``x`` the point (2,);
    ``numerical`` the numerical gradient there (0 when x ± h rounds to x); ``true`` 2x.
    """

    step: int
    x: np.ndarray
    numerical: np.ndarray
    true: np.ndarray


def find_stall(history: np.ndarray) -> Stall | None:
    """The :class:`Stall` of a float64 run ``(steps + 1, 2)``, or None when the run kept
    moving to its end or stopped at the minimum."""
    moves = np.any(history[1:] != history[:-1], axis=1)
    if not moves.any() or moves[-1]:
        return None
    step = int(np.flatnonzero(moves)[-1]) + 1
    x = history[step]
    if not np.any(x):
        return None
    with jax.enable_x64(True):
        numerical = np.asarray(numerical_gradient(function_2, jnp.asarray(x), H))
    return Stall(step, x, numerical, 2 * x)


def stall_text(lr: float, stall: Stall) -> str:
    """Why the run stopped: x ± h rounds to x, so the numerical gradient is 0."""
    spacing = float(np.spacing(np.max(np.abs(stall.x))))
    return (
        f"lr={lr:g} stops moving at step {stall.step}, |x| = {np.linalg.norm(stall.x):.2g}: not "
        f"convergence. float64 numbers there are {spacing:.2g} apart, so x ± h (h = {H:g}) "
        f"rounds to x and the numerical gradient is {stall.numerical.tolist()}; the true "
        f"gradient 2x is {np.linalg.norm(stall.true):.2g} long."
    )


def plot_learning_rates(histories: dict[float, np.ndarray], path: Path) -> Path:
    """Distance |x| to the minimum per step: lr 0.1 converges, 10 diverges until x ± h
    rounds to x (marked on the figure), 1e-10 hardly moves."""
    fig = _common.figure(width=7.0, height=5.2)
    ax = fig.add_subplot()
    for lr, history in histories.items():
        norms = np.linalg.norm(history, axis=1)
        (line,) = ax.semilogy(norms, label=f"lr = {lr:g}")
        stall = find_stall(history)
        if stall is not None:
            ax.annotate(
                f"lr = {lr:g} flattens here: near |x| = {norms[stall.step]:.1e}, x ± h\n"
                f"rounds to x in float64 (h = {H:g}), so the numerical\n"
                "gradient is exactly 0. Not convergence: the\n"
                f"true gradient 2x is {np.linalg.norm(stall.true):.0e} long.",
                xy=(stall.step, norms[stall.step]),
                xytext=(stall.step + 8, norms[stall.step] * 1e-6),
                fontsize=8.5,
                color=line.get_color(),
                arrowprops={"arrowstyle": "->", "color": line.get_color()},
            )
    ax.set_xlabel("step")
    ax.set_ylabel("distance to the minimum |x|")
    ax.set_title(f"gradient descent on x0² + x1² from {INIT}")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3, which="both")
    return _common.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run the three learning rates, print the end points, draw the figures.

    Returns the end point of each run (keys ``"lr=0.1"``, ...), the 20-step trajectory
    (``"trajectory"``) and, for a run that stopped moving away from the minimum, the step
    where it stopped (``"stall lr=10"``).
    """
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description="Gradient descent on x0² + x1² (ch4)."
    )
    p.add_argument(
        "--steps", type=_common.positive_int, default=100, help="steps per run (default: 100)"
    )
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    out = _common.claim(args.out, NAME, args)
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
    for lr, history in histories.items():
        stall = find_stall(history)
        if stall is not None:
            print(stall_text(lr, stall))
            result[f"stall lr={lr:g}"] = np.asarray(stall.step)
    points, grads = gradient_grid()
    written = [
        plot_trajectory(result["trajectory"], out / "gradient_descent.png"),
        plot_learning_rates(histories, out / "learning_rates.png"),
        plot_gradient_field(points, grads, out / "gradient_field.png"),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return result


if __name__ == "__main__":
    _common.run(main)
