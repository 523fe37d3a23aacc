"""The loop's schedule and its compiled pieces: the book's evaluation points, the fused
segment (steps, then one evaluation, in one program) and the unfused step; the
divergence checks, on the device or on the host."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import nets
from funcnet.train.step import Model, PyTree, TrainState


def iters_per_epoch(n: int, batch_size: int) -> int:
    """Iterations between two evaluations: the book's ``max(n / batch_size, 1)``.

    The book evaluates when ``i % (n / batch_size) == 0``; in exact arithmetic that holds
    for the multiples of ``n / gcd(n, batch_size)``, which is returned (``n / batch_size``
    whenever that is a whole number, as in all the book's settings; 1 when
    ``batch_size >= n``).
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"iters_per_epoch: need n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    return 1 if batch_size >= n else n // math.gcd(n, batch_size)


def segments(iters: int, every: int) -> list[tuple[int, int, bool]]:
    """The loop cut at the evaluations: ``(start, num_steps, per_epoch)`` triples.

    The book's evaluations follow iterations ``0, every, 2·every, ... < iters`` (its
    ``i % iter_per_epoch == 0``), so the segments are ``[0]``, ``[1, every]``, ... and a
    last one (``per_epoch`` False) when ``iters - 1`` is not a multiple of ``every``: it
    ends in the evaluation of the final params, which the book does not make.
    """
    if iters < 1 or every < 1:
        raise ValueError(f"segments: need iters >= 1 and every >= 1, got {iters}, {every}")
    out, start = [(0, 1, True)], 1
    while start < iters:
        num = min(every, iters - start)
        out.append((start, num, num == every))
        start += num
    return out


def step_counts(plan: list[tuple[int, int, bool]]) -> dict[int, jax.Array]:
    """The segments' step counts as int32 device scalars, made once before the loop.

    A compiled segment takes its count as an array. Made inside the loop, ``jnp.int32(n)``
    is an eager XLA op that runs on the threads the previous segment keeps busy, so the
    host stalls before it can queue the next segment: in the ch5 loop (251 segments) a
    call took 1.1 ms of the host's time with ``jnp.int32(n)`` made in it, against 0.04 ms
    with the scalars made beforehand.
    """
    return device_counts({num for _, num, _ in plan})


def device_counts(values) -> dict[int, jax.Array]:
    """``{v: int32 device scalar}`` for the ints ``values``, put on the device in one call
    (``jax.device_put``: a copy, not an XLA computation, so nothing is compiled either)."""
    values = sorted(values)
    return dict(zip(values, jax.device_put([np.int32(v) for v in values]), strict=True))


def all_finite(tree: PyTree) -> jax.Array:
    """True when every value of every leaf is finite (a bool scalar)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def first_nonfinite(losses: jax.Array, num_steps: jax.Array) -> jax.Array:
    """Index of the first non-finite loss among the first ``num_steps``, else -1."""
    bad = ~jnp.isfinite(losses) & (jnp.arange(losses.shape[0]) < num_steps)
    return jnp.where(jnp.any(bad), jnp.argmax(bad), -1).astype(jnp.int32)


def host_first_nonfinite(losses: np.ndarray) -> int:
    """:func:`first_nonfinite` of losses already on the host (NumPy ``(num_steps,)``): the
    index of the first NaN or inf, else -1. Compiles nothing."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses)))
    return int(bad[0]) if bad.size else -1


def host_all_finite(tree: PyTree) -> bool:
    """:func:`all_finite` of a pytree of host (NumPy) arrays: True when no leaf holds NaN
    or inf. Compiles nothing."""
    return all(bool(np.isfinite(leaf).all()) for leaf in jax.tree_util.tree_leaves(tree))


def make_evaluate(
    predict_fn: Callable, batch_size: int | None = None, *, labels_checked: bool = False
) -> Callable:
    """``evaluate(params, x_train, t_train, x_test, t_test) -> [train_acc, test_acc]``
    (float32 ``(2,)``), each over the whole set (in chunks of ``batch_size`` if given);
    ``labels_checked``: the labels were checked on the host (see :func:`nets.accuracy`)."""
    accuracy = partial(nets.accuracy, batch_size=batch_size, labels_checked=labels_checked)

    def evaluate(params, x_train, t_train, x_test, t_test):
        return jnp.stack(
            [
                accuracy(predict_fn, params, x_train, t_train),
                accuracy(predict_fn, params, x_test, t_test),
            ]
        )

    return evaluate


def make_model_evaluate(
    model: Model, batch_size: int | None = None, *, labels_checked: bool = False
) -> Callable:
    """``evaluate(state, data) -> [train_acc, test_acc]`` in inference mode, where
    ``data = (x_train, t_train, x_test, t_test)``."""

    def evaluate(state: TrainState, data):
        def predict(params, x):
            return model.predict(params, state.model_state, x)

        return make_evaluate(predict, batch_size, labels_checked=labels_checked)(
            state.params, *data
        )

    return evaluate


