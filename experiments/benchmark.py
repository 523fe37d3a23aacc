"""Speed benchmark: the book's ch5 training protocol five ways, and numerical gradients
(``--model two-layer``, the default); one SimpleConvNet training iteration five ways
(``--model simple-convnet``); one DeepConvNet training iteration four ways (``--model
deep-convnet``).

``--model two-layer`` measures, in one process and on the same data from the same initial
weights, the book's ``train_neuralnet.py`` (784-50-10 ReLU, batch 100 drawn with
replacement, SGD lr 0.1, 10,000 iterations, train and test accuracy over the whole sets
every epoch and of the final params, as ``fit`` reports them) run by:

1. ``funcnet fit`` — custom_vjp layers, the steps between evaluations fused (the product);
2. ``funcnet step`` — ``fit(fused=False)``: one compiled step per Python iteration;
3. ``plain JAX`` — ``jax.grad`` of a plain jnp forward + ``optax.sgd``, an epoch per
   ``lax.scan``: the same loop written without funcnet;
4. ``NumPy (book)`` — the book's layers with hand-written backward passes, float32;
5. ``PyTorch eager`` — ``torch.nn`` + ``torch.optim.SGD``, float32, denormals flushed;
   a "skipped" row when torch is not installed.

Each peer runs ``--repeats`` times, round-robin (every peer once per repeat, the order
rotated each time, so a busy machine slows all alike), and the best run counts.
Compilation is timed apart from the run (``seconds`` excludes it; the comparisons are
also given including it). Then:

- where the time goes, for funcnet fit, plain JAX and NumPy: the steps alone (the same
  loop with no evaluation) and the evaluations alone (back to back), each a complete run
  timed like the whole run and best of the same repeats; what is left of the whole run is
  data placement, checks and host bookkeeping;
- the numerical gradient of the same net on 3 images in float64:
  ``funcnet.gradient.numerical_gradient`` against the book's per-element NumPy loop, with
  the largest difference to backpropagation and the peak process memory.

Writes ``results.json`` to ``--out`` (default ``runs/benchmark``).

``--model simple-convnet`` is the measurement of :mod:`experiments.ch07_benchmark_convnet`
(called from there: one implementation): one training iteration (batch 100, Adam lr
0.001) by funcnet (default rules), funcnet-book (the book's rules), plain-jax
(``lax.conv_general_dilated``), torch (PyTorch eager, NCHW), torch-nhwc (the same in
PyTorch's channels_last memory format) and numpy-book (the book's NumPy layers), from the
same weights on the same synthetic images; ``--rounds`` interleaved rounds (order rotated
each round) of ``--steps`` iterations (``--numpy-steps`` for numpy-book), the best round
counts; ms per iteration and the ratios to torch, torch-nhwc and plain JAX in the table
and in ``results.json`` (default ``runs/benchmark/simple-convnet``), then where the time
goes: each layer's forward and backward timed alone, funcnet's default
rules beside PyTorch's (``--no-layers`` skips it). ``--model deep-convnet`` is the same
measurement of the book's ch8 DeepConvNet (six 3×3 convolutions, three pools, dropout;
no NumPy peer; default 10 iterations per timing; ``runs/benchmark/deep-convnet``). A
flag of one model is an error with another (``--dataset``, ``--iters``, ``--repeats``,
``--numgrad-*``, ``--no-profile``, ``--torch-keep-denormals`` are two-layer's;
``--steps``, ``--rounds``, ``--images``, ``--no-layers`` the convnets'; ``--numpy-steps``
simple-convnet's).

Run: ``python -m experiments.benchmark [--dataset fashion-mnist]``: about 24 runs of the
protocol, some 2 minutes on 2 quiet cores (much longer on a busy machine: NumPy and
PyTorch slow down many times). Shorter: ``--quick`` (1,000 iterations, one repeat, the
book's loop timed on 2,000 elements and extrapolated), or any of ``--iters N``,
``--repeats R``, ``--peers fit,jax``, ``--no-profile``, ``--no-numgrad``.
``python -m experiments.benchmark --model simple-convnet [--steps 50 --rounds 3]``
(``--quick``: 10 iterations per timing, one round; ``--peers funcnet,torch``);
``python -m experiments.benchmark --model deep-convnet`` (``--quick``: 3 iterations).
"""

