"""MultiLayerNetExtend: batch norm and dropout inside the net, state and keys explicit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import nets, train
from funcnet.nets import multi_layer_extend as mle


def _data(n, d=12, c=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    t = (x[:, :3].sum(axis=1) > 0).astype(np.int32) + 2 * (x[:, 3] > 0)
    return x, t


def _max_mean_abs(a, b):
    return max(float(jnp.mean(jnp.abs(a[k] - b[k]))) for k in a)


def test_without_batch_norm_and_dropout_it_is_the_multi_layer_net():
    x, t = _data(6)
    params, state = mle.init_multi_layer_net_extend(jax.random.key(0), 12, [7, 5], 4)
    assert state == {} and set(params) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    same = nets.init_multi_layer_net(jax.random.key(0), 12, [7, 5], 4)
    for k in same:
        np.testing.assert_array_equal(params[k], same[k])
    x32 = x.astype(np.float32)
    loss, new_state = mle.multi_layer_net_extend_loss(
        params, state, x32, t, jax.random.key(1), weight_decay_lambda=0.1
    )
    expected = nets.multi_layer_net_loss(params, x32, t, weight_decay_lambda=0.1)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert new_state == {}


@pytest.mark.parametrize(("batch", "use_dropout"), [(1, False), (5, True)])
def test_gradient_check_with_batch_norm_three_ways(batch, use_dropout):
    with jax.enable_x64(True):
        x, t = _data(batch)
        params, state = mle.init_multi_layer_net_extend(
            jax.random.key(2), 12, [9, 7], 4, use_batchnorm=True, dtype=jnp.float64
        )
        # gamma and beta away from 1 and 0 so that their gradients are not special
        params = {k: v + 0.1 * (k[0] in "gb") for k, v in params.items()}
        net = mle.multi_layer_net_extend(
            weight_decay_lambda=0.05, use_dropout=use_dropout, dropout_ratio=0.3
        )
        key = jax.random.key(3)

        # Compiled whole, the three gradients in one program: eagerly, every primitive and
        # every leaf's perturbation loop compiles on its own (~3x the CPU time).
        def three_ways(*args):
            return net.gradient(*args), net.autodiff_gradient(*args), net.numerical_gradient(*args)

        backprop, autodiff, numerical = jax.jit(three_ways)(params, state, x, t, key)
        assert set(backprop) == set(params) and {"gamma1", "beta2"} <= set(backprop)
        assert _max_mean_abs(backprop, autodiff) < 1e-12
        assert _max_mean_abs(backprop, numerical) < 1e-9
        if batch == 1:  # one image: xc = 0, W1 cannot change the loss; only decay is left
            np.testing.assert_allclose(backprop["W1"], 0.05 * params["W1"], rtol=1e-12)


def test_fit_trains_a_batch_norm_dropout_net_and_threads_its_state():
    x, t = _data(300)
    x = x.astype(np.float32)
    params, state = mle.init_multi_layer_net_extend(
        jax.random.key(0), 12, [16, 16], 4, use_batchnorm=True
    )
    net = mle.multi_layer_net_extend(use_dropout=True, dropout_ratio=0.1)
    options = dict(
        key=jax.random.key(1),
        loss_fn=net.loss,
        predict_fn=net.predict,
        iters=120,
        batch_size=30,
        optimizer=optax.sgd(0.1),
        model_state=state,
    )
    (trained, final_state), history = train.fit(
        params, (x[:240], t[:240]), (x[240:], t[240:]), **options
    )
    assert history.final_test_acc > 0.6 and history.loss[-20:].mean() < history.loss[:5].mean()
    mean1 = np.asarray(final_state["BatchNorm1"]["running_mean"])
    assert np.any(mean1 != 0) and np.all(np.isfinite(mean1))
    (again, again_state), _ = train.fit(params, (x[:240], t[:240]), (x[240:], t[240:]), **options)
    for k in trained:  # same key: same minibatches and masks, same result
        np.testing.assert_array_equal(trained[k], again[k])
    np.testing.assert_array_equal(
        again_state["BatchNorm1"]["running_var"], final_state["BatchNorm1"]["running_var"]
    )


def test_params_and_state_must_belong_together():
    x, t = _data(4)
    params, state = mle.init_multi_layer_net_extend(
        jax.random.key(0), 12, [5], 4, use_batchnorm=True
    )
    with pytest.raises(ValueError, match=r"model_state must hold \['BatchNorm1'\]"):
        mle.multi_layer_net_extend_loss(params, {}, x, t, jax.random.key(0))
    with pytest.raises(ValueError, match="dropout_ratio must lie in"):
        mle.multi_layer_net_extend_predict(params, state, x, dropout_ratio=1.5)


def test_dropout_without_a_key_is_a_clear_error():
    # It reached JAX's "unexpected PRNG key type <class 'NoneType'>".
    x, t = _data(4)
    params, state = mle.init_multi_layer_net_extend(jax.random.key(0), 12, [5], 4)
    net = mle.multi_layer_net_extend(use_dropout=True)
    message = r"^multi_layer_net_extend(_loss)?: key must be a jax.random key.*use_dropout=True"
    for fn in (net.loss, net.gradient, net.autodiff_gradient):
        with pytest.raises(TypeError, match=message):
            fn(params, state, x, t, None)
    # Without dropout no key is needed.
    loss, _ = mle.multi_layer_net_extend().loss(params, state, x, t, None)
    assert np.isfinite(float(loss))
