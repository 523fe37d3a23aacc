"""The gradient of f(x0, x1) = x0² + x1² (book ch4.4, ``gradient_2d.py``), in float64.

Prints the book's three numerical gradients (ch4.4)::

    numerical_gradient(function_2, [3.0, 4.0]) = [6. 8.]
    numerical_gradient(function_2, [0.0, 2.0]) = [0. 4.]
    numerical_gradient(function_2, [3.0, 0.0]) = [6. 0.]

(``--precise`` prints every digit: 6.000000000021544, 7.999999999999119. The book's NumPy
loop gives 6.00000000000378 for the first: XLA's compiled x0² + x1² rounds differently in
the last bit, and dividing by 2h = 0.0002 magnifies that), and writes to ``--out`` (default
``runs/ch04_gradient_2d``):

- ``function_2.png``: the surface of x0² + x1² over [-3, 3]² (book Fig. 4-8);
- ``gradient_2d.png``: the negative gradient -∇f as arrows on the book's grid
  (``arange(-2, 2.5, 0.25)``): they point to the minimum and grow with the distance from it
  (book Fig. 4-9).

The gradients come from :func:`funcnet.gradient.numerical_gradient` (central differences,
h = 1e-4), vmapped over the grid's points.

Run: ``python -m experiments.ch04_gradient_2d [--grid-step 0.25]``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet.gradient import numerical_gradient

NAME = "ch04_gradient_2d"
BOOK_POINTS = ((3.0, 4.0), (0.0, 2.0), (3.0, 0.0))


def function_2(x: jax.Array) -> jax.Array:
    """The book's ``function_2``: x0² + x1² (sum of squares over the last axis).

    Shape (..., 2) -> (...,).
    """
    return jnp.sum(x**2, axis=-1)


def gradient_grid(step: float = 0.25, limit: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Grid points ``(P, 2)`` over [-limit, limit]² (the book's ``arange(-2, 2.5, 0.25)``)
    and the numerical gradient of :func:`function_2` at each, ``(P, 2)``, in float64."""
    axis = np.arange(-limit, limit + step, step)
    points = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    with jax.enable_x64(True):
        grads = jax.vmap(lambda q: numerical_gradient(function_2, q))(jnp.asarray(points))
        return points, np.asarray(grads)


def plot_gradient_field(points: np.ndarray, grads: np.ndarray, path: Path) -> Path:
    """Book Fig. 4-9: arrows of -∇f, pointing to the minimum, longer further from it.

    ``points`` and ``grads`` are ``(P, 2)``."""
    fig = _common.figure(width=6.0, height=6.0)
    ax = fig.add_subplot()
    ax.quiver(points[:, 0], points[:, 1], -grads[:, 0], -grads[:, 1], angles="xy", color="#666666")
    ax.set_xlim(-2, 2)
    ax.set_ylim(-2, 2)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title("negative gradient of x0² + x1² (book Fig. 4-9)")
    ax.grid()
    return _common.save(fig, path)


def plot_surface(path: Path, limit: float = 3.0, samples: int = 61) -> Path:
    """Book Fig. 4-8: the bowl f(x0, x1) = x0² + x1² as a 3-D surface over [-limit, limit]²."""
    axis = np.linspace(-limit, limit, samples)
    x0, x1 = np.meshgrid(axis, axis)
    f = np.asarray(function_2(jnp.stack([x0, x1], axis=-1)))
    fig = _common.figure(width=6.4, height=5.6)
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(x0, x1, f, cmap="viridis", rstride=2, cstride=2, linewidth=0.2,
                    edgecolor="#333333", alpha=0.9)  # fmt: skip
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_zlabel("f(x)")
    ax.view_init(elev=25, azim=-60)
    ax.set_title("f(x0, x1) = x0² + x1² (book Fig. 4-8)")
    return _common.save(fig, path)


def book_gradients() -> dict[tuple[float, float], np.ndarray]:
    """The numerical gradient at the book's three points, in float64."""
    with jax.enable_x64(True):
        return {
            p: np.asarray(numerical_gradient(function_2, jnp.array(p, jnp.float64)))
            for p in BOOK_POINTS
        }


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    """Print the book's gradients, draw Figs. 4-8 and 4-9.

    Returns the gradient at each book point (keys ``"(3.0, 4.0)"``, ...), and the grid's
    ``"points"`` and ``"grads"`` (``(P, 2)`` each).
    """
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="The gradient of x0² + x1²: the book's values, surface and field (ch4.4).",
    )
    p.add_argument(
        "--grid-step",
        type=_common.positive_float,
        default=0.25,
        help="spacing of the arrows' grid over [-2, 2]² (default: %(default)s, the book's)",
    )
    p.add_argument("--precise", action="store_true", help="print the gradients with every digit")
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    if args.grid_step > 2.0:
        p.error(
            "argument --grid-step: must be at most 2 (the grid spans [-2, 2]), "
            f"got {args.grid_step:g}"
        )
    out = _common.claim(args.out, NAME, args)

    result: dict[str, np.ndarray] = {}
    for point, grad in book_gradients().items():
        text = repr(grad.tolist()) if args.precise else str(grad.round(8))
        print(f"numerical_gradient(function_2, {list(point)}) = {text}")
        result[str(point)] = grad
    points, grads = gradient_grid(args.grid_step)
    result["points"], result["grads"] = points, grads
    written = [
        plot_surface(out / "function_2.png"),
        plot_gradient_field(points, grads, out / "gradient_2d.png"),
    ]
    print(f"{len(points)} arrows on a grid of step {args.grid_step:g}")
    print("wrote", ", ".join(str(w) for w in written))
    return result


if __name__ == "__main__":
    _common.run(main)
