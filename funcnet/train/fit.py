"""``fit``: the book's training loop as a short host loop over compiled segments."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from funcnet import _checks, distributed, parallel
from funcnet._compile import compile_program
from funcnet.train import checkpoint
from funcnet.train.loop import (
    chunk_limit,
    device_counts,
    equal_run,
    host_all_finite,
    host_first_nonfinite,
    iters_per_epoch,
    make_chunk,
    make_model_evaluate,
    segments,
    step_counts,
)
from funcnet.train.step import (
    LossFn,
    Model,
    PredictFn,
    PyTree,
    TrainState,
    init_state,
    make_train_step,
    stateful,
)


class Progress(NamedTuple):
    """What :func:`fit` passes to its callback after each segment of the loop."""

    iteration: int  # iterations done so far
    iters: int  # iterations in the whole run
    epoch: int | None  # index of the per-epoch evaluation just made; None for the final one
    train_acc: float  # accuracy on the whole training set of the params after `iteration`
    test_acc: float
    loss: float  # the minibatch loss of the last iteration
    final: bool  # True for the last call: the accuracies are those of the returned params


class History(NamedTuple):
    """What :func:`fit` recorded (NumPy arrays on the host).

    ``loss[i]`` is the minibatch loss of iteration ``i`` (at the params before its
    update); ``train_acc[e]``/``test_acc[e]`` were measured after the update of iteration
    ``eval_iteration[e]`` (the book's per-epoch curve). ``final_train_acc`` and
    ``final_test_acc`` are those of the params :func:`fit` returns (or, after a
    divergence, of ``TrainingDiverged.params``), which have seen ``final_iteration``
    iterations. ``wall_time`` covers the whole call (data placement and compilation
    included), ``compile_time`` the compilation alone.
    """

    loss: np.ndarray  # (iterations done,)
    eval_iteration: np.ndarray  # (E,) int
    train_acc: np.ndarray  # (E,)
    test_acc: np.ndarray  # (E,)
    final_iteration: int
    final_train_acc: float
    final_test_acc: float
    wall_time: float
    compile_time: float

    @property
    def iterations(self) -> int:
        """Number of iterations run."""
        return int(self.loss.shape[0])


class TrainingDiverged(RuntimeError):
    """A non-finite loss or weight appeared; training stopped at the end of that segment.

    Attributes:
        iteration: the first iteration whose loss was not finite (or, if every loss was
            finite, the last iteration of the segment after which a weight was not).
        params: the last finite params, those of the previous evaluation point
            (``params_iteration`` iterations done; the initial params if 0).
        params_iteration: how many iterations ``params`` had seen.
        history: everything recorded up to the end of the diverged segment, its
            non-finite losses included; its ``final_*`` fields describe ``params``.
    """

    def __init__(
        self,
        iteration: int,
        params: PyTree,
        params_iteration: int,
        history: History,
        what: str = "the loss was",
    ):
        self.iteration = iteration
        self.params = params
        self.params_iteration = params_iteration
        self.history = history
        super().__init__(
            f"training diverged: {what} not finite at iteration {iteration}; stopped at "
            f"the end of that epoch ({history.iterations} iterations run). The last finite "
            f"params (after {params_iteration} iterations) and the history are on this "
            "exception (.params, .history); try a smaller learning rate."
        )


# --------------------------------------------------------------------------------------
# Boundary checks: once per call, in Python, before anything is compiled


def _check_data(name: str, data: Sequence[Any]) -> tuple[Any, Any]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"fit: {name} must be a pair (x, t), got {type(data).__name__}")
    x, t = data
    if np.ndim(x) < 1 or np.shape(t)[:1] != np.shape(x)[:1]:
        raise ValueError(
            f"fit: {name} x and t must hold the same number of examples; "
            f"x {np.shape(x)}, t {np.shape(t)}"
        )
    if np.shape(x)[0] == 0:
        raise ValueError(f"fit: {name} holds no examples")
    if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
        raise ValueError(
            f"fit: {name} x must be floating point, got {jnp.result_type(x)}; "
            "e.g. load images with normalize=True"
        )
    _checks.check_finite("fit", f"{name} x", x)
    return x, t


def _check_labels(name: str, t: Any, classes: int) -> None:
    if np.ndim(t) == 1:
        _checks.check_labels(f"fit: {name}", t, classes)
    elif np.shape(t)[1:] != (classes,):
        raise ValueError(
            f"fit: {name} must be integer labels (N,) or one-hot (N, {classes}), got {np.shape(t)}"
        )
    elif not jnp.issubdtype(jnp.result_type(t), jnp.floating):
        raise ValueError(
            f"fit: one-hot {name} must be floating point, got {jnp.result_type(t)} "
            f"{np.shape(t)}; pass t.astype(np.float32), or integer labels (N,)"
        )
    else:
        _checks.check_finite("fit", name, t)


def _check_callables(**functions: Any) -> None:
    for name, f in functions.items():
        if not callable(f):
            raise TypeError(f"fit: {name} must be a function, got {type(f).__name__} {f!r}")


def _check_optimizer(optimizer: Any) -> None:
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            "fit: optimizer must be an optax.GradientTransformation (e.g. optax.sgd(0.1) or "
            f"funcnet.optimizers.adam()), got {type(optimizer).__name__} {optimizer!r}"
        )


def _num_classes(model: Model, state: TrainState, x: Any) -> int:
    """The class count C from the shape of ``predict(params, x)``, computed abstractly on
    the caller's real x (errors then name the caller's shapes)."""
    spec = jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))
    scores = jax.eval_shape(model.predict, state.params, state.model_state, spec)
    if not hasattr(scores, "shape") or len(scores.shape) != 2 or scores.shape[0] != spec.shape[0]:
        got = getattr(scores, "shape", type(scores).__name__)
        raise ValueError(
            f"fit: predict_fn(params, x) must return scores (N, C); for x_train "
            f"{spec.shape} it returns {got}"
        )
    return int(scores.shape[1])


def _check_loss(model: Model, state: TrainState, x: Any, t: Any, batch_size: int) -> Any:
    """The loss's dtype, checking that it is a float scalar."""
    batch = [
        jax.ShapeDtypeStruct((batch_size, *np.shape(a)[1:]), jnp.result_type(a)) for a in (x, t)
    ]
    loss, _ = jax.eval_shape(model.loss, state.params, state.model_state, *batch, state.key)
    if loss.shape != () or not jnp.issubdtype(loss.dtype, jnp.floating):
        raise ValueError(f"fit: loss_fn must return a float scalar, got {loss.dtype} {loss.shape}")
    return loss.dtype


