"""Small helpers shared by the experiments: flags, output folder, data, figures.

Figures are drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg
canvas (no pyplot, no GUI backend, no global figure state).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from funcnet import datasets

DPI = 110


def add_dataset_flag(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--dataset {auto,mnist,mnist-5k,fashion-mnist}``."""
    parser.add_argument(
        "--dataset",
        choices=datasets.DATASET_CHOICES,
        default=default,
        help="data set: auto (full MNIST if downloaded, else the embedded 5k subset), "
        "mnist, mnist-5k or fashion-mnist (default: %(default)s)",
    )


def add_out_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out DIR``, default ``runs/NAME``."""
    parser.add_argument(
        "--out", type=Path, default=Path("runs") / name, help="output folder (default: %(default)s)"
    )


def out_dir(path: str | Path) -> Path:
    """Create the output folder (and parents) and return it as a Path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_dataset(name: str, **options: Any) -> datasets.Dataset:
    """``funcnet.datasets.load(name)``, printing which set was used and any notice."""
    data = datasets.load(name, **options)
    if data.notice:
        print(f"note: {data.notice}")
    print(f"data set: {data.name} ({len(data.train[0]):,} train / {len(data.test[0]):,} test)")
    return data


def progress_enabled() -> bool:
    """Show progress bars only on an interactive terminal, never in CI logs."""
    return not os.environ.get("CI") and sys.stdout.isatty() and sys.stderr.isatty()


def figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A new Agg-rendered figure (``Figure(figsize=(width, height))``)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig: Figure, path: str | Path) -> Path:
    """Write the figure as PNG (or by extension) and return the path."""
    fig.savefig(path, dpi=DPI)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (NumPy scalars and arrays converted)."""

    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    Path(path).write_text(json.dumps(obj, indent=2, default=default) + "\n")
    return Path(path)


def image_grid(
    images: np.ndarray,
    predicted: Sequence[int],
    true: Sequence[int],
    class_names: Sequence[str],
    path: str | Path,
    title: str,
    rows: int = 5,
    cols: int = 5,
) -> Path:
    """Save a rows×cols grid of 28×28 images titled "pred / true" (wrong ones in red).

    Args:
        images: ``(N, 784)`` or ``(N, 1, 28, 28)`` images, N >= rows·cols.
        predicted, true: label indices, one per image.
        class_names: the name of each label value.
    """
    k = rows * cols
    images = np.asarray(images)[:k].reshape(k, 28, 28)
    fig = figure(width=1.75 * cols, height=1.9 * rows + 0.4)
    fig.suptitle(title)
    axes = fig.subplots(rows, cols)
    for ax, image, p, t in zip(axes.flat, images, predicted, true, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=float(max(1.0, image.max())))
        ok = int(p) == int(t)
        ax.set_title(
            f"pred: {class_names[int(p)]}\ntrue: {class_names[int(t)]}",
            fontsize=8,
            color="black" if ok else "red",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)
