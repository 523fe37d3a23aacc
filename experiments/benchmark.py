"""Speed benchmark: the book's ch5 training protocol five ways, and numerical gradients.

Measures, in one process and on the same data from the same initial weights, the book's
``train_neuralnet.py`` (784-50-10 ReLU, batch 100 drawn with replacement, SGD lr 0.1,
10,000 iterations, train and test accuracy over the whole sets every epoch) run by:

1. ``funcnet fit`` — custom_vjp layers, the steps between evaluations fused (the product);
2. ``funcnet step`` — ``fit(fused=False)``: one compiled step per Python iteration;
3. ``plain JAX`` — ``jax.grad`` of a plain jnp forward + ``optax.sgd``, an epoch per
   ``lax.scan``: the ceiling the custom rules must reach;
4. ``NumPy (book)`` — the book's layers with hand-written backward passes, float32;
5. ``PyTorch eager`` — ``torch.nn`` + ``torch.optim.SGD``, float32, denormals flushed;
   a "skipped" row when torch is not installed.

Each peer runs ``--repeats`` times, round-robin (every peer once per repeat, the order
rotated each time, so a busy machine slows all alike), and the best run counts.
Compilation is timed apart from the run (``seconds`` excludes it). The script also times
where the time goes (evaluation vs steps, each piece alone, for funcnet, plain JAX and
NumPy), and the numerical gradient of the same net on 3 images in float64:
``funcnet.gradient.numerical_gradient`` against the book's per-element NumPy loop, with
the largest difference to backpropagation and the peak process memory.

Writes ``results.json`` to ``--out`` (default ``runs/benchmark``).

Run: ``python -m experiments.benchmark [--dataset fashion-mnist] [--iters N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import platform
import sys
import time
from typing import Any

import jax
import numpy as np

from experiments import _common, _numgrad, _peers
from funcnet import datasets

NAME = "benchmark"
FULL_SIZE = 60000
# Between two peers: lets the previous one's idle BLAS/OpenMP worker threads stop spinning
# before the next starts, so they do not steal its cores.
PAUSE_S = 0.2  # training images from which the tighter ceiling target applies

DENORMAL_NOTE = (
    "Denormal (subnormal) floats take a slow path in the CPU. XLA flushes them to zero on "
    "CPU and the PyTorch peer runs with torch.set_flush_denormal(True); NumPy has no such "
    "switch, so wherever they appear only NumPy pays, and its time is reported as it is."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Time the book's ch5 training protocol: funcnet vs plain JAX, NumPy, "
        "PyTorch; and funcnet's numerical gradient vs the book's loop.",
    )
    p.add_argument("--iters", type=int, default=10000, help="iterations (default: %(default)s)")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per peer, round-robin; the best counts (default: %(default)s)",
    )
    p.add_argument(
        "--peers",
        default=",".join(_peers.PEERS),
        help="comma-separated peers to run, from " + ", ".join(_peers.PEERS) + " (default: all)",
    )
    _common.add_dataset_flag(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--no-numgrad", action="store_true", help="skip the numerical-gradient benchmark"
    )
    p.add_argument(
        "--numgrad-chunk",
        type=int,
        default=None,
        help="chunk_size for funcnet.gradient.numerical_gradient (default: its own)",
    )
    p.add_argument(
        "--numgrad-book-elements",
        type=int,
        default=None,
        help="time only this many elements of the book's loop and extrapolate "
        "(default: the whole loop)",
    )
    p.add_argument(
        "--numgrad-hidden",
        type=int,
        default=50,
        help="hidden units of the numerical-gradient net (default: %(default)s)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the where-time-goes profile")
    p.add_argument(
        "--torch-keep-denormals",
        action="store_true",
        help="run the PyTorch peer without set_flush_denormal(True), to see what it costs",
    )
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    for flag in ("iters", "repeats", "numgrad_hidden"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    for flag in ("numgrad_chunk", "numgrad_book_elements"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    args.peer_ids = [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = [s for s in args.peer_ids if s not in _peers.PEERS]
    if unknown or not args.peer_ids:
        p.error(f"--peers: unknown {unknown}; choose from {', '.join(_peers.PEERS)}")
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
    print(f"  speedup: {r.speedup:.2f}x (target >= 10x)")
    diff_book = "n/a" if r.max_abs_diff_book is None else f"{r.max_abs_diff_book:.2e}"
    print(
        f"  max |numerical - backprop|: funcnet {r.max_abs_diff_funcnet:.2e} "
        f"(target <= 1e-9), book's loop {diff_book}"
    )
    print(
        f"  peak process memory: {r.peak_rss_bytes / 2**20:.0f} MiB (target < 1024 MiB; "
        f"{r.peak_rss_before_bytes / 2**20:.0f} MiB before)"
    )
    return r._asdict()


# --------------------------------------------------------------------------------------
# Peers


PROFILED_IDS = {"funcnet fit": "fit", "plain JAX": "jax", "NumPy (book)": "numpy"}


def run_peers(
    args: argparse.Namespace,
    data: datasets.Dataset,
    protocol: _peers.Protocol,
    params: dict[str, np.ndarray],
    pieces: dict[str, dict[str, Any]] | None,
) -> tuple[dict[str, list[_peers.PeerResult]], dict[str, dict[str, float]]]:
    """Every selected peer ``args.repeats`` times, round-robin in a rotating order, and
    after each round the profiled ``pieces`` (best of a few calls). Returns the results
    per peer id (in ``args.peer_ids`` order) and each piece's best seconds."""
    runners = dict(_peers.PEERS)
    if args.torch_keep_denormals:
        runners["torch"] = functools.partial(_peers.run_torch, flush_denormal=False)
    runs: dict[str, list[_peers.PeerResult]] = {pid: [] for pid in args.peer_ids}
    best: dict[str, dict[str, float]] = {
        name: {"eval": float("inf"), "steps": float("inf")} for name in pieces or {}
    }
    k = len(args.peer_ids)
    for rep in range(args.repeats):
        # Round-robin, starting one peer later each repeat: no peer always runs first or
        # always follows the same neighbour.
        for pid in (args.peer_ids[(rep + j) % k] for j in range(k)):
            if runs[pid] and runs[pid][-1].status == "skipped":
                continue
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
        for name, fns in (pieces or {}).items():
            time.sleep(PAUSE_S)
            for piece, fn in fns.items():
                best[name][piece] = min(best[name][piece], _peers.best_time(fn, 3))
    return runs, best


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
    """The results table (seconds exclude compilation)."""
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


