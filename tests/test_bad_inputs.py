"""Bad input gets a clear error naming the function and the argument (issue 16), or, where
values cannot be seen (under jit), a NaN result instead of a finite, wrong number.

One section per class of the issue; each case asserts the exception type and that the
message names the function and the argument.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import _checks, nets, perceptron
from funcnet import functions as F
from funcnet import gradient as G
from funcnet import layers as L

PARAMS = nets.init_two_layer_net(jax.random.key(0), 4, 5, 3)
X = jnp.ones((2, 4))
T = jnp.array([0, 1])


def _raises(exc, pattern, fn, *args, **kwargs):
    with pytest.raises(exc, match=pattern):
        fn(*args, **kwargs)


# --------------------------------------------------------------------------------------
# The shared validators


@pytest.mark.parametrize(
    "value, exc, pattern",
    [
        (0, TypeError, r"^fit: key must be a jax.random key, e.g. jax.random.key\(0\); got int 0$"),
        (jnp.zeros(2), TypeError, r"fit: key must be a jax.random key.*got float32 \(2,\)"),
        (jnp.zeros(3, jnp.uint32), TypeError, r"fit: key .*got uint32 \(3,\)"),
        (None, TypeError, r"fit: key .*got NoneType None"),
    ],
)
def test_check_key_refuses_anything_but_a_key(value, exc, pattern):
    _raises(exc, pattern, _checks.check_key, "fit", value)


def test_check_key_accepts_typed_and_legacy_keys_also_when_traced():
    _checks.check_key("fit", jax.random.key(0))
    _checks.check_key("fit", jax.random.PRNGKey(0))
    jax.jit(lambda k: _checks.check_key("fit", k))(jax.random.key(1))


@pytest.mark.parametrize(
    "value, minimum, exc, pattern",
    [
        (2.0, 1, TypeError, r"^fit: steps must be an integer, got float 2.0$"),
        (True, 1, TypeError, r"fit: steps must be an integer, got bool True"),
        ("3", 1, TypeError, r"fit: steps must be an integer, got str '3'"),
        (np.float32(3), 1, TypeError, r"fit: steps must be an integer, got float32 3.0"),
        (0, 1, ValueError, r"^fit: steps must be an integer >= 1, got 0$"),
        (-3, 0, ValueError, r"fit: steps must be an integer >= 0, got -3"),
    ],
)
def test_check_int_names_the_argument(value, minimum, exc, pattern):
    _raises(exc, pattern, _checks.check_int, "fit", "steps", value, minimum)


def test_check_int_returns_a_python_int():
    assert _checks.check_int("fit", "steps", np.int64(5)) == 5
    assert type(_checks.check_int("fit", "steps", np.int64(5))) is int
    assert _checks.check_int("fit", "steps", -7, None) == -7


@pytest.mark.parametrize(
    "value, exc, pattern",
    [
        ("0.1", TypeError, r"^fit: lr must be a real number, got str '0.1'$"),
        (True, TypeError, r"fit: lr must be a real number, got bool True"),
        (1j, TypeError, r"fit: lr must be a real number, got complex 1j"),
        (jnp.ones(2), TypeError, r"fit: lr must be a real number, got float32 \(2,\)"),
        (float("nan"), ValueError, r"^fit: lr must be a finite number, got nan$"),
        (np.float32("inf"), ValueError, r"fit: lr must be a finite number, got inf"),
        (0.0, ValueError, r"^fit: lr must be > 0, got 0.0$"),
        (-1, ValueError, r"fit: lr must be > 0, got -1.0"),
    ],
)
def test_check_float_names_the_argument(value, exc, pattern):
    _raises(exc, pattern, _checks.check_float, "fit", "lr", value, positive=True)


def test_check_float_accepts_real_scalars_and_returns_a_float():
    for value in (3, 0.5, np.float32(0.25), np.int64(2), jnp.float32(1.5), np.array(2.0)):
        got = _checks.check_float("fit", "lr", value, positive=True)
        assert type(got) is float and got == float(value)


@pytest.mark.parametrize(
    "params, exc, pattern",
    [
        (None, TypeError, r"^fit: params must be a pytree of floating-point arrays.*got None$"),
        ([1.0, 2.0], TypeError, r"fit: params\[0\] must be an array.*got float 1.0"),
        ({}, ValueError, r"fit: params holds no arrays, got dict \{\}"),
        (
            {"W1": jnp.ones((2, 2)), "b1": jnp.zeros(2, jnp.int32)},
            TypeError,
            r"fit: params\[.b1.\] must have a floating-point dtype \(e.g. float32\), "
            r"got int32 \(2,\)",
        ),
        (
            {"W": np.ones(2, np.complex64)},
            TypeError,
            r"fit: params\['W'\] must have a floating-point dtype.*complex64",
        ),
    ],
)
def test_check_params_names_the_leaf_and_its_dtype(params, exc, pattern):
    _raises(exc, pattern, _checks.check_params, "fit", params)


def test_check_finite_counts_and_locates_non_finite_values():
    x = np.ones((20, 50), np.float32)
    x[12, 40] = np.nan
    x[13, 0] = np.inf
    x[19, 49] = -np.inf
    _raises(
        ValueError,
        r"^fit: x_test holds 3 non-finite values \(first at index \(12, 40\)\); "
        r"clean the data first$",
        _checks.check_finite,
        "fit",
        "x_test",
        x,
    )
    _checks.check_finite("fit", "x_test", np.ones(3))
    _checks.check_finite("fit", "t", np.arange(3))  # integers are always finite
    jax.jit(lambda v: _checks.check_finite("fit", "x", v))(jnp.asarray(x))  # tracers skipped


# --------------------------------------------------------------------------------------
# 1. NaN never becomes a number: where an int result cannot hold it, an error


@pytest.mark.parametrize("gate", ["and_gate", "nand_gate", "or_gate", "xor_gate"])
def test_gates_refuse_nan_inputs_naming_the_gate(gate):
    fn = getattr(perceptron, gate)
    _raises(ValueError, rf"^{gate}: x2 holds 1 non-finite values", fn, 1, jnp.array([0, np.nan]))


# --------------------------------------------------------------------------------------
# 2. Labels are checked on the caller's values, before any narrowing (x64 off here)

HUGE = np.array([0, 2**32 + 1], np.int64)  # jnp.asarray (x64 off) would make it [0, 1]
LABEL_CALLS = {
    "softmax_with_loss": lambda t: L.softmax_with_loss(jnp.zeros((2, 3)), t),
    "softmax_cross_entropy": lambda t: F.softmax_cross_entropy(jnp.zeros((2, 3)), t),
    "cross_entropy_error": lambda t: F.cross_entropy_error(jnp.full((2, 3), 1 / 3), t),
    "accuracy": lambda t: nets.accuracy(nets.two_layer_net_predict, PARAMS, X, t),
    "accuracy-batched": lambda t: nets.accuracy(
        nets.two_layer_net_predict, PARAMS, X, t, batch_size=1
    ),
    "two_layer_net_loss": lambda t: nets.two_layer_net_loss(PARAMS, X, t),
    "two_layer_net": lambda t: nets.two_layer_net_autodiff_gradient(PARAMS, X, t),
    "two_layer_net_ch4_gradient": lambda t: nets.two_layer_net_ch4_gradient(PARAMS, X, t),
    "simple_net_loss": lambda t: nets.simple_net_loss({"W": jnp.ones((2, 3))}, jnp.ones((2, 2)), t),
}


@pytest.mark.parametrize("label", [2**32 + 1, 2**40, -(2**32) + 1])
@pytest.mark.parametrize("name", list(LABEL_CALLS))
def test_int64_labels_are_range_checked_before_narrowing(name, label):
    assert not jax.config.jax_enable_x64
    t = np.array([0, label], np.int64)
    where = {"accuracy-batched": "accuracy", "simple_net_loss": "cross_entropy_error"}.get(
        name, name
    )
    _raises(
        ValueError, rf"^{where}: label {label} is out of range for 3 classes", LABEL_CALLS[name], t
    )


def test_in_range_int64_labels_are_accepted_with_x64_off():
    t = np.array([2, 1], np.int64)
    want = F.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([2, 1]))
    np.testing.assert_allclose(F.softmax_cross_entropy(jnp.zeros((2, 3)), t), want)
    np.testing.assert_allclose(L.softmax_with_loss(jnp.zeros((2, 3)), t), want)


# --------------------------------------------------------------------------------------
# 3. Labels under jit cannot be checked: an out-of-range label gives NaN, loss and dx


@pytest.mark.parametrize("label", [-1, 3, 100])
@pytest.mark.parametrize(
    "loss",
    [L.softmax_with_loss, L.softmax_with_loss.fun, F.softmax_cross_entropy],
    ids=["rule", "plain", "softmax_cross_entropy"],
)
def test_an_out_of_range_label_under_jit_gives_nan_loss_and_nan_dx(loss, label):
    x = jnp.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    t = jnp.array([0, label])
    value, dx = jax.jit(jax.value_and_grad(loss))(x, t)
    assert np.isnan(float(value))
    assert np.isnan(np.asarray(dx[1])).all()  # the bad row
    np.testing.assert_allclose(dx[0], jax.grad(loss)(x[:1], t[:1])[0] / 2, rtol=1e-6)


@pytest.mark.parametrize("label", [-1, 3])
def test_cross_entropy_error_under_jit_is_nan_for_an_out_of_range_label(label):
    y = jnp.array([[0.2, 0.3, 0.5]])
    value, dy = jax.jit(jax.value_and_grad(F.cross_entropy_error))(y, jnp.array([label]))
    assert np.isnan(float(value)) and np.isnan(np.asarray(dy)).any()


@pytest.mark.parametrize("label", [-1, 3])
def test_net_losses_and_gradients_under_jit_are_nan_for_an_out_of_range_label(label):
    t = jnp.array([0, label])
    assert np.isnan(float(jax.jit(nets.two_layer_net_loss)(PARAMS, X, t)))
    for grad in (nets.two_layer_net_gradient, nets.two_layer_net_autodiff_gradient):
        for k, g in jax.jit(grad)(PARAMS, X, t).items():
            assert np.isnan(np.asarray(g)).any(), (grad.__name__, k)
    for k, g in jax.jit(nets.two_layer_net_ch4_gradient)(PARAMS, X, t).items():
        assert np.isnan(np.asarray(g)).any(), ("ch4", k)


@pytest.mark.parametrize("batch_size", [None, 1])
def test_accuracy_under_jit_is_nan_for_an_out_of_range_label_and_the_count_skips_it(batch_size):
    x = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])

    def predict(params, x):  # the scores are the examples themselves
        return x

    acc = jax.jit(functools.partial(nets.accuracy, predict, batch_size=batch_size))
    count = jax.jit(functools.partial(nets.count_correct, predict, batch_size=batch_size))
    assert float(acc({}, x, jnp.array([1, 2]))) == 1.0
    assert np.isnan(float(acc({}, x, jnp.array([1, 7]))))
    assert int(count({}, x, jnp.array([1, 7]))) == 1  # the bad row is never correct
    assert int(count({}, x, jnp.array([1, -1]))) == 1


# --------------------------------------------------------------------------------------
# 4. Finite differences in half precision would be zeros: refused


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize(
    "where, call",
    [
        ("numerical_gradient", lambda x: G.numerical_gradient(lambda v: jnp.sum(v**2), x)),
        ("numerical_gradient", lambda x: G.numerical_gradient(lambda p: p["a"].sum(), {"a": x})),
        ("numerical_diff", lambda x: G.numerical_diff(lambda v: v**2, x[0])),
        ("gradient_descent", lambda x: G.gradient_descent(lambda v: jnp.sum(v**2), x)),
        (
            "numerical_gradient",
            lambda x: nets.two_layer_net_numerical_gradient(
                {k: v.astype(x.dtype) for k, v in PARAMS.items()}, X.astype(x.dtype), T
            ),
        ),
    ],
)
def test_half_precision_finite_differences_are_refused(where, call, dtype):
    x = jnp.array([3.0, 4.0], dtype)
    name = jnp.dtype(dtype).name
    _raises(ValueError, rf"^{where}: .*is {name}, too coarse.*float32 or, better, float64", call, x)


def test_gradient_descent_with_an_exact_gradient_accepts_half_precision():
    x, _ = G.gradient_descent(
        lambda v: jnp.sum(v**2), jnp.array([3.0, 4.0], jnp.float16), 0.1, 2, grad_fn=lambda v: 2 * v
    )
    assert x.dtype == jnp.float16


# --------------------------------------------------------------------------------------
# 5. Errors from deep inside JAX now name the function and the argument


OPAQUE = [
    (
        "softmax-scalar",
        ValueError,
        r"^softmax: x must have a class axis.*scalar float32 \(\)",
        lambda: F.softmax(jnp.float32(3)),
    ),
    (
        "softmax-no-classes",
        ValueError,
        r"^softmax: x has no classes.*x \(3, 0\)",
        lambda: F.softmax(jnp.ones((3, 0))),
    ),
    (
        "log_softmax-scalar",
        ValueError,
        r"^log_softmax: x must have a class axis",
        lambda: F.log_softmax(1.0),
    ),
    (
        "softmax-strings",
        TypeError,
        r"^softmax: x must be a numeric array",
        lambda: F.softmax(np.array(["a", "b"])),
    ),
    (
        "softmax_cross_entropy-mismatch",
        ValueError,
        r"^softmax_cross_entropy: integer labels t must have shape \(4,\) for logits \(4, 3\), "
        r"got t \(2,\)",
        lambda: F.softmax_cross_entropy(jnp.ones((4, 3)), jnp.array([0, 1])),
    ),
    (
        "softmax_cross_entropy-one-hot-mismatch",
        ValueError,
        r"^softmax_cross_entropy: one-hot t must have the shape of logits; logits \(4, 3\), "
        r"t \(4, 2\)",
        lambda: F.softmax_cross_entropy(jnp.ones((4, 3)), jnp.ones((4, 2)) / 2),
    ),
    (
        "numerical_gradient-non-scalar-f",
        ValueError,
        r"^numerical_gradient: f must return a scalar, got shape \(2,\)",
        lambda: G.numerical_gradient(lambda v: v**2, jnp.array([3.0, 4.0])),
    ),
    (
        "numerical_gradient-float-chunk_size",
        TypeError,
        r"^numerical_gradient: chunk_size must be an integer, got float 2.5",
        lambda: G.numerical_gradient(jnp.sum, jnp.ones(3), chunk_size=2.5),
    ),
    (
        "numerical_gradient-zero-chunk_size",
        ValueError,
        r"^numerical_gradient: chunk_size must be an integer >= 1, got 0",
        lambda: G.numerical_gradient(jnp.sum, jnp.ones(3), chunk_size=0),
    ),
    (
        "numerical_gradient-h",
        ValueError,
        r"^numerical_gradient: h must be > 0, got 0.0",
        lambda: G.numerical_gradient(jnp.sum, jnp.ones(3), 0.0),
    ),
    (
        "numerical_gradient-f",
        TypeError,
        r"^numerical_gradient: f must be a function",
        lambda: G.numerical_gradient(jnp.ones(3), jnp.ones(3)),
    ),
    (
        "gradient_descent-string-lr",
        TypeError,
        r"^gradient_descent: lr must be a real number, got str '0.1'",
        lambda: G.gradient_descent(jnp.sum, jnp.ones(2), lr="0.1"),
    ),
    (
        "gradient_descent-nan-lr",
        ValueError,
        r"^gradient_descent: lr must be a finite number",
        lambda: G.gradient_descent(jnp.sum, jnp.ones(2), lr=float("nan")),
    ),
    (
        "gradient_descent-float-step_num",
        TypeError,
        r"^gradient_descent: step_num must be an integer, got float 10.0",
        lambda: G.gradient_descent(jnp.sum, jnp.ones(2), step_num=10.0),
    ),
    (
        "two_layer_net_loss-params-list",
        TypeError,
        r"^two_layer_net_loss: params must be a dict with keys W1, b1, W2, b2, got list",
        lambda: nets.two_layer_net_loss([PARAMS["W1"]], X, T),
    ),
    (
        "two_layer_net_predict-params-None",
        TypeError,
        r"^two_layer_net_predict: params must be a dict .*got NoneType None",
        lambda: nets.two_layer_net_predict(None, X),
    ),
    (
        "two_layer_net_gradient-int-params",
        TypeError,
        r"^two_layer_net_gradient: params\[.W1.\] must have a floating-point dtype.*"
        r"got int32 \(4, 5\)",
        lambda: nets.two_layer_net_gradient(
            {k: v.astype(jnp.int32) for k, v in PARAMS.items()}, X, T
        ),
    ),
    (
        "simple_net_predict-params-list",
        TypeError,
        r"^simple_net_predict: params must be a dict with keys W, got list",
        lambda: nets.simple_net_predict([jnp.ones((2, 3))], jnp.ones(2)),
    ),
    (
        "three_layer_net_predict-params-None",
        TypeError,
        r"^three_layer_net_predict: params must be a dict",
        lambda: nets.three_layer_net_predict(None, jnp.ones(2)),
    ),
    (
        "init_two_layer_net-int-key",
        TypeError,
        r"^init_two_layer_net: key must be a jax.random key, e.g. jax.random.key\(0\); got int 0$",
        lambda: nets.init_two_layer_net(0, 4, 5, 3),
    ),
    (
        "init_simple_net-int-key",
        TypeError,
        r"^init_simple_net: key must be a jax.random key",
        lambda: nets.init_simple_net(0),
    ),
    (
        "init_three_layer_net-int-key",
        TypeError,
        r"^init_three_layer_net: key must be a jax.random key",
        lambda: nets.init_three_layer_net(7),
    ),
    (
        "init_two_layer_net-float-size",
        TypeError,
        r"^init_two_layer_net: hidden_size must be an integer, got float 5.0",
        lambda: nets.init_two_layer_net(jax.random.key(0), 4, 5.0, 3),
    ),
    (
        "init_two_layer_net-int-dtype",
        TypeError,
        r"^init_two_layer_net: dtype must be a floating dtype \(e.g. float32\), got int32",
        lambda: nets.init_two_layer_net(jax.random.key(0), 4, 5, 3, dtype=jnp.int32),
    ),
    (
        "init_two_layer_net-nan-std",
        ValueError,
        r"^init_two_layer_net: weight_init_std must be a finite number, got nan",
        lambda: nets.init_two_layer_net(jax.random.key(0), 4, 5, 3, float("nan")),
    ),
    (
        "accuracy-float-batch_size",
        TypeError,
        r"^accuracy: batch_size must be an integer, got float 2.0",
        lambda: nets.accuracy(nets.two_layer_net_predict, PARAMS, X, T, batch_size=2.0),
    ),
    (
        "layer-string-input",
        TypeError,
        r"^relu: x must be a numeric array",
        lambda: L.relu(np.array(["1"])),
    ),
    (
        "layer-wrong-arity",
        TypeError,
        r"^affine: takes 3 arguments \('x', 'W', 'b'\), got 2",
        lambda: L.affine(X, PARAMS["W1"]),
    ),
]


@pytest.mark.parametrize("exc, pattern, call", [pytest.param(*c[1:], id=c[0]) for c in OPAQUE])
def test_opaque_errors_now_name_the_function_and_the_argument(exc, pattern, call):
    _raises(exc, pattern, call)


# --------------------------------------------------------------------------------------
# 6. Misleading errors now say what is wrong

MISLEADING = [
    (
        "empty-batch-labels",
        r"^softmax_cross_entropy: logits holds an empty batch, logits \(0, 3\)",
        lambda: F.softmax_cross_entropy(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32)),
    ),
    (
        "empty-batch-cee",
        r"^cross_entropy_error: y holds an empty batch, y \(0, 3\)",
        lambda: F.cross_entropy_error(jnp.zeros((0, 3)), jnp.zeros((0, 3))),
    ),
    (
        "empty-batch-layer",
        r"^softmax_with_loss: x holds an empty batch, x \(0, 3\)",
        lambda: L.softmax_with_loss(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32)),
    ),
    (
        "float-labels",
        r"^softmax_cross_entropy: labels must be integers .*got float32 \(3,\)",
        lambda: F.softmax_cross_entropy(jnp.ones((3, 3)), jnp.array([0.0, 1.0, 2.0])),
    ),
    (
        "float-labels-one-class",
        r"^cross_entropy_error: labels must be integers .*got float32 \(3,\)",
        lambda: F.cross_entropy_error(jnp.ones((1, 3)), jnp.array([0.0, 1.0, 2.0])),
    ),
    (
        "bool-labels",
        r"^cross_entropy_error: labels must be integers .*got bool \(3,\)",
        lambda: F.cross_entropy_error(jnp.full((3, 4), 0.25), jnp.array([True, False, True])),
    ),
    (
        "bool-labels-layer",
        r"^softmax_with_loss: labels must be integers .*got bool \(2,\)",
        lambda: L.softmax_with_loss(jnp.ones((2, 2)), jnp.array([True, False])),
    ),
    (
        "int-one-hot-layer",
        r"^softmax_with_loss: one-hot t must be floating point.*int32 \(2, 3\)",
        lambda: L.softmax_with_loss(jnp.ones((2, 3)), jnp.eye(3, dtype=jnp.int32)[:2]),
    ),
    (
        "soft-negative",
        r"^softmax_cross_entropy: t must hold probability rows.*row 0 has a "
        r"negative entry -1",
        lambda: F.softmax_cross_entropy(jnp.zeros((1, 3)), jnp.array([[-1.0, 0.0, 2.0]])),
    ),
    (
        "soft-sum",
        r"^softmax_with_loss: t must hold probability rows.*row 1 sums to 1.5",
        lambda: L.softmax_with_loss(jnp.zeros((2, 2)), jnp.array([[1.0, 0.0], [0.5, 1.0]])),
    ),
    (
        "soft-sum-cee",
        r"^cross_entropy_error: t must hold probability rows.*row 0 sums to 2",
        lambda: F.cross_entropy_error(jnp.full((1, 3), 1 / 3), jnp.array([[1.0, 1.0, 0.0]])),
    ),
    (
        "soft-accuracy",
        r"^accuracy: t must hold probability rows",
        lambda: nets.accuracy(nets.two_layer_net_predict, PARAMS, X, jnp.full((2, 3), 0.5)),
    ),
    (
        "soft-net-loss",
        r"^two_layer_net_loss: t must hold probability rows",
        lambda: nets.two_layer_net_loss(PARAMS, X, jnp.full((2, 3), 0.5)),
    ),
]


@pytest.mark.parametrize("pattern, call", [pytest.param(*c[1:], id=c[0]) for c in MISLEADING])
def test_misleading_errors_now_say_what_is_wrong(pattern, call):
    _raises(ValueError, pattern, call)


def test_integer_labels_with_one_class_are_labels_not_one_hot():
    # y (3, 1) with labels (3,): the same size, but labels by rank.
    np.testing.assert_allclose(
        F.cross_entropy_error(jnp.ones((3, 1)), jnp.zeros(3, int)), -1e-7, atol=2e-7
    )
    np.testing.assert_allclose(F.softmax_cross_entropy(jnp.ones((3, 1)), jnp.zeros(3, int)), 0.0)
    np.testing.assert_allclose(L.softmax_with_loss(jnp.ones((3, 1)), jnp.zeros(3, int)), 0.0)


def test_soft_targets_that_are_probability_rows_are_accepted_and_exact(x64):
    logits = jnp.array([[0.3, 2.9, 4.0]])
    t = jnp.array([[0.2, 0.3, 0.5]])
    want = -float(jnp.sum(t * jax.nn.log_softmax(logits)))
    for loss in (F.softmax_cross_entropy, L.softmax_with_loss):
        np.testing.assert_allclose(loss(logits, t), want, rtol=1e-12)
    # The book's ch4 example: integer one-hot t for a 1-D y works as in the book.
    y = jnp.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    np.testing.assert_allclose(
        F.cross_entropy_error(y, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), 0.510825457099338, rtol=1e-9
    )


def test_soft_targets_under_jit_are_used_as_given():
    # Values are not checked under jit (documented): the loss is -Σ t·log y as computed.
    t = jnp.array([[-1.0, 0.0, 2.0]])
    got = jax.jit(F.softmax_cross_entropy)(jnp.zeros((1, 3)), t)
    np.testing.assert_allclose(got, -float(jnp.sum(t * jnp.log(1 / 3))), rtol=1e-6)
