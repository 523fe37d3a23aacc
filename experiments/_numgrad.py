"""The numerical-gradient part of ``experiments.benchmark``.

The 784-50-10 ReLU net's loss on a batch of 3 images, differentiated by central
differences in float64 two ways:

- funcnet: :func:`funcnet.gradient.numerical_gradient`, jitted, every perturbation of
  the params evaluated with ``vmap`` in bounded chunks;
- the book: its ``numerical_gradient`` (ch4, ``common/gradient.py``), an ``np.nditer``
  loop that perturbs one element in place, calls the loss twice, and restores it, for
  each of ``W1 b1 W2 b2`` in turn (``TwoLayerNet.numerical_gradient``).

Both differentiate the same exact softmax cross-entropy (no 1e-7 inside the log), and
both are compared with backpropagation (funcnet's custom rules, float64).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import gradient, nets

NP_PARAM_KEYS = ("W1", "b1", "W2", "b2")


class NumgradResult(NamedTuple):
    """What :func:`run` measured (seconds, and ``max_abs_diff_*`` against backprop)."""

    num_params: int
    batch: int
    chunk_size: int
    funcnet_seconds: float
    funcnet_compile_seconds: float
    book_seconds: float  # the whole loop, measured or extrapolated
    book_elements_timed: int
    book_extrapolated: bool
    speedup: float
    max_abs_diff_funcnet: float
    max_abs_diff_book: float | None  # over the elements the book's loop computed
    peak_rss_bytes: int
    peak_rss_before_bytes: int


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (``getrusage`` maxrss), in bytes."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def default_chunk_size(leaf_size: int) -> int:
    """The chunk ``numerical_gradient`` picks for a leaf of this size when given none."""
    return max(1, min(leaf_size, gradient.DEFAULT_MAX_CHUNK_ELEMENTS // leaf_size))


# --------------------------------------------------------------------------------------
# The book's loop, in NumPy float64


def np_loss(params: dict[str, np.ndarray], x: np.ndarray, t: np.ndarray) -> float:
    """The two-layer ReLU net's mean softmax cross-entropy (exact log-softmax), NumPy."""
    h = np.maximum(x @ params["W1"] + params["b1"], 0)
    s = h @ params["W2"] + params["b2"]
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(x.shape[0]), t]))


def book_numerical_gradient(
    f: Callable[[np.ndarray], float], x: np.ndarray, limit: int | None = None
) -> tuple[np.ndarray, int]:
    """The book's ``numerical_gradient(f, x)`` (ch4): perturb each element of ``x`` in
    place by ±1e-4, call ``f`` twice, restore it. ``f`` ignores its argument and reads the
    mutated array, as in the book's ``lambda W: net.loss(x, t)``.

    Args:
        limit: stop after this many elements (the rest of the gradient stays 0).

    Returns:
        ``(grad, elements_done)``; ``grad`` has ``x``'s shape.
    """
    h = 1e-4
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    done = 0
    while not it.finished and (limit is None or done < limit):
        idx = it.multi_index
        tmp_val = x[idx]
        x[idx] = float(tmp_val) + h
        fxh1 = f(x)
        x[idx] = tmp_val - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp_val
        it.iternext()
        done += 1
    return grad, done