# --------------------------------------------------------------------------------------
# fit


def fit(
    params: PyTree,
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    *,
    key: jax.Array,
    loss_fn: LossFn | Callable[..., Any],
    predict_fn: PredictFn | Callable[..., Any],
    iters: int = 10000,
    batch_size: int = 100,
    lr: float = 0.1,
    optimizer: optax.GradientTransformation | None = None,
    epochs: int | None = None,
    eval_every: int | None = None,
    eval_sample: int | None = None,
    eval_batch_size: int | None = None,
    model_state: PyTree = None,
    fused: bool = True,
    callback: Callable[[Progress], None] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_settings: dict[str, Any] | None = None,
    mesh: Mesh | None = None,
    process_data: str = "whole",
) -> tuple[PyTree, History]:
    """Train with minibatches following the book's ch4/ch5 loop; returns the final params
    and a :class:`History`.

    Each iteration draws ``batch_size`` training examples with replacement (iteration
    ``i`` uses ``jax.random.fold_in(key, i)``), takes ``jax.grad(loss_fn)`` and applies
    the optimizer (``optax.sgd(lr)`` by default: ``params -= lr * grad``). Train and test
    accuracy (argmax of ``predict_fn``) are measured after iterations 0, ``eval_every``,
    2·``eval_every``, ... (default: one epoch, :func:`iters_per_epoch`): the book's
    curve. The params returned are also evaluated after the last iteration
    (``history.final_*``), so every reported figure describes them.

    With ``fused=True`` the iterations between two evaluations and the evaluation run as
    one compiled program (compiled once for the whole run), one call running as many
    such segments as take about 0.1 s (one per call with ``checkpoint_path`` or several
    processes); ``fused=False`` calls one compiled step per iteration. Both give the
    same params for the same key.

    Args:
        params: initial weights (a pytree of finite float arrays).
        train, test: ``(x, t)`` pairs, ``x (N, ...)`` finite floats, ``t`` integer labels
            ``(N,)`` or one-hot ``(N, C)``. Placed on the default device once.
        key: ``jax.random`` key for the minibatches (and dropout masks).
        loss_fn: ``loss_fn(params, x_batch, t_batch) -> scalar``; with ``model_state``,
            ``loss_fn(params, model_state, x, t, key) -> (scalar, model_state)``.
        predict_fn: ``predict_fn(params, x) -> scores (N, C)``; with ``model_state``,
            ``predict_fn(params, model_state, x)`` (inference mode).
        iters, batch_size, lr: the book's ``iters_num``, ``batch_size``, ``learning_rate``.
        optimizer: an optax transformation to use instead of ``optax.sgd(lr)``.
        epochs: train this many epochs instead of ``iters`` iterations (the book's
            ``Trainer``: ``epochs · iters_per_epoch`` iterations).
        eval_every: iterations between evaluations (default: one epoch).
        eval_sample: evaluate each epoch on the first ``eval_sample`` examples of the
            train and test sets only (the book's ``evaluate_sample_num_per_epoch``); the
            final accuracies are still taken over the whole sets.
        eval_batch_size: evaluate in chunks of this many examples (default: all at once).
        model_state: the net's own state (e.g. batch-norm statistics), threaded through
            the loop; the final one is ``history``-independent and returned in the
            params' place as ``(params, model_state)``.
        fused: fuse the steps between evaluations into one call (default) or not.
        callback: called with a :class:`Progress` after each segment (several at once
            when one call ran several segments).
        checkpoint_path: a file to save the whole training state (params, optimizer and
            model state, key, iteration, history) to after every epoch, atomically; if it
            exists when ``fit`` starts, the run resumes from it and ends with exactly the
            params an uninterrupted run would have. Interrupted (Ctrl-C, SIGKILL), the
            same call resumes. A checkpoint of another run is refused
            (:class:`~funcnet.train.checkpoint.CheckpointMismatch` naming what differs):
            its fingerprint covers the key, the initial params, model and optimizer
            state, the train and test data (SHA-256 of their bytes: about 0.25 s for
            60,000 x 784 float32 images), the schedule, the batch size, ``lr`` when the
            default SGD is used, what ``loss_fn`` (with its gradient), ``predict_fn``
            and the optimizer's ``init``/``update`` compute (their jaxprs at the run's
            shapes, with the numbers and arrays they close over, such as a learning
            rate inside ``optimizer``: :func:`~funcnet.train.checkpoint.program_hash`),
            and ``checkpoint_settings``. The path is checked before anything else (its
            folder exists and is writable, it is not a folder): a bad one fails at once,
            not at the first save.
        checkpoint_settings: further settings the checkpoint must match, by name
            (``{"seed": 0, "dataset": "mnist"}``: values compared by ``repr``), e.g. a
            seed or a data set's name that ``fit`` cannot tell from its arguments. Only
            with ``checkpoint_path``.
        mesh: a 1-D device mesh (:func:`funcnet.parallel.make_mesh`) to train
            data-parallel: data and params replicated, each minibatch split across the
            devices, gradients averaged by XLA. ``batch_size`` must be a multiple of the
            device count. Same params as one device, up to rounding. In a run of several
            processes (:func:`funcnet.distributed.initialize`) the default is
            :func:`funcnet.distributed.global_mesh`: every device of every process.
        process_data: with several processes (every process makes the same call),
            ``"whole"`` (default): every process passes the whole train and test sets;
            ``"shard"``: every process passes only its own rows (as many in each), the
            data set being the processes' rows one after another in process order; each
            device then holds its part only. Both train exactly like one process given
            the whole data. Only process 0 writes ``checkpoint_path``; a resumed run
            reads process 0's file in every process.

    Returns:
        ``(params, history)`` (``((params, model_state), history)`` with ``model_state``);
        in a run of several processes every process gets the same params, as ordinary
        arrays on its own default device.

    Raises:
        TypeError, ValueError: bad settings or data (checked before anything compiles).
        TrainingDiverged: a loss or weight became non-finite; carries the last finite
            params and the history (see the exception).
    """
    t_begin = time.perf_counter()
    settings = _check_settings(params, key, iters, batch_size, lr, eval_every, eval_batch_size)
    iters, batch_size, eval_every, eval_batch_size = settings
    for name, value in (("epochs", epochs), ("eval_sample", eval_sample)):
        if value is not None:
            _checks.check_int("fit", name, value)
    _check_callables(loss_fn=loss_fn, predict_fn=predict_fn)
    if model_state is not None:  # running statistics: integer state would truncate them
        _checks.check_model_state("fit", model_state)
    if checkpoint_path is not None and distributed.is_main():  # the process that writes it
        _checks.check_output_file("fit", "checkpoint_path", checkpoint_path)
    sgd_lr = lr if optimizer is None else None  # recorded in a checkpoint's fingerprint
    if optimizer is None:
        optimizer = optax.sgd(lr)
    _check_optimizer(optimizer)
    x_train, t_train, x_test, t_test = _check_train_test(train, test)
    model = stateful(loss_fn, predict_fn) if model_state is None else Model(loss_fn, predict_fn)
    state = init_state(params, optimizer, key, model_state)
    classes = _num_classes(model, state, x_train)
    _check_labels("train labels", t_train, classes)
    _check_labels("test labels", t_test, classes)
    loss_dtype = _check_loss(model, state, x_train, t_train, batch_size)

    mesh = distributed.default_mesh(mesh)
    spans = _check_process_data(process_data, mesh)
    shard = spans and process_data == "shard"
    n_train = distributed.process_rows(len(x_train), "train") if shard else len(x_train)
    epoch = iters_per_epoch(n_train, batch_size)
    plan = segments(iters if epochs is None else epochs * epoch, eval_every or epoch)
    hashes = None  # traced once, only where the processes' check or a checkpoint needs them
    if spans or checkpoint_path is not None or checkpoint_settings is not None:
        hashes = _program_hashes(model, optimizer, state, x_train, t_train, batch_size)
    if spans:  # processes that made different calls would wait for each other forever
        # ... or train different models: the programs' hashes hold the loss, the prediction
        # and the optimizer with what they close over (a learning rate among them)
        call = (plan, batch_size, eval_sample, process_data, checkpoint_path is not None)
        distributed.check_same_call("fit", repr((*call, sorted(hashes.items()))), state)
    if checkpoint_path is not None or checkpoint_settings is not None:
        run_settings = {"plan": plan, "batch_size": batch_size, "eval_sample": eval_sample}
        if sgd_lr is not None:
            run_settings["lr"] = sgd_lr
        data_named = {"train data": (x_train, t_train), "test data": (x_test, t_test)}
        if shard:  # the processes' rows, each hashed where it is
            data_named = distributed.process_hashes(data_named, checkpoint.content_hash)
        tag = _fingerprint(
            state, run_settings, checkpoint_settings, checkpoint_path, data_named, hashes
        )
        read_path = distributed.main_file(checkpoint_path) if spans else checkpoint_path
        checkpoint.check_checkpoint(read_path, tag)  # before anything compiles
    state, data, batch_sharding = _place(
        state, (x_train, t_train, x_test, t_test), mesh, batch_size, shard
    )

    t_compile = time.perf_counter()
    train_step = make_train_step(model, optimizer, batch_size, batch_sharding)
    # the labels were checked above, on the host: the program need not test each row
    evaluate = full_evaluate = make_model_evaluate(model, eval_batch_size, labels_checked=True)
    if eval_sample is not None:
        evaluate = _on_sample(full_evaluate, eval_sample)
        full_evaluate = compile_program(full_evaluate, state, data)
    max_steps = max(n for _, n, _ in plan)
    limit = 1  # one segment per call where each must be seen: checkpoints, processes
    if fused and checkpoint_path is None and not spans:
        limit = chunk_limit(max_steps, sum(n == max_steps for _, n, _ in plan))
    compile_ = _compile_fused if fused else _compile_unfused
    run = compile_(train_step, evaluate, max_steps, limit, loss_dtype, state, data)
    compile_time = time.perf_counter() - t_compile

    final_evaluate = full_evaluate if eval_sample is not None else None
    loop = _Loop(run, data, plan, callback, t_begin, compile_time, final_evaluate, limit)
    if checkpoint_path is not None:
        place = partial(distributed.put, sharding=parallel.replicated(mesh)) if spans else None
        state = loop.resume(checkpoint_path, tag, state, read_path, place)
    with distributed.naming_lost_processes("fit"), distributed.localizing_diverged():
        final, history = loop(state)
    result = final.params if model_state is None else (final.params, final.model_state)
    return distributed.localize(result), history


