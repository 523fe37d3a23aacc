"""The book's ch3 ``neuralnet_mnist_batch.py``: inference with trained weights.

Loads a 3-layer network's weights (affine → sigmoid → affine → sigmoid → affine →
softmax), either the book's pickle (``sample_weight.pkl``, read by
``funcnet.io.load_pickled_params``, which refuses anything but arrays) or a funcnet
``.npz`` (``funcnet.io.load_params``), runs batched inference over the test set and
prints the accuracy like the book, plus the throughput::

    Accuracy:0.9352
    10,000 images in 0.05 s: 200,000 images/s (batch 100)

(0.9352 is the book's figure for ``sample_weight.pkl`` on the full MNIST test set.) The
batches run inside one compiled call (``lax.map`` over batches of ``--batch-size``).
Weights in float64 are run in float64, like NumPy would. Writes ``predictions.png``: the
first 25 test images with predicted and true labels (class names for Fashion-MNIST).

Run: ``python -m experiments.ch03_neuralnet_mnist --weights sample_weight.pkl
[--dataset mnist] [--batch-size 100] [--out runs/ch03_neuralnet_mnist]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet import io as fio
from funcnet import nets

NAME = "ch03_neuralnet_mnist"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the inference; returns accuracy, correct count, images/s and the output path."""
    p = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Inference with the book's ch3 network and trained weights.",
    )
    p.add_argument(
        "--weights",
        type=Path,
        required=True,
        help="weights: the book's sample_weight.pkl, or a funcnet .npz with W1 b1 W2 b2 W3 b3",
    )
    p.add_argument("--batch-size", type=int, default=100, help="batch size (default: 100)")
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if not args.weights.is_file():
        p.error(f"--weights: no such file: {args.weights}")
    params = {k: np.asarray(v) for k, v in fio.load_weights(args.weights).items()}
    data = _common.load_dataset(args.dataset)
    x, t = data.test
    wide = any(v.dtype == np.float64 for v in params.values())
    out = _common.out_dir(args.out)

    with jax.enable_x64(True) if wide else contextlib.nullcontext():
        with jax.default_matmul_precision("highest"):
            params = {k: jnp.asarray(v) for k, v in params.items()}
            xd, td = jax.device_put((x, t))
            count = jax.jit(
                functools.partial(
                    nets.count_correct, nets.three_layer_net_predict, batch_size=args.batch_size
                )
            )
            jax.block_until_ready(count(params, xd, td))  # compile and warm up
            t0 = time.perf_counter()
            correct = int(count(params, xd, td))
            seconds = time.perf_counter() - t0
            first = jnp.argmax(nets.three_layer_net_predict(params, xd[:25]), axis=1)
    accuracy = correct / len(x)
    print(f"Accuracy:{accuracy}")
    print(
        f"{len(x):,} images in {seconds:.4f} s: {len(x) / seconds:,.0f} images/s "
        f"(batch {args.batch_size}, {jax.default_backend()})"
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
        "predictions": grid,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
