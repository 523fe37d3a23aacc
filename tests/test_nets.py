"""funcnet.nets: the book's networks as functions, their figures and their gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import datasets, nets
from funcnet.gradient import numerical_gradient


def _mean_abs(a, b):
    return {k: float(jnp.mean(jnp.abs(a[k] - b[k]))) for k in a}


def _small_problem(dtype, n=5, d=12, h=7, c=4, seed=0):
    """A small net and batch, pre-activations kept away from ReLU's kink."""
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = nets.init_two_layer_net(k1, d, h, c, weight_init_std=0.5, dtype=dtype)
    x = jax.random.normal(k2, (n, d), dtype)
    t = jax.random.randint(k3, (n,), 0, c, dtype=jnp.int32)
    return params, x, t


# --------------------------------------------------------------------------------------
# simpleNet (ch4.4.2): the figures printed in the book


def test_simple_net_reproduces_the_books_figures(x64):
    # ch4.4.2, simpleNet with the book's fixed W, x = [0.6, 0.9], t = [0, 0, 1].
    params = {"W": jnp.array(nets.SIMPLE_NET_BOOK_W)}
    x, t = jnp.array([0.6, 0.9]), jnp.array([0.0, 0.0, 1.0])
    p = nets.simple_net_predict(params, x)
    np.testing.assert_allclose(p, [1.05414809, 0.63071653, 1.1328074], rtol=1e-7)
    assert int(jnp.argmax(p)) == 2
    np.testing.assert_allclose(nets.simple_net_loss(params, x, t), 0.92806829, rtol=1e-7)
    dW = numerical_gradient(lambda q: nets.simple_net_loss(q, x, t), params)["W"]
    np.testing.assert_allclose(
        dW, [[0.21924757, 0.14356243, -0.36281], [0.32887136, 0.21534364, -0.544215]], atol=1e-7
    )


def test_simple_net_loss_accepts_integer_labels_and_batches(x64):
    params = nets.init_simple_net(jax.random.key(3))
    x = jnp.array([[0.6, 0.9], [0.1, -0.4]])
    onehot = jnp.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert nets.simple_net_predict(params, x).shape == (2, 3)
    np.testing.assert_allclose(
        nets.simple_net_loss(params, x, jnp.array([2, 0])), nets.simple_net_loss(params, x, onehot)
    )
    with pytest.raises(ValueError, match="does not match W"):
        nets.simple_net_predict(params, jnp.ones(3))


# --------------------------------------------------------------------------------------
# The ch3 network


