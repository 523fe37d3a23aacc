"""funcnet.nets.multi_layer: the book's ch6 MultiLayerNet (any depth, init, weight decay)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import nets


def _mean_abs(a, b):
    return {k: float(jnp.mean(jnp.abs(a[k] - b[k]))) for k in a}


def _problem(dtype, hidden=(6, 5, 4), n=7, d=8, c=3, std=0.6, seed=0):
    """A small deep net and batch (std large enough to keep most ReLU inputs off 0)."""
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = nets.init_multi_layer_net(k1, d, list(hidden), c, weight_init_std=std, dtype=dtype)
    x = jax.random.normal(k2, (n, d), dtype)
    t = jax.random.randint(k3, (n,), 0, c, dtype=jnp.int32)
    return params, x, t


def _min_abs_preactivation(params, x):
    """Smallest |affine output| of the hidden layers (distance of the data to ReLU's kink)."""
    h, smallest = x, math.inf
    for i in range(1, nets.num_layers(params)):
        a = h @ params[f"W{i}"] + params[f"b{i}"]
        smallest = min(smallest, float(jnp.min(jnp.abs(a))))
        h = jnp.maximum(a, 0)
    return smallest


# --------------------------------------------------------------------------------------
# Structure and initialisation


def test_params_are_w1_b1_to_wl_bl_with_zero_biases():
    params = nets.init_multi_layer_net(jax.random.key(0), 784, [100, 50, 20], 10)
    assert {k: v.shape for k, v in params.items()} == {
        "W1": (784, 100),
        "b1": (100,),
        "W2": (100, 50),
        "b2": (50,),
        "W3": (50, 20),
        "b3": (20,),
        "W4": (20, 10),
        "b4": (10,),
    }
    assert all(v.dtype == jnp.float32 for v in params.values())
    assert all(not jnp.any(params[f"b{i}"]) for i in range(1, 5))
    assert nets.num_layers(params) == 4


@pytest.mark.parametrize(
    "std, factor",
    [("he", 2.0), ("relu", 2.0), ("ReLU", 2.0), ("xavier", 1.0), ("Sigmoid", 1.0)],
)
def test_named_initialisation_scales_each_layer_by_its_fan_in(std, factor):
    key = jax.random.key(3)
    sizes = [50, 200, 30, 10]
    params = nets.init_multi_layer_net(key, 50, [200, 30], 10, weight_init_std=std)
    keys = jax.random.split(key, 3)
    for i, n_in in enumerate(sizes[:-1], start=1):
        unit = jax.random.normal(keys[i - 1], (n_in, sizes[i]))
        np.testing.assert_allclose(params[f"W{i}"], math.sqrt(factor / n_in) * unit, rtol=1e-6)


def test_numeric_std_is_used_as_given_for_every_layer():
    params = nets.init_multi_layer_net(jax.random.key(1), 400, [300], 10, weight_init_std=0.01)
    assert float(jnp.std(params["W1"])) == pytest.approx(0.01, rel=0.02)
    assert float(jnp.std(params["W2"])) == pytest.approx(0.01, rel=0.1)


def test_empty_hidden_list_is_softmax_regression(x64):
    params = nets.init_multi_layer_net(
        jax.random.key(0), 5, [], 3, weight_init_std=0.5, dtype=jnp.float64
    )
    assert set(params) == {"W1", "b1"} and params["W1"].shape == (5, 3)
    x = jax.random.normal(jax.random.key(1), (4, 5), jnp.float64)
    np.testing.assert_allclose(
        nets.multi_layer_net_predict(params, x), x @ params["W1"] + params["b1"], rtol=1e-14
    )


# --------------------------------------------------------------------------------------
# One hidden layer is the two-layer net


@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
def test_one_hidden_layer_gives_the_two_layer_nets_numbers(activation):
    key = jax.random.key(5)
    ours = nets.init_multi_layer_net(key, 12, [7], 4, weight_init_std=0.01)
    theirs = nets.init_two_layer_net(key, 12, 7, 4, weight_init_std=0.01)
    for k in theirs:
        np.testing.assert_array_equal(ours[k], theirs[k])
    params = {k: v * 50 for k, v in theirs.items()}  # weights of a useful size
    x = jax.random.normal(jax.random.key(6), (9, 12))
    t = jax.random.randint(jax.random.key(7), (9,), 0, 4)
    ml, tl = nets.multi_layer_net(activation), nets.two_layer_net(activation)
    np.testing.assert_array_equal(ml.predict(params, x), tl.predict(params, x))
    np.testing.assert_array_equal(ml.loss(params, x, t), tl.loss(params, x, t))
    grads, expected = ml.gradient(params, x, t), tl.gradient(params, x, t)
    for k in expected:
        np.testing.assert_array_equal(grads[k], expected[k])


# --------------------------------------------------------------------------------------
# Gradients and weight decay


@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
def test_gradient_check_on_three_hidden_layers_with_weight_decay(x64, activation):
    params, x, t = _problem(jnp.float64)
    assert _min_abs_preactivation(params, x) > 1e-3  # central differences stay off the kink
    net = nets.multi_layer_net(activation, weight_decay_lambda=0.1)
    # One compiled program per gradient (eagerly, every primitive and every leaf's
    # perturbation loop compiles on its own: ~3x the CPU time for the same numbers).
    backprop = jax.jit(net.gradient)(params, x, t)
    numerical = _mean_abs(backprop, jax.jit(net.numerical_gradient)(params, x, t))
    autodiff = _mean_abs(backprop, jax.jit(net.autodiff_gradient)(params, x, t))
    assert set(numerical) == {f"{p}{i}" for i in range(1, 5) for p in "Wb"}
    assert max(numerical.values()) <= 1e-9, numerical
    assert max(autodiff.values()) <= 1e-9, autodiff


@pytest.mark.parametrize("lam", [0.1, 2.5])
def test_weight_decay_adds_lambda_w_to_weights_and_nothing_to_biases(x64, lam):
    params, x, t = _problem(jnp.float64)
    plain = nets.multi_layer_net_gradient(params, x, t)
    decayed = nets.multi_layer_net_gradient(params, x, t, weight_decay_lambda=lam)
    for k in params:
        expected = lam * params[k] if k.startswith("W") else jnp.zeros_like(params[k])
        np.testing.assert_allclose(decayed[k] - plain[k], expected, rtol=1e-10, atol=1e-14)


def test_weight_decay_is_half_lambda_sum_of_squared_weights_only(x64):
    params, x, t = _problem(jnp.float64)
    params = {k: v + 1.0 for k, v in params.items()}  # non-zero biases that must not count
    squares = sum(float(np.sum(np.asarray(params[f"W{i}"]) ** 2)) for i in range(1, 5))
    assert float(nets.weight_decay(params, 0.3)) == pytest.approx(0.5 * 0.3 * squares, rel=1e-14)
    loss0 = nets.multi_layer_net_loss(params, x, t)
    loss = nets.multi_layer_net_loss(params, x, t, weight_decay_lambda=0.3)
    assert float(loss - loss0) == pytest.approx(0.5 * 0.3 * squares, rel=1e-12)


def test_lambda_may_be_traced_under_vmap(x64):
    params, x, t = _problem(jnp.float64)
    lams = jnp.array([0.0, 0.01, 1.0])
    batched = jax.jit(
        jax.vmap(lambda lam: nets.multi_layer_net_loss(params, x, t, weight_decay_lambda=lam))
    )(lams)
    for i, lam in enumerate([0.0, 0.01, 1.0]):
        expected = nets.multi_layer_net_loss(params, x, t, weight_decay_lambda=lam)
        np.testing.assert_allclose(batched[i], expected, rtol=1e-13)


def test_float32_in_float32_out_under_jit():
    params, x, t = _problem(jnp.float32)
    net = nets.multi_layer_net("relu", 0.1)
    loss = jax.jit(net.loss)(params, x, t)
    grads = jax.jit(net.gradient)(params, x, t)
    assert loss.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in grads.values())
    np.testing.assert_allclose(loss, net.loss(params, x, t), rtol=1e-6)


