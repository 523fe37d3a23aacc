"""Accuracy of any network's predictions (shared by every net).

Non-finite values never become a number silently: concrete (eager) ``x`` or ``params``
holding NaN or inf raise ``ValueError``; under ``jit``, where values are unknown, a row
whose scores are not all finite, or whose label lies outside ``[0, C)``, makes
:func:`accuracy` NaN (and is never counted correct by :func:`count_correct`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._checks import (
    check_finite,
    check_int,
    check_label_dtype,
    check_labels,
    check_targets,
    host_view,
    is_concrete,
)

Params = dict[str, jax.Array]
"""A network's weights: a dict of arrays with the book's keys (``W1``, ``b1``, ...)."""

PredictFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
GradFn = Callable[[Any, jax.Array, jax.Array], Any]


# --------------------------------------------------------------------------------------
# Accuracy (shared by every network)


def check_t(name: str, num_scores: int, classes: int, t) -> None:
    """Labels ``(N,)`` or one-hot rows ``(N, C)`` for N scores of C classes: shapes and dtype
    always; values (label range, probability rows) when concrete, on the caller's values
    (before any dtype narrowing)."""
    view = host_view(t)
    if view.ndim == 2:
        if view.shape != (num_scores, classes):
            raise ValueError(
                f"{name}: one-hot t must have shape ({num_scores}, {classes}) to match the "
                f"scores, got t {view.shape}"
            )
        check_targets(name, view)
        return
    if view.ndim == 1:
        check_label_dtype(name, view)
    if view.shape != (num_scores,):
        raise ValueError(
            f"{name}: t must be labels ({num_scores},) or one-hot ({num_scores}, {classes}) "
            f"for {num_scores} examples, got t {view.shape}"
        )
    check_labels(name, view, classes)  # integer dtype; values in range when concrete


def _labels(name: str, num_scores: int, classes: int, t) -> jax.Array:
    """Integer labels (N,) from labels (N,) or one-hot rows (N, C), after :func:`check_t`.

    One-hot rows become their argmax, or -1 (an invalid label) for a row that is not all
    finite (possible only under ``jit``).
    """
    check_t(name, num_scores, classes, t)
    rows = jnp.asarray(host_view(t))
    if rows.ndim == 1:
        return rows
    finite = jnp.all(jnp.isfinite(rows), axis=1)
    return jnp.where(finite, jnp.argmax(rows, axis=1), -1)


def _tally(
    scores: jax.Array, t: jax.Array, labels_checked: bool = False
) -> tuple[jax.Array, jax.Array]:
    """``(correct, bad)`` for ``scores (N, C)``: int32 count of rows whose argmax is the
    label, and int32 count of rows that cannot be judged (a non-finite score, or a label
    outside [0, C) unless ``labels_checked``); a bad row is never correct."""
    if scores.ndim != 2:
        raise ValueError(f"accuracy: predict must return scores (N, C), got {scores.shape}")
    labels = _labels("accuracy", scores.shape[0], scores.shape[1], t)
    ok = jnp.all(jnp.isfinite(scores), axis=1)
    if not labels_checked:
        ok = ok & (labels >= 0) & (labels < scores.shape[1])
    hit = ok & (jnp.argmax(scores, axis=1) == labels)
    return jnp.sum(hit, dtype=jnp.int32), jnp.sum(~ok, dtype=jnp.int32)


def _check_inputs(params: Any, x, t, batch_size) -> tuple[jax.Array, Any, int | None]:
    """Shapes always; NaN/inf in concrete x or params raise. Returns (x, t view, batch)."""
    x, t = jnp.asarray(x), host_view(t)
    n = x.shape[0] if x.ndim else 0
    if t.shape[:1] != (n,):
        raise ValueError(f"accuracy: x has {n} examples but t has shape {t.shape}")
    if n == 0:
        raise ValueError(f"accuracy: x holds no examples, x {x.shape}")
    if batch_size is not None:
        batch_size = check_int("accuracy", "batch_size", batch_size)
    check_finite("accuracy", "x", x)
    check_finite("accuracy", "params", params, hint="the weights are not usable")
    return x, t, batch_size


def _batched(per_rows: Callable, predict: PredictFn, params: Any, x, t, batch_size):
    """``per_rows(scores, t)`` (a tuple of scalars) summed over all examples, predicted
    ``batch_size`` at a time (the last partial batch on its own)."""
    x, t, batch_size = _check_inputs(params, x, t, batch_size)
    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return per_rows(predict(params, x), t)
    if is_concrete(t):  # the batches are traced: check the caller's labels once, here
        probe = jax.ShapeDtypeStruct((batch_size, *x.shape[1:]), x.dtype)
        scores = jax.eval_shape(predict, params, probe)
        if len(scores.shape) != 2:
            raise ValueError(f"accuracy: predict must return scores (N, C), got {scores.shape}")
        check_t("accuracy", n, scores.shape[1], t)
    t = jnp.asarray(t)
    full = n // batch_size * batch_size
    xs = x[:full].reshape(-1, batch_size, *x.shape[1:])
    ts = t[:full].reshape(-1, batch_size, *t.shape[1:])
    per_batch = jax.lax.map(lambda xt: per_rows(predict(params, xt[0]), xt[1]), (xs, ts))
    totals = tuple(jnp.sum(p) for p in per_batch)
    if full < n:
        last = per_rows(predict(params, x[full:]), t[full:])
        totals = tuple(a + b for a, b in zip(totals, last, strict=True))
    return totals


def _count(
    predict: PredictFn, params: Any, x, t, batch_size, labels_checked: bool = False
) -> tuple[jax.Array, jax.Array]:
    """``(correct, bad)`` over all examples, ``batch_size`` at a time (see :func:`_tally`)."""
    tally = partial(_tally, labels_checked=labels_checked)
    return _batched(tally, predict, params, x, t, batch_size)


# A float32 sum of ones and zeros is exact below 2**24: the count of hits as a float.
_EXACT_FLOAT32_COUNT = 2**24


def _hits(scores: jax.Array, t: jax.Array, labels_checked: bool) -> tuple[jax.Array]:
    """``(hits,)``: float32 sum over the rows of 1 (argmax is the label), 0 (it is not) or
    NaN (a score not finite; a label outside ``[0, C)`` unless ``labels_checked``).

    The same verdicts as :func:`_tally` in one float reduction per row and one over the
    rows, where the two int32 counts took four reductions: the ch5 loop's evaluation
    compiles to eight fewer XLA fusions. ``sum(scores * 0)`` of a row is 0 when every
    score is finite and NaN otherwise (``inf * 0`` is NaN; XLA keeps float ``x * 0``).
    """
    if scores.ndim != 2:
        raise ValueError(f"accuracy: predict must return scores (N, C), got {scores.shape}")
    labels = _labels("accuracy", scores.shape[0], scores.shape[1], t)
    hit = (jnp.argmax(scores, axis=1) == labels).astype(jnp.float32)
    hit = hit + jnp.sum(scores * 0, axis=1).astype(jnp.float32)
    if not labels_checked or jnp.ndim(t) == 2:  # a one-hot row not finite becomes -1
        in_range = (labels >= 0) & (labels < scores.shape[1])
        hit = jnp.where(in_range, hit, jnp.float32(jnp.nan))
    return (jnp.sum(hit),)


def count_correct(
    predict: PredictFn,
    params: Any,
    x: jax.Array,
    t: jax.Array,
    *,
    batch_size: int | None = None,
) -> jax.Array:
    """Number of examples whose predicted class (argmax of the scores) is the label.

    Args:
        predict: ``predict(params, x) -> scores (N, C)`` (probabilities work too: the
            argmax is the same), e.g. :func:`three_layer_net_predict`.
        params: the network's weights (concrete NaN/inf raise ``ValueError``).
        x: ``(N, ...)`` examples (concrete NaN/inf raise ``ValueError``).
        t: integer labels ``(N,)`` or one-hot rows ``(N, C)``, checked on the values
            passed (range, integer dtype, probability rows) when concrete.
        batch_size: predict ``batch_size`` examples at a time (bounded memory, like the
            book's batched ch3 loop), the last partial batch on its own; ``None``
            predicts all at once. Works under ``jit``.

    Returns:
        An int32 scalar in ``[0, N]``. A row with a non-finite score (possible under
        ``jit``, or from overflow) or an out-of-range label (under ``jit``) is counted as
        not correct: a count cannot be NaN; :func:`accuracy` is NaN then.
    """
    return _count(predict, params, x, t, batch_size)[0]


def accuracy(
    predict: PredictFn,
    params: Any,
    x: jax.Array,
    t: jax.Array,
    *,
    batch_size: int | None = None,
    labels_checked: bool = False,
) -> jax.Array:
    """Fraction of examples whose predicted class is the label (the book's ``accuracy``).

    ``functools.partial(accuracy, three_layer_net_predict)`` is the book's ch3
    ``accuracy(x, t)``; :func:`two_layer_net` bundles one for ch4-5. Arguments and checks
    as for :func:`count_correct`; ``labels_checked=True`` says the caller has already
    checked, outside the compiled program, that every label lies in ``[0, C)``
    (:func:`funcnet.train.fit` does, once, on the host), and leaves the per-row range
    test of integer labels out of the program (one-hot rows keep it: a row that is not
    finite still makes the accuracy NaN).

    Returns:
        A float32 scalar in [0, 1]; NaN when any row of scores is not all finite (NaN
        data or weights under ``jit``, where they cannot be refused; scores that overflow)
        or, under ``jit`` and unless ``labels_checked``, any label is outside ``[0, C)``.
    """
    n = jnp.shape(x)[0] if jnp.ndim(x) else 0
    if n >= _EXACT_FLOAT32_COUNT:  # the float sum would round: count in int32
        correct, bad = _count(predict, params, x, t, batch_size, labels_checked)
        fraction = correct.astype(jnp.float32) / n
        return jnp.where(bad > 0, jnp.float32(jnp.nan), fraction)
    hits = partial(_hits, labels_checked=labels_checked)
    (total,) = _batched(hits, predict, params, x, t, batch_size)
    return total / jnp.float32(n)