def _check_process_data(process_data: Any, mesh: Mesh | None) -> bool:
    """Check ``process_data``; True when ``mesh`` spans several processes."""
    if process_data not in distributed.PROCESS_DATA:
        raise ValueError(
            f"fit: process_data must be one of {distributed.PROCESS_DATA}, got {process_data!r}"
        )
    return distributed.spans_processes(mesh)


def _program_hashes(model: Model, optimizer, state: TrainState, x, t, batch_size: int) -> dict:
    """What the run computes, hashed by :func:`checkpoint.program_hash` (traced at the
    run's shapes, nothing compiled) for its checkpoint's fingerprint and the processes'
    same-call check: the loss and its gradient at a minibatch, the prediction, the
    optimizer's init and update."""
    batch = [
        jax.ShapeDtypeStruct((batch_size, *np.shape(a)[1:]), jnp.result_type(a)) for a in (x, t)
    ]

    def optimizer_program(params, opt_state):
        return optimizer.init(params), optimizer.update(params, opt_state, params)

    p, ms = state.params, state.model_state
    programs = {
        "loss_fn": (jax.value_and_grad(model.loss, has_aux=True), (p, ms, *batch, state.key)),
        "predict_fn": (model.predict, (p, ms, batch[0])),
        "optimizer": (optimizer_program, (p, state.opt_state)),
    }
    return {name: checkpoint.program_hash(f, *args) for name, (f, args) in programs.items()}


