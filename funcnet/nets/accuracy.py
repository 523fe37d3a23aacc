"""Accuracy of any network's predictions (shared by every net).

Non-finite values never become a number silently: concrete (eager) ``x`` or ``params``
holding NaN or inf raise ``ValueError``; under ``jit``, where values are unknown, a row
whose scores are not all finite, or whose label lies outside ``[0, C)``, makes
:func:`accuracy` NaN (and is never counted correct by :func:`count_correct`).
"""

from __future__ import annotations

from collections.abc import Callable
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


def _tally(scores: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(correct, bad)`` for ``scores (N, C)``: int32 count of rows whose argmax is the
    label, and int32 count of rows that cannot be judged (a non-finite score, or a label
    outside [0, C)); a bad row is never correct."""
    if scores.ndim != 2:
        raise ValueError(f"accuracy: predict must return scores (N, C), got {scores.shape}")
    labels = _labels("accuracy", scores.shape[0], scores.shape[1], t)
    ok = jnp.all(jnp.isfinite(scores), axis=1) & (labels >= 0) & (labels < scores.shape[1])
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


def _count(predict: PredictFn, params: Any, x, t, batch_size) -> tuple[jax.Array, jax.Array]:
    """``(correct, bad)`` over all examples, ``batch_size`` at a time (see :func:`_tally`)."""
    x, t, batch_size = _check_inputs(params, x, t, batch_size)
    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return _tally(predict(params, x), t)
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
    per_batch = jax.lax.map(lambda xt: _tally(predict(params, xt[0]), xt[1]), (xs, ts))
    correct, bad = jnp.sum(per_batch[0]), jnp.sum(per_batch[1])
    if full < n:
        last = _tally(predict(params, x[full:]), t[full:])
        correct, bad = correct + last[0], bad + last[1]
    return correct, bad


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
) -> jax.Array:
    """Fraction of examples whose predicted class is the label (the book's ``accuracy``).

    ``functools.partial(accuracy, three_layer_net_predict)`` is the book's ch3
    ``accuracy(x, t)``; :func:`two_layer_net` bundles one for ch4-5. Arguments and checks
    as for :func:`count_correct`.

    Returns:
        A float32 scalar in [0, 1]; NaN when any row of scores is not all finite (NaN
        data or weights under ``jit``, where they cannot be refused; scores that overflow)
        or, under ``jit``, any label is outside ``[0, C)``.
    """
    correct, bad = _count(predict, params, x, t, batch_size)
    fraction = correct.astype(jnp.float32) / jnp.shape(x)[0]
    return jnp.where(bad > 0, jnp.float32(jnp.nan), fraction)
