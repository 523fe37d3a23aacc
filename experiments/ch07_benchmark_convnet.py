"""How fast one SimpleConvNet training iteration runs (batch 100, Adam lr 0.001): funcnet
against PyTorch, plain JAX and the book's NumPy layers; ratios below 1 are faster.

The peers (see :mod:`experiments._conv_peers`):

    funcnet             the default rules (funcnet.conv.convolution / pooling)
    funcnet-book        the book's rules (convolution_book / pooling_book)
    plain-jax           lax.conv_general_dilated + reduce_window, jax.grad, optax.adam
    torch               PyTorch eager, 2 threads (skipped when torch is not importable)
    numpy-book          the book's NumPy layers and Adam

Every peer starts from the same weights and trains on the same images (synthetic
uniform [0, 1) MNIST-shaped images: the time does not depend on their values; denormals
are flushed by XLA and, for torch, explicitly). Timing: after a warm-up (compilation),
``--rounds`` rounds, interleaved (every peer once per round, the order rotated by one
peer each round, a short pause before each timing so that the previous peer's idle
BLAS/OpenMP threads stop spinning), each timing ``--steps`` iterations (``--numpy-steps``
for the slow NumPy peer); the best round counts. Prints the per-iteration milliseconds
and their ratios to torch and plain JAX; writes them (and every round's milliseconds) to
``results.json`` in ``--out`` (default ``runs/ch07_benchmark_convnet``).

This module is the one implementation of the SimpleConvNet measurement:
``python -m experiments.benchmark --model simple-convnet`` parses its own command line
and calls :func:`run` here (the measurement lives beside the chapter-7 experiments and
their peers; the umbrella benchmark imports it, rather than the chapter-7 entry point
importing the whole chapter-5 benchmark).

Run: ``python -m experiments.ch07_benchmark_convnet [--steps 50 --rounds 3]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import _common
from experiments import _conv_peers as peers
from funcnet.nets import convnet

NAME = "ch07_benchmark_convnet"
PEERS = ("funcnet", "funcnet-book", "plain-jax", "torch", "numpy-book")
# The flags of the measurement and their defaults (also used by experiments.benchmark).
DEFAULTS = {"steps": 50, "numpy_steps": 100, "rounds": 3, "images": 10000}
# Before each timing: lets the previous peer's idle BLAS/OpenMP worker threads stop
# spinning, so that they do not steal the cores of the peer being timed.
PAUSE_S = 0.2
# The references of the ratios: (peer, key in results.json).
REFERENCES = (("torch", "ratio_to_torch"), ("plain-jax", "ratio_to_plain_jax"))


def add_flags(p: argparse.ArgumentParser | Any, *, defaults: bool = True) -> None:
    """Add ``--steps``, ``--numpy-steps``, ``--rounds`` and ``--images`` to ``p`` (a parser
    or an argument group). ``defaults=False`` leaves their defaults ``None``: the caller
    fills in :data:`DEFAULTS` (the help still names them)."""

    def default(name: str) -> int | None:
        return DEFAULTS[name] if defaults else None

    p.add_argument(
        "--steps",
        type=_common.positive_int,
        default=default("steps"),
        help=f"iterations per timing (default: {DEFAULTS['steps']})",
    )
    p.add_argument(
        "--numpy-steps",
        type=_common.positive_int,
        default=default("numpy_steps"),
        help=f"iterations per timing, numpy-book (default: {DEFAULTS['numpy_steps']})",
    )
    p.add_argument(
        "--rounds",
        type=_common.positive_int,
        default=default("rounds"),
        help=f"interleaved rounds; the best counts (default: {DEFAULTS['rounds']})",
    )
    p.add_argument(
        "--images",
        type=_common.positive_int,
        default=default("images"),
        help=f"synthetic training images (default: {DEFAULTS['images']})",
    )


def parse_peers(p: argparse.ArgumentParser, text: str, choices: Sequence[str]) -> list[str]:
    """The peer ids in ``text`` ("a,b,c"), in order; an argparse error (``p.error``) for an
    unknown one, none at all or one named twice."""
    ids = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in ids if s not in choices]
    if unknown or not ids:
        p.error(
            f"argument --peers: unknown {', '.join(unknown) or 'none given'}; choose from "
            f"{', '.join(choices)}"
        )
    repeated = sorted({s for s in ids if ids.count(s) > 1})
    if repeated:
        p.error(f"argument --peers: {', '.join(repeated)} named more than once")
    return ids


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = _common.parser(NAME, __doc__)
    add_flags(p)
    p.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated subset of {', '.join(PEERS)} (default: all)",
    )
    p.add_argument("--seed", type=_common.seed, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--out", type=Path, default=Path("runs") / NAME, help="output folder (default: %(default)s)"
    )
    args = p.parse_args(argv)
    args.peers = parse_peers(p, args.peers, PEERS)
    return args


def make_runners(args: argparse.Namespace, params: dict, x: np.ndarray, t: np.ndarray) -> dict:
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


def measure(
    runners: dict, rounds: int, pause_s: float | None = None
) -> dict[str, list[float] | None]:
    """Per-iteration milliseconds of each peer in every round (``None`` for a skipped
    peer): a warm-up first, then ``rounds`` rounds, every peer once per round, starting
    one peer later each round (no peer always runs first or after the same neighbour),
    ``pause_s`` seconds (default :data:`PAUSE_S`) of rest before each timing."""
    pause_s = PAUSE_S if pause_s is None else pause_s
    active = [name for name, (run, _, _) in runners.items() if run is not None]
    for name in active:
        run, steps, _ = runners[name]
        run(steps if steps <= 5 else 2)  # warm-up: compile / allocate
        run(steps)  # the timed shape compiled too
    times: dict[str, list[float] | None] = {
        name: ([] if run is not None else None) for name, (run, _, _) in runners.items()
    }
    for r in range(rounds):
        for name in (active[(r + j) % len(active)] for j in range(len(active))):
            run, steps, _ = runners[name]
            gc.collect()
            time.sleep(pause_s)
            start = time.perf_counter()
            run(steps)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return times


def ratios(best: dict[str, float | None], reference: str) -> dict[str, float | None] | None:
    """Each peer's milliseconds over ``reference``'s (``None`` where a peer was skipped);
    ``None`` when the reference was not run or was skipped."""
    ref = best.get(reference)
    if ref is None:
        return None
    return {name: (None if ms is None else ms / ref) for name, ms in best.items()}


def table(best: dict[str, float | None], runners: dict) -> str:
    """The printed table: ms per iteration and the ratios to torch and plain JAX."""
    by_ref = [ratios(best, ref) for ref, _ in REFERENCES]
    lines = [f"{'peer':<14} {'ms/iter':>9} {'vs torch':>9} {'vs plain-jax':>13}  note"]
    for name, ms in best.items():
        note = runners[name][2]
        if ms is None:
            lines.append(f"{name:<14} {'skipped':>9} {'':>9} {'':>13}  {note}")
            continue
        r_t, r_j = (f"{r[name]:.2f}x" if r else "-" for r in by_ref)
        lines.append(f"{name:<14} {ms:9.2f} {r_t:>9} {r_j:>13}  {note}")
    return "\n".join(lines)


def run(args: argparse.Namespace, experiment: str = NAME) -> dict[str, Any]:
    """The measurement of ``args`` (steps, numpy_steps, rounds, images, peers, seed,
    out): prints the table, writes ``results.json`` to ``args.out`` and returns its
    record (``experiment`` names the command that ran it)."""
    out = _common.claim(args.out, experiment, args)
    rng = np.random.default_rng(args.seed)
    x = rng.random((args.images, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, args.images).astype(np.int32)
    params = convnet.init_simple_convnet(jax.random.key(args.seed))
    print(
        f"SimpleConvNet training iteration, batch {peers.BATCH}, Adam lr {peers.LR}, "
        f"{args.images:,} synthetic images: best of {args.rounds} interleaved round(s) of "
        f"{args.steps} iterations ({args.numpy_steps} for numpy-book) on "
        f"{os.cpu_count()} CPU cores ({jax.default_backend()})",
        flush=True,
    )
    runners = make_runners(args, params, x, t)
    times = measure(runners, args.rounds)
    best = {name: (None if ms is None else min(ms)) for name, ms in times.items()}
    print(table(best, runners))
    result = {
        "experiment": experiment,
        "model": "simple-convnet",
        "ms_per_iteration": best,
        **{key: ratios(best, ref) for ref, key in REFERENCES},
        "ms_per_iteration_all": times,
        "notes": {name: note for name, (_, _, note) in runners.items() if note},
        "settings": {
            "batch_size": peers.BATCH,
            "lr": peers.LR,
            "steps": args.steps,
            "numpy_steps": args.numpy_steps,
            "rounds": args.rounds,
            "images": args.images,
            "seed": args.seed,
            "peers": list(args.peers),
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
    }
    path = _common.write_json(out / "results.json", result)
    print(f"wrote {path}")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the record written to ``results.json``."""
    return run(parse_args(argv))


if __name__ == "__main__":
    _common.run(main)