def _fingerprint(state, run_settings, extra, path, data, programs) -> checkpoint.Fingerprint:
    """The checkpoint fingerprint of this run (host data hashed before it is placed)."""
    if path is None:
        raise ValueError("fit: checkpoint_settings given without checkpoint_path")
    if extra is not None:
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            raise TypeError(
                "fit: checkpoint_settings must be a dict with str keys, got "
                f"{type(extra).__name__} {extra!r}"
            )
        own = set(checkpoint.fingerprint_entries()) | set(run_settings)
        clash = sorted(k for k in own & set(extra) if repr(extra[k]) != repr(run_settings.get(k)))
        if clash:
            raise ValueError(
                f"fit: checkpoint_settings may not set {clash}, which fit fills in itself "
                "(a setting of the same name must have fit's own value)"
            )
        run_settings = {**run_settings, **extra}
    return checkpoint.fingerprint(state, run_settings, data, programs)


def _check_train_test(train, test) -> tuple[Any, Any, Any, Any]:
    x_train, t_train = _check_data("train", train)
    x_test, t_test = _check_data("test", test)
    if np.shape(x_test)[1:] != np.shape(x_train)[1:]:
        raise ValueError(
            f"fit: train and test examples differ in shape; x_train {np.shape(x_train)}, "
            f"x_test {np.shape(x_test)}"
        )
    return x_train, t_train, x_test, t_test


