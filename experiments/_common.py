"""Small helpers shared by the experiments: flags, output folder, data, figures.

Figures are drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg
canvas (no pyplot, no GUI backend, no global figure state).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from funcnet import datasets

DPI = 110


# --------------------------------------------------------------------------------------
# Command-line plumbing: validated flag types, and one clear line instead of a traceback


def _number(kind: type, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (no nan, no inf)."""
    value = _number(float, text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text!r}")
    return value


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> None:
    """Run an experiment's ``main`` as a command: an error becomes one line on stderr and
    exit status 1 (``FUNCNET_TRACEBACK=1`` shows the full traceback instead); Ctrl-C
    exits with status 130. Tests call ``main(argv)`` directly and see the exceptions."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "experiment"
    try:
        main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as e:  # noqa: BLE001 - a command line reports, it does not trace
        if os.environ.get("FUNCNET_TRACEBACK"):
            traceback.print_exc()
        else:
            print(f"{prog}: error: {e}", file=sys.stderr)
            if type(e).__module__.split(".")[0] not in ("funcnet", "builtins"):
                print(f"  ({type(e).__name__}; FUNCNET_TRACEBACK=1 shows where)", file=sys.stderr)
        raise SystemExit(1) from None


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
    """Create the output folder (and parents) and return it as a Path.

    Raises:
        NotADirectoryError: ``path`` (or a parent) exists and is not a folder.
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(f"--out {path}: {p} exists and is not a folder")
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


def to_json_value(obj: Any) -> Any:
    """``obj`` with NumPy values, Paths and tuples made plain, and every non-finite float
    (NaN, ±inf) made ``None``: strict JSON has no NaN, and a reader must not mistake a
    missing figure for a number."""
    if isinstance(obj, dict):
        return {str(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_value(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json_value(obj.tolist())
    if isinstance(obj, np.generic):
        return to_json_value(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict, indented JSON (see :func:`to_json_value`), atomically."""
    path = Path(path)
    text = json.dumps(to_json_value(obj), indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


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
