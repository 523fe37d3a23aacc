"""Chapter 3, ``mnist_show.py``: show one MNIST image and its label.

The book loads MNIST with ``flatten=True, normalize=False``, prints the first training
label (5) and the image's shape before and after ``reshape(28, 28)``, and shows the image
with PIL. Here the image is saved as a PNG with its label in the title.

    python -m experiments.ch03_mnist_show [--index 0] [--split train]
        [--dataset {auto,mnist,mnist-5k,fashion-mnist}] [--out runs/ch03_mnist_show]

The default data set ``auto`` is full MNIST when its files are present (then index 0
is the book's 5), else the embedded 5,000-digit subset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments import _common

NAME = "ch03_mnist_show"


def main(argv: list[str] | None = None) -> Path:
    """Run the experiment; returns the path of the PNG written."""
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--index", type=int, default=0, help="which image (default 0)")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    _common.add_dataset_flag(parser)
    parser.add_argument("--data-dir", type=Path, default=None, help="directory of IDX files")
    _common.add_out_flag(parser, NAME)
    args = parser.parse_args(argv)

    ds = _common.load_dataset(args.dataset, flatten=True, normalize=False, data_dir=args.data_dir)
    x, t = ds.train if args.split == "train" else ds.test
    if not -len(x) <= args.index < len(x):
        parser.error(f"--index {args.index} is out of range for {len(x)} {args.split} images")
    img, label = x[args.index], int(t[args.index])
    name = ds.class_names[label]
    label_text = str(label) if name == str(label) else f"{label} ({name})"
    print(label_text)
    print(img.shape)  # (784,)
    img = img.reshape(28, 28)  # back to the original image shape
    print(img.shape)  # (28, 28)

    path = _common.out_dir(args.out) / f"{ds.name}_{args.split}_{args.index}.png"
    fig = _common.figure(width=3.4, height=3.8)
    ax = fig.subplots()
    ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(f"{ds.name} {args.split}[{args.index}]\nlabel {label_text}")
    ax.set_xlabel("column (pixel)")
    ax.set_ylabel("row (pixel)")
    _common.save(fig, path)
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