def _place(state: TrainState, data: tuple, mesh: Mesh | None, batch_size: int, shard: bool):
    """Put the state and the data on the device(s) once: ``(state, data, batch_sharding)``;
    with a mesh both are replicated (with ``shard``, the data split along the mesh, each
    process giving its rows) and each minibatch will be split across it."""
    if mesh is None:
        state, data = jax.device_put((state, data))
        return state, data, None
    parallel.check_mesh(mesh, batch_size)
    if distributed.spans_processes(mesh):
        state = distributed.put(state, parallel.replicated(mesh))
        if shard:
            data = distributed.put_process_rows(data, mesh)
        else:
            data = distributed.put(data, parallel.replicated(mesh))
        return state, data, parallel.batch_sharded(mesh)
    state, data = jax.device_put((state, data), parallel.replicated(mesh))
    return state, data, parallel.batch_sharded(mesh)


def _check_settings(params, key, iters, batch_size, lr, eval_every, eval_batch_size):
    _checks.check_params("fit", params)
    _checks.check_finite("fit", "params", params, hint="the initial params must be finite")
    _checks.check_key("fit", key)
    iters = _checks.check_int("fit", "iters", iters)
    batch_size = _checks.check_int("fit", "batch_size", batch_size)
    _checks.check_float("fit", "lr", lr, positive=True)
    if eval_every is not None:
        eval_every = _checks.check_int("fit", "eval_every", eval_every)
    if eval_batch_size is not None:
        eval_batch_size = _checks.check_int("fit", "eval_batch_size", eval_batch_size)
    return iters, batch_size, eval_every, eval_batch_size