from __future__ import annotations

import argparse
import functools
import gc
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import _common, _numgrad, _peers, ch07_benchmark_convnet
from funcnet import datasets

NAME = "benchmark"
# Between two peers: lets the previous one's idle BLAS/OpenMP worker threads stop spinning
# before the next starts, so they do not steal its cores.
PAUSE_S = 0.2

DENORMAL_NOTE = (
    "Denormal (subnormal) floats take a slow path in the CPU. XLA flushes them to zero on "
    "CPU and the PyTorch peer runs with torch.set_flush_denormal(True); NumPy has no such "
    "switch, so wherever they appear only NumPy pays, and its time is reported as it is."
)


MODELS = ("two-layer", "simple-convnet", "deep-convnet")
CONVNETS = ("simple-convnet", "deep-convnet")
QUICK = {"iters": 1000, "repeats": 1, "numgrad_book_elements": 2000}
DEFAULTS = {"iters": 10000, "repeats": 3, "numgrad_book_elements": None}
CONVNET_QUICK = {"steps": 10, "numpy_steps": 10, "rounds": 1}
DEEP_QUICK = {"steps": 3, "rounds": 1}
# The flags that mean something for some models only (their dests), keyed by those models,
# and, for such a flag given with another model, that model's flag for the same thing.
ONLY = {
    ("two-layer",): (
        "iters", "repeats", "dataset", "no_numgrad", "numgrad_chunk", "numgrad_book_elements",
        "numgrad_hidden", "no_profile", "torch_keep_denormals",
    ),
    CONVNETS: ("steps", "rounds", "images", "no_layers"),
    ("simple-convnet",): ("numpy_steps",),
}  # fmt: skip
COUNTERPART = {"iters": "steps", "repeats": "rounds", "steps": "iters", "rounds": "repeats"}
_UNSET = object()  # marks a one-model flag that was not given


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _parser() -> argparse.ArgumentParser:
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Time the book's ch5 training protocol: funcnet vs plain JAX, NumPy, "
        "PyTorch; and funcnet's numerical gradient vs the book's loop. About 2 minutes on "
        "2 quiet cores; --quick runs a tenth of the iterations once. With --model "
        "simple-convnet: one ch7 SimpleConvNet training iteration, funcnet (default and "
        "book rules) vs plain JAX, PyTorch and the book's NumPy layers; with --model "
        "deep-convnet: one ch8 DeepConvNet training iteration, the same peers but NumPy.",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        default="two-layer",
        help="two-layer: the ch5 protocol and the numerical gradient; simple-convnet: the "
        "measurement of experiments.ch07_benchmark_convnet; deep-convnet: the same for the "
        "ch8 DeepConvNet (default: %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run: --iters 1000 --repeats 1 --numgrad-book-elements 2000; with "
        "simple-convnet --steps 10 --numpy-steps 10 --rounds 1; with deep-convnet --steps 3 "
        "--rounds 1 (flags given explicitly win)",
    )
    p.add_argument(
        "--peers",
        default=None,
        help="comma-separated peers to run (default: all); two-layer from "
        + ", ".join(_peers.PEERS)
        + "; simple-convnet from "
        + ", ".join(ch07_benchmark_convnet.PEERS)
        + "; deep-convnet from "
        + ", ".join(ch07_benchmark_convnet.MODEL_PEERS["deep-convnet"]),
    )
    p.add_argument(
        "--seed", type=_common.seed, default=0, help="random seed (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        type=_common.out_folder,
        default=None,
        help=f"output folder (default: runs/{NAME}; runs/{NAME}/MODEL with a convnet model)",
    )
    _common.add_overwrite_flag(p)
    two = p.add_argument_group("--model two-layer only")
    two.add_argument(
        "--iters", type=_common.positive_int, default=None, help="iterations (default: 10000)"
    )
    two.add_argument(
        "--repeats",
        type=_common.positive_int,
        default=None,
        help="runs per peer, round-robin; the best counts (default: 3)",
    )
    _common.add_dataset_flag(two)
    two.add_argument(
        "--no-numgrad", action="store_true", help="skip the numerical-gradient benchmark"
    )
    two.add_argument(
        "--numgrad-chunk",
        type=_common.positive_int,
        default=None,
        help="chunk_size for funcnet.gradient.numerical_gradient (default: its own)",
    )
    two.add_argument(
        "--numgrad-book-elements",
        type=_common.positive_int,
        default=None,
        help="time only this many elements of the book's loop and extrapolate "
        "(default: the whole loop)",
    )
    two.add_argument(
        "--numgrad-hidden",
        type=_common.positive_int,
        default=50,
        help="hidden units of the numerical-gradient net (default: %(default)s)",
    )
    two.add_argument(
        "--no-profile",
        action="store_true",
        help="skip where-the-time-goes (it runs the steps and the evaluations of fit, plain "
        "JAX and NumPy once more each, per repeat)",
    )
    two.add_argument(
        "--torch-keep-denormals",
        action="store_true",
        help="run the PyTorch peer without set_flush_denormal(True), to see what it costs",
    )
    ch07_benchmark_convnet.add_flags(
        p.add_argument_group("--model simple-convnet or deep-convnet only"), defaults=False
    )
    return p


