"""Accuracy of any network's predictions (shared by every net)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._checks import check_labels

Params = dict[str, jax.Array]
"""A network's weights: a dict of arrays with the book's keys (``W1``, ``b1``, ...)."""

PredictFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
GradFn = Callable[[Any, jax.Array, jax.Array], Any]


# --------------------------------------------------------------------------------------
# Accuracy (shared by every network)


def _labels(name: str, num_scores: int, classes: int, t: jax.Array) -> jax.Array:
    """Integer labels (N,) from labels (N,) or one-hot rows (N, C); validates the shapes."""
    t = jnp.asarray(t)
    if t.ndim == 2:
        if t.shape != (num_scores, classes):
            raise ValueError(
                f"{name}: one-hot t must have shape ({num_scores}, {classes}) to match the "
                f"scores, got t {t.shape}"
            )
        return jnp.argmax(t, axis=1)
    if t.shape != (num_scores,):
        raise ValueError(
            f"{name}: t must be labels ({num_scores},) or one-hot ({num_scores}, {classes}) "
            f"for {num_scores} examples, got t {t.shape}"
        )
    check_labels(name, t, classes)  # integer dtype; values in range when concrete
    return t


def _num_correct(scores: jax.Array, t: jax.Array) -> jax.Array:
    """Rows of ``scores (N, C)`` whose argmax is the label (labels or one-hot t): int32."""
    if scores.ndim != 2:
        raise ValueError(f"accuracy: predict must return scores (N, C), got {scores.shape}")
    labels = _labels("accuracy", scores.shape[0], scores.shape[1], t)
    return jnp.sum(jnp.argmax(scores, axis=1) == labels, dtype=jnp.int32)


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
        params: the network's weights.
        x: ``(N, ...)`` examples.
        t: integer labels ``(N,)`` or one-hot rows ``(N, C)``.
        batch_size: predict ``batch_size`` examples at a time (bounded memory, like the
            book's batched ch3 loop), the last partial batch on its own; ``None``
            predicts all at once. Works under ``jit``.

    Returns:
        An int32 scalar in ``[0, N]``.
    """
    x, t = jnp.asarray(x), jnp.asarray(t)
    n = x.shape[0] if x.ndim else 0
    if t.shape[:1] != (n,):
        raise ValueError(f"accuracy: x has {n} examples but t has shape {t.shape}")
    if n == 0:
        raise ValueError(f"accuracy: x holds no examples, x {x.shape}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"accuracy: batch_size must be >= 1 or None, got {batch_size}")
    if batch_size is None or batch_size >= n:
        return _num_correct(predict(params, x), t)
    full = n // batch_size * batch_size
    xs = x[:full].reshape(-1, batch_size, *x.shape[1:])
    ts = t[:full].reshape(-1, batch_size, *t.shape[1:])
    per_batch = jax.lax.map(lambda xt: _num_correct(predict(params, xt[0]), xt[1]), (xs, ts))
    correct = jnp.sum(per_batch)
    if full < n:
        correct = correct + _num_correct(predict(params, x[full:]), t[full:])
    return correct


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
    ``accuracy(x, t)``; :func:`two_layer_net` bundles one for ch4-5. Arguments as for
    :func:`count_correct`.

    Returns:
        A float32 scalar in [0, 1].
    """
    correct = count_correct(predict, params, x, t, batch_size=batch_size)
    return correct.astype(jnp.float32) / jnp.shape(x)[0]
