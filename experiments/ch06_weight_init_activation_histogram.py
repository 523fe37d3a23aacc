"""Activations of a deep net at initialisation (book ch6.2, ``weight_init_activation_histogram.py``,
Figs. 6-10 … 6-14).

1,000 random 100-d inputs (standard normal) go through 5 layers of 100 units without bias
(``a = x·W``, then the activation); the weights are drawn by
:func:`funcnet.nets.init_multi_layer_net` (whose biases are zero, so no bias is added).
Six settings, one row of five histograms (one per layer, 30 bins over [0, 1], as the
book's) each:

- sigmoid, std 1: the activations pile up at 0 and 1 (vanishing gradients, Fig. 6-10);
- sigmoid, std 0.01: all near 0.5 (every unit says the same, Fig. 6-11);
- sigmoid, Xavier √(1/n): spread out in every layer (Fig. 6-13);
- ReLU, std 0.01: all near 0, shrinking with depth (Fig. 6-14 left);
- ReLU, Xavier: the spread shrinks with depth (Fig. 6-14 middle);
- ReLU, He √(2/n): the same spread in every layer (Fig. 6-14 right).

Prints each layer's standard deviation and the share of activations the book's figure
shows in its extreme bins, and writes to ``--out`` (default
``runs/ch06_weight_init_activation_histogram``):

- ``weight_init_activation_histogram.png``: the six rows;
- ``stats.json``: per setting and layer the 30 bin counts, mean, std and those shares.

Run: ``python -m experiments.ch06_weight_init_activation_histogram``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet import functions, nets

NAME = "ch06_weight_init_activation_histogram"
BINS = 30
# (activation, weight_init_std, label): the book's six settings.
SETTINGS = (
    ("sigmoid", 1.0, "sigmoid, std 1"),
    ("sigmoid", 0.01, "sigmoid, std 0.01"),
    ("sigmoid", "xavier", "sigmoid, Xavier"),
    ("relu", 0.01, "ReLU, std 0.01"),
    ("relu", "xavier", "ReLU, Xavier"),
    ("relu", "he", "ReLU, He"),
)


MAX_ACTIVATIONS = 50_000_000  # float32 values of one setting held at once (200 MB)


def layer_activations(
    key: jax.Array,
    x: jax.Array,
    activation: str,
    weight_init_std: float | str,
    layers: int,
    nodes: int,
) -> jax.Array:
    """The activations of each layer for inputs ``x (N, nodes)``: ``(layers, N, nodes)``.

    Weights from :func:`~funcnet.nets.init_multi_layer_net` with ``layers - 1`` hidden
    layers of ``nodes`` (every fan-in is ``nodes``); no bias is added.
    """
    params = nets.init_multi_layer_net(
        key, nodes, [nodes] * (layers - 1), nodes, weight_init_std=weight_init_std
    )
    act = getattr(functions, activation)
    out, h = [], x
    for i in range(1, layers + 1):
        h = act(h @ params[f"W{i}"])
        out.append(h)
    return jnp.stack(out)


def histogram_stats(a: np.ndarray) -> dict[str, Any]:
    """The book's histogram (30 bins over [0, 1]) and summary figures of one layer."""
    counts, _ = np.histogram(a.ravel(), BINS, range=(0, 1))
    return {
        "counts": counts,
        "mean": float(a.mean()),
        "std": float(a.std()),
        "share_first_bin": float(np.mean(a < 1 / BINS)),  # [0, 1/30): "at 0"
        "share_last_bin": float(np.mean(a >= 1 - 1 / BINS)),  # [29/30, ∞): "at 1"
        "share_above_1": float(np.mean(a > 1)),  # outside the book's range
    }


