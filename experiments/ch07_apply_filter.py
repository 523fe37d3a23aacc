"""The book's ch7 ``apply_filter.py``: one test image filtered by a few learned
first-layer filters, each output beside its filter.

The filters come from ``--params`` (``params.npz`` of ``ch07_train_convnet`` or the book's
``ch07/params.pkl``); by default the ``--count`` filters with the largest weight range
(the most structured ones: edges, blobs), or those listed in ``--filters``. Each is applied
with :func:`funcnet.conv.convolution` (stride 1, pad 0, bias 0, as the book's script) to
test image ``--index``. A vertical-edge filter lights up the vertical strokes, a blob
filter the ink. Writes ``apply_filter.png`` to ``--out`` (default
``runs/ch07_apply_filter``).

Run: ``python -m experiments.ch07_apply_filter --params
runs/ch07_train_convnet/mnist/params.npz``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet import conv

NAME = "ch07_apply_filter"
SIMPLE_CONVNET_RUN = ("ch07_train_convnet", "python -m experiments.ch07_train_convnet")


def parse_args(argv):
    p = _common.parser(NAME, __doc__)
    p.add_argument(
        "--params",
        type=_common.weights_file,
        default=None,
        help="trained weights (.npz or .pkl; default: the latest "
        "runs/ch07_train_convnet/*/params.npz)",
    )
    p.add_argument("--index", type=_common.nonnegative_int, default=0, help="test image index")
    p.add_argument("--count", type=_common.positive_int, default=4, help="filters shown")
    p.add_argument("--filters", default=None, help="comma-separated filter indices")
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    if args.filters is not None:
        try:
            args.filters = [int(s) for s in args.filters.split(",") if s.strip()]
        except ValueError:
            p.error(f"argument --filters: comma-separated integers expected, got {args.filters!r}")
    return args


def pick_filters(W1: np.ndarray, count: int) -> list[int]:
    """The ``count`` filters with the largest weight range (max − min), most first."""
    spread = np.ptp(W1.reshape(W1.shape[0], -1), axis=1)
    return [int(i) for i in np.argsort(-spread)[:count]]


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.params = _common.params_or_latest(args.params, *SIMPLE_CONVNET_RUN)
    params = _common.load_net_weights(args.params, "--params", "SimpleConvNet", ("W1",))
    if np.ndim(params["W1"]) != 4 or np.shape(params["W1"])[1] != 1:
        raise ValueError(
            f"--params {args.params}: expected a SimpleConvNet's first-layer filters W1 "
            f"(FN, 1, FH, FW) for 1-channel images, got W1 {np.shape(params['W1'])}"
        )
    W1 = np.asarray(params["W1"], np.float32)
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir, flatten=False)
    x_test, t_test = data.test
    if args.index >= len(x_test):
        raise ValueError(f"--index {args.index}: the test set has {len(x_test):,} images")
    chosen = args.filters if args.filters is not None else pick_filters(W1, args.count)
    bad = [i for i in chosen if not 0 <= i < W1.shape[0]]
    if bad or not chosen:
        raise ValueError(f"--filters: indices must lie in [0, {W1.shape[0]}), got {chosen}")
    image = np.asarray(x_test[args.index : args.index + 1], np.float32)  # (1, 1, 28, 28)
    W = jnp.asarray(W1[chosen])
    outputs = np.asarray(conv.convolution(image, W, jnp.zeros(len(chosen))))[0]
    out = _common.claim(args.out, NAME, args, data.name)
    fig = _common.figure(width=2.2 * (len(chosen) + 1), height=4.6)
    axes = fig.subplots(2, len(chosen) + 1)
    label = data.class_names[int(t_test[args.index])]
    axes[0, 0].imshow(image[0, 0], cmap="gray_r")
    axes[0, 0].set_title(f"test image {args.index}\n({label})")
    axes[1, 0].axis("off")
    for col, (i, o) in enumerate(zip(chosen, outputs, strict=True), start=1):
        axes[0, col].imshow(W1[i, 0], cmap="gray_r", interpolation="nearest")
        axes[0, col].set_title(f"filter {i}")
        axes[1, col].imshow(o, cmap="gray_r")
        axes[1, col].set_title(f"output {i}")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{data.name}: first-layer filters (top) and the filtered image (bottom)")
    path = _common.save(fig, out / "apply_filter.png")
    print(f"filters {chosen} applied to test image {args.index} ({label}): {path}")
    return {"filters": chosen, "png": str(path), "output_shape": list(outputs.shape)}


if __name__ == "__main__":
    _common.run(main)