def profile_section(
    data: datasets.Dataset,
    protocol: _peers.Protocol,
    rows: list[dict[str, Any]],
    every: int,
    best: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """Print where the time of the whole protocol goes, from the pieces timed alone
    (``best``: seconds of one evaluation and of one epoch of ``every`` steps)."""
    n_train, n_test = len(data.train[0]), len(data.test[0])
    evals = len(_peers.evaluation_points(protocol.iters, every))
    measured = {r["name"]: r.get("seconds") for r in rows}
    out: dict[str, Any] = {"evaluations": evals, "steps": protocol.iters, "peers": {}}
    print(
        f"\nwhere time goes: {evals} evaluations (train + test accuracy over {n_train:,} + "
        f"{n_test:,} images) and {protocol.iters:,} steps; each piece timed alone:"
    )
    for name, piece in best.items():
        eval_s, step_s = piece["eval"], piece["steps"] / every
        eval_total, step_total = eval_s * evals, step_s * protocol.iters
        total = measured.get(name)
        rest = None if total is None else total - eval_total - step_total
        out["peers"][name] = {
            "eval_s": eval_s,
            "step_s": step_s,
            "eval_total_s": eval_total,
            "steps_total_s": step_total,
            "eval_share": eval_total / (eval_total + step_total),
            "measured_s": total,
            "rest_s": rest,
        }
        line = (
            f"  {name:<13} evaluation {eval_s * 1e3:6.1f} ms x {evals} = {eval_total:5.2f} s "
            f"({eval_total / (eval_total + step_total):.0%}); step {step_s * 1e3:.3f} ms x "
            f"{protocol.iters:,} = {step_total:5.2f} s"
        )
        if total is not None:
            line += f"; whole run {total:.2f} s, rest {rest:+.2f} s (host syncs, dispatch)"
        print(line)
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


def targets(rows, numgrad: dict[str, Any] | None, full_size: bool) -> list[dict[str, Any]]:
    """The issue's targets with the measured values (reported, never asserted)."""
    by_id = {r["id"]: r for r in rows if r["status"] == "ok"}
    out = []

    def add(name, value, op, limit):
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        out.append({"target": name, "value": value, "op": op, "limit": limit, "met": met})

    fit = by_id.get("fit")
    ceiling = 1.05 if full_size else 1.15
    for pid, limit, label in (
        ("jax", ceiling, "funcnet fit / plain JAX"),
        ("torch", 0.5, "funcnet fit / PyTorch eager"),
        ("numpy", 0.4, "funcnet fit / NumPy"),
    ):
        peer = by_id.get(pid)
        value = fit["seconds"] / peer["seconds"] if fit and peer else None
        add(label, value, "<=", limit)
    if numgrad is not None:
        add("numerical gradient speedup vs book loop", numgrad["speedup"], ">=", 10.0)
        add(
            "numerical gradient max |diff| to backprop", numgrad["max_abs_diff_funcnet"], "<=", 1e-9
        )
        add("numerical gradient peak memory (GiB)", numgrad["peak_rss_bytes"] / 2**30, "<=", 1.0)
    return out


def print_targets(items: list[dict[str, Any]]) -> None:
    print("\ntargets (measured here, not asserted):")
    for t in items:
        if t["value"] is None:
            print(f"  {t['target']}: not measured")
            continue
        verdict = "met" if t["met"] else "MISSED"
        value = f"{t['value']:.3g}" if abs(t["value"]) < 1e-3 else f"{t['value']:.2f}"
        print(f"  {t['target']}: {value} (target {t['op']} {t['limit']:g}) {verdict}")


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
    out = _common.out_dir(args.out)
    protocol = _peers.Protocol(iters=args.iters, seed=args.seed)

    numgrad = None if args.no_numgrad else numgrad_section(args)

    print()
    data = _common.load_dataset(args.dataset)
    n_train = len(data.train[0])
    every = max(n_train // protocol.batch_size, 1)
    print(
        f"protocol: {data.train[0].shape[1]}-{protocol.hidden}-{len(data.class_names)} ReLU, "
        f"{protocol.iters:,} iterations, batch {protocol.batch_size}, lr {protocol.lr}, "
        f"train+test accuracy every {every} iterations; best of {args.repeats} round-robin "
        f"repeats on {_peers.cpu_count()} CPU cores ({jax.default_backend()})"
    )
    params = _peers.init_params(protocol, data.train[0].shape[1], len(data.class_names))
    pieces = None
    if not args.no_profile:
        every, pieces = _peers.profile_pieces(data.train, data.test, params, protocol)
        pieces = {n: f for n, f in pieces.items() if PROFILED_IDS[n] in args.peer_ids}
    runs, best = run_peers(args, data, protocol, params, pieces)
    rows = summarize(runs, protocol.iters)

    print(f"\n{data.name}, {protocol.iters:,} iterations (seconds exclude compilation):")
    print_table(rows)
    profile = profile_section(data, protocol, rows, every, best) if pieces else None
    denormals = denormal_section(runs, data)
    goals = targets(rows, numgrad, n_train >= FULL_SIZE)
    print_targets(goals)
    peak = _numgrad.peak_rss_bytes()
    print(f"\npeak process memory: {peak / 2**20:.0f} MiB")

    record = {
        "experiment": NAME,
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
        "targets": goals,
        "peak_rss_bytes": peak,
        "machine": machine(),
    }
    path = _common.write_json(out / "results.json", record)
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