def plot(results: dict[str, np.ndarray], path: Path) -> Path:
    """One row of per-layer histograms per setting (book Figs. 6-10 … 6-14).

    In the ReLU rows about half of the activations are exactly 0: like the book's Fig. 6-14,
    their y axis is cut above the other bins (the first bar's count is written on it) so
    that the spread of the rest shows.
    """
    rows, layers = len(results), next(iter(results.values())).shape[0]
    fig = _common.figure(width=2.3 * layers + 1.2, height=1.9 * rows + 0.6)
    axes = fig.subplots(rows, layers, sharey="row", squeeze=False)
    for r, (label, acts) in enumerate(results.items()):
        counts = [np.histogram(a.ravel(), BINS, range=(0, 1))[0] for a in acts]
        rest = max(int(c[1:].max()) for c in counts)
        cut = label.startswith("ReLU") and rest > 0 and max(c[0] for c in counts) > 2 * rest
        for i in range(layers):
            ax = axes[r, i]
            ax.hist(acts[i].ravel(), BINS, range=(0, 1), color="tab:blue")
            ax.set_title(f"{i + 1}-layer", fontsize=9)
            ax.tick_params(labelsize=7)
            if cut:
                ax.set_ylim(0, 1.25 * rest)
                ax.text(
                    0.97,
                    0.95,
                    f"bar at 0: {counts[i][0]:,}",
                    transform=ax.transAxes,
                    fontsize=7,
                    ha="right",
                    va="top",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                )
            if i == 0:
                ax.set_ylabel(label + (" (cut)" if cut else ""), fontsize=9)
    fig.suptitle(
        f"activations at initialisation: {acts.shape[1]:,} inputs, {layers} layers of "
        f"{acts.shape[2]} (30 bins over [0, 1])"
    )
    return _common.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the six settings; returns ``{label: [per-layer stats]}``."""
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Histograms of each layer's activations for six initialisations "
        "(book Figs. 6-10 ... 6-14).",
    )
    # bounded: every layer's (samples, nodes) activations are held at once (a huge
    # --samples used to abort the process when memory ran out)
    held = "every layer's activations are held in memory at once"
    p.add_argument(
        "--samples",
        type=_common.int_in_range(1, 100_000, held),
        default=1000,
        help="inputs, at most 100,000 (default: 1000)",
    )
    p.add_argument(
        "--nodes",
        type=_common.int_in_range(1, 4096, held),
        default=100,
        help="units per layer, at most 4,096 (default: 100)",
    )
    p.add_argument(
        "--layers",
        type=_common.int_in_range(1, 100, held),
        default=5,
        help="layers, at most 100 (default: 5)",
    )
    p.add_argument(
        "--seed", type=_common.seed, default=0, help="random seed (default: %(default)s)"
    )
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    if args.samples * args.nodes * args.layers > MAX_ACTIVATIONS:
        p.error(
            f"--samples x --nodes x --layers = {args.samples * args.nodes * args.layers:,} "
            f"activations, more than {MAX_ACTIVATIONS:,} ({held})"
        )
    out = _common.claim(args.out, NAME, args)
    k_x, k_w = jax.random.split(jax.random.key(args.seed))
    x = jax.random.normal(k_x, (args.samples, args.nodes))
    results: dict[str, np.ndarray] = {}
    stats: dict[str, list[dict[str, Any]]] = {}
    print(f"{args.samples} inputs, {args.layers} layers of {args.nodes} units, no bias")
    print(f"{'setting':<18} per-layer std of the activations (share in the first / last bin)")
    for activation, std, label in SETTINGS:
        acts = np.asarray(layer_activations(k_w, x, activation, std, args.layers, args.nodes))
        results[label] = acts
        stats[label] = [histogram_stats(a) for a in acts]
        cells = "  ".join(
            f"{s['std']:.3f} ({s['share_first_bin']:.2f}/{s['share_last_bin']:.2f})"
            for s in stats[label]
        )
        print(f"{label:<18} {cells}")
    written = [
        plot(results, out / "weight_init_activation_histogram.png"),
        _common.write_json(
            out / "stats.json", {"settings": vars(args) | {"out": args.out}, "stats": stats}
        ),
    ]
    print("wrote", ", ".join(str(w) for w in written))
    return stats


if __name__ == "__main__":
    _common.run(main)
