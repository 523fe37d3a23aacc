"""How fast one SimpleConvNet training iteration runs (batch 100, Adam lr 0.001): funcnet
against PyTorch, plain JAX and the book's NumPy layers; ratios below 1 are faster.

The peers (see :mod:`experiments._conv_peers`):

    funcnet             the default rules (channels last: funcnet.conv.convolution_nhwc /
                        pooling_nhwc)
    funcnet-book        the book's rules (convolution_book / pooling_book)
    plain-jax           lax.conv_general_dilated + reduce_window, jax.grad, optax.adam
    torch               PyTorch eager, 2 threads, NCHW (skipped when torch is not importable)
    torch-nhwc          the same in PyTorch's channels_last memory format (NHWC, funcnet's
                        layout), which its CPU convolutions run faster
    numpy-book          the book's NumPy layers and Adam

Every peer starts from the same weights and trains on the same images (synthetic
uniform [0, 1) MNIST-shaped images: the time does not depend on their values; denormals
are flushed by XLA and, for torch, explicitly). Timing: after a warm-up (compilation),
``--rounds`` rounds, interleaved (every peer once per round, the order rotated by one
peer each round, a short pause before each timing so that the previous peer's idle
BLAS/OpenMP threads stop spinning), each timing ``--steps`` iterations (``--numpy-steps``
for the slow NumPy peer); the best round counts. Prints the per-iteration milliseconds
and their ratios to torch, torch-nhwc and plain JAX; writes them (and every round's milliseconds) to
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
import importlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from experiments import _conv_peers as peers
from funcnet import _dnnl, _onednn, conv, dropout, layers
from funcnet._compile import compile_program
from funcnet.nets import convnet

NAME = "ch07_benchmark_convnet"
PEERS = ("funcnet", "funcnet-book", "plain-jax", "torch", "torch-nhwc", "numpy-book")
# DeepConvNet (experiments.benchmark --model deep-convnet): no NumPy peer.
MODEL_PEERS = {"simple-convnet": PEERS, "deep-convnet": PEERS[:5]}
MODEL_TITLES = {"simple-convnet": "SimpleConvNet", "deep-convnet": "DeepConvNet"}
# The flags of the measurement and their defaults (also used by experiments.benchmark).
DEFAULTS = {"steps": 50, "numpy_steps": 100, "rounds": 3, "images": 10000}
# DeepConvNet's iteration is ~10x SimpleConvNet's (plain JAX's ~1 s): fewer per timing.
DEEP_DEFAULTS = {"steps": 10, "rounds": 3, "images": 10000}
# Before each timing: lets the previous peer's idle BLAS/OpenMP worker threads stop
# spinning, so that they do not steal the cores of the peer being timed.
PAUSE_S = 0.2
# The references of the ratios: (peer, key in results.json).
REFERENCES = (
    ("torch", "ratio_to_torch"),
    ("torch-nhwc", "ratio_to_torch_nhwc"),
    ("plain-jax", "ratio_to_plain_jax"),
)


def add_flags(p: argparse.ArgumentParser | Any, *, defaults: bool = True) -> None:
    """Add ``--steps``, ``--numpy-steps``, ``--rounds``, ``--images`` and ``--no-layers`` to
    ``p`` (a parser or an argument group). ``defaults=False`` leaves the four counts'
    defaults ``None``: the caller fills in :data:`DEFAULTS` (the help still names them)."""

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
    p.add_argument(
        "--no-layers",
        action="store_true",
        help="skip where the time goes (each layer's forward and backward timed alone, "
        "funcnet and torch)",
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
        "--out",
        type=_common.out_folder,
        default=Path("runs") / NAME,
        help="output folder (default: %(default)s)",
    )
    _common.add_overwrite_flag(p)
    args = p.parse_args(argv)
    args.peers = parse_peers(p, args.peers, PEERS)
    return args


def make_runners(
    args: argparse.Namespace,
    params: dict,
    x: np.ndarray,
    t: np.ndarray,
    model: str = "simple-convnet",
) -> dict:
    """{name: (run, steps per timing, note)}; skipped peers map to (None, 0, reason)."""
    key = jax.random.key(args.seed)
    runners = {}
    for name in args.peers:
        if name == "funcnet":
            run = peers.funcnet_runner(params, x, t, key, model=model)
            runners[name] = (run, args.steps, _kernels_note())
        elif name == "funcnet-book":
            run = peers.funcnet_runner(params, x, t, key, book=True, model=model)
            runners[name] = (run, args.steps, "")
        elif name == "plain-jax":
            runners[name] = (peers.plain_jax_runner(params, x, t, key, model=model), args.steps, "")
        elif name in ("torch", "torch-nhwc"):
            nhwc = name == "torch-nhwc"
            run, note = peers.torch_runner(params, x, t, args.seed, model=model, channels_last=nhwc)
            runners[name] = (run, args.steps if run else 0, note)
        else:
            runners[name] = (peers.numpy_runner(params, x, t, args.seed), args.numpy_steps, "")
    return runners


def _kernels_note() -> str:
    """Which kernels funcnet's float32 convolutions run on here: the forward and dx
    (funcnet._onednn), the filter gradients (funcnet._dnnl)."""
    if jax.default_backend() != "cpu":
        return ""
    convolutions = "oneDNN's" if _onednn.kernel() == "onednn" else "XLA's"
    filter_grads = "oneDNN's backward-weights" if _dnnl.kernel() == "onednn" else "XLA's"
    return f"convolutions on {convolutions} kernels, filter gradients on {filter_grads}"


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
    """The printed table: ms per iteration and the ratios to torch, torch-nhwc and plain
    JAX ("-" where that peer did not run)."""
    by_ref = [ratios(best, ref) for ref, _ in REFERENCES]
    widths = [max(len(f"vs {ref}"), 9) for ref, _ in REFERENCES]
    head = " ".join(f"{'vs ' + ref:>{w}}" for (ref, _), w in zip(REFERENCES, widths, strict=True))
    lines = [f"{'peer':<14} {'ms/iter':>9} {head}  note"]
    for name, ms in best.items():
        note = runners[name][2]
        if ms is None:
            blank = " ".join(" " * w for w in widths)
            lines.append(f"{name:<14} {'skipped':>9} {blank}  {note}")
            continue
        cells = (f"{r[name]:.2f}x" if r else "-" for r in by_ref)
        row = " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        lines.append(f"{name:<14} {ms:9.2f} {row}  {note}")
    return "\n".join(lines)


def run(
    args: argparse.Namespace, experiment: str = NAME, model: str = "simple-convnet"
) -> dict[str, Any]:
    """The measurement of ``args`` (steps, numpy_steps, rounds, images, peers, seed,
    out; ``no_layers``, where present and true: no per-layer times) for ``model``
    (``"simple-convnet"`` or ``"deep-convnet"``): prints the table, writes
    ``results.json`` to ``args.out`` and returns its record (``experiment`` names the
    command that ran it)."""
    out = _common.claim(args.out, experiment, args)
    rng = np.random.default_rng(args.seed)
    x = rng.random((args.images, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, args.images).astype(np.int32)
    if model == "deep-convnet":
        params = convnet.init_deep_convnet(jax.random.key(args.seed))
    else:
        params = convnet.init_simple_convnet(jax.random.key(args.seed))
    numpy_note = f" ({args.numpy_steps} for numpy-book)" if "numpy-book" in args.peers else ""
    print(
        f"{MODEL_TITLES[model]} training iteration, batch {peers.BATCH}, Adam lr {peers.LR}, "
        f"{args.images:,} synthetic images: best of {args.rounds} interleaved round(s) of "
        f"{args.steps} iterations{numpy_note} on "
        f"{os.cpu_count()} CPU cores ({jax.default_backend()})",
        flush=True,
    )
    runners = make_runners(args, params, x, t, model)
    times = measure(runners, args.rounds)
    best = {name: (None if ms is None else min(ms)) for name, ms in times.items()}
    print(table(best, runners))
    breakdown = None
    if not getattr(args, "no_layers", False):
        torch_peer = next((p for p in ("torch-nhwc", "torch") if p in args.peers), None)
        breakdown = layer_breakdown(model, params, x, t, args.rounds, torch_peer)
        print(breakdown_table(breakdown))
    settings = {
        "batch_size": peers.BATCH,
        "lr": peers.LR,
        "steps": args.steps,
        "numpy_steps": args.numpy_steps,
        "rounds": args.rounds,
        "images": args.images,
        "seed": args.seed,
        "peers": list(args.peers),
    }
    if model == "deep-convnet":
        del settings["numpy_steps"]
    result = {
        "experiment": experiment,
        "model": model,
        "ms_per_iteration": best,
        **{key: ratios(best, ref) for ref, key in REFERENCES},
        "ms_per_iteration_all": times,
        "notes": {name: note for name, (_, _, note) in runners.items() if note},
        "settings": settings,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
    }
    if breakdown is not None:
        result["layers"] = breakdown
    path = _common.write_json(out / "results.json", result)
    print(f"wrote {path}")
    return result


# --------------------------------------------------------------------------------------
# Where the time goes: each layer's forward and backward, funcnet's rules and torch's

Unit = tuple[str, Callable[..., Any], tuple[str, ...]]


def funcnet_units(model: str, params: dict, key: jax.Array) -> list[Unit]:
    """The net as a chain of units ``(name, f(h, *weights) -> h', weight keys)`` with
    funcnet's default rules as the nets run them: the data moved to channels last in the
    first convolution's unit, NHWC activations from there to the last pool
    (:func:`funcnet.conv.convolution_nhwc`, :func:`funcnet.conv.pooling_nhwc`), moved back
    to NCHW (the book's flatten order) in the first affine's unit; the last unit ends in
    the loss, ``f(h, W, b, t)``."""
    relu, affine = layers.relu, layers.affine

    def conv_unit(pad: int, first: bool) -> Callable[..., Any]:
        def unit(h, W, b):
            h = h.transpose(0, 2, 3, 1) if first else h
            return relu(conv.convolution_nhwc(h, W, b, 1, pad))

        return unit

    def pool(h):
        return conv.pooling_nhwc(h, 2, 2, 2)

    def flat_affine(h, W, b):
        return affine(h.transpose(0, 3, 1, 2), W, b)

    if model != "deep-convnet":
        return [
            ("conv1 30x5x5 + relu", conv_unit(0, True), ("W1", "b1")),
            ("pool1 2x2", pool, ()),
            ("affine2 4320-100 + relu", lambda h, W, b: relu(flat_affine(h, W, b)), ("W2", "b2")),
            (
                "affine3 100-10 + loss",
                lambda h, W, b, t: layers.softmax_with_loss(affine(h, W, b), t),
                ("W3", "b3"),
            ),
        ]
    k7, k8 = jax.random.split(key)
    ratio = convnet.DROPOUT_RATIO
    units: list[Unit] = []
    for i, (filters, pad) in enumerate(convnet.DEEP_CONVNET_CONVS, start=1):
        name = f"conv{i} {filters}x3x3 pad {pad} + relu"
        units.append((name, conv_unit(pad, i == 1), (f"W{i}", f"b{i}")))
        if i % 2 == 0:
            units.append((f"pool{i // 2} 2x2", pool, ()))
    units.append(
        (
            "affine7 1024-50 + relu + dropout",
            lambda h, W, b: dropout.dropout(relu(flat_affine(h, W, b)), k7, ratio),
            ("W7", "b7"),
        )
    )
    units.append(
        (
            "affine8 50-10 + dropout + loss",
            lambda h, W, b, t: layers.softmax_with_loss(
                dropout.dropout(affine(h, W, b), k8, ratio), t
            ),
            ("W8", "b8"),
        )
    )
    return units


def torch_units(net: Any, torch: Any) -> list[Any]:
    """The torch net's modules grouped like :func:`funcnet_units`: a conv or a pool starts
    a unit, so does a linear (Flatten joins the linear after it); ReLU and dropout join
    the unit before them."""
    nn = torch.nn
    groups: list[list[Any]] = []
    for m in net:
        after_flatten = bool(groups) and isinstance(groups[-1][-1], nn.Flatten)
        starts = isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.Flatten)) or (
            isinstance(m, nn.Linear) and not after_flatten
        )
        if starts or not groups:
            groups.append([m])
        else:
            groups[-1].append(m)
    return [nn.Sequential(*g) for g in groups]


def _ready(f: Callable[..., Any], *args: Any) -> Any:
    return jax.block_until_ready(f(*args))


def _best_ms(fn: Callable[..., Any], rounds: int, *args: Any, calls: int = 5) -> float:
    """Best over ``rounds`` of the mean of ``calls`` calls ``fn(*args)``, after a warm-up."""
    fn(*args)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def layer_breakdown(
    model: str, params: dict, x: np.ndarray, t: np.ndarray, rounds: int, torch_peer: str | None
) -> list[dict[str, Any]]:
    """Each unit of :func:`funcnet_units` on one batch of :data:`peers.BATCH` images,
    compiled alone (as fit compiles, :func:`funcnet._compile.compile_program`): forward
    ms, and backward ms = (forward + backward) − forward (no dx for the first unit: its
    input is data), best of ``rounds`` means of 5 calls; the same for
    PyTorch's modules (:func:`torch_units`, autograd) where ``torch_peer`` is ``"torch"``
    (NCHW) or ``"torch-nhwc"`` (channels_last) and torch imports on the CPU (each row
    names it: ``torch_peer``). Layers timed alone: inside the training step XLA fuses
    across them, so the rows add up to about, not exactly, the step's time."""
    xb, tb = jnp.asarray(x[: peers.BATCH]), jnp.asarray(t[: peers.BATCH])
    units = funcnet_units(model, params, jax.random.key(1))
    tunits = th = tt = torch = None
    if torch_peer is not None:
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            torch = None
        if torch is not None and peers.torch_device(torch).type == "cpu":
            nhwc = torch_peer == "torch-nhwc"
            tunits = torch_units(peers.torch_net(torch, params, model, channels_last=nhwc), torch)
            layout = torch.channels_last if nhwc else torch.contiguous_format
            th = torch.tensor(np.asarray(xb)).contiguous(memory_format=layout)
            tt = torch.tensor(np.asarray(tb, np.int64))
    rows = []
    h = xb
    for j, (name, f, keys) in enumerate(units):
        last = j == len(units) - 1
        weights = tuple(params[k] for k in keys)
        extra = (tb,) if last else ()
        # compiled as fit compiles the training step (funcnet._compile)
        fwd = compile_program(lambda h, ws, f=f, extra=extra: f(h, *ws, *extra), h, weights)
        out = fwd(h, weights)
        g = jnp.ones_like(out)

        def both(h, ws, f=f, extra=extra, g=g, first=j == 0):
            if first:  # the input is data: no dx, as in training
                out, vjp = jax.vjp(lambda *ws: f(h, *ws, *extra), *ws)
            else:
                out, vjp = jax.vjp(lambda h, *ws: f(h, *ws, *extra), h, *ws)
            return out, vjp(g)

        both_jit = compile_program(both, h, weights)
        f_ms = _best_ms(_ready, rounds, fwd, h, weights)
        fb_ms = _best_ms(_ready, rounds, both_jit, h, weights)
        row = {"layer": name, "forward_ms": f_ms, "backward_ms": max(fb_ms - f_ms, 0.0)}
        if tunits is not None:
            mod, inp = tunits[j], th.detach().requires_grad_(j > 0)

            def t_fwd(mod=mod, inp=inp, last=last):
                y = mod(inp)
                return torch.nn.functional.cross_entropy(y, tt) if last else y

            def t_both(t_fwd=t_fwd):
                y = t_fwd()
                y.backward(torch.ones_like(y))

            tf_ms = _best_ms(t_fwd, rounds)
            row["torch_peer"] = torch_peer
            row["torch_forward_ms"] = tf_ms
            row["torch_backward_ms"] = max(_best_ms(t_both, rounds) - tf_ms, 0.0)
            with torch.no_grad():
                th = mod(inp)
        rows.append(row)
        h = out
    return rows


def breakdown_table(rows: list[dict[str, Any]]) -> str:
    """The per-layer table: funcnet's forward and backward ms, torch's where measured,
    and a last row with the sums."""
    keys = ("forward_ms", "backward_ms", "torch_forward_ms", "torch_backward_ms")
    with_torch = "torch_forward_ms" in rows[0]
    head = f"{'layer (alone, batch 100)':<34} {'fwd ms':>7} {'bwd ms':>7}"
    if with_torch:
        peer = rows[0]["torch_peer"]
        head += f" {peer + ' fwd':>14} {peer + ' bwd':>14} {'x ' + peer:>12}"
    total = {"layer": "sum", **{k: sum(r.get(k, 0.0) for r in rows) for k in keys}}
    lines = [head]
    for r in [*rows, total]:
        line = f"{r['layer']:<34} {r['forward_ms']:7.2f} {r['backward_ms']:7.2f}"
        if with_torch:
            ours = r["forward_ms"] + r["backward_ms"]
            theirs = r["torch_forward_ms"] + r["torch_backward_ms"]
            line += f" {r['torch_forward_ms']:14.2f} {r['torch_backward_ms']:14.2f}"
            line += f" {ours / theirs:11.2f}x" if theirs > 0 else f" {'-':>12}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the record written to ``results.json``."""
    return run(parse_args(argv))


if __name__ == "__main__":
    _common.run(main)
