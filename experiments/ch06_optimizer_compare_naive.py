"""Four optimizers on f(x, y) = x²/20 + y² (book ch6.1.7, ``optimizer_compare_naive.py``,
Fig. 6-8), with :mod:`funcnet.optimizers` and ``jax.grad``, in float64.

From (−7, 2), 30 steps each of SGD (lr 0.95), Momentum (lr 0.1), AdaGrad (lr 1.5) and Adam
(lr 0.3). f is 20 times flatter along x than along y: SGD zig-zags across the valley,
Momentum rolls like a ball, AdaGrad damps the steep y direction at once, Adam combines
both. Prints the final point of each and writes to ``--out`` (default
``runs/ch06_optimizer_compare_naive``):

- ``optimizer_compare_naive.png``: four panels, contour lines of f (values above 7 left
  out, as the book's), the red path from the start through every step, the minimum (0, 0)
  marked with a ``+``;
- ``trajectories.json``: every point of every path.

The book plots the 30 points *before* each update; here the start and all 30 updates
(31 points) are drawn, so the printed final point is the last one in the panel. The book
sets f to 0 where it exceeds 7; here those values are masked, which leaves them out
without drawing every level along the mask's edge.

Run: ``python -m experiments.ch06_optimizer_compare_naive [--steps 30]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import _common
from funcnet import optimizers

NAME = "ch06_optimizer_compare_naive"
START = (-7.0, 2.0)
# The book's choice of optimizer and learning rate for each panel (other settings default).
SETTINGS = (("sgd", 0.95), ("momentum", 0.1), ("adagrad", 1.5), ("adam", 0.3))


def f(params: dict[str, jax.Array]) -> jax.Array:
    """The book's f(x, y) = x²/20 + y² (its minimum is 0 at (0, 0))."""
    return params["x"] ** 2 / 20.0 + params["y"] ** 2


def trajectory(opt: optax.GradientTransformation, start: tuple[float, float], steps: int):
    """The points visited by ``opt`` descending :func:`f` from ``start``.

    Returns:
        ``(steps + 1, 2)`` array: the start, then the point after each update.
    """
    params = {"x": jnp.asarray(start[0]), "y": jnp.asarray(start[1])}

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(f)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), jnp.stack([params["x"], params["y"]])

    _, points = jax.lax.scan(step, (params, opt.init(params)), length=steps)
    return jnp.concatenate([jnp.asarray(start)[None], points])


def plot(paths: dict[str, np.ndarray], path: Path) -> Path:
    """Book Fig. 6-8: a 2×2 grid, one optimizer per panel."""
    x = np.arange(-10, 10, 0.01)
    y = np.arange(-5, 5, 0.01)
    X, Y = np.meshgrid(x, y)
    Z = np.ma.masked_where(X**2 / 20.0 + Y**2 > 7, X**2 / 20.0 + Y**2)
    fig = _common.figure(width=9.0, height=8.0)
    axes = fig.subplots(2, 2)
    for ax, (label, points) in zip(axes.flat, paths.items(), strict=True):
        ax.contour(X, Y, Z)
        ax.plot(points[:, 0], points[:, 1], "o-", color="red", ms=4, lw=1)
        ax.plot(0, 0, "+", color="black", ms=12, mew=2)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_title(label)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.suptitle(f"f(x, y) = x²/20 + y² from {START}, {len(points) - 1} steps each")
    return _common.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the four optimizers; returns ``{label: final point (x, y)}`` and the paths."""
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="SGD, Momentum, AdaGrad and Adam on x²/20 + y² (book Fig. 6-8).",
    )
    p.add_argument(
        "--steps", type=_common.positive_int, default=30, help="updates per optimizer (default: 30)"
    )
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    out = _common.claim(args.out, NAME, args)
    paths: dict[str, np.ndarray] = {}
    with jax.enable_x64(True):
        for name, lr in SETTINGS:
            label = f"{optimizers.BOOK_NAMES[name]} (lr={lr:g})"
            points = np.asarray(trajectory(optimizers.OPTIMIZERS[name](lr), START, args.steps))
            paths[label] = points
            x, y = points[-1]
            print(f"{label:<20} final point ({x: .6f}, {y: .6f})  f = {x**2 / 20 + y**2:.3g}")
    finals = {label: points[-1] for label, points in paths.items()}
    written = [
        plot(paths, out / "optimizer_compare_naive.png"),
        _common.write_json(
            out / "trajectories.json",
            {"start": START, "steps": args.steps, "paths": paths, "final": finals},
        ),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return {"final": finals, "paths": paths}


if __name__ == "__main__":
    _common.run(main)
