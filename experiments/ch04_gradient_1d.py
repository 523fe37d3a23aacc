"""The numerical derivative of f(x) = 0.01x² + 0.1x and its tangent lines (book ch4.3.2,
``gradient_1d.py``), in float64.

Prints, as the book does, the central differences (h = 1e-4) at x = 5 and x = 10::

    0.1999999999990898
    0.2999999999986347

(the true derivatives 0.02x + 0.1 are 0.2 and 0.3), and writes to ``--out`` (default
``runs/ch04_gradient_1d``):

- ``function_1.png``: f over [0, 20) (book Fig. 4-6);
- ``gradient_1d.png``: f with its tangent lines at x = 5 and x = 10, their slopes being
  the numerical derivatives (book Fig. 4-7).

The derivatives come from :func:`funcnet.gradient.numerical_diff`.

Run: ``python -m experiments.ch04_gradient_1d [--at 5 10]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet.gradient import numerical_diff

NAME = "ch04_gradient_1d"
BOOK_POINTS = (5.0, 10.0)


def function_1(x: jax.Array) -> jax.Array:
    """The book's ``function_1``: 0.01x² + 0.1x. Shape (...,) -> (...,)."""
    return 0.01 * x**2 + 0.1 * x


def derivative(x: float) -> float:
    """``numerical_diff(function_1, x)`` in float64 (the book's 1e-4 central difference)."""
    with jax.enable_x64(True):
        return float(numerical_diff(function_1, jnp.float64(x)))


def tangent_line(x: float) -> tuple[float, Callable[[np.ndarray], np.ndarray]]:
    """The book's ``tangent_line``: slope d = f'(x) (numerical) and t -> d·t + f(x) - d·x."""
    d = derivative(x)
    with jax.enable_x64(True):
        y0 = float(function_1(jnp.float64(x))) - d * x
    return d, lambda t: d * t + y0


def plot_function(x: np.ndarray, y: np.ndarray, path: Path) -> Path:
    """Book Fig. 4-6: f(x) = 0.01x² + 0.1x."""
    fig = _common.figure(width=5.6, height=4.2)
    ax = fig.add_subplot()
    ax.plot(x, y)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title("f(x) = 0.01x² + 0.1x (book Fig. 4-6)")
    return _common.save(fig, path)


def plot_tangents(x: np.ndarray, y: np.ndarray, points: tuple[float, ...], path: Path) -> Path:
    """Book Fig. 4-7: one panel per point, f and its tangent there (slope = numerical_diff)."""
    fig = _common.figure(width=4.6 * len(points), height=4.2)
    axes = np.atleast_1d(fig.subplots(1, len(points), sharey=True))
    for ax, at in zip(axes, points, strict=True):
        slope, line = tangent_line(at)
        ax.plot(x, y, label="f(x)")
        ax.plot(x, line(x), "--", label=f"tangent, slope {slope!r}")
        ax.plot([at], [float(function_1(at))], "o", color="black", ms=4)
        ax.set_ylim(float(np.min(y)) - 0.5, float(np.max(y)) + 0.5)
        ax.set_xlabel("x")
        ax.set_title(f"x = {at:g}")
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("f(x)")
    fig.suptitle("f(x) = 0.01x² + 0.1x and its tangent lines (book Fig. 4-7)")
    return _common.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print the numerical derivatives at the points, draw Figs. 4-6 and 4-7.

    Returns the derivative at each point, keyed ``"x=5"``, ``"x=10"``.
    """
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="The numerical derivative of 0.01x² + 0.1x and its tangents (ch4.3.2).",
    )
    p.add_argument(
        "--at",
        type=_common.finite_float,
        nargs="+",
        default=list(BOOK_POINTS),
        metavar="X",
        help="points of the tangent lines, within [0, 20) (default: 5 10, the book's)",
    )
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    outside = [a for a in args.at if not 0 <= a < 20]
    if outside:
        p.error(f"argument --at: points must lie in [0, 20) (the plotted range), got {outside}")
    if len(args.at) > 4:
        p.error(f"argument --at: at most 4 points (one panel each), got {len(args.at)}")
    out = _common.claim(args.out, NAME, args)

    result = {}
    for at in args.at:
        d = derivative(at)
        print(d)  # the book prints the bare float: 0.1999999999990898
        result[f"x={at:g}"] = d
    x = np.arange(0.0, 20.0, 0.1)
    with jax.enable_x64(True):
        y = np.asarray(function_1(jnp.asarray(x)))
    written = [
        plot_function(x, y, out / "function_1.png"),
        plot_tangents(x, y, tuple(args.at), out / "gradient_1d.png"),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return result


if __name__ == "__main__":
    _common.run(main)
