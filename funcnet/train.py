"""Training (ch4-5): minibatch sampling, the jitted optax SGD step and ``fit``, the book's
loop with the steps between evaluations fused into one compiled call.

The book's loop (ch4 and ch5 ``train_neuralnet.py``)::

    iter_per_epoch = max(train_size / batch_size, 1)
    for i in range(iters_num):
        batch_mask = np.random.choice(train_size, batch_size)
        grad = network.gradient(x_batch, t_batch)          # then params -= lr * grad
        train_loss_list.append(network.loss(x_batch, t_batch))
        if i % iter_per_epoch == 0:                        # i = 0, epoch, 2·epoch, ...
            train_acc_list.append(network.accuracy(x_train, t_train))
            test_acc_list.append(network.accuracy(x_test, t_test))

:func:`fit` runs the same protocol: one minibatch (drawn with replacement) and one update
per iteration, a loss recorded every iteration, train and test accuracy after the update
of iterations 0, epoch, 2·epoch, ... . One deliberate difference: the recorded loss of
iteration ``i`` is the minibatch loss at the params *before* its update (it comes free with
the gradient from ``jax.value_and_grad``); the book recomputes it after the update, which
costs one more forward pass per step. The curves differ by one step.

The steps between two evaluations run as one
``lax.fori_loop`` inside one compiled call, and each evaluation is one compiled call over
the whole train and test sets, so Python touches the device once per epoch. The pieces
(data placement, batch sampling, the update, the evaluation) are small functions that a
multi-device version can swap (batch sharded over a mesh, params replicated).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from funcnet import nets, parallel
from funcnet._checks import check_labels

PyTree = Any
LossFn = Callable[[PyTree, jax.Array, jax.Array], jax.Array]
PredictFn = Callable[[PyTree, jax.Array], jax.Array]
Step = Callable[[PyTree, Any, jax.Array, jax.Array], tuple[PyTree, Any, jax.Array]]


# --------------------------------------------------------------------------------------
# Building blocks


def sample_batch(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """``batch_size`` indices in ``[0, n)`` drawn uniformly *with* replacement, like the
    book's ``np.random.choice(n, batch_size)``. Returns int32 ``(batch_size,)``."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"sample_batch: need n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    return jax.random.randint(key, (batch_size,), 0, n, dtype=jnp.int32)


