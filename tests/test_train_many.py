"""fit_many: R runs at once give what R separate fits give."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import nets, train

RELU = nets.two_layer_net("relu")


def _blobs(n, d=10, c=3, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(k1, (n, d))
    t = jnp.argmax(x @ jax.random.normal(k2, (d, c)), axis=1).astype(jnp.int32)
    return np.asarray(x), np.asarray(t)


X, T = _blobs(260)
TRAIN, TEST = (X[:200], T[:200]), (X[200:], T[200:])


def _init(key):
    return nets.init_two_layer_net(key, 10, 8, 3, weight_init_std=0.3)


def _decayed_loss(hp):
    def loss(params, x, t):
        decay = 0.5 * hp["lam"] * (jnp.sum(params["W1"] ** 2) + jnp.sum(params["W2"] ** 2))
        return RELU.loss(params, x, t) + decay

    return loss


def test_many_runs_with_their_own_hyperparameters_equal_separate_fits():
    # two runs (each compared with a separate fit, one compilation each): a small lr
    # without weight decay, a large one with it
    runs = 2
    init_keys = jax.random.split(jax.random.key(0), runs)
    keys = jax.random.split(jax.random.key(1), runs)
    lrs = np.array([0.05, 0.5], np.float32)
    lams = np.array([0.0, 0.1], np.float32)
    params = jax.vmap(_init)(init_keys)
    final, history = train.fit_many(
        params,
        TRAIN,
        TEST,
        keys=keys,
        loss_fn=_decayed_loss,
        predict_fn=RELU.predict,
        optimizer=lambda hp: optax.sgd(hp["lr"]),
        hparams={"lr": lrs, "lam": lams},
        iters=57,
        batch_size=16,
    )
    assert history.loss.shape == (runs, 57) and history.train_acc.shape == (runs, 3)
    assert history.eval_iteration.tolist() == [0, 25, 50]
    assert not history.diverged.any()
    for r in range(runs):
        one, h = train.fit(
            _init(init_keys[r]),
            TRAIN,
            TEST,
            key=keys[r],
            loss_fn=_decayed_loss({"lam": lams[r]}),
            predict_fn=RELU.predict,
            iters=57,
            batch_size=16,
            lr=float(lrs[r]),
        )
        for k in one:
            np.testing.assert_allclose(final[k][r], one[k], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(history.loss[r], h.loss, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(history.test_acc[r], h.test_acc, atol=1e-6)
        assert history.final_test_acc[r] == pytest.approx(h.final_test_acc)


def test_a_diverging_run_is_flagged_and_turns_nan_without_touching_the_others():
    runs = 2
    keys = jax.random.split(jax.random.key(1), runs)
    params = jax.vmap(_init)(jax.random.split(jax.random.key(0), runs))
    final, history = train.fit_many(
        params,
        TRAIN,
        TEST,
        keys=keys,
        loss_fn=lambda hp: RELU.loss,
        predict_fn=RELU.predict,
        optimizer=lambda hp: optax.sgd(hp["lr"]),
        hparams={"lr": np.array([0.1, 1e30], np.float32)},
        iters=30,
        batch_size=16,
    )
    assert history.diverged.tolist() == [False, True]
    assert np.isfinite(history.loss[0]).all() and not np.isfinite(history.loss[1]).all()
    assert np.isfinite(history.final_test_acc[0])
    assert np.isnan(history.final_test_acc[1])  # never a number made from NaN weights
    assert np.isfinite(final["W1"][0]).all()


def test_fit_many_checks_that_every_leaf_has_one_row_per_run():
    params = jax.vmap(_init)(jax.random.split(jax.random.key(0), 3))
    with pytest.raises(ValueError, match=r"leading axis of 2 runs.*params\['W1'\]"):
        train.fit_many(
            params,
            TRAIN,
            TEST,
            keys=jax.random.split(jax.random.key(1), 2),
            loss_fn=RELU.loss,
            predict_fn=RELU.predict,
            optimizer=optax.sgd(0.1),
            iters=3,
        )
    with pytest.raises(TypeError, match="keys must be a stack of jax.random keys"):
        train.fit_many(
            params,
            TRAIN,
            TEST,
            keys=0,
            loss_fn=RELU.loss,
            predict_fn=RELU.predict,
            optimizer=optax.sgd(0.1),
            iters=3,
        )
