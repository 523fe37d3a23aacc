"""The book's ch6 ``batch_norm_gradient_check.py``, and the batch-norm graph (Fig. 6-17's
idea) with forward and backward values on every edge.

**Gradient check.** A 784-100-100-10 ``MultiLayerNetExtend`` with batch norm
(:mod:`funcnet.nets.multi_layer_extend`; He weights as the book's), in float64, on the
first training image — the book's check — and on the first five. gamma and beta start
at 1 + 0.1·N(0, 1) and 0.1·N(0, 1) instead of the book's 1 and 0: with one image every
batch-norm output is exactly beta, and beta = 0 puts every ReLU of the next layer on its
kink at 0, where backprop takes the derivative 0 (the book's Relu layer too) and central
differences ½ — the book's own check fails there on the last beta (``--book-init`` shows
it), for a reason that has nothing to do with batch norm. For
every parameter (W, b, gamma, beta of each layer) it prints the mean absolute difference
between the backprop gradient (the hand-written custom_vjp rules, the book's batch-norm
backward included) and

- the numerical gradient (central differences, h = 1e-5: batch norm makes the loss
  curved enough that the book's h = 1e-4 leaves ~1e-9 of truncation error on W1);
- ``jax.grad`` of the plain forwards (no hand-written rule).

With **one image** the check is degenerate: in every batch-norm layer the batch mean is
the image itself, so xc = x − mean(x) = 0 exactly, xn = 0 and the layer outputs beta
whatever comes in. The loss then depends on the last beta, W and b only, and the gradient
of every parameter before the last batch-norm layer is exactly 0 (λ·W for a weight with
weight decay λ): for those, the three ways agree by comparing zeros. The program finds
these parameters from the gradients and says so; the batch of five checks every one.

Exits with status 1 if a mean absolute difference exceeds ``--tolerance`` (1e-9).

**Graph.** :func:`funcnet.graph.trace` of the training-mode batch-norm layer on a 3×2
batch, ``expand=True`` (mean, xc, var, std, xn, gamma·xn + beta as primitives) with a
given upstream gradient dout, written as ``batch_norm_graph.png`` (and ``.svg``; needs
Graphviz's ``dot``, else the text table alone). Two checks: the backward values on the
input edges x, gamma, beta equal ``jax.vjp`` through the layer's hand-written rule, and
the backward value of every inner edge is the quantity of the book's backward
(``BatchNormalization.__backward``, transcribed in NumPy here): dxn on xn, dstd on std,
dvar on var, the final dxc on xc, −dmu on mu (the book folds that sign into
``dx = dxc − dmu/N``).

Run: ``python -m experiments.ch06_batch_norm_gradient_check [--batch-sizes 1 5]``.
Writes to ``--out`` (default ``runs/ch06_batch_norm_gradient_check``): the graph and
``gradient_check.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet.batch_norm import EPS, batch_norm
from funcnet.graph import Graph, GraphvizNotFoundError, trace
from funcnet.nets import multi_layer_extend as mle

NAME = "ch06_batch_norm_gradient_check"
COMPARISONS = ("numerical", "autodiff")
GRAPH_TOLERANCE = 1e-12  # float64 rounding of a 3×2 batch


# --------------------------------------------------------------------------------------
# Gradient check


def param_order(params: dict[str, Any]) -> list[str]:
    """The book's order: W1 b1 gamma1 beta1 W2 … W{L} b{L}."""
    layers = sum(1 for k in params if k.startswith("W"))
    names = []
    for i in range(1, layers + 1):
        names += [n for n in (f"W{i}", f"b{i}", f"gamma{i}", f"beta{i}") if n in params]
    return names


def off_the_kink(params: dict[str, Any], key: jax.Array) -> dict[str, Any]:
    """gamma ← 1 + 0.1·N(0, 1) and beta ← 0.1·N(0, 1) (the book starts at 1 and 0).

    With one image every batch-norm output is exactly beta; beta = 0 puts every ReLU on
    its kink at 0, where backprop takes the derivative 0 (the book's Relu layer too) and
    central differences ½, so the book's initial values fail the check for reasons that
    have nothing to do with batch norm."""
    out = dict(params)
    names = [k for k in params if k.startswith(("gamma", "beta"))]
    for name, k in zip(names, jax.random.split(key, len(names)), strict=True):
        noise = 0.1 * jax.random.normal(k, params[name].shape, params[name].dtype)
        out[name] = (1.0 if name.startswith("gamma") else 0.0) + noise
    return out


def _timed(f, *args) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = jax.block_until_ready(f(*args))
    return value, time.perf_counter() - t0