def _on_sample(evaluate: Callable, n: int) -> Callable:
    """``evaluate`` on the first ``n`` examples of the train and test sets."""

    def evaluate_sample(state, data):
        x_train, t_train, x_test, t_test = data
        return evaluate(state, (x_train[:n], t_train[:n], x_test[:n], t_test[:n]))

    return evaluate_sample


def _compile_fused(train_step, evaluate, max_steps, limit, loss_dtype, state, data) -> Callable:
    """The loop's program, compiled ahead of time (no retracing later): ``run(state, data,
    num_steps, num_segments) -> (state, losses (limit, max_steps), accuracies (limit,
    2))`` runs ``num_segments <= limit`` segments (:func:`make_chunk`); the host checks
    the losses and params (:meth:`_Loop.finish`)."""
    chunk = make_chunk(train_step, evaluate, max_steps, limit, loss_dtype)
    count = jax.ShapeDtypeStruct((), jnp.int32)  # no array made: nothing eager to compile
    return compile_program(chunk, state, data, count, count)


def _compile_unfused(train_step, evaluate, max_steps, limit, loss_dtype, state, data) -> Callable:
    """One compiled step per iteration and a compiled evaluation, driven from Python, one
    segment per call (``max_steps`` and ``limit``, 1, unused: the same signature as
    :func:`_compile_fused`)."""
    del max_steps, limit
    step = compile_program(train_step, state, data[0], data[1])
    accuracies = compile_program(evaluate, state, data)

    def run(state, data, num_steps, num_segments):
        del num_segments
        losses = []
        for _ in range(int(num_steps)):
            state, loss = step(state, data[0], data[1])
            losses.append(loss)
        losses = jnp.stack(losses) if losses else jnp.zeros((0,), loss_dtype)
        return state, losses[None], accuracies(state, data)[None]

    return run


def _params_on_host(params: PyTree) -> Any:
    """The params' leaves as NumPy arrays, read once per segment: ``np.asarray`` where a
    whole array is in this process (about 3x faster than :func:`distributed.to_host` for
    the ch5 net: 135 vs 435 us per segment, best of 7 under load), else gathered by
    :func:`distributed.to_host`."""
    leaves = jax.tree_util.tree_leaves(params)
    if all(isinstance(x, jax.Array) and x.is_fully_addressable for x in leaves):
        return [np.asarray(x) for x in leaves]
    return distributed.to_host(params)