def book_two_layer_gradient(
    params: dict[str, np.ndarray], x: np.ndarray, t: np.ndarray, limit: int | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """The book's ``TwoLayerNet.numerical_gradient``: :func:`book_numerical_gradient` of
    the loss for ``W1 b1 W2 b2`` in turn, at most ``limit`` elements in all. Mutates and
    restores ``params``. Returns ``(grads, elements_done)``."""

    def loss_w(_):
        return np_loss(params, x, t)

    grads, done = {}, 0
    for k in NP_PARAM_KEYS:
        left = None if limit is None else max(limit - done, 0)
        grads[k], n = book_numerical_gradient(loss_w, params[k], left)
        done += n
    return grads, done


# --------------------------------------------------------------------------------------


def _max_abs_diff(
    a: dict[str, Any], b: dict[str, Any], mask: dict[str, np.ndarray] | None
) -> float:
    worst = 0.0
    for k in NP_PARAM_KEYS:
        d = np.abs(np.asarray(a[k]) - np.asarray(b[k]))
        if mask is not None:
            d = d[mask[k]]
        if d.size:  # np.maximum keeps a NaN (Python's max would drop one coming second)
            worst = float(np.maximum(worst, d.max()))
    return worst


def run(
    x: np.ndarray,
    t: np.ndarray,
    *,
    hidden: int = 50,
    classes: int = 10,
    seed: int = 0,
    chunk_size: int | None = None,
    book_elements: int | None = None,
    repeats: int = 3,
) -> NumgradResult:
    """Time funcnet's numerical gradient against the book's loop on ``x (B, D)``,
    labels ``t (B,)``, in float64.

    Args:
        chunk_size: ``numerical_gradient``'s chunk (None: its default).
        book_elements: time only the first this many elements of the book's loop and
            extrapolate linearly to all (None: the whole loop, timed once).
        repeats: funcnet's call is timed best of this many (after compiling).
    """
    rss_before = peak_rss_bytes()
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        t32 = jnp.asarray(t, jnp.int32)
        params = nets.init_two_layer_net(
            jax.random.key(seed), x.shape[1], hidden, classes, dtype=jnp.float64
        )
        net = nets.two_layer_net("relu")
        size = sum(int(np.size(v)) for v in params.values())
        # Reported chunk: the one used for the largest leaf (W1) when left to the default.
        largest = max(int(np.size(v)) for v in params.values())
        chunk = default_chunk_size(largest) if chunk_size is None else chunk_size

        def numgrad(p, xb, tb):
            return gradient.numerical_gradient(
                lambda q: net.loss(q, xb, tb), p, chunk_size=chunk_size
            )

        t0 = time.perf_counter()
        compiled = jax.jit(numgrad).lower(params, x64, t32).compile()
        compile_seconds = time.perf_counter() - t0
        best = float("inf")
        for _ in range(max(repeats, 1)):
            t0 = time.perf_counter()
            g_num = jax.block_until_ready(compiled(params, x64, t32))
            best = min(best, time.perf_counter() - t0)
        g_back = jax.jit(net.gradient)(params, x64, t32)
        g_num = {k: np.asarray(v) for k, v in g_num.items()}
        g_back = {k: np.asarray(v) for k, v in g_back.items()}
    peak = peak_rss_bytes()

    np_params = {k: np.array(v, np.float64) for k, v in params_numpy(params).items()}
    xb, tb = np.asarray(x, np.float64), np.asarray(t, np.int64)
    t0 = time.perf_counter()
    g_book, done = book_two_layer_gradient(np_params, xb, tb, book_elements)
    book_timed = time.perf_counter() - t0
    extrapolated = done < size
    book_seconds = book_timed * size / max(done, 1)
    mask = _first_elements_mask(g_book, done)
    return NumgradResult(
        num_params=size,
        batch=int(x.shape[0]),
        chunk_size=chunk,
        funcnet_seconds=best,
        funcnet_compile_seconds=compile_seconds,
        book_seconds=book_seconds,
        book_elements_timed=done,
        book_extrapolated=extrapolated,
        speedup=book_seconds / best,
        max_abs_diff_funcnet=_max_abs_diff(g_num, g_back, None),
        max_abs_diff_book=_max_abs_diff(g_book, g_back, mask) if done else None,
        peak_rss_bytes=peak,
        peak_rss_before_bytes=rss_before,
    )


def params_numpy(params: dict[str, Any]) -> dict[str, np.ndarray]:
    """The params as NumPy arrays (host copies)."""
    return {k: np.asarray(v) for k, v in params.items()}


def _first_elements_mask(grads: dict[str, np.ndarray], done: int) -> dict[str, np.ndarray]:
    """Which elements the book's loop computed: the first ``done`` in W1, b1, W2, b2 order."""
    mask, left = {}, done
    for k in NP_PARAM_KEYS:
        m = np.zeros(grads[k].size, bool)
        m[: max(min(left, m.size), 0)] = True
        mask[k] = m.reshape(grads[k].shape)
        left -= m.size
    return mask
