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

from pathlib import Path

from experiments import _common

NAME = "ch03_mnist_show"


def main(argv: list[str] | None = None) -> Path:
    """Run the experiment; returns the path of the PNG written."""
    parser = _common.parser(NAME, __doc__)
    parser.add_argument(
        "--index",
        type=int,
        default=0,
        help="which image; negative counts from the end, like Python (default: 0)",
    )
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="training or test images (default: %(default)s)",
    )
    _common.add_dataset_flag(parser)
    _common.add_out_flag(parser, NAME)
    args = parser.parse_args(argv)
    _common.out_dir(args.out)  # an --out that is a file fails before any work

    ds = _common.load_dataset(args.dataset, flatten=True, normalize=False, data_dir=args.data_dir)
    x, t = ds.train if args.split == "train" else ds.test
    if not -len(x) <= args.index < len(x):
        parser.error(
            f"--index {args.index} is out of range for the {len(x):,} {args.split} images of "
            f"{ds.name} (use 0 to {len(x) - 1:,}, or -1 to -{len(x):,})"
        )
    index = args.index % len(x)  # the image actually shown, counted from 0
    img, label = x[index], int(t[index])
    print(f"{ds.name} {args.split} image {index:,} of {len(x):,}")
    name = ds.class_names[label]
    label_text = str(label) if name == str(label) else f"{label} ({name})"
    print(label_text)
    print(img.shape)  # (784,)
    img = img.reshape(28, 28)  # back to the original image shape
    print(img.shape)  # (28, 28)

    path = _common.out_dir(args.out) / f"{ds.name}_{args.split}_{index}.png"
    fig = _common.figure(width=3.4, height=3.8)
    ax = fig.subplots()
    ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(f"{ds.name} {args.split}[{index}]\nlabel {label_text}")
    ax.set_xlabel("column (pixel)")
    ax.set_ylabel("row (pixel)")
    _common.save(fig, path)
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    _common.run(main)