def _reject_other_models_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An argparse error for a given flag that belongs to other models."""
    for models, dests in ONLY.items():
        if args.model in models:
            continue
        for dest in dests:
            if getattr(args, dest) is _UNSET:
                continue
            hint = f"; use {_flag(COUNTERPART[dest])}" if dest in COUNTERPART else ""
            p.error(
                f"argument {_flag(dest)}: only with --model {' or '.join(models)}, not "
                f"--model {args.model}{hint}"
            )


def _fill_defaults(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Replace the one-model flags not given by their parser defaults (a string default
    converted by the flag's type, as argparse does)."""
    types = {a.dest: a.type for a in p._actions}
    for dests in ONLY.values():
        for dest in dests:
            if getattr(args, dest) is _UNSET:
                default = p.get_default(dest)
                if isinstance(default, str) and types[dest] is not None:
                    default = types[dest](default)
                setattr(args, dest, default)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _parser()
    unset = {dest: _UNSET for dests in ONLY.values() for dest in dests}
    # argparse leaves an attribute already in the namespace alone when its flag is not
    # given: what is still _UNSET afterwards was not on the command line.
    args = p.parse_args(argv, namespace=argparse.Namespace(**unset))
    _reject_other_models_flags(p, args)
    _fill_defaults(p, args)
    if args.model in CONVNETS:
        return _convnet_args(p, args)
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick else default)
    if args.out is None:
        args.out = Path("runs") / NAME
    if args.peers is None:
        args.peers = ",".join(_peers.PEERS)
    args.peer_ids = ch07_benchmark_convnet.parse_peers(p, args.peers, tuple(_peers.PEERS))
    return args


def _convnet_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Complete ``args`` for :func:`ch07_benchmark_convnet.run`: defaults (``--quick``'s
    where asked), the seed's range (``jax.random.key`` keeps 32 bits), the peer list."""
    deep = args.model == "deep-convnet"
    defaults = {**ch07_benchmark_convnet.DEFAULTS}
    if deep:
        defaults.update(ch07_benchmark_convnet.DEEP_DEFAULTS)
    quick = DEEP_QUICK if deep else CONVNET_QUICK
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick.get(name, default) if args.quick else default)
    try:
        _common.seed(str(args.seed))
    except argparse.ArgumentTypeError as e:
        p.error(f"argument --seed: {e}")
    if args.out is None:
        args.out = Path("runs") / NAME / args.model
    choices = ch07_benchmark_convnet.MODEL_PEERS[args.model]
    peers = ",".join(choices) if args.peers is None else args.peers
    args.peers = ch07_benchmark_convnet.parse_peers(p, peers, choices)
    return args


# --------------------------------------------------------------------------------------
# Numerical gradient