def make_steps_and_evaluate(
    train_step: Callable, evaluate: Callable, max_steps: int, loss_dtype: Any
) -> Callable:
    """One segment without the divergence checks (:func:`make_chunk` of one segment):
    ``segment(state, data, num_steps) -> (state, losses (max_steps,), accuracies (2,))``
    runs ``num_steps <= max_steps`` iterations (a traced value: one compilation serves
    every segment length, 0 included), then evaluates the params it ends with; losses
    past ``num_steps`` are NaN. ``data = (x_train, t_train, x_test, t_test)``.

    The caller checks the losses and the params it gets back on the host
    (:func:`host_first_nonfinite`, :func:`host_all_finite`): it fetches the losses anyway,
    and the same checks inside the program cost a tenth of its compilation (ten more XLA
    kernels: 67 instead of 57 for the ch5 net) for work the host does in microseconds.
    """
    chunk = make_chunk(train_step, evaluate, max_steps, 1, loss_dtype)

    def segment(state: TrainState, data, num_steps):
        state, losses, accuracies = chunk(state, data, num_steps, 1)
        return state, losses[0], accuracies[0]

    return segment


def equal_run(plan: list[tuple[int, int, bool]], i: int, limit: int) -> int:
    """How many segments from ``plan[i]`` on (at most ``limit``) have ``plan[i]``'s length
    and kind: one call of :func:`make_chunk`'s program runs them."""
    n = 1
    while n < limit and i + n < len(plan) and plan[i + n][1:] == plan[i][1:]:
        n += 1
    return n


def chunk_limit(max_steps: int, segments_of_that_length: int) -> int:
    """How many segments one call of :func:`make_chunk`'s program may run: at most 64,
    at most as many as the plan has of its longest length, and few enough that the
    losses it returns, ``(chunk, max_steps)``, hold at most 65,536 values (a run of one
    long segment keeps one row, as a single segment would)."""
    return max(1, min(64, segments_of_that_length, 65_536 // max(max_steps, 1)))


def make_chunk(
    train_step: Callable, evaluate: Callable, max_steps: int, max_segments: int, loss_dtype: Any
) -> Callable:
    """Several consecutive segments in one compiled call, as :func:`~funcnet.train.fit`
    compiles its loop: ``chunk(state, data, num_steps, num_segments) -> (state, losses
    (max_segments, max_steps), accuracies (max_segments, 2))`` runs ``num_segments <=
    max_segments`` segments of ``num_steps <= max_steps`` iterations each, every one
    ending in its evaluation (``evaluate(state, data)``). Both counts are traced
    values: one compilation serves every chunk, and a chunk of one segment computes
    exactly what that segment alone does. Rows (and losses) past the counts are NaN.

    One call per segment costs the host a dispatch and a fetch of its figures; on two
    cores that host time is taken from the program's own threads (the ch5 loop: 251
    segments of 13 ms). ``fit`` runs as many segments per call as take about 0.1 s.
    """

    def chunk(state: TrainState, data, num_steps, num_segments):
        x, t = data[0], data[1]

        def segment(k, carry):
            def step(j, carry):
                state, losses = carry
                state, loss = train_step(state, x, t)
                return state, losses.at[k, j].set(loss)

            state, losses, accuracies = carry
            state, losses = jax.lax.fori_loop(0, num_steps, step, (state, losses))
            return state, losses, accuracies.at[k].set(evaluate(state, data))

        losses = jnp.full((max_segments, max_steps), jnp.nan, loss_dtype)
        accuracies = jnp.full((max_segments, 2), jnp.nan, jnp.float32)
        return jax.lax.fori_loop(0, num_segments, segment, (state, losses, accuracies))

    return chunk


def make_segment(
    train_step: Callable, evaluate: Callable, max_steps: int, loss_dtype: Any
) -> Callable:
    """The fused segment with its divergence checks on the device, one compiled program:
    ``segment(state, data, num_steps)`` runs ``num_steps <= max_steps`` iterations (a
    traced value: one compilation serves every segment length, 0 included) and then
    evaluates the params it ends with (vmapped over many runs by
    :func:`~funcnet.train.fit_many`).

    ``data = (x_train, t_train, x_test, t_test)``. Returns ``(state, losses (max_steps,),
    first_nonfinite, params_finite, accuracies (2,))``; losses past ``num_steps`` are NaN.
    """
    steps_and_evaluate = make_steps_and_evaluate(train_step, evaluate, max_steps, loss_dtype)

    def segment(state: TrainState, data, num_steps):
        state, losses, accuracies = steps_and_evaluate(state, data, num_steps)
        return (
            state,
            losses,
            first_nonfinite(losses, num_steps),
            all_finite(state.params),
            accuracies,
        )

    return segment
