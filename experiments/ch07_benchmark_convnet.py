"""How fast one SimpleConvNet training iteration runs (batch 100, Adam lr 0.001), funcnet
against its peers (see :mod:`experiments._conv_peers`):

    funcnet             the default rules (funcnet.conv.convolution / pooling)
    funcnet-book        the book's rules (convolution_book / pooling_book)
    plain-jax           lax.conv_general_dilated + reduce_window, jax.grad, optax.adam
    torch               PyTorch eager, 2 threads (skipped when torch is not importable)
    numpy-book          the book's NumPy layers and Adam

Every peer starts from the same weights and trains on the same images (synthetic
uniform [0, 1) MNIST-shaped images: the time does not depend on their values; denormals
are flushed by XLA and, for torch, explicitly). Timing: after a warm-up (compilation),
``--rounds`` rounds, interleaved (every peer once per round), each timing ``--steps``
iterations (``--numpy-steps`` for the slow NumPy peer); the best round counts. Prints
the per-iteration milliseconds and their ratios to torch and plain JAX; writes
``results.json`` to ``--out`` (default ``runs/ch07_benchmark_convnet``).

Run: ``python -m experiments.ch07_benchmark_convnet [--steps 50 --rounds 3]``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from experiments import _common
from experiments import _conv_peers as peers
from funcnet.nets import convnet

NAME = "ch07_benchmark_convnet"
PEERS = ("funcnet", "funcnet-book", "plain-jax", "torch", "numpy-book")


def parse_args(argv):
    p = _common.parser(NAME, __doc__)
    p.add_argument("--steps", type=_common.positive_int, default=50, help="iterations per timing")
    p.add_argument(
        "--numpy-steps", type=_common.positive_int, default=100, help="iterations per timing, NumPy"
    )
    p.add_argument("--rounds", type=_common.positive_int, default=3, help="interleaved rounds")
    p.add_argument("--images", type=_common.positive_int, default=10000, help="training images")
    p.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated subset of {', '.join(PEERS)}"
    )
    p.add_argument("--seed", type=_common.seed, default=0)
    p.add_argument("--out", type=Path, default=Path("runs") / NAME)
    args = p.parse_args(argv)
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = sorted(set(args.peers) - set(PEERS))
    if unknown or not args.peers:
        p.error(f"argument --peers: unknown peer(s) {unknown}; choose from {', '.join(PEERS)}")
    return args


def make_runners(args, params, x, t):
    """{name: (run, steps per timing, note)}; skipped peers map to (None, 0, reason)."""
    key = jax.random.key(args.seed)
    runners = {}
    for name in args.peers:
        if name == "funcnet":
            runners[name] = (peers.funcnet_runner(params, x, t, key), args.steps, "")
        elif name == "funcnet-book":
            runners[name] = (peers.funcnet_runner(params, x, t, key, book=True), args.steps, "")
        elif name == "plain-jax":
            runners[name] = (peers.plain_jax_runner(params, x, t, key), args.steps, "")
        elif name == "torch":
            run, note = peers.torch_runner(params, x, t, args.seed)
            runners[name] = (run, args.steps if run else 0, note)
        else:
            runners[name] = (peers.numpy_runner(params, x, t, args.seed), args.numpy_steps, "")
    return runners


def measure(runners, rounds: int) -> dict[str, float | None]:
    """Best per-iteration milliseconds of each peer over interleaved rounds."""
    for run, steps, _ in runners.values():
        if run is not None:
            run(steps if steps <= 5 else 2)  # warm-up: compile / allocate
            run(steps)  # the timed shape compiled too
    best: dict[str, float | None] = {
        name: (None if run is None else float("inf")) for name, (run, _, _) in runners.items()
    }
    for _ in range(rounds):
        for name, (run, steps, _) in runners.items():
            if run is None:
                continue
            start = time.perf_counter()
            run(steps)
            best[name] = min(best[name], (time.perf_counter() - start) / steps * 1e3)
    return best


def table(best, runners) -> str:
    ref_torch, ref_jax = best.get("torch"), best.get("plain-jax")
    lines = [f"{'peer':<14} {'ms/iter':>9} {'vs torch':>9} {'vs plain-jax':>13}  note"]
    for name, ms in best.items():
        note = runners[name][2]
        if ms is None:
            lines.append(f"{name:<14} {'skipped':>9} {'':>9} {'':>13}  {note}")
            continue
        r_t = f"{ms / ref_torch:.2f}x" if ref_torch else "-"
        r_j = f"{ms / ref_jax:.2f}x" if ref_jax else "-"
        lines.append(f"{name:<14} {ms:9.2f} {r_t:>9} {r_j:>13}  {note}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = _common.out_dir(args.out)
    rng = np.random.default_rng(args.seed)
    x = rng.random((args.images, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, args.images).astype(np.int32)
    params = convnet.init_simple_convnet(jax.random.key(args.seed))
    runners = make_runners(args, params, x, t)
    best = measure(runners, args.rounds)
    print(table(best, runners))
    result = {
        "ms_per_iteration": best,
        "notes": {name: note for name, (_, _, note) in runners.items() if note},
        "settings": {
            "batch_size": peers.BATCH,
            "lr": peers.LR,
            "steps": args.steps,
            "numpy_steps": args.numpy_steps,
            "rounds": args.rounds,
            "images": args.images,
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
    }
    _common.write_json(out / "results.json", result)
    return result


if __name__ == "__main__":
    _common.run(main)