def numgrad_section(args: argparse.Namespace) -> dict[str, Any]:
    """Run and print the numerical-gradient comparison; returns its JSON record."""
    sub = datasets.load("mnist-5k")
    x, t = sub.train[0][:3], sub.train[1][:3]
    r = _numgrad.run(
        x,
        t,
        hidden=args.numgrad_hidden,
        seed=args.seed,
        chunk_size=args.numgrad_chunk,
        book_elements=args.numgrad_book_elements,
    )
    net = f"{x.shape[1]}-{args.numgrad_hidden}-10"
    book = (
        f"{r.book_seconds:.2f} s (extrapolated from {r.book_elements_timed:,} of "
        f"{r.num_params:,} elements)"
        if r.book_extrapolated
        else f"{r.book_seconds:.2f} s"
    )
    print(f"\nnumerical gradient, {net} net ({r.num_params:,} params), batch of {r.batch}, float64")
    print(
        f"  funcnet numerical_gradient (jit, chunk {r.chunk_size}): {r.funcnet_seconds:.3f} s "
        f"(compile {r.funcnet_compile_seconds:.2f} s)"
    )
    print(f"  book's np.nditer loop (NumPy, same exact loss):  {book}")
    print(f"  the book's loop takes {r.speedup:.2f}x funcnet's time")
    diff_book = "not computed" if r.max_abs_diff_book is None else f"{r.max_abs_diff_book:.2e}"
    print(
        f"  max |numerical - backprop|: funcnet {r.max_abs_diff_funcnet:.2e}, "
        f"book's loop {diff_book}"
    )
    print(
        f"  peak process memory: {r.peak_rss_bytes / 2**20:.0f} MiB "
        f"({r.peak_rss_before_bytes / 2**20:.0f} MiB before this section)"
    )
    return r._asdict()


# --------------------------------------------------------------------------------------
# Peers


def run_peers(
    args: argparse.Namespace,
    data: datasets.Dataset,
    protocol: _peers.Protocol,
    params: dict[str, np.ndarray],
    parts: dict[str, dict[str, Any]] | None,
) -> tuple[dict[str, list[_peers.PeerResult]], dict[str, dict[str, list[float]]]]:
    """Every selected peer ``args.repeats`` times, round-robin in a rotating order; in
    each round also each profiled part once (see :func:`_peers.profile_parts`). Returns
    the results per peer id (in ``args.peer_ids`` order) and each part's seconds per
    round."""
    runners = dict(_peers.PEERS)
    if args.torch_keep_denormals:
        runners["torch"] = functools.partial(_peers.run_torch, flush_denormal=False)
    runs: dict[str, list[_peers.PeerResult]] = {pid: [] for pid in args.peer_ids}
    part_times: dict[str, dict[str, list[float]]] = {
        pid: {"steps": [], "evals": []} for pid in parts or {}
    }
    k = len(args.peer_ids)
    for rep in range(args.repeats):
        # Round-robin, starting one peer later each repeat: no peer always runs first or
        # always follows the same neighbour.
        for pid in (args.peer_ids[(rep + j) % k] for j in range(k)):
            if runs[pid] and runs[pid][-1].status == "skipped":
                continue
            # A fresh compilation every run, as in a new process (JAX's in-memory caches
            # would otherwise serve the second round's programs and eager ops).
            jax.clear_caches()
            gc.collect()
            time.sleep(PAUSE_S)
            r = runners[pid](data.train, data.test, params, protocol)
            runs[pid].append(r)
            if r.status == "skipped":
                print(f"  {r.name}: {r.reason}")
                continue
            print(
                f"  repeat {rep + 1}/{args.repeats}  {r.name:<14} {r.seconds:7.2f} s "
                f"(compile {r.compile_seconds:.2f} s)  train {r.train_acc:.4f}  "
                f"test {r.test_acc:.4f}",
                flush=True,
            )
        for pid, fns in (parts or {}).items():
            for part, fn in fns.items():
                gc.collect()
                time.sleep(PAUSE_S)
                part_times[pid][part].append(_peers.time_once(fn))
    return runs, part_times