def check_batch(
    x: np.ndarray,
    t: np.ndarray,
    hidden: list[int],
    weight_decay: float,
    seed: int,
    book_init: bool = False,
    classes: int = 10,
) -> dict[str, Any]:
    """Backprop, numerical and autodiff gradients of the batch-norm net on ``(x, t)`` in
    float64; per parameter the mean |backprop − other| and whether backprop is exactly
    λ·W (or 0: the parameter cannot change the loss). Call inside ``jax.enable_x64``."""
    x64, t = jnp.asarray(x, jnp.float64), jnp.asarray(t)
    k_init, k_shift = jax.random.split(jax.random.key(seed))
    params, state = mle.init_multi_layer_net_extend(
        k_init, x64.shape[1], hidden, classes, use_batchnorm=True, dtype=jnp.float64
    )
    if not book_init:
        params = off_the_kink(params, k_shift)
    net = mle.multi_layer_net_extend(weight_decay_lambda=weight_decay)
    key = jax.random.key(seed + 1)  # no dropout here: the key is not used
    grads, seconds = {}, {}
    # Each gradient is one compiled program (jax.jit), not JAX's op-by-op dispatch, which
    # compiled ~200 small programs per batch size (numerical_gradient jits itself).
    for name, f in (
        ("backprop", jax.jit(net.gradient)),
        ("numerical", net.numerical_gradient),
        ("autodiff", jax.jit(net.autodiff_gradient)),
    ):
        grads[name], seconds[name] = _timed(f, params, state, x64, t, key)
    rows = {}
    for k in param_order(params):
        bp = np.asarray(grads["backprop"][k])
        decay = weight_decay * np.asarray(params[k]) if k.startswith("W") else 0.0
        rows[k] = {
            **{c: float(np.mean(np.abs(bp - np.asarray(grads[c][k])))) for c in COMPARISONS},
            "mean_abs_backprop": float(np.mean(np.abs(bp))),
            "only_decay": bool(np.all(bp == decay)),
            "max_abs_numerical": float(np.max(np.abs(np.asarray(grads["numerical"][k])))),
        }
    last_beta = [k for k in param_order(params) if k.startswith("beta")][-1]
    beta = np.asarray(params[last_beta])
    relu_inputs = {
        "name": last_beta,
        "zero": int(np.sum(beta == 0)),
        "negative": int(np.sum(beta < 0)),
    }
    relu_inputs["size"] = int(beta.size)
    return {"batch": int(x.shape[0]), "seconds": seconds, "params": rows, "last_beta": relu_inputs}


def print_check(result: dict[str, Any], weight_decay: float) -> None:
    rows = result["params"]
    print(f"\n== batch of {result['batch']}: mean |difference| per parameter")
    print(f"{'param':>7}  {'vs numerical':>12}  {'vs autodiff':>12}  {'mean |backprop|':>15}  note")
    for k, r in rows.items():
        note = ""
        if r["only_decay"]:
            note = "= λ·W exactly" if weight_decay and k.startswith("W") else "exactly 0"
        elif k.startswith("b") and f"gamma{k[1:]}" in rows and r["mean_abs_backprop"] < 1e-12:
            note = "0 up to rounding: the next batch norm subtracts the batch mean"
        print(
            f"{k:>7}  {r['numerical']:12.3e}  {r['autodiff']:12.3e}  "
            f"{r['mean_abs_backprop']:15.3e}  {note}"
        )
    s = result["seconds"]
    print(
        f"time: backprop {s['backprop']:.2f} s, numerical {s['numerical']:.1f} s, autodiff "
        f"{s['autodiff']:.2f} s (each compiled and run once)"
    )
    if result["batch"] == 1:
        _explain_one_image(rows, weight_decay, result["last_beta"])


def before_last_batch_norm(names: list[str]) -> list[str]:
    """The parameters that feed the last batch-norm layer's input (W1 … gamma{L-1}, all
    but beta{L-1}, W{L}, b{L}): with one image the loss cannot depend on them."""
    last = sum(1 for k in names if k.startswith("W"))
    after = {f"beta{last - 1}", f"W{last}", f"b{last}"}
    return [k for k in names if k not in after]


def _explain_one_image(rows: dict[str, dict], weight_decay: float, last_beta: dict) -> None:
    dead = [k for k in before_last_batch_norm(list(rows)) if rows[k]["only_decay"]]
    if dead:
        what = "λ·W (the decay term alone) or 0" if weight_decay else "exactly 0"
        agree = max(rows[k]["numerical"] for k in dead)
        print(
            f"one image: the check is degenerate for {' '.join(dead)}. With N = 1 the batch "
            "mean is the image itself, so in every batch-norm layer xc = x − mean(x) = 0, "
            "xn = 0 and the output is beta whatever the input: the loss does not depend on "
            f"these parameters, their backprop gradient is {what}, and the numerical one "
            f"agrees to {agree:.1e}. Only the parameters after the last batch norm are "
            "really checked; a batch of several images checks them all."
        )
    also = [k for k, r in rows.items() if r["only_decay"] and k not in dead]
    if also:
        name, size = last_beta["name"], last_beta["size"]
        print(
            f"also exactly 0: {' '.join(also)}, and not because of batch norm: the ReLUs "
            f"after the last batch norm receive {name} itself; of its {size} values "
            f"{last_beta['negative']} are negative (the unit passes nothing back) and "
            f"{last_beta['zero']} are exactly 0, ReLU's kink, where backprop takes the "
            "derivative 0 and central differences ½ (the book's initial beta is all 0)."
        )


