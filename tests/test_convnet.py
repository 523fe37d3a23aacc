"""SimpleConvNet (ch7) and DeepConvNet (ch8): the book's shapes, the book's ch7 gradient
check, the book's rules and the defaults agree, weights from generated book-style pickles."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import conv
from funcnet import io as fio
from funcnet.nets import convnet as C

# The book's ch7 gradient_check.py: input (1, 10, 10), 10 filters 3×3, hidden 10, one
# image (np.random.rand(100)), label 1. Seed 234 draws weights and an image whose conv
# outputs and pool windows are at least 1.6e-4 from a kink (relu at 0, a tie in a
# window), so central differences with h = 1e-4 never straddle one (DESIGN, "Kinks").
GRADIENT_CHECK_SEED = 234


def gradient_check_setup():
    params = C.init_simple_convnet(
        jax.random.key(GRADIENT_CHECK_SEED),
        (1, 10, 10),
        filter_num=10,
        filter_size=3,
        hidden_size=10,
        output_size=10,
        dtype=jnp.float64,
    )
    x = np.random.default_rng(GRADIENT_CHECK_SEED).random(100).reshape(1, 1, 10, 10)
    return params, x, np.array([1])


def kink_margin(params, x):
    a = np.asarray(conv.convolution(x, params["W1"], params["b1"]))
    windows = np.maximum(a, 0).reshape(1, 10, 4, 2, 4, 2).transpose(0, 1, 2, 4, 3, 5)
    top = np.sort(windows.reshape(-1, 4), axis=1)
    gaps = (top[:, 3] - top[:, 2])[top[:, 3] > 0]
    return min(np.abs(a).min(), gaps.min())


def test_simple_convnet_has_the_books_shapes():
    params = C.init_simple_convnet(jax.random.key(0))
    shapes = {k: v.shape for k, v in params.items()}
    assert shapes == {
        "W1": (30, 1, 5, 5),
        "b1": (30,),
        "W2": (4320, 100),
        "b2": (100,),
        "W3": (100, 10),
        "b3": (10,),
    }
    assert float(jnp.std(params["W2"])) == pytest.approx(0.01, rel=0.02)
    assert not np.any(np.asarray(params["b1"]))


def test_simple_convnet_gradient_check_like_the_book_within_1e_9(x64):
    params, x, t = gradient_check_setup()
    assert kink_margin(params, x) > 1.5e-4

    @jax.jit  # the three gradients as one compiled program (x, t checked while tracing)
    def gradients(params):
        return (
            C.simple_convnet_gradient(params, x, t),
            C.simple_convnet_autodiff_gradient(params, x, t),
            C.simple_convnet_numerical_gradient(params, x, t),
        )

    backprop, autodiff, numerical = gradients(params)
    for k in C.SIMPLE_CONVNET_KEYS:
        assert backprop[k].dtype == jnp.float64
        assert float(jnp.max(jnp.abs(backprop[k] - numerical[k]))) <= 1e-9, k
        assert float(jnp.max(jnp.abs(backprop[k] - autodiff[k]))) <= 1e-15, k


# Compiled once per process and shape: both cases share the book=True reference.
simple_convnet_gradient_jit = jax.jit(C.simple_convnet_gradient, static_argnames=("book",))


@pytest.mark.parametrize("book", [False, True], ids=["default", "book"])
def test_simple_convnet_book_rules_and_defaults_give_the_same_gradient(book, x64):
    params, x, t = gradient_check_setup()
    x = np.random.default_rng(1).random((3, 1, 10, 10))
    t = np.array([1, 4, 9])
    reference = simple_convnet_gradient_jit(params, x, t, book=True)
    got = simple_convnet_gradient_jit(params, x, t, book=book)
    for k in reference:
        np.testing.assert_allclose(got[k], reference[k], rtol=1e-12, atol=1e-15)


def test_simple_convnet_accepts_flat_rows_and_names_bad_shapes():
    params = C.init_simple_convnet(jax.random.key(0))
    x = np.random.default_rng(0).random((2, 784)).astype(np.float32)
    np.testing.assert_allclose(
        C.simple_convnet_predict(params, x),
        C.simple_convnet_predict(params, x.reshape(2, 1, 28, 28)),
    )
    with pytest.raises(ValueError, match=r"simple_convnet_predict: x must be images"):
        C.simple_convnet_predict(params, np.ones((2, 783), np.float32))
    with pytest.raises(ValueError, match=r"params must hold W1, b1, W2, b2, W3, b3"):
        C.simple_convnet_predict({"W1": params["W1"]}, x)
    # named in the caller's NCHW terms, not the channels-last layout the layers run in
    with pytest.raises(
        ValueError,
        match=r"simple_convnet_predict: x has 3 channels \(axis 1 of \(N, C, H, W\)\) but W1 "
        r"expects 1; got x \(2, 3, 28, 28\)",
    ):
        C.simple_convnet_predict(params, np.ones((2, 3, 28, 28), np.float32))
    deep = C.init_deep_convnet(jax.random.key(0))
    # what the layers check, named by the net on the caller's shape (the default rules run
    # channels last: the layer would name a transposed shape the caller never passed)
    t2 = np.array([1, 2])
    for call in (
        lambda x: C.simple_convnet_predict(params, x),
        lambda x: C.simple_convnet_loss(params, x, t2[: len(x)]),
        lambda x: C.deep_convnet_predict(deep, x),
        lambda x: C.deep_convnet_loss(deep, x, t2[: len(x)], train=False),
    ):
        empty = r"_convnet_\w+: x holds an empty batch, x "
        with pytest.raises(ValueError, match=empty + r"\(0, 1, 28, 28\)"):
            call(np.ones((0, 1, 28, 28), np.float32))
        with pytest.raises(ValueError, match=empty + r"\(0, 784\)"):
            call(np.ones((0, 784), np.float32))
        with pytest.raises(
            TypeError, match=r"_convnet_\w+: x must be floating point, got int32 \(2, 1, 28, 28\)"
        ):
            call(np.ones((2, 1, 28, 28), np.int32))
    with pytest.raises(
        ValueError, match=r"deep_convnet_loss: x has 3 channels .* x \(2, 3, 28, 28\)"
    ):
        C.deep_convnet_loss(
            deep, np.ones((2, 3, 28, 28), np.float32), np.array([1, 2]), train=False
        )


def test_simple_convnet_loss_decreases_with_adam_on_a_few_images():
    import optax

    params = C.init_simple_convnet(jax.random.key(0), (1, 12, 12), filter_num=4, hidden_size=8)
    rng = np.random.default_rng(0)
    x = rng.random((20, 1, 12, 12)).astype(np.float32)
    t = rng.integers(0, 10, 20)
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        loss, g = jax.value_and_grad(C.simple_convnet_loss)(params, x, t)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(200):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_deep_convnet_has_the_books_shapes_and_he_init():
    params = C.init_deep_convnet(jax.random.key(0))
    assert C.deep_convnet_fan_ins() == (9, 144, 144, 288, 288, 576, 1024, 50)
    expected = {
        "W1": (16, 1, 3, 3),
        "W2": (16, 16, 3, 3),
        "W3": (32, 16, 3, 3),
        "W4": (32, 32, 3, 3),
        "W5": (64, 32, 3, 3),
        "W6": (64, 64, 3, 3),
        "W7": (1024, 50),
        "W8": (50, 10),
    }
    for k, shape in expected.items():
        assert params[k].shape == shape
        b = params["b" + k[1:]]
        assert b.shape == (shape[0] if len(shape) == 4 else shape[1],)
    # He: std √(2 / fan_in); W7 has 51,200 draws
    assert float(jnp.std(params["W7"])) == pytest.approx(np.sqrt(2 / 1024), rel=0.02)


def test_deep_convnet_inference_scales_by_the_books_dropout_factors():
    params = C.init_deep_convnet(jax.random.key(0))
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    scores = jax.jit(C.deep_convnet_predict)(params, x)

    @jax.jit  # the reference as one compiled program, not op by op
    def reference(params, x):
        # The book's inference dropout multiplies by 1 − 0.5 after relu(affine7) and affine8.
        h = x
        for i, (_, pad) in enumerate(C.DEEP_CONVNET_CONVS, start=1):
            h = jax.nn.relu(conv.convolution(h, params[f"W{i}"], params[f"b{i}"], 1, pad))
            if i % 2 == 0:
                h = conv.pooling(h, 2, 2)
        h = 0.5 * jax.nn.relu(h.reshape(4, -1) @ params["W7"] + params["b7"])
        return 0.5 * (h @ params["W8"] + params["b8"])

    # float32 rounding differs between the NHWC rules and the NCHW reference: tolerance on
    # the scores' scale (a near-zero score has no relative precision); a wrong dropout
    # factor would change every score by 2×
    want = reference(params, x)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_deep_convnet_training_loss_depends_on_the_key_only_through_dropout():
    params = C.init_deep_convnet(jax.random.key(0))
    x = np.random.default_rng(0).random((2, 784)).astype(np.float32)
    t = np.array([3, 7])
    # One compiled program gives each key's loss and the gradient.
    loss_and_grad = jax.jit(jax.value_and_grad(C.deep_convnet_loss))
    a, g = loss_and_grad(params, x, t, jax.random.key(1))
    b, _ = loss_and_grad(params, x, t, jax.random.key(1))
    c, _ = loss_and_grad(params, x, t, jax.random.key(2))
    assert float(a) == float(b) != float(c)
    assert set(g) == set(C.DEEP_CONVNET_KEYS)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in g.values())
    with pytest.raises(TypeError, match=r"deep_convnet_loss: key must be a jax.random key"):
        C.deep_convnet_loss(params, x, t)


def test_deep_convnet_book_rules_and_defaults_give_the_same_gradient(x64):
    params = C.init_deep_convnet(jax.random.key(0), dtype=jnp.float64)
    x = np.random.default_rng(0).random((2, 1, 28, 28))
    t = np.array([3, 7])
    key = jax.random.key(5)

    @jax.jit  # both gradients as one compiled program, not op by op
    def gradients(params):
        fast = jax.grad(C.deep_convnet_loss)(params, x, t, key)
        return fast, jax.grad(lambda p: C.deep_convnet_loss(p, x, t, key, book=True))(params)

    fast, book = gradients(params)
    for k in fast:
        np.testing.assert_allclose(fast[k], book[k], rtol=1e-10, atol=1e-14)


def write_book_pickle(path, params):
    """A pickle like the book's ``save_params``: a dict of float64 NumPy arrays."""
    with open(path, "wb") as f:
        pickle.dump({k: np.asarray(v, np.float64) for k, v in params.items()}, f)