def _book_predict_numpy(params, x):
    """The book's ch3 predict(network, x), in NumPy float64, as a reference."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    z1 = sigmoid(x @ p["W1"] + p["b1"])
    z2 = sigmoid(z1 @ p["W2"] + p["b2"])
    a3 = z2 @ p["W3"] + p["b3"]
    e = np.exp(a3 - a3.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_three_layer_net_predict_matches_the_books_forward_for_batch_and_single(x64):
    params = nets.init_three_layer_net(jax.random.key(0), 20, (6, 5), 4, 0.7, dtype=jnp.float64)
    x = np.asarray(jax.random.uniform(jax.random.key(1), (8, 20), jnp.float64))
    y = nets.three_layer_net_predict(params, x)
    assert y.shape == (8, 4) and y.dtype == jnp.float64
    np.testing.assert_allclose(y, _book_predict_numpy(params, x), rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(y, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(nets.three_layer_net_predict(params, x[3]), y[3], rtol=1e-12)


def test_three_layer_net_has_the_shapes_of_the_books_sample_weights():
    params = nets.init_three_layer_net(jax.random.key(0))
    shapes = {k: v.shape for k, v in params.items()}
    assert shapes == {
        "W1": (784, 50),
        "b1": (50,),
        "W2": (50, 100),
        "b2": (100,),
        "W3": (100, 10),
        "b3": (10,),
    }
    assert nets.three_layer_net_predict(params, jnp.zeros((3, 784))).dtype == jnp.float32


def test_three_layer_net_names_missing_weights_and_bad_shapes():
    params = nets.init_three_layer_net(jax.random.key(0), 20, (6, 5), 4)
    with pytest.raises(ValueError, match=r"lack \['W3'\]"):
        nets.three_layer_net_predict({k: v for k, v in params.items() if k != "W3"}, jnp.ones(20))
    with pytest.raises(ValueError, match="x has 21 features but W has 20 rows"):
        nets.three_layer_net_predict(params, jnp.ones((2, 21)))


# --------------------------------------------------------------------------------------
# accuracy


def test_accuracy_accepts_labels_or_one_hot_and_matches_a_count():
    params = nets.init_three_layer_net(jax.random.key(0), 20, (6, 5), 4, 1.0)
    x = jax.random.normal(jax.random.key(1), (37, 20))
    t = jax.random.randint(jax.random.key(2), (37,), 0, 4, dtype=jnp.int32)
    predicted = np.argmax(np.asarray(nets.three_layer_net_predict(params, x)), axis=1)
    expected = np.mean(predicted == np.asarray(t))
    assert 0 < expected < 1
    acc = nets.accuracy(nets.three_layer_net_predict, params, x, t)
    assert acc.dtype == jnp.float32
    np.testing.assert_allclose(acc, expected, rtol=1e-6)
    onehot = jax.nn.one_hot(t, 4)
    np.testing.assert_allclose(nets.accuracy(nets.three_layer_net_predict, params, x, onehot), acc)
    assert int(nets.count_correct(nets.three_layer_net_predict, params, x, t)) == int(
        np.sum(predicted == np.asarray(t))
    )


@pytest.mark.parametrize("batch_size", [1, 5, 10, 36, 37, 100])
def test_batched_accuracy_equals_all_at_once_under_jit(batch_size):
    params = nets.init_three_layer_net(jax.random.key(0), 20, (6, 5), 4, 1.0)
    x = jax.random.normal(jax.random.key(1), (37, 20))
    t = jax.random.randint(jax.random.key(2), (37,), 0, 4, dtype=jnp.int32)
    whole = nets.count_correct(nets.three_layer_net_predict, params, x, t)
    batched = jax.jit(
        functools.partial(nets.count_correct, nets.three_layer_net_predict, batch_size=batch_size)
    )(params, x, t)
    assert int(batched) == int(whole)


@pytest.mark.parametrize("batch_size", [None, 5, 37])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
def test_accuracy_under_jit_is_the_count_and_nan_for_any_row_it_cannot_judge(batch_size, dtype):
    """The float tally of the accuracy against count_correct's int32 counts: equal where
    every row can be judged; NaN for a NaN, +inf or -inf score in any one row, or for a
    label outside [0, C) unless the caller says it checked the labels."""
    scores = np.asarray(jax.random.normal(jax.random.key(3), (37, 4)), dtype)
    t = np.asarray(jax.random.randint(jax.random.key(4), (37,), 0, 4), np.int32)

    def predict(params, x):
        return x * params["s"]

    def acc(x, t, **options):
        f = functools.partial(nets.accuracy, predict, batch_size=batch_size, **options)
        return float(jax.jit(f)({"s": jnp.ones((), dtype)}, jnp.asarray(x), jnp.asarray(t)))

    count = int(nets.count_correct(predict, {"s": jnp.ones((), dtype)}, scores, t))
    assert 0 < count < 37
    assert acc(scores, t) == pytest.approx(count / 37, rel=1e-6)  # a count off by 1: 3%
    for bad in (np.nan, np.inf, -np.inf):
        for row in (0, 36):
            poisoned = scores.copy()
            poisoned[row, 2] = bad
            assert np.isnan(acc(poisoned, t)), (bad, row)
            assert np.isnan(acc(poisoned, t, labels_checked=True)), (bad, row)
    wrong = t.copy()
    wrong[5] = 4  # outside [0, 4): only a traced label can get here
    assert np.isnan(acc(scores, wrong))
    hits_without_row_5 = count - int(np.argmax(scores[5].astype(np.float32)) == t[5])
    assert acc(scores, wrong, labels_checked=True) == pytest.approx(
        hits_without_row_5 / 37, rel=1e-6
    )
    onehot = np.eye(4, dtype=np.float32)[t]
    assert acc(scores, onehot, labels_checked=True) == pytest.approx(count / 37, rel=1e-6)
    onehot[7, 0] = np.nan  # a row that is no label: NaN even where the labels were checked
    assert np.isnan(acc(scores, onehot)) and np.isnan(acc(scores, onehot, labels_checked=True))


def test_accuracy_rejects_mismatched_labels():
    params = nets.init_three_layer_net(jax.random.key(0), 20, (6, 5), 4)
    x = jnp.ones((5, 20))
    with pytest.raises(ValueError, match="5 examples but t has shape"):
        nets.accuracy(nets.three_layer_net_predict, params, x, jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match=r"one-hot t must have shape \(5, 4\)"):
        nets.accuracy(nets.three_layer_net_predict, params, x, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="integer dtype"):
        nets.accuracy(nets.three_layer_net_predict, params, x, jnp.zeros(5))
    with pytest.raises(ValueError, match="label 4 is out of range for 4 classes"):
        nets.accuracy(nets.three_layer_net_predict, params, x, jnp.full(5, 4, jnp.int32))
    with pytest.raises(ValueError, match="batch_size"):
        nets.accuracy(
            nets.three_layer_net_predict, params, x, jnp.zeros(5, jnp.int32), batch_size=0
        )


# --------------------------------------------------------------------------------------
# TwoLayerNet


def test_init_two_layer_net_is_the_books_and_deterministic():
    params = nets.init_two_layer_net(jax.random.key(7), 784, 50, 10)
    assert {k: v.shape for k, v in params.items()} == {
        "W1": (784, 50),
        "b1": (50,),
        "W2": (50, 10),
        "b2": (10,),
    }
    assert all(v.dtype == jnp.float32 for v in params.values())
    assert not jnp.any(params["b1"]) and not jnp.any(params["b2"])
    assert 0.009 < float(jnp.std(params["W1"])) < 0.011  # weight_init_std = 0.01
    again = nets.init_two_layer_net(jax.random.key(7), 784, 50, 10)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    other = nets.init_two_layer_net(jax.random.key(8), 784, 50, 10)
    assert not np.array_equal(params["W1"], other["W1"])
    with pytest.raises(ValueError, match="hidden_size must be an integer >= 1, got 0"):
        nets.init_two_layer_net(jax.random.key(0), 784, 0, 10)


@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
def test_two_layer_net_predict_and_loss_match_a_plain_jnp_forward(activation, x64):
    params, x, t = _small_problem(jnp.float64)
    act = {"relu": lambda a: jnp.maximum(a, 0), "sigmoid": jax.nn.sigmoid}[activation]
    scores = act(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    net = nets.two_layer_net(activation)
    np.testing.assert_allclose(net.predict(params, x), scores, rtol=1e-12)
    expected = -jnp.mean(jax.nn.log_softmax(scores)[jnp.arange(5), t])
    np.testing.assert_allclose(net.loss(params, x, t), expected, rtol=1e-12)
    np.testing.assert_allclose(net.loss(params, x, jax.nn.one_hot(t, 4)), expected, rtol=1e-12)
    np.testing.assert_allclose(net.predict(params, x[2]), scores[2], rtol=1e-12)


@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
def test_backprop_autodiff_and_numerical_gradients_agree(activation, x64):
    params, x, t = _small_problem(jnp.float64)
    net = nets.two_layer_net(activation)
    backprop = net.gradient(params, x, t)
    autodiff = net.autodiff_gradient(params, x, t)
    numerical = net.numerical_gradient(params, x, t)
    assert jax.tree_util.tree_structure(backprop) == jax.tree_util.tree_structure(params)
    for k in params:
        assert backprop[k].shape == params[k].shape and backprop[k].dtype == jnp.float64
        np.testing.assert_allclose(backprop[k], autodiff[k], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(backprop[k], numerical[k], rtol=1e-6, atol=1e-9)
    # one-hot targets give the same gradient
    onehot = net.gradient(params, x, jax.nn.one_hot(t, 4))
    for k in params:
        np.testing.assert_allclose(onehot[k], backprop[k], rtol=1e-12, atol=1e-15)


def test_backprop_differentiates_through_the_custom_rules_and_autodiff_does_not(x64):
    """net.gradient is jax.grad of a loss made of custom_vjp layers (so JAX must use their
    hand-written rules); the autodiff reference's loss contains no custom rule at all."""
    params, x, t = _small_problem(jnp.float64)
    with_rules = str(jax.make_jaxpr(nets.two_layer_net_loss)(params, x, t))
    plain = str(jax.make_jaxpr(nets._plain_loss, static_argnums=3)(params, x, t, "relu"))
    assert with_rules.count("custom_vjp_call") == 4  # affine, relu, affine, softmax_with_loss
    assert "custom_vjp_call" not in plain