class _Loop:
    """The host side of fit: runs the segments, records, checks, reports, checkpoints.

    Segment k+1 is dispatched before the host waits for segment k's figures, so the
    device never idles while Python records them. A divergence found in segment k
    discards k+1; the state after k-1 (evaluated) is kept. ``final_evaluate(state,
    data)``, if given, measures the final accuracies (when segments evaluate a sample).
    """

    def __init__(self, run, data, plan, callback, t_begin, compile_time, final_evaluate, limit):
        self.run, self.data, self.plan, self.callback = run, data, plan, callback
        self.t_begin, self.compile_time = t_begin, compile_time
        self.final_evaluate = final_evaluate
        self.chunk_limit = limit
        self.num_steps = step_counts(plan)
        self.num_segments = device_counts(range(1, limit + 1))
        self.iters = plan[-1][0] + plan[-1][1]
        self.record = checkpoint.Record([], [], [], None)
        self.good: tuple[TrainState, int] | None = None  # last finite state, its iteration
        self.saving: tuple[str, str] | None = None  # (path, fingerprint)

    def history(self) -> History:
        r = self.record
        return History(
            loss=np.concatenate(r.losses) if r.losses else np.zeros((0,), np.float32),
            eval_iteration=np.asarray(r.eval_iters, np.int64),
            train_acc=np.asarray([a[0] for a in r.accs], np.float32),
            test_acc=np.asarray([a[1] for a in r.accs], np.float32),
            final_iteration=self.good[1],
            final_train_acc=float(r.last_acc[0]),
            final_test_acc=float(r.last_acc[1]),
            wall_time=time.perf_counter() - self.t_begin,
            compile_time=self.compile_time,
        )

    def _accuracies_of(self, state: TrainState) -> np.ndarray:
        if self.final_evaluate is not None:
            return np.asarray(distributed.to_host(self.final_evaluate(state, self.data)))
        accuracies = self.run(state, self.data, jnp.int32(0), self.num_segments[1])[2]
        return np.asarray(distributed.to_host(accuracies))[0]

    def finish(self, chunk, state, outputs) -> None:
        """Record the ``chunk``'s segments (``(start, num, per_epoch)`` triples) from what
        its call returned: ``state`` after the last one, ``outputs = (losses (K,
        max_steps), accuracies (K, 2))``, one row per segment.

        The divergence checks run here, on the host: the losses are fetched anyway, and
        the params of a small net are checked in microseconds (in the compiled program the
        same checks cost ten more XLA kernels to compile). Only the chunk's last params
        come back; a weight that became NaN or inf earlier in it is still so at its end (an
        optimizer adds its update to the weight). When anything in a chunk of several
        segments is not finite, the chunk is run again from its start one segment at a
        time (:meth:`_replay`), the same program giving the same numbers, so the error
        names the same iteration and params as a run of one segment per call.
        """
        losses, accuracies = distributed.to_host(outputs)
        if len(chunk) > 1 and not self._finite(chunk, losses, state):
            self._replay(chunk)
        for k, (start, num, per_epoch) in enumerate(chunk):
            last = k == len(chunk) - 1
            self._finish_segment(
                start, num, per_epoch, state if last else None, losses[k], accuracies[k]
            )

    @staticmethod
    def _finite(chunk, losses: np.ndarray, state: TrainState) -> bool:
        rows = (host_first_nonfinite(losses[k, :num]) < 0 for k, (_, num, _) in enumerate(chunk))
        return all(rows) and host_all_finite(_params_on_host(state.params))

    def _replay(self, chunk) -> None:
        """Run ``chunk`` again from the last recorded state, one segment per call, and
        finish each: the first that is not finite raises :class:`TrainingDiverged`."""
        state = self.good[0]
        for segment in chunk:
            state, *outputs = self.run(
                state, self.data, self.num_steps[segment[1]], self.num_segments[1]
            )
            self.finish([segment], state, outputs)
        raise RuntimeError(
            f"fit: iterations {chunk[0][0]}..{chunk[-1][0] + chunk[-1][1] - 1} gave a "
            "non-finite value when run together but not one segment at a time; the same "
            "compiled program should give the same numbers (please report this)"
        )

    def _finish_segment(self, start, num, per_epoch, seg_state, seg_losses, acc) -> None:
        """Record one segment; ``seg_state`` (its params) is None inside a chunk, whose
        last state was checked (:meth:`finish`) and is the one kept."""
        seg_losses = np.asarray(seg_losses[:num])
        first_bad = host_first_nonfinite(seg_losses)
        finite = seg_state is None or host_all_finite(_params_on_host(seg_state.params))
        r = self.record
        r.losses.append(seg_losses)
        if per_epoch:
            r.eval_iters.append(start + num - 1)
            r.accs.append((float(acc[0]), float(acc[1])))
        if first_bad >= 0 or not finite:
            bad = start + int(first_bad) if first_bad >= 0 else start + num - 1
            what = "the loss was" if first_bad >= 0 else "a weight was (every loss finite)"
            if r.last_acc is None or self.final_evaluate is not None:
                self.record = r._replace(last_acc=self._accuracies_of(self.good[0]))
            good_state, good_iteration = self.good
            raise TrainingDiverged(bad, good_state.params, good_iteration, self.history(), what)
        final = start + num == self.iters
        if final and self.final_evaluate is not None:
            acc = self._accuracies_of(seg_state)
        self.record = r._replace(last_acc=np.asarray(acc))
        if seg_state is not None:
            self.good = (seg_state, start + num)
            if self.saving is not None and distributed.is_main():  # one process writes
                host_state = distributed.localize(seg_state)
                checkpoint.save_checkpoint(self.saving[0], host_state, self.record, self.saving[1])
        if self.callback is not None:
            self.callback(
                Progress(
                    iteration=start + num,
                    iters=self.iters,
                    epoch=len(r.accs) - 1 if per_epoch else None,
                    train_acc=float(acc[0]),
                    test_acc=float(acc[1]),
                    loss=float(seg_losses[num - 1]),
                    final=final,
                )
            )

    def resume(self, path, tag, state0: TrainState, read_path=None, place=None) -> TrainState:
        """Continue from the checkpoint at ``path`` if there is one; save there from now on.

        ``read_path``: where to read it instead (process 0's file copied to another
        process); ``place``: puts the loaded state where ``state0`` is (a global mesh).
        """
        self.saving = (str(path), tag)
        read_path = path if read_path is None else read_path
        if not Path(read_path).exists():
            return state0
        state, self.record = checkpoint.load_checkpoint(read_path, state0, tag)
        if place is not None:
            state = place(state)
        self.good = (state, int(state.step))
        return state

    def __call__(self, state: TrainState) -> tuple[TrainState, History]:
        if self.good is None:
            self.good = (state, 0)
        done = int(self.good[1])
        plan = [segment for segment in self.plan if segment[0] >= done]  # after a resume
        sizer, pending, i = _ChunkSizer(self.chunk_limit), None, 0
        while i < len(plan):
            chunk = plan[i : i + equal_run(plan, i, sizer.size(plan[i][1]))]
            state, losses, accuracies = self.run(
                state, self.data, self.num_steps[chunk[0][1]], self.num_segments[len(chunk)]
            )
            if pending is not None:
                self.finish(*pending)
                sizer.observe(sum(num for _, num, _ in pending[0]))
            pending = (chunk, state, (losses, accuracies))
            i += len(chunk)
        if pending is not None:
            self.finish(*pending)
        return self.good[0], self.history()


class _ChunkSizer:
    """How many segments the next call of fit's program runs: as many as take about
    :attr:`TARGET_S` seconds, from the time between the host's last two fetches (the
    calls are queued one ahead, so that is the device's time for the last chunk); one
    until two fetches were timed. Progress reaches the callback at least that often."""

    TARGET_S = 0.1

    def __init__(self, limit: int):
        self.limit, self.step_s, self.last = limit, None, None

    def size(self, num_steps: int) -> int:
        if self.limit == 1 or self.step_s is None:
            return 1
        return max(1, min(self.limit, int(self.TARGET_S / (self.step_s * num_steps))))

    def observe(self, steps: int) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.step_s = max(now - self.last, 1e-9) / max(steps, 1)
        self.last = now
