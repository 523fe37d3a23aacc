"""The book's ch3 ``neuralnet_mnist_batch.py``: inference with trained weights.

Loads a 3-layer network's weights (affine → sigmoid → affine → sigmoid → affine →
softmax), either the book's pickle (``sample_weight.pkl``, read by
``funcnet.io.load_pickled_params``, which refuses anything but arrays) or a funcnet
``.npz`` (``funcnet.io.load_params``), runs batched inference over the test set and
prints the accuracy like the book, plus the throughput::

    Accuracy:0.9352
    10,000 images in 0.05 s: 200,000 images/s (batch 100)

(0.9352 is the book's figure for ``sample_weight.pkl`` on the full MNIST test set.) The
batches run inside one compiled call (``lax.map`` over batches of ``--batch-size``; a
batch size above the test set's size is cut to it, and the output says so).
Weights in float64 are run in float64, like NumPy would. Writes ``predictions.png``: the
first 25 test images with predicted and true labels (class names for Fashion-MNIST), to
``--out`` (default ``runs/ch03_neuralnet_mnist/<data set>``).

Without the book's pickle (it needs a download), make weights here first, offline::

    python -m experiments.ch03_train_three_layer_net
    python -m experiments.ch03_neuralnet_mnist \
        --weights runs/ch03_train_three_layer_net/mnist-5k/params.npz

The weights must hold ``W1 b1 W2 b2 W3 b3`` of matching shapes; a two-layer net's
``params.npz`` (``ch05_train_neuralnet``) is refused with a message naming what is missing.

Run: ``python -m experiments.ch03_neuralnet_mnist --weights sample_weight.pkl
[--dataset mnist] [--batch-size 100] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet import nets

NAME = "ch03_neuralnet_mnist"
KEYS = ("W1", "b1", "W2", "b2", "W3", "b3")


def weights_path(text: str) -> Path:
    """argparse type of ``--weights``: a regular file (:func:`experiments._common.weights_file`);
    a missing one gets where the book's file comes from and how to make weights offline."""
    if text and not Path(text).exists():
        raise argparse.ArgumentTypeError(
            f"no such file: {text}. The book's weights are "
            "ch03/sample_weight.pkl in the book's code repository "
            "(https://github.com/oreilly-japan/deep-learning-from-scratch); "
            "`python -m experiments.ch03_train_three_layer_net` makes equivalent weights "
            "offline: then pass --weights runs/ch03_train_three_layer_net/DATASET/params.npz"
        )
    return _common.weights_file(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.parser(NAME, "Inference with the book's ch3 network and trained weights.")
    p.add_argument(
        "--weights",
        type=weights_path,
        required=True,
        help="weights: the book's sample_weight.pkl, or a funcnet .npz with W1 b1 W2 b2 W3 b3 "
        "(python -m experiments.ch03_train_three_layer_net makes one)",
    )
    p.add_argument(
        "--batch-size",
        type=_common.positive_int,
        default=100,
        help="images per batch, cut to the test set's size (default: %(default)s)",
    )
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME, per_dataset=True)
    return p.parse_args(argv)


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """The float arrays ``W1 b1 W2 b2 W3 b3`` of ``path``, read and checked like every
    experiment's weights (:func:`experiments._common.load_net_weights`).

    Raises:
        ValueError: naming the file and what it holds instead (a fit checkpoint, another
            net's keys, an entry that is not a float array).
    """
    return _common.load_net_weights(
        path,
        "--weights",
        "ch3 network",
        KEYS,
        hint=" (a two-layer net's params.npz does not fit; python -m "
        "experiments.ch03_train_three_layer_net makes ch3 weights)",
    )


def check_shapes(params: dict[str, Any], path: Path, features: int, classes: int) -> None:
    """Check that the ch3 ``params`` fit ``(N, features)`` images and ``classes`` classes:
    ``W1 (features, H1)``, ``b1 (H1,)``, ``W2 (H1, H2)``, ``b2 (H2,)``, ``W3 (H2, classes)``,
    ``b3 (classes,)``.

    Raises:
        ValueError: naming the file, the first pair that does not fit and what it should be.
    """
    hidden = [params[k].shape[-1] if params[k].ndim else 0 for k in ("W1", "W2")]
    sizes = [features, *hidden, classes]
    for i in (1, 2, 3):
        w, b = params[f"W{i}"].shape, params[f"b{i}"].shape
        want_w, want_b = (sizes[i - 1], sizes[i]), (sizes[i],)
        if w != want_w or b != want_b:
            raise ValueError(
                f"--weights {path}: W{i} {w} and b{i} {b} do not fit; expected W{i} {want_w} "
                f"and b{i} {want_b} for {features}-feature images, {classes} classes and "
                f"hidden sizes {sizes[1]}, {sizes[2]} (from W1 and W2)"
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the inference; returns accuracy, correct count, images/s and the output path."""
    args = parse_args(argv)
    if args.out is not None:
        _common.out_dir(args.out)  # an --out that is a file fails before any work
    params = load_weights(args.weights)
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    x, t = data.test
    check_shapes(params, args.weights, x.shape[1], len(data.class_names))
    params = {k: params[k] for k in KEYS}
    batch = min(args.batch_size, len(x))
    wide = any(v.dtype == np.float64 for v in params.values())
    sizes = "-".join(str(n) for n in (x.shape[1], *(params[f"b{i}"].shape[0] for i in (1, 2, 3))))
    print(
        f"weights: {args.weights} ({sizes} sigmoid net, {'float64' if wide else 'float32'}); "
        f"batch {batch}"
        + (
            f" (--batch-size {args.batch_size} cut to the test set's size)"
            if batch < args.batch_size
            else ""
        )
    )
    out = _common.run_dir(args.out, NAME, data.name, args)

    with jax.enable_x64(True) if wide else contextlib.nullcontext():
        with jax.default_matmul_precision("highest"):
            params = {k: jnp.asarray(v) for k, v in params.items()}
            xd, td = jax.device_put((x, t))
            # the library's checked accuracy: NaN (never a number) if a score is not finite
            fraction = jax.jit(
                functools.partial(nets.accuracy, nets.three_layer_net_predict, batch_size=batch)
            )
            jax.block_until_ready(fraction(params, xd, td))  # compile and warm up
            t0 = time.perf_counter()
            checked = float(fraction(params, xd, td))
            seconds = time.perf_counter() - t0
            first = jnp.argmax(nets.three_layer_net_predict(params, xd[:25]), axis=1)
    if not np.isfinite(checked):
        raise ValueError(
            f"{args.weights}: the scores are not finite (NaN or inf): the weights are not "
            "usable; no accuracy"
        )
    correct = round(checked * len(x))  # exact: accuracy * N is a float32 within 0.5 of it
    accuracy = correct / len(x)
    print(f"Accuracy:{accuracy}")
    print(
        f"{len(x):,} images in {seconds:.4f} s: {len(x) / seconds:,.0f} images/s "
        f"(batch {batch}, {jax.default_backend()}; inference only, after compiling)"
    )
    grid = _common.image_grid(
        x,
        np.asarray(first),
        t[:25],
        data.class_names,
        out / "predictions.png",
        f"{data.name}: weights {args.weights.name}, accuracy {accuracy:.4f}",
    )
    print(f"wrote {grid}")
    return {
        "accuracy": accuracy,
        "correct": correct,
        "images_per_s": len(x) / seconds,
        "dataset": data.name,
        "batch_size": batch,
        "predictions": grid,
    }


if __name__ == "__main__":
    _common.run(main)