def test_the_books_ch4_sigmoid_gradient_is_a_fourth_independent_check(x64):
    params, x, t = _small_problem(jnp.float64)
    net = nets.two_layer_net("sigmoid")
    book = nets.two_layer_net_ch4_gradient(params, x, t)
    backprop = net.gradient(params, x, t)
    for k in params:
        np.testing.assert_allclose(book[k], backprop[k], rtol=1e-12, atol=1e-15)
    onehot = nets.two_layer_net_ch4_gradient(params, x, jax.nn.one_hot(t, 4))
    for k in params:
        np.testing.assert_allclose(onehot[k], book[k], rtol=1e-12, atol=1e-15)


def test_gradient_check_of_the_book_on_three_mnist_images(x64):
    """ch5 gradient_check.py: 784-50-10, 3 training images. The book reports mean absolute
    differences of 1e-10 to 1e-7 (its 1e-7 inside the log); the exact loss does better."""
    data = datasets.load("mnist-5k")
    x = jnp.asarray(data.train[0][:3], jnp.float64)
    t = jnp.asarray(data.train[1][:3])
    params = nets.init_two_layer_net(jax.random.key(0), 784, 50, 10, dtype=jnp.float64)
    net = nets.two_layer_net("relu")
    # One compiled program per gradient (eagerly, every primitive and every leaf's
    # perturbation loop compiles on its own).
    backprop = jax.jit(net.gradient)(params, x, t)
    numerical = _mean_abs(backprop, jax.jit(net.numerical_gradient)(params, x, t))
    autodiff = _mean_abs(backprop, jax.jit(net.autodiff_gradient)(params, x, t))
    assert set(numerical) == {"W1", "b1", "W2", "b2"}
    assert max(numerical.values()) <= 1e-9, numerical
    assert max(autodiff.values()) <= 1e-15, autodiff
    assert float(jnp.mean(jnp.abs(backprop["b2"]))) > 1e-3  # a real, non-zero gradient