def test_nan_input_gives_nan_loss_with_sigmoid():
    params, x, t = _problem(jnp.float32)
    x = x.at[0, 0].set(jnp.nan)
    loss = nets.multi_layer_net_loss(params, x, t, activation="sigmoid", weight_decay_lambda=0.1)
    assert bool(jnp.isnan(loss))


@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
def test_nan_weight_gives_nan_loss_and_gradient(activation):
    params, x, t = _problem(jnp.float32)
    params = dict(params, W4=params["W4"].at[0, 0].set(jnp.nan))
    net = nets.multi_layer_net(activation, weight_decay_lambda=0.1)
    assert bool(jnp.isnan(net.loss(params, x, t)))
    assert bool(jnp.isnan(net.gradient(params, x, t)["W4"][0, 0]))


def test_accuracy_of_the_bundle_uses_its_predict():
    params, x, t = _problem(jnp.float32)
    net = nets.multi_layer_net("sigmoid")
    scores = nets.multi_layer_net_predict(params, x, activation="sigmoid")
    expected = float(jnp.mean(jnp.argmax(scores, axis=1) == t))
    assert float(net.accuracy(params, x, t)) == pytest.approx(expected)


# --------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((0, 4, [3], 2), {}, TypeError, r"init_multi_layer_net: key must be a jax.random key"),
        (
            (None, 0, [3], 2),
            {},
            ValueError,
            r"init_multi_layer_net: input_size must be >= 1, got 0",
        ),
        ((None, 4, [3, 0], 2), {}, ValueError, r"hidden_size_list\[1\] must be >= 1, got 0"),
        ((None, 4, [3], 0), {}, ValueError, r"output_size must be >= 1, got 0"),
        ((None, 4, 3, 2), {}, TypeError, r"hidden_size_list must be a list of ints .* got int"),
        ((None, 4, [3.0], 2), {}, TypeError, r"hidden_size_list\[0\] must be an int, got float"),
        ((None, True, [3], 2), {}, TypeError, r"input_size must be an int, got bool"),
        (
            (None, 4, [3], 2),
            {"weight_init_std": "kaiming"},
            ValueError,
            r"weight_init_std must be a number or one of \['he', 'relu', 'sigmoid', "
            r"'xavier'\], got 'kaiming'",
        ),
        (
            (None, 4, [3], 2),
            {"weight_init_std": -0.1},
            ValueError,
            r"init_multi_layer_net: weight_init_std must be >= 0, got -0.1",
        ),
        (
            (None, 4, [3], 2),
            {"weight_init_std": float("nan")},
            ValueError,
            r"weight_init_std .* got nan",
        ),
        (
            (None, 4, [3], 2),
            {"weight_init_std": None},
            TypeError,
            r"weight_init_std must be a number or a name",
        ),
        ((None, 4, [3], 2), {"activation": "tanh"}, ValueError, r"activation must be one of"),
    ],
)
def test_init_rejects_bad_arguments_clearly(args, kwargs, error, message):
    args = (jax.random.key(0) if args[0] is None else args[0], *args[1:])
    with pytest.raises(error, match=message):
        nets.init_multi_layer_net(*args, **kwargs)