@pytest.mark.parametrize(
    "init, keys, predict",
    [
        (C.init_simple_convnet, C.SIMPLE_CONVNET_KEYS, C.simple_convnet_predict),
        (C.init_deep_convnet, C.DEEP_CONVNET_KEYS, C.deep_convnet_predict),
    ],
    ids=["simple", "deep"],
)
def test_nets_reproduce_predictions_from_a_book_style_pickle(init, keys, predict, tmp_path, x64):
    params = init(jax.random.key(3), dtype=jnp.float64)
    path = tmp_path / "params.pkl"
    write_book_pickle(path, params)
    loaded = C.load_convnet_params(path, keys)
    assert all(v.dtype == jnp.float64 for v in loaded.values())
    x = np.random.default_rng(0).random((3, 1, 28, 28))
    predict = jax.jit(predict)  # one compiled program for both calls
    np.testing.assert_array_equal(predict(loaded, x), predict(params, x))


def test_load_convnet_params_names_missing_keys(tmp_path):
    params = C.init_simple_convnet(jax.random.key(3))
    del params["b3"]
    path = tmp_path / "params.pkl"
    write_book_pickle(path, params)
    with pytest.raises(fio.ParamsFileError, match=r"holds \['W1'.*expected \['W1'"):
        C.load_convnet_params(path)