def sgd_update(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Step:
    """The un-jitted update ``(params, opt_state, x, t) -> (params, opt_state, loss)``.

    ``loss`` is the minibatch loss at the params *before* the update (it comes with the
    gradient from ``jax.value_and_grad``). :func:`make_sgd_step` jits it; :func:`fit` runs
    it inside its fused loop.
    """

    def update(params, opt_state, x, t):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return update


def make_sgd_step(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Step:
    """A jitted training step ``step(params, opt_state, x, t) -> (params, opt_state, loss)``.

    The gradient is ``jax.grad(loss_fn)``: for a net built from :mod:`funcnet.layers` that
    runs the hand-written backward rules. ``optax.sgd(lr)`` gives the book's update
    ``params -= lr * grad``; initialise its state with ``optimizer.init(params)``.

    Args:
        loss_fn: ``loss_fn(params, x, t) -> scalar``.
        optimizer: any optax gradient transformation.
    """
    return jax.jit(sgd_update(loss_fn, optimizer))


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
    """The loop cut at the evaluations: ``(start, num_steps, evaluate_after)`` triples.

    Evaluations follow iterations ``0, every, 2·every, ... < iters`` (the book's
    ``i % iter_per_epoch == 0``), so the segments are ``[0]``, ``[1, every]``, ... and a
    last one without evaluation when ``iters - 1`` is not a multiple of ``every``.
    """
    if iters < 1 or every < 1:
        raise ValueError(f"segments: need iters >= 1 and every >= 1, got {iters}, {every}")
    out, start = [(0, 1, True)], 1
    while start < iters:
        num = min(every, iters - start)
        out.append((start, num, num == every))
        start += num
    return out


def place(arrays: PyTree, sharding: Any = None) -> PyTree:
    """Put arrays on the device once (``jax.device_put``; ``sharding`` for a later mesh)."""
    return jax.device_put(arrays, sharding)


def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _first_nonfinite(losses: jax.Array, num_steps: jax.Array) -> jax.Array:
    """Index of the first non-finite loss among the first ``num_steps``, else -1."""
    bad = ~jnp.isfinite(losses) & (jnp.arange(losses.shape[0]) < num_steps)
    return jnp.where(jnp.any(bad), jnp.argmax(bad), -1).astype(jnp.int32)


def make_segment(update: Step, batch_size: int, max_steps: int, loss_dtype: Any) -> Callable:
    """The fused loop: ``segment(params, opt_state, x, t, key, start, num_steps)`` runs
    iterations ``start .. start + num_steps - 1`` (``num_steps <= max_steps``, a traced
    value, so one compilation serves every segment length) and returns
    ``(params, opt_state, losses (max_steps,), first_nonfinite, params_finite)``.

    Iteration ``i`` samples its minibatch with ``fold_in(key, i)``, so the result does not
    depend on how the loop is cut into segments.
    """

    def segment(params, opt_state, x, t, key, start, num_steps):
        n = x.shape[0]

        def body(j, carry):
            params, opt_state, losses = carry
            # Sampled inside the loop: drawing all of a segment's indices up front with a
            # vmap runs no faster and takes ~0.35 s longer to compile (2 CPU cores).
            idx = sample_batch(jax.random.fold_in(key, start + j), n, batch_size)
            params, opt_state, loss = update(params, opt_state, x[idx], t[idx])
            return params, opt_state, losses.at[j].set(loss)

        losses = jnp.full((max_steps,), jnp.nan, loss_dtype)
        params, opt_state, losses = jax.lax.fori_loop(
            0, num_steps, body, (params, opt_state, losses)
        )
        return params, opt_state, losses, _first_nonfinite(losses, num_steps), _all_finite(params)

    return segment


def make_step(update: Step, batch_size: int) -> Callable:
    """One iteration as its own call, ``step(params, opt_state, x, t, key, i)``: the
    unfused counterpart of :func:`make_segment` (same sampling, same update)."""

    def step(params, opt_state, x, t, key, i):
        idx = sample_batch(jax.random.fold_in(key, i), x.shape[0], batch_size)
        return update(params, opt_state, x[idx], t[idx])

    return step


def make_evaluate(predict_fn: PredictFn, batch_size: int | None = None) -> Callable:
    """``evaluate(params, x_train, t_train, x_test, t_test) -> [train_acc, test_acc]``
    (float32 ``(2,)``), each over the whole set (in chunks of ``batch_size`` if given)."""

    def evaluate(params, x_train, t_train, x_test, t_test):
        return jnp.stack(
            [
                nets.accuracy(predict_fn, params, x_train, t_train, batch_size=batch_size),
                nets.accuracy(predict_fn, params, x_test, t_test, batch_size=batch_size),
            ]
        )

    return evaluate


# --------------------------------------------------------------------------------------
# fit


class Progress(NamedTuple):
    """What :func:`fit` passes to its callback after each segment of the loop."""

    iteration: int  # iterations done so far
    iters: int  # iterations in the whole run
    epoch: int | None  # index of the evaluation just made; None after the last partial one
    train_acc: float | None  # accuracy on the whole training set (None: no evaluation)
    test_acc: float | None
    loss: float  # the minibatch loss of the last iteration


class History(NamedTuple):
    """What :func:`fit` recorded (NumPy arrays on the host).

    ``loss[i]`` is the minibatch loss of iteration ``i`` (at the params before its
    update); ``train_acc[e]``/``test_acc[e]`` were measured after the update of iteration
    ``eval_iteration[e]``. ``wall_time`` covers the whole call (data placement and
    compilation included), ``compile_time`` the compilation alone.
    """

    loss: np.ndarray  # (iterations done,)
    eval_iteration: np.ndarray  # (E,) int
    train_acc: np.ndarray  # (E,)
    test_acc: np.ndarray  # (E,)
    wall_time: float
    compile_time: float

    @property
    def iterations(self) -> int:
        """Number of iterations run."""
        return int(self.loss.shape[0])


class TrainingDiverged(RuntimeError):
    """A non-finite loss or weight appeared; training stopped at the end of that epoch.

    Attributes:
        iteration: the first iteration whose loss was not finite (or, if every loss was
            finite, the last iteration of the epoch after which a weight was not).
        params: the last finite params, those of the previous evaluation point
            (``params_iteration`` iterations done; the initial params if 0).
        params_iteration: how many iterations ``params`` had seen.
        history: everything recorded up to the end of the diverged epoch, its non-finite
            losses included.
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
    return x, t


def fit(
    params: PyTree,
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    *,
    key: jax.Array,
    loss_fn: LossFn,
    predict_fn: PredictFn,
    iters: int = 10000,
    batch_size: int = 100,
    lr: float = 0.1,
    optimizer: optax.GradientTransformation | None = None,
    eval_every: int | None = None,
    eval_batch_size: int | None = None,
    fused: bool = True,
    callback: Callable[[Progress], None] | None = None,
    mesh: Mesh | None = None,
) -> tuple[PyTree, History]:
    """Train with minibatch SGD following the book's ch4/ch5 loop; returns the final
    params and a :class:`History`.

    Each iteration draws ``batch_size`` training examples with replacement (iteration
    ``i`` uses ``jax.random.fold_in(key, i)``), takes ``jax.grad(loss_fn)`` and applies
    the optimizer (``optax.sgd(lr)`` by default: ``params -= lr * grad``). Train and test
    accuracy (argmax of ``predict_fn``) are measured after iterations 0, ``eval_every``,
    2·``eval_every``, ... (default: one epoch, :func:`iters_per_epoch`).

    With ``fused=True`` the iterations between two evaluations run in one compiled
    ``fori_loop``; ``fused=False`` calls one compiled step per iteration. Both give the
    same params for the same key.

    Args:
        params: initial weights (any pytree of float arrays).
        train, test: ``(x, t)`` pairs, ``x (N, ...)``, ``t`` integer labels ``(N,)`` or
            one-hot ``(N, C)``. Placed on the default device once.
        key: ``jax.random`` key for the minibatches.
        loss_fn: ``loss_fn(params, x_batch, t_batch) -> scalar``.
        predict_fn: ``predict_fn(params, x) -> scores (N, C)`` for the accuracies.
        iters, batch_size, lr: the book's ``iters_num``, ``batch_size``, ``learning_rate``.
        optimizer: an optax transformation to use instead of ``optax.sgd(lr)``.
        eval_every: iterations between evaluations (default: one epoch).
        eval_batch_size: evaluate in chunks of this many examples (default: all at once).
        fused: fuse the steps between evaluations into one call (default) or not.
        callback: called with a :class:`Progress` after each segment (each evaluation,
            and once after a final partial epoch), e.g. to print or drive a progress bar.
        mesh: a 1-D device mesh (:func:`funcnet.parallel.make_mesh`) to train
            data-parallel: data and params replicated on every device, each minibatch
            split across them, gradients averaged by XLA. ``batch_size`` must be a
            multiple of the device count. Same params as one device, up to rounding.

    Returns:
        ``(params, history)``.

    Raises:
        ValueError: bad settings or data shapes.
        TrainingDiverged: a loss or weight became non-finite; carries the last finite
            params and the history (see the exception).
    """
    t_begin = time.perf_counter()
    x_train, t_train = _check_data("train", train)
    x_test, t_test = _check_data("test", test)
    n = int(np.shape(x_train)[0])
    for name, value in (("iters", iters), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"fit: {name} must be a positive integer, got {value!r}")
    if eval_every is not None and (not isinstance(eval_every, (int, np.integer)) or eval_every < 1):
        raise ValueError(f"fit: eval_every must be a positive integer or None, got {eval_every!r}")
    if np.shape(x_test)[1:] != np.shape(x_train)[1:]:
        raise ValueError(
            f"fit: train and test examples differ in shape; x_train {np.shape(x_train)}, "
            f"x_test {np.shape(x_test)}"
        )
    every = eval_every or iters_per_epoch(n, batch_size)
    plan = segments(iters, every)
    max_steps = max(num for _, num, _ in plan)

    # Boundary checks: scores' class count against the labels (values checked once, here).
    scores = jax.eval_shape(
        predict_fn,
        params,
        jax.ShapeDtypeStruct((1, *np.shape(x_train)[1:]), jnp.result_type(x_train)),
    )
    classes = scores.shape[-1]
    for name, t in (("train labels", t_train), ("test labels", t_test)):
        if np.ndim(t) == 1:
            check_labels(f"fit: {name}", t, classes)
        elif np.shape(t)[1:] != (classes,):
            raise ValueError(
                f"fit: {name} must be integer labels (N,) or one-hot (N, {classes}), "
                f"got {np.shape(t)}"
            )
        elif not jnp.issubdtype(jnp.result_type(t), jnp.floating):
            raise ValueError(
                f"fit: one-hot {name} must be floating point, got {jnp.result_type(t)} "
                f"{np.shape(t)}; pass t.astype(np.float32), or integer labels (N,)"
            )

    optimizer = optax.sgd(lr) if optimizer is None else optimizer
    sharding = None
    if mesh is not None:
        parallel.check_batch_size(mesh, batch_size)
        sharding = parallel.replicated(mesh)
        loss_fn = parallel.shard_batch(loss_fn, mesh)
    params, x_train, t_train, x_test, t_test = place(
        (params, x_train, t_train, x_test, t_test), sharding
    )
    opt_state = optimizer.init(params)
    update = sgd_update(loss_fn, optimizer)
    batch = [jax.ShapeDtypeStruct((batch_size, *a.shape[1:]), a.dtype) for a in (x_train, t_train)]
    loss_dtype = jax.eval_shape(update, params, opt_state, *batch)[2].dtype

    # Compile everything once, up front (ahead of time: no retracing later).
    t_compile = time.perf_counter()
    evaluate = (
        jax.jit(make_evaluate(predict_fn, eval_batch_size))
        .lower(params, x_train, t_train, x_test, t_test)
        .compile()
    )
    start0, steps0 = jnp.int32(0), jnp.int32(1)
    if fused:
        run = (
            jax.jit(make_segment(update, batch_size, max_steps, loss_dtype))
            .lower(params, opt_state, x_train, t_train, key, start0, steps0)
            .compile()
        )
    else:
        step = (
            jax.jit(make_step(update, batch_size))
            .lower(params, opt_state, x_train, t_train, key, start0)
            .compile()
        )

        def run(params, opt_state, x, t, key, start, num_steps):
            losses = []
            for i in range(int(start), int(start) + int(num_steps)):
                params, opt_state, loss = step(params, opt_state, x, t, key, jnp.int32(i))
                losses.append(loss)
            losses = jnp.stack(losses)
            return (
                params,
                opt_state,
                losses,
                _first_nonfinite(losses, num_steps),
                _all_finite(params),
            )

    compile_time = time.perf_counter() - t_compile

    losses, eval_iters, accs = [], [], []
    good_params, good_iteration = params, 0

    def history() -> History:
        return History(
            loss=np.concatenate(losses) if losses else np.zeros((0,), loss_dtype),
            eval_iteration=np.asarray(eval_iters, np.int64),
            train_acc=np.asarray([a[0] for a in accs], np.float32),
            test_acc=np.asarray([a[1] for a in accs], np.float32),
            wall_time=time.perf_counter() - t_begin,
            compile_time=compile_time,
        )

    def finish(start, num, do_eval, seg_params, outputs):
        """Record one segment's results (the host waits here), check them, report."""
        nonlocal good_params, good_iteration
        seg_losses, first_bad, finite, acc = jax.device_get(outputs)
        losses.append(np.asarray(seg_losses[:num]))
        if do_eval:
            eval_iters.append(start + num - 1)
            accs.append((float(acc[0]), float(acc[1])))
        if first_bad >= 0 or not finite:
            if first_bad >= 0:
                bad, what = start + int(first_bad), "the loss was"
            else:
                bad, what = start + num - 1, "a weight was (every loss finite)"
            raise TrainingDiverged(bad, good_params, good_iteration, history(), what)
        good_params, good_iteration = seg_params, start + num
        if callback is not None:
            callback(
                Progress(
                    iteration=start + num,
                    iters=iters,
                    epoch=len(accs) - 1 if do_eval else None,
                    train_acc=accs[-1][0] if do_eval else None,
                    test_acc=accs[-1][1] if do_eval else None,
                    loss=float(seg_losses[num - 1]),
                )
            )

    # Segment k+1 is dispatched before the host waits for segment k's figures, so the
    # device never idles while Python records, checks and reports them. A divergence
    # found in segment k discards k+1 (the params of k-1 are kept, nothing is lost).
    pending = None
    for start, num, do_eval in plan:
        params, opt_state, seg_losses, first_bad, finite = run(
            params, opt_state, x_train, t_train, key, jnp.int32(start), jnp.int32(num)
        )
        acc = evaluate(params, x_train, t_train, x_test, t_test) if do_eval else None
        if pending is not None:
            finish(*pending)
        pending = (start, num, do_eval, params, (seg_losses, first_bad, finite, acc))
    finish(*pending)
    return params, history()