def test_raw_uint32_keys_are_accepted():
    params = nets.init_multi_layer_net(jax.random.PRNGKey(0), 4, [3], 2)
    assert params["W1"].shape == (4, 3)


@pytest.mark.parametrize(
    "lam, error, message",
    [
        (
            -0.1,
            ValueError,
            r"multi_layer_net_loss: weight_decay_lambda must be a finite number >= 0, got -0.1",
        ),
        (float("nan"), ValueError, r"weight_decay_lambda must be .* got nan"),
        ("0.1", TypeError, r"weight_decay_lambda must be a number, got str"),
        (jnp.ones(2), ValueError, r"weight_decay_lambda must be a scalar, got shape \(2,\)"),
    ],
)
def test_loss_rejects_bad_lambda(lam, error, message):
    params, x, t = _problem(jnp.float32)
    with pytest.raises(error, match=message):
        nets.multi_layer_net_loss(params, x, t, weight_decay_lambda=lam)


def test_bundle_rejects_bad_lambda_and_activation():
    with pytest.raises(ValueError, match=r"multi_layer_net: weight_decay_lambda must be"):
        nets.multi_layer_net("relu", -1.0)
    with pytest.raises(ValueError, match=r"activation must be one of"):
        nets.multi_layer_net("softplus")


def test_predict_rejects_broken_params_and_mismatched_x():
    params, x, _ = _problem(jnp.float32)
    missing = {k: v for k, v in params.items() if k != "b2"}
    with pytest.raises(ValueError, match=r"multi_layer_net_predict: params must be W1, b1"):
        nets.multi_layer_net_predict(missing, x)
    with pytest.raises(
        ValueError, match=r"x must be \(N, 8\) or \(8,\) to match W1 \(8, 6\), got x \(7, 5\)"
    ):
        nets.multi_layer_net_predict(params, x[:, :5])
    broken = dict(params, W2=jnp.ones((5, 5)))
    with pytest.raises(ValueError, match=r"W2 must be \(6, n\) with b2 \(n,\) .* got W2 \(5, 5\)"):
        nets.multi_layer_net_predict(broken, x)
    with pytest.raises(TypeError, match=r"params must be a dict"):
        nets.multi_layer_net_predict([params["W1"]], x)