def test_two_layer_net_rejects_bad_input():
    params = nets.init_two_layer_net(jax.random.key(0), 12, 7, 4)
    net = nets.two_layer_net("relu")
    with pytest.raises(ValueError, match=r"x must be \(N, 12\).*got x \(5, 13\)"):
        net.loss(params, jnp.ones((5, 13)), jnp.zeros(5, jnp.int32))
    with pytest.raises(ValueError, match=r"two_layer_net_loss: t must be labels \(5,\) or one-hot"):
        net.loss(params, jnp.ones((5, 12)), jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match="label 4 is out of range"):
        net.gradient(params, jnp.ones((5, 12)), jnp.full(5, 4, jnp.int32))
    with pytest.raises(ValueError, match="t must be labels"):
        net.autodiff_gradient(params, jnp.ones((5, 12)), jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match=r"lack \['b2'\]"):
        net.predict({k: v for k, v in params.items() if k != "b2"}, jnp.ones((5, 12)))
    with pytest.raises(ValueError, match="activation must be one of"):
        nets.two_layer_net("tanh")


def test_two_layer_net_accuracy_bundles_the_nets_predict():
    params, x, t = _small_problem(jnp.float32, n=40)
    net = nets.two_layer_net("sigmoid")
    expected = np.mean(np.argmax(np.asarray(net.predict(params, x)), 1) == np.asarray(t))
    np.testing.assert_allclose(net.accuracy(params, x, t), expected, rtol=1e-6)
    np.testing.assert_allclose(net.accuracy(params, x, t, batch_size=7), expected, rtol=1e-6)