def summarize(runs: dict[str, list[_peers.PeerResult]], iters: int) -> list[dict[str, Any]]:
    """One row per peer: best seconds over the repeats, ratio to funcnet fit, accuracy."""
    rows = []
    for pid, results in runs.items():
        first = results[0]
        if first.status != "ok":
            rows.append(
                {"id": pid, "name": first.name, "status": first.status, "reason": first.reason}
            )
            continue
        best = min(results, key=lambda r: r.seconds)
        loss = np.asarray(best.losses, np.float64)
        rows.append(
            {
                "id": pid,
                "name": best.name,
                "status": "ok",
                "reason": best.reason,
                "seconds": best.seconds,
                "seconds_all": [r.seconds for r in results],
                "compile_seconds": min(r.compile_seconds for r in results),
                "compile_seconds_all": [r.compile_seconds for r in results],
                "with_compile_seconds": min(r.seconds + r.compile_seconds for r in results),
                "steps_per_s": iters / best.seconds,
                "train_acc": best.train_acc,
                "test_acc": best.test_acc,
                "loss_first": float(loss[0]),
                "loss_last_100_mean": float(np.mean(loss[-100:])),
            }
        )
    fit = next((r for r in rows if r["id"] == "fit" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] == "ok":
            r["ratio_to_fit"] = r["seconds"] / fit["seconds"] if fit else None
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """The results table (seconds exclude compilation; x fit = the peer's seconds over
    funcnet fit's)."""
    head = (
        f"{'peer':<15}{'seconds':>9}{'compile s':>11}{'steps/s':>9}{'x fit':>7}"
        f"{'train acc':>11}{'test acc':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['name']:<15}{r['reason']}")
            continue
        ratio = "" if r["ratio_to_fit"] is None else f"{r['ratio_to_fit']:.2f}"
        print(
            f"{r['name']:<15}{r['seconds']:9.2f}{r['compile_seconds']:11.2f}"
            f"{r['steps_per_s']:9.0f}{ratio:>7}{r['train_acc']:11.4f}{r['test_acc']:10.4f}"
            + (f"  ({r['reason']})" if r["reason"] else "")
        )


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """funcnet fit's time over each other peer's, without and with compilation."""
    by_id = {r["id"]: r for r in rows if r["status"] == "ok"}
    fit = by_id.get("fit")
    if fit is None:
        return []
    return [
        {
            "peer": r["name"],
            "fit_over_peer": fit["seconds"] / r["seconds"],
            "fit_over_peer_with_compile": fit["with_compile_seconds"] / r["with_compile_seconds"],
        }
        for pid, r in by_id.items()
        if pid != "fit"
    ]


def print_comparisons(items: list[dict[str, Any]]) -> None:
    if not items:
        return
    print("\nfuncnet fit's time over each peer's (below 1: fit is faster):")
    for c in items:
        print(
            f"  vs {c['peer']:<14} {c['fit_over_peer']:5.2f} without compilation, "
            f"{c['fit_over_peer_with_compile']:5.2f} with it"
        )


def profile_section(
    data: datasets.Dataset,
    protocol: _peers.Protocol,
    rows: list[dict[str, Any]],
    part_times: dict[str, dict[str, list[float]]],
) -> dict[str, Any]:
    """Print where each profiled peer's whole run goes: its steps alone and its
    evaluations alone (best of the repeats, like the whole run) and the rest."""
    n_train, n_test = len(data.train[0]), len(data.test[0])
    points = _peers.evaluation_points(protocol.iters, _peers.epoch_length(n_train, protocol))
    whole = {r["id"]: r.get("seconds") for r in rows}
    out: dict[str, Any] = {"evaluations": len(points), "steps": protocol.iters, "peers": {}}
    shown = ", ".join(f"{i:,}" for i in points[:3]) + (
        f", ..., {points[-1]:,}" if len(points) > 3 else ""
    )
    print(
        f"\nwhere the time goes: the {protocol.iters:,} steps alone (the same loop, no "
        f"evaluation) and the {len(points)} evaluations alone (train + test accuracy over "
        f"{n_train:,} + {n_test:,} images, after iterations {shown}), each a complete run "
        "timed like the whole run, best of the repeats; rest = whole - steps - evaluations "
        "(data placement, checks, host bookkeeping):"
    )
    print(f"  {'peer':<14}{'whole s':>9}{'steps s':>9}{'evals s':>9}{'rest s':>9}"
          f"{'ms/step':>9}{'ms/eval':>9}")  # fmt: skip
    for pid, times in part_times.items():
        steps, evals, total = min(times["steps"]), min(times["evals"]), whole.get(pid)
        rest = None if total is None else total - steps - evals
        out["peers"][_peers.PROFILED[pid]] = {
            "whole_s": total,
            "steps_s": steps,
            "evals_s": evals,
            "rest_s": rest,
            "steps_s_all": times["steps"],
            "evals_s_all": times["evals"],
            "ms_per_step": 1e3 * steps / protocol.iters,
            "ms_per_eval": 1e3 * evals / len(points),
        }
        cells = f"{steps:9.2f}{evals:9.2f}" + ("" if total is None else f"{rest:+9.2f}")
        print(
            f"  {_peers.PROFILED[pid]:<14}"
            + ("        -" if total is None else f"{total:9.2f}")
            + cells
            + ("" if total is not None else "        -")
            + f"{1e3 * steps / protocol.iters:9.3f}{1e3 * evals / len(points):9.1f}"
        )
    noisy = [n for n, v in out["peers"].items() if v["rest_s"] is not None and v["rest_s"] < 0]
    if noisy:
        print(
            f"  ({', '.join(noisy)}: the parts timed apart add up to more than the whole run; "
            "the difference is the spread between repeats, see steps_s_all and evals_s_all "
            "in results.json)"
        )
    return out


def denormal_section(
    runs: dict[str, list[_peers.PeerResult]], data: datasets.Dataset
) -> dict[str, Any] | None:
    """Count subnormal floats in the NumPy peer's final weights and in one forward and
    backward pass over the training set at them; print what that means for its time."""
    results = [r for r in runs.get("numpy", []) if r.status == "ok"]
    if not results:
        return None
    census = _peers.denormal_census(results[-1].params, *data.train)
    found = sum(sub for sub, _ in census.values())
    where = ", ".join(f"{k} {sub:,} of {tot:,}" for k, (sub, tot) in census.items())
    if found:
        print(
            f"\nNumPy peer is slower here because of denormals: {found:,} subnormal float32 "
            f"values at its final weights ({where}; one pass over the training set). "
            + DENORMAL_NOTE
        )
    else:
        print(
            f"\nNumPy peer: no subnormal float32 values at its final weights ({where}; one "
            "pass over the training set), so denormals do not slow it on this data. "
            + DENORMAL_NOTE
        )
    return {
        "subnormal": {k: list(v) for k, v in census.items()},
        "found": found,
        "note": DENORMAL_NOTE,
    }


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    torch, _ = _peers.import_torch() if "torch" in sys.modules else (None, None)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": _peers.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the record written to ``results.json``."""
    args = parse_args(argv)
    if args.model in CONVNETS:
        return ch07_benchmark_convnet.run(args, experiment=NAME, model=args.model)
    out = _common.out_dir(args.out)
    protocol = _peers.Protocol(iters=args.iters, seed=args.seed)

    numgrad = None if args.no_numgrad else numgrad_section(args)

    print()
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.claim(out, NAME, args, data.name)
    n_train = len(data.train[0])
    every = _peers.epoch_length(n_train, protocol)
    print(
        f"protocol: {data.train[0].shape[1]}-{protocol.hidden}-{len(data.class_names)} ReLU, "
        f"{protocol.iters:,} iterations, batch {protocol.batch_size}, lr {protocol.lr}, "
        f"train+test accuracy every {every} iterations and at the end; best of "
        f"{args.repeats} round-robin "
        f"repeats on {_peers.cpu_count()} CPU cores ({jax.default_backend()})"
    )
    params = _peers.init_params(protocol, data.train[0].shape[1], len(data.class_names))
    parts = None
    if not args.no_profile:
        parts = _peers.profile_parts(data.train, data.test, params, protocol, args.peer_ids)
    runs, part_times = run_peers(args, data, protocol, params, parts)
    rows = summarize(runs, protocol.iters)

    print(f"\n{data.name}, {protocol.iters:,} iterations (seconds exclude compilation):")
    print_table(rows)
    compared = comparisons(rows)
    print_comparisons(compared)
    profile = profile_section(data, protocol, rows, part_times) if parts else None
    denormals = denormal_section(runs, data)
    peak = _numgrad.peak_rss_bytes()
    print(f"\npeak process memory: {peak / 2**20:.0f} MiB")

    record = {
        "experiment": NAME,
        "model": args.model,
        "dataset": {
            "requested": args.dataset,
            "used": data.name,
            "train_size": n_train,
            "test_size": len(data.test[0]),
            "notice": data.notice,
        },
        "protocol": protocol._asdict(),
        "repeats": args.repeats,
        "peers": rows,
        "profile": profile,
        "denormals": denormals,
        "numerical_gradient": numgrad,
        "comparisons": compared,
        "peak_rss_bytes": peak,
        "machine": machine(),
    }
    path = _common.write_json(out / "results.json", record)
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    _common.run(main)