# --------------------------------------------------------------------------------------
# The batch-norm graph


def book_backward(x: np.ndarray, gamma: np.ndarray, dout: np.ndarray) -> dict[str, np.ndarray]:
    """The book's ``BatchNormalization.__forward``/``__backward`` (train mode), NumPy,
    keeping every intermediate: mu, xc, var, std, xn and dbeta, dgamma, dxn, dstd, dvar,
    dxc (final), dmu, dx. Shapes: x, dout (N, D); gamma (D,)."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    var = np.mean(xc**2, axis=0)
    std = np.sqrt(var + EPS)
    xn = xc / std
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -np.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc = dxc + (2.0 / n) * xc * dvar
    dmu = np.sum(dxc, axis=0)
    dx = dxc - dmu / n
    return dict(
        mu=mu, xc=xc, var=var, std=std, xn=xn, dbeta=dbeta, dgamma=dgamma, dxn=dxn,
        dstd=dstd, dvar=dvar, dxc=dxc, dmu=dmu, dx=dx,
    )  # fmt: skip


# inner edge (the book's forward name) -> (the book's backward name, sign on the edge)
INNER_EDGES = {"xn": ("dxn", 1), "std": ("dstd", 1), "var": ("dvar", 1), "xc": ("dxc", 1)}
INNER_EDGES["mu"] = ("dmu", -1)


def graph_example() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 3×2 batch with gamma, beta and an upstream gradient dout (float64)."""
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]])
    gamma = np.array([1.5, 0.8])
    beta = np.array([0.1, -0.2])
    dout = np.array([[0.3, -0.1], [0.2, 0.5], [-0.4, 0.1]])
    return x, gamma, beta, dout


def _edge_with_forward(graph: Graph, value: np.ndarray) -> int:
    """The first inner edge whose forward value is ``value`` (up to a broadcast axis)."""
    for v in graph.values:
        f = np.asarray(v.forward)
        if (
            v.kind == "intermediate"
            and f.size == value.size
            and np.allclose(f.reshape(value.shape), value, rtol=0, atol=1e-15)
        ):
            return v.id
    raise LookupError(f"no edge of the batch-norm graph carries {value}")


def graph_checks(graph: Graph, x, gamma, beta, dout) -> dict[str, float]:
    """max |difference| of the graph's backward values against (a) ``jax.vjp`` through
    the hand-written rule on the inputs, (b) the book's backward on the inner edges."""
    _, vjp = jax.vjp(batch_norm, jnp.asarray(x), jnp.asarray(gamma), jnp.asarray(beta))
    rule = dict(zip(("x", "gamma", "beta"), vjp(jnp.asarray(dout)), strict=True))
    gaps = {
        f"input {k}: backward vs jax.vjp (custom rule)": float(
            np.max(np.abs(np.asarray(graph.input(k).backward) - np.asarray(v)))
        )
        for k, v in rule.items()
    }
    book = book_backward(x, gamma, dout)
    for k, d in (("x", "dx"), ("gamma", "dgamma"), ("beta", "dbeta")):
        gaps[f"input {k}: backward vs book {d}"] = float(
            np.max(np.abs(np.asarray(graph.input(k).backward) - book[d]))
        )
    for edge, (d, sign) in INNER_EDGES.items():
        back = np.asarray(graph.values[_edge_with_forward(graph, book[edge])].backward)
        label = f"edge {edge}: backward vs book {'-' if sign < 0 else ''}{d}"
        gaps[label] = float(np.max(np.abs(back.reshape(book[d].shape) - sign * book[d])))
    return gaps


def draw_graph(out: Path) -> dict[str, Any]:
    """Trace, print, render and check the batch-norm graph; returns the checks."""
    x, gamma, beta, dout = graph_example()
    with jax.enable_x64(True):
        graph = trace(batch_norm, x, gamma, beta, cotangent=dout, expand=True)
        print("\n== the batch-norm layer on a 3×2 batch, upstream gradient dout (expanded)")
        print(graph.table(digits=6))
        written = []
        try:
            for suffix in (".png", ".svg"):
                written.append(
                    graph.render(out / f"batch_norm_graph{suffix}", rankdir="TB", wrap=2)
                )
            print("wrote", ", ".join(map(str, written)))
        except GraphvizNotFoundError as err:
            print(f"no picture (the text table above is the graph): {err}")
        gaps = graph_checks(graph, x, gamma, beta, dout)
    for label, gap in gaps.items():
        print(f"  {label}: max |difference| {gap:.1e}")
    return {"pictures": written, "max_abs_differences": gaps}


# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.ArgumentParser(
        prog=f"python -m experiments.{NAME}",
        description="Batch-norm net: backprop vs numerical vs autodiff; the batch-norm graph.",
    )
    p.add_argument(
        "--batch-sizes",
        type=_common.positive_int,
        nargs="+",
        default=[1, 5],
        help="training images per check: the book uses 1 (default: 1 5)",
    )
    p.add_argument(
        "--hidden",
        type=_common.positive_int,
        nargs="+",
        default=[100, 100],
        help="hidden layer sizes (default: 100 100)",
    )
    p.add_argument(
        "--weight-decay",
        type=_common.finite_float,
        default=0.0,
        help="λ of the loss's ½·λ·Σ‖W‖² (default: 0, the book's)",
    )
    p.add_argument(
        "--tolerance",
        type=_common.positive_float,
        default=1e-9,
        help="largest mean |difference| accepted (default: 1e-9)",
    )
    p.add_argument(
        "--book-init",
        action="store_true",
        help="keep gamma 1 and beta 0 (the book's): with one image every ReLU then sits on "
        "its kink at 0 and the check of the last beta fails",
    )
    p.add_argument("--seed", type=_common.seed, default=0, help="key for the weights (default: 0)")
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME)
    args = p.parse_args(argv)
    if args.weight_decay < 0:
        p.error(f"argument --weight-decay: must be >= 0, got {args.weight_decay}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the checks and draw the graph; returns what ``gradient_check.json`` holds.

    Raises:
        SystemExit: (status 1) a difference is above ``--tolerance`` (gradients) or 1e-12
            (graph), after printing everything.
    """
    args = parse_args(argv)
    out = _common.out_dir(args.out)
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir)
    out = _common.claim(out, NAME, args, data.name)
    x_all, t_all = data.train
    if max(args.batch_sizes) > len(x_all):
        raise ValueError(
            f"--batch-sizes {max(args.batch_sizes)} exceeds the {len(x_all):,} training "
            f"images of {data.name}"
        )
    arch = "-".join(map(str, [x_all.shape[1], *args.hidden, len(data.class_names)]))
    init = (
        "gamma 1, beta 0 (the book's)"
        if args.book_init
        else "gamma 1 + 0.1·N(0,1), beta 0.1·N(0,1) (off ReLU's kink, see --book-init)"
    )
    print(
        f"{arch} ReLU net with batch norm, He weights, {init}, weight decay "
        f"λ = {args.weight_decay:g}, float64; backprop = the hand-written rules, numerical = "
        "central differences (h = 1e-5), autodiff = jax.grad of the plain forwards"
    )
    checks = []
    with jax.enable_x64(True):
        for n in args.batch_sizes:
            result = check_batch(
                x_all[:n],
                t_all[:n],
                args.hidden,
                args.weight_decay,
                args.seed,
                args.book_init,
                len(data.class_names),
            )
            print_check(result, args.weight_decay)
            checks.append(result)
    graph = draw_graph(out)
    failures = [
        f"batch {c['batch']} {k} vs {comp} {r[comp]:.2e}"
        for c in checks
        for k, r in c["params"].items()
        for comp in COMPARISONS
        if not r[comp] <= args.tolerance  # NaN fails too
    ]
    failures += [
        f"graph {label} {gap:.1e}"
        for label, gap in graph["max_abs_differences"].items()
        if not gap <= GRAPH_TOLERANCE
    ]
    worst = max(r["numerical"] for c in checks for r in c["params"].values())
    print(f"\nlargest backprop vs numerical difference: {worst:.3e} (tolerance {args.tolerance:g})")
    result = {
        "experiment": NAME,
        "settings": {
            "architecture": arch,
            "batch_sizes": args.batch_sizes,
            "weight_decay": args.weight_decay,
            "tolerance": args.tolerance,
            "seed": args.seed,
            "book_init": args.book_init,
            "numerical_h": 1e-5,
        },
        "dataset": {"requested": args.dataset, "used": data.name},
        "checks": checks,
        "graph": graph,
        "failures": failures,
    }
    print("wrote", _common.write_json(out / "gradient_check.json", result))
    if failures:
        raise SystemExit(f"{NAME}: FAILED: " + "; ".join(failures))
    print("all differences within the tolerance")
    return result


if __name__ == "__main__":
    _common.run(main)