# --------------------------------------------------------------------------------------
# Settings, image sizes and loaded weights are checked where the user made them (issue 23)


@pytest.mark.parametrize(
    ("init", "kwargs", "error", "message"),
    [
        (C.init_simple_convnet, {"filter_size": 2.5}, TypeError, r"filter_size must be an integer"),
        (C.init_simple_convnet, {"filter_num": 0}, ValueError, r"filter_num must be an integer >="),
        (
            C.init_simple_convnet,
            {"stride": 1.0},
            TypeError,
            r"stride must be an integer, got float",
        ),
        (C.init_simple_convnet, {"pad": -1}, ValueError, r"pad must be an integer >= 0, got -1"),
        (C.init_simple_convnet, {"hidden_size": "100"}, TypeError, r"hidden_size must be an integ"),
        (C.init_simple_convnet, {"output_size": 10.0}, TypeError, r"output_size must be an integ"),
        (C.init_simple_convnet, {"input_dim": (1, 28.0, 28)}, TypeError, r"input_dim\[1\] must be"),
        (
            C.init_simple_convnet,
            {"input_dim": (28, 28)},
            TypeError,
            r"input_dim must be \(C, H, W\)",
        ),
        (C.init_deep_convnet, {"hidden_size": 50.5}, TypeError, r"hidden_size must be an integer"),
        (C.init_deep_convnet, {"input_dim": (1, 28, True)}, TypeError, r"input_dim\[2\] must be"),
    ],
)
def test_convnet_inits_check_their_integer_settings(init, kwargs, error, message):
    # filter_size=2.5 reached JAX's "Shapes must be 1D sequences of concrete values of
    # integer type" (or a geometry message about 25.5 rows).
    with pytest.raises(error, match=rf"^{init.__name__}: {message}"):
        init(jax.random.key(0), **kwargs)


