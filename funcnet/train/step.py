"""One training iteration as a pure function of one pytree.

Everything that changes while a net trains lives in a :class:`TrainState`: the params, the
optimizer's state, the model's own state (batch-norm statistics: an empty dict when the
net has none), the run's key and the iteration count. One iteration is
``train_step(state, x, t) -> (state, loss)``; a training run folds it over the
iterations, and ``vmap`` over a stacked state is many runs at once.

Two forms of loss are accepted. The book's: ``loss_fn(params, x, t) -> scalar``. And the
stateful form of nets with model state or randomness (batch norm, dropout):
``loss_fn(params, model_state, x, t, key) -> (scalar, model_state)`` with
``predict_fn(params, model_state, x) -> scores``. :func:`stateful` lifts the first into the
second, so the loop has one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
LossFn = Callable[[PyTree, jax.Array, jax.Array], jax.Array]
PredictFn = Callable[[PyTree, jax.Array], jax.Array]
Step = Callable[[PyTree, Any, jax.Array, jax.Array], tuple[PyTree, Any, jax.Array]]


class TrainState(NamedTuple):
    """Everything a training run changes, as one pytree (like Flax's ``TrainState``).

    Saving this one value is a checkpoint; stacking several along a new axis and
    ``vmap``-ing the step trains them all at once.
    """

    params: PyTree
    opt_state: PyTree
    model_state: PyTree  # e.g. batch-norm running statistics; {} when the net has none
    key: jax.Array  # the run's key: iteration i uses fold_in(key, i)
    step: jax.Array  # int32 scalar, iterations done


class Model(NamedTuple):
    """A net in the stateful form the loop runs.

    ``loss(params, model_state, x, t, key) -> (scalar, model_state)`` is the training-mode
    loss (``key`` for dropout); ``predict(params, model_state, x) -> scores (N, C)`` the
    inference-mode forward used for accuracy.
    """

    loss: Callable[..., tuple[jax.Array, PyTree]]
    predict: Callable[[PyTree, PyTree, jax.Array], jax.Array]


def stateful(loss_fn: LossFn, predict_fn: PredictFn) -> Model:
    """Lift the book's ``loss_fn(params, x, t)`` and ``predict_fn(params, x)`` into a
    :class:`Model` that ignores the model state and the key."""

    def loss(params, model_state, x, t, key):
        del key
        return loss_fn(params, x, t), model_state

    def predict(params, model_state, x):
        del model_state
        return predict_fn(params, x)

    return Model(loss, predict)


def sample_batch(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """``batch_size`` indices in ``[0, n)`` drawn uniformly *with* replacement, like the
    book's ``np.random.choice(n, batch_size)``. Returns int32 ``(batch_size,)``."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"sample_batch: need n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    return jax.random.randint(key, (batch_size,), 0, n, dtype=jnp.int32)


def iteration_keys(key: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The keys of iteration ``i`` of a run: ``(minibatch key, loss key)``.

    The minibatch key is ``fold_in(key, i)``, so the minibatches do not depend on how the
    loop is cut; the loss key (dropout masks) is derived from it.
    """
    batch_key = jax.random.fold_in(key, i)
    return batch_key, jax.random.fold_in(batch_key, 1)


def init_state(
    params: PyTree,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    model_state: PyTree = None,
) -> TrainState:
    """The state before the first iteration: ``optimizer.init(params)``, step 0."""
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        model_state={} if model_state is None else model_state,
        key=key,
        step=jax.device_put(np.int32(0)),  # a copy to the device: no XLA op to compile
    )


def make_train_step(
    model: Model,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    batch_sharding: Any = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, jax.Array]]:
    """``train_step(state, x, t) -> (state, loss)``: one iteration of the book's loop.

    Draws ``batch_size`` examples of ``x (N, ...)``/``t (N, ...)`` with replacement, takes
    ``jax.grad`` of ``model.loss`` (through the hand-written rules of a funcnet net) and
    applies the optimizer. ``loss`` is the minibatch loss at the params *before* the
    update. ``batch_sharding`` splits the minibatch over a device mesh (data parallel).
    """

    def train_step(state: TrainState, x: jax.Array, t: jax.Array):
        batch_key, loss_key = iteration_keys(state.key, state.step)
        idx = sample_batch(batch_key, x.shape[0], batch_size)
        xb, tb = x[idx], t[idx]
        if batch_sharding is not None:
            xb = jax.lax.with_sharding_constraint(xb, batch_sharding)
            tb = jax.lax.with_sharding_constraint(tb, batch_sharding)
        (loss, model_state), grads = jax.value_and_grad(model.loss, has_aux=True)(
            state.params, state.model_state, xb, tb, loss_key
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, model_state, state.key, state.step + 1), loss

    return train_step


def sgd_update(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Step:
    """The un-jitted update ``(params, opt_state, x, t) -> (params, opt_state, loss)`` on
    a given minibatch; ``loss`` is taken at the params before the update."""

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
    """
    return jax.jit(sgd_update(loss_fn, optimizer))
