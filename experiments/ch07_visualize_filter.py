"""The book's ch7 ``visualize_filter.py`` (Fig. 7-24): SimpleConvNet's 30 first-layer 5×5
filters before and after training, as grey-scale tiles.

Before training the filters are noise (weight_init_std 0.01); after, many are edge and
blob detectors. ``--params`` names the trained weights (``params.npz`` written by
``ch07_train_convnet``, or the book's ``ch07/params.pkl``); ``--init`` the initial ones
(default: ``params_init.npz`` beside ``--params`` if there, else freshly drawn with
``--seed``). Each tile is scaled to its own min/max, dark = large, like the book's
``filter_show`` (``cmap=gray_r``). Writes ``filters.png`` to ``--out`` (default
``runs/ch07_visualize_filter``).

Run: ``python -m experiments.ch07_visualize_filter --params
runs/ch07_train_convnet/mnist/params.npz``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from experiments import _common
from funcnet.nets import convnet

NAME = "ch07_visualize_filter"
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
    p.add_argument(
        "--init", type=_common.weights_file, default=None, help="initial weights (.npz or .pkl)"
    )
    p.add_argument("--seed", type=_common.seed, default=0, help="seed of drawn initial weights")
    _common.add_out_flag(p, NAME)
    return p.parse_args(argv)


def first_layer_filters(path: Path, flag: str = "--params") -> np.ndarray:
    """W1 of a weight file as (FN, FH, FW) (the first input channel of each filter);
    ``flag`` names the option that gave ``path``, for errors."""
    params = _common.load_net_weights(path, flag, "SimpleConvNet", ("W1",))
    if np.ndim(params["W1"]) != 4:
        raise ValueError(
            f"{flag} {path}: expected a SimpleConvNet's W1 (FN, C, FH, FW), got W1 "
            f"{np.shape(params['W1'])}"
        )
    return np.asarray(params["W1"], np.float64)[:, 0]


def draw_filters(fig, filters: np.ndarray, title: str, cols: int = 10) -> None:
    """One sub-figure of tiles, each scaled to its own range (dark = large, gray_r)."""
    rows = -(-len(filters) // cols)
    fig.suptitle(title)
    axes = fig.subplots(rows, cols)
    for i, ax in enumerate(np.atleast_1d(axes).flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(filters):
            ax.imshow(filters[i], cmap="gray_r", interpolation="nearest")
        else:
            ax.axis("off")


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.params = _common.params_or_latest(args.params, *SIMPLE_CONVNET_RUN)
    out = _common.claim(args.out or Path("runs") / NAME, NAME, args)
    after = first_layer_filters(args.params)
    init = args.init
    if init is None and (args.params.parent / "params_init.npz").exists():
        init = args.params.parent / "params_init.npz"
    if init is not None:
        before, source = first_layer_filters(init, "--init"), str(init)
        if before.shape != after.shape:  # weights of another net: not "before" of these
            raise ValueError(
                f"--init {init}: W1 holds {before.shape[0]} filters of "
                f"{before.shape[1]}x{before.shape[2]}, but --params {args.params} holds "
                f"{after.shape[0]} of {after.shape[1]}x{after.shape[2]}: the initial weights "
                "of another net"
            )
    else:
        c, fh = 1, after.shape[1]
        params0 = convnet.init_simple_convnet(
            jax.random.key(args.seed),
            filter_num=after.shape[0],
            filter_size=fh,
            input_dim=(c, 28, 28),
        )
        before, source = np.asarray(params0["W1"])[:, 0], f"drawn, seed {args.seed}"
    fig = _common.figure(width=10, height=6.2)
    top, bottom = fig.subfigures(2, 1)
    draw_filters(top, before, f"before training ({source})")
    draw_filters(bottom, after, f"after training ({args.params})")
    path = _common.save(fig, out / "filters.png")
    print(f"{len(after)} filters {after.shape[1]}×{after.shape[2]}: {path}")
    print(
        f"std of the weights: before {before.std():.4f}, after {after.std():.4f}; mean |tile "
        f"contrast| before {np.ptp(before, axis=(1, 2)).mean():.4f}, after "
        f"{np.ptp(after, axis=(1, 2)).mean():.4f}"
    )
    return {"before_std": float(before.std()), "after_std": float(after.std()), "png": str(path)}


if __name__ == "__main__":
    _common.run(main)
