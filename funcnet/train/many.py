"""Many independent training runs at once, as one compiled program.

A training run is a pure function of its :class:`~funcnet.train.step.TrainState`, so R
runs are the same function ``vmap``-ed over R stacked states: different initial params,
keys and hyperparameters (learning rate, weight decay), the same data. The book's
hyperparameter search (ch6) trains its 100 trials one after another; :func:`fit_many`
trains them together, one compiled segment for all of them, the runs sharded over the
devices when a mesh is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from funcnet import _checks, distributed, parallel
from funcnet._compile import compile_program
from funcnet.train.fit import _check_data, _check_labels, _check_loss, _num_classes
from funcnet.train.loop import (
    iters_per_epoch,
    make_model_evaluate,
    make_segment,
    segments,
    step_counts,
)
from funcnet.train.step import Model, PyTree, init_state, make_train_step, stateful

Hparams = Mapping[str, jax.Array]


class ManyHistory(NamedTuple):
    """What :func:`fit_many` recorded for its R runs (NumPy arrays on the host).

    A run whose loss or weights became non-finite keeps going (its figures turn NaN)
    and is flagged in ``diverged``; the other runs are unaffected.
    """

    loss: np.ndarray  # (R, iters) minibatch loss of every iteration of every run
    eval_iteration: np.ndarray  # (E,) iterations after which the per-epoch accuracies were taken
    train_acc: np.ndarray  # (R, E)
    test_acc: np.ndarray  # (R, E)
    final_train_acc: np.ndarray  # (R,) of the returned params (after the last iteration)
    final_test_acc: np.ndarray  # (R,)
    diverged: np.ndarray  # (R,) bool: a loss or a weight was not finite at some point
    wall_time: float
    compile_time: float


def _num_runs(keys: Any, params: PyTree, model_state: PyTree, hparams: Hparams | None) -> int:
    """R from the keys, checking that every stacked leaf has R rows."""
    if not hasattr(keys, "shape") or len(keys.shape) < 1:
        raise TypeError(
            "fit_many: keys must be a stack of jax.random keys, one per run, e.g. "
            f"jax.random.split(jax.random.key(0), R); got {type(keys).__name__}"
        )
    _checks.check_key("fit_many", keys[0], "keys[0]")
    runs = int(keys.shape[0])
    trees = {"params": params, "model_state": model_state, "hparams": hparams}
    for name, tree in trees.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if np.shape(leaf)[:1] != (runs,):
                raise ValueError(
                    f"fit_many: every leaf of {name} needs a leading axis of {runs} runs "
                    f"(one per key); {name}{jax.tree_util.keystr(path)} has shape "
                    f"{np.shape(leaf)}"
                )
    return runs


def _check_hparams(hparams: Hparams | None) -> None:
    """A dict of real (R,) arrays. Their values are checked by the functions that use them,
    where they are traced: an out-of-range or NaN value makes that run NaN (flagged in
    ``diverged``), never an error that stops the other runs."""
    if hparams is None:
        return
    if not isinstance(hparams, Mapping):
        raise TypeError(
            f"fit_many: hparams must be a dict of (R,) arrays, got {_checks.describe(hparams)}"
        )
    for name, value in hparams.items():
        dtype = _checks.host_view(value).dtype
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
            raise TypeError(
                f"fit_many: hparams[{name!r}] must hold real numbers (one per run), got "
                f"{_checks.describe(value)}"
            )


def fit_many(
    params: PyTree,
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    *,
    keys: jax.Array,
    loss_fn: Callable[..., Any],
    predict_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation | Callable[[Hparams], optax.GradientTransformation],
    hparams: Hparams | None = None,
    model_state: PyTree = None,
    iters: int,
    batch_size: int = 100,
    eval_every: int | None = None,
    eval_batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> tuple[PyTree, ManyHistory]:
    """Train R independent runs at once: :func:`~funcnet.train.fit`'s loop, ``vmap``-ed.

    Run r starts from ``params`` row r, samples its minibatches with ``keys[r]`` (exactly
    as ``fit(key=keys[r])`` would) and uses its hyperparameters ``hparams[name][r]``.

    Args:
        params: every leaf with a leading axis of R runs (e.g. ``jax.vmap(init)(keys)``).
        train: ``(x, t)`` shared by every run, as for ``fit``.
        test: ``(x, t)`` shared by every run, as for ``fit``.
        keys: ``(R,)`` jax.random keys.
        loss_fn: as for ``fit`` (the book's form, or the stateful one with
            ``model_state``). With ``hparams``, ``loss_fn(hp)`` must *return* the loss
            function of a run whose hyperparameters are ``hp`` (a dict of scalars).
        predict_fn: as for ``fit``.
        optimizer: an optax transformation, or with ``hparams`` a function ``hp ->``
            transformation (e.g. ``lambda hp: optax.sgd(hp["lr"])``).
        hparams: a dict of ``(R,)`` arrays, one value per run. Inside the runs they are
            traced, so they cannot be checked up front: with funcnet's optimizers, dropout,
            batch norm and weight decay, a value out of range or NaN (a negative lr, a
            dropout ratio of 1) turns that run's loss and params NaN and the run is flagged
            in ``history.diverged``; the other runs are unaffected.
        model_state: a stacked model state (R rows), for stateful nets.
        iters: as for ``fit``.
        batch_size: as for ``fit``.
        eval_every: as for ``fit``.
        eval_batch_size: as for ``fit``.
        mesh: a 1-D device mesh over which to split the runs (R a multiple of its size).
            In a run of several processes (:func:`funcnet.distributed.initialize`) the
            default is every device of every process
            (:func:`funcnet.distributed.global_mesh`): each process trains its devices'
            share of the runs, and every process gets all R results.

    Returns:
        ``(params, history)``: the final params stacked like the input (``(params,
        model_state)`` with ``model_state``) and a :class:`ManyHistory`.
    """
    t_begin = time.perf_counter()
    _checks.check_params("fit_many", params)
    _checks.check_finite("fit_many", "params", params, hint="the initial params must be finite")
    runs = _num_runs(keys, params, model_state, hparams)
    if model_state is not None:  # running statistics: integer state would truncate them
        _checks.check_model_state("fit_many", model_state)
    _check_hparams(hparams)
    iters = _checks.check_int("fit_many", "iters", iters)
    batch_size = _checks.check_int("fit_many", "batch_size", batch_size)
    x_train, t_train = _check_data("train", train)
    x_test, t_test = _check_data("test", test)
    stacked_state = {} if model_state is None else model_state

    def build(hp) -> tuple[Model, optax.GradientTransformation]:
        loss = loss_fn if hparams is None else loss_fn(hp)
        opt = optimizer if hparams is None else optimizer(hp)
        model = stateful(loss, predict_fn) if model_state is None else Model(loss, predict_fn)
        return model, opt

    def init_one(p, key, ms, hp):
        model, opt = build(hp)
        return init_state(p, opt, key, ms)

    hp_all = {} if hparams is None else {k: jnp.asarray(v) for k, v in hparams.items()}
    states = jax.vmap(init_one)(params, keys, stacked_state, hp_all)
    first = jax.tree_util.tree_map(lambda leaf: leaf[0], (states, hp_all))
    model0, _ = build(first[1])
    classes = _num_classes(model0, first[0], x_train)
    _check_labels("train labels", t_train, classes)
    _check_labels("test labels", t_test, classes)
    loss_dtype = _check_loss(model0, first[0], x_train, t_train, batch_size)

    plan = segments(iters, eval_every or iters_per_epoch(int(np.shape(x_train)[0]), batch_size))
    max_steps = max(num for _, num, _ in plan)

    def segment_one(state, data, num_steps, hp):
        model, opt = build(hp)
        step = make_train_step(model, opt, batch_size)
        evaluate = make_model_evaluate(model, eval_batch_size, labels_checked=True)
        return make_segment(step, evaluate, max_steps, loss_dtype)(state, data, num_steps)

    data = (x_train, t_train, x_test, t_test)
    mesh = distributed.default_mesh(mesh)
    if distributed.spans_processes(mesh):  # each process computes its devices' runs
        parallel.check_mesh(mesh, runs, "the number of runs")
        distributed.check_same_call("fit_many", repr((plan, batch_size)), (states, hp_all))
        data = distributed.put(data, parallel.replicated(mesh))
        states, hp_all = distributed.put((states, hp_all), parallel.batch_sharded(mesh))
    elif mesh is not None:
        parallel.check_mesh(mesh, runs, "the number of runs")
        data = jax.device_put(data, parallel.replicated(mesh))
        states, hp_all = jax.device_put(
            (states, hp_all), NamedSharding(mesh, PartitionSpec(parallel.BATCH_AXIS))
        )
    else:
        states, data, hp_all = jax.device_put((states, data, hp_all))
    t_compile = time.perf_counter()
    run_all = jax.vmap(segment_one, in_axes=(0, None, None, 0))
    run = compile_program(run_all, states, data, jax.ShapeDtypeStruct((), jnp.int32), hp_all)
    compile_time = time.perf_counter() - t_compile

    with distributed.naming_lost_processes("fit_many"):
        states, history = _run_many(run, states, data, hp_all, plan, t_begin, compile_time)
        result = states.params if model_state is None else (states.params, states.model_state)
        return distributed.localize(result), history


def _run_many(run, states, data, hp_all, plan, t_begin: float, compile_time: float):
    """The host loop of :func:`fit_many`: every segment for every run at once; a run that
    diverges is flagged and keeps going (its figures turn NaN), the others are untouched."""
    runs = states.step.shape[0]
    losses, per_epoch_acc, final_acc = [], [], None
    diverged = np.zeros(runs, bool)

    def record(num: int, per_epoch: bool, outputs) -> None:
        nonlocal diverged, final_acc
        # every run's figures in every process (gathered when the runs are split over them)
        seg_losses, first_bad, finite, acc = distributed.to_host(outputs)
        losses.append(np.asarray(seg_losses)[:, :num])
        diverged |= (np.asarray(first_bad) >= 0) | ~np.asarray(finite)
        if per_epoch:
            per_epoch_acc.append(np.asarray(acc))
        final_acc = np.asarray(acc)

    # Segment k+1 is queued before the host fetches segment k's figures (as in fit), so
    # the device does not wait for the host between segments.
    num_steps, pending = step_counts(plan), None
    for _, num, per_epoch in plan:
        states, *outputs = run(states, data, num_steps[num], hp_all)
        if pending is not None:
            record(*pending)
        pending = (num, per_epoch, tuple(outputs))
    record(*pending)
    eval_iteration = [start + num - 1 for start, num, per_epoch in plan if per_epoch]
    per_epoch_acc = np.stack(per_epoch_acc, axis=1)  # (R, E, 2)
    history = ManyHistory(
        loss=np.concatenate(losses, axis=1),
        eval_iteration=np.asarray(eval_iteration, np.int64),
        train_acc=per_epoch_acc[..., 0],
        test_acc=per_epoch_acc[..., 1],
        final_train_acc=final_acc[:, 0],
        final_test_acc=final_acc[:, 1],
        diverged=diverged,
        wall_time=time.perf_counter() - t_begin,
        compile_time=compile_time,
    )
    return states, history