def _zeros_like_init(init, *args, **kwargs):
    """Params of init's shapes without running it (the checks read shapes only)."""
    shapes = jax.eval_shape(lambda k: init(k, *args, **kwargs), jax.random.key(0))
    return {k: np.zeros(v.shape, v.dtype) for k, v in shapes.items()}


def test_a_wrong_image_size_names_the_size_the_params_expect():
    # It said "affine: x has 75 features but W has 48 rows" (or a pooling message).
    simple = _zeros_like_init(C.init_simple_convnet)
    x = np.ones((2, 1, 20, 20), np.float32)
    expect = r"these params expect 1×28×28 images \(W2 has 4320 rows.*got x \(2, 1, 20, 20\)"
    for fn in (C.simple_convnet_predict, C.simple_convnet_loss, C.simple_convnet_gradient):
        args = (simple, x) if fn is C.simple_convnet_predict else (simple, x, np.array([0, 1]))
        with pytest.raises(
            ValueError, match=rf"^{fn.__name__.replace('gradient', 'loss')}: {expect}"
        ):
            fn(*args)
    small = _zeros_like_init(
        C.init_simple_convnet, (3, 8, 8), filter_num=3, filter_size=3, hidden_size=4
    )
    with pytest.raises(ValueError, match=r"expect 3×8×8 images .*got x \(1, 3, 7, 7\)"):
        C.simple_convnet_predict(small, np.ones((1, 3, 7, 7), np.float32))
    deep = _zeros_like_init(C.init_deep_convnet)
    with pytest.raises(ValueError, match=r"^deep_convnet_predict: these params expect 1×28×28"):
        C.deep_convnet_predict(deep, np.ones((1, 1, 40, 40), np.float32))
    with pytest.raises(ValueError, match=r"^deep_convnet_loss: these params expect 1×28×28"):
        C.deep_convnet_loss(deep, np.ones((1, 1, 8, 8)), np.array([0]), jax.random.key(1))


@pytest.mark.parametrize("dtype", [np.complex128, np.bool_])
def test_load_convnet_params_refuses_complex_and_bool_weights(dtype, tmp_path):
    # Complex weights lost their imaginary part with a ComplexWarning; bool ones loaded.
    params = _zeros_like_init(C.init_simple_convnet)
    params["W2"] = params["W2"].astype(dtype)
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps(params))
    with pytest.raises(fio.ParamsFileError, match=r"'W2' has dtype (complex128|bool), not real"):
        C.load_convnet_params(path)
