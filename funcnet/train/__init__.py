"""Training (ch4-5, and the loop of ch6-8): minibatch sampling, one training step as a
pure function of a :class:`TrainState`, and ``fit``, the book's loop with the steps
between evaluations fused into one compiled program.

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
of iterations 0, epoch, 2·epoch, ... — and, unlike the book, once more after the last
iteration, so that the reported final accuracy is that of the returned params. One
deliberate difference: the recorded loss of iteration ``i`` is the minibatch loss at the
params *before* its update (it comes free with the gradient from
``jax.value_and_grad``); the book recomputes it after the update, which costs one more
forward pass per step. The curves differ by one step.

The shape (see DESIGN.md): everything that changes while training is one pytree,
:class:`TrainState` (params, optimizer state, model state, key, step); one iteration is a
pure ``train_step(state, x, t) -> (state, loss)`` (:func:`make_train_step`); a compiled
segment folds it over the iterations between two evaluations and then evaluates
(:func:`make_segment`); ``fit`` is the short host loop over segments.

Modules: :mod:`~funcnet.train.step` (state, sampling, the step), :mod:`~funcnet.train.loop`
(schedule, segment, evaluation), :mod:`~funcnet.train.fit`.
"""

from funcnet.train.fit import History, Progress, TrainingDiverged, fit
from funcnet.train.loop import (
    all_finite,
    first_nonfinite,
    iters_per_epoch,
    make_evaluate,
    make_model_evaluate,
    make_segment,
    segments,
)
from funcnet.train.many import ManyHistory, fit_many
from funcnet.train.step import (
    LossFn,
    Model,
    PredictFn,
    TrainState,
    init_state,
    iteration_keys,
    make_sgd_step,
    make_train_step,
    sample_batch,
    sgd_update,
    stateful,
)

__all__ = [
    "History",
    "LossFn",
    "ManyHistory",
    "Model",
    "PredictFn",
    "Progress",
    "TrainState",
    "TrainingDiverged",
    "all_finite",
    "first_nonfinite",
    "fit",
    "fit_many",
    "init_state",
    "iteration_keys",
    "iters_per_epoch",
    "make_evaluate",
    "make_model_evaluate",
    "make_segment",
    "make_sgd_step",
    "make_train_step",
    "sample_batch",
    "segments",
    "sgd_update",
    "stateful",
]
