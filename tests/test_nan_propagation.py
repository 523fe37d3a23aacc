"""NaN propagates through every public function, every registered layer and every net,
forward and backward, in float32 and float64: it never turns into a number.

Forward: a NaN in any float input gives NaN in the output. Backward: a NaN cotangent
reaches every input's cotangent, and a NaN input gives a NaN gradient wherever the
derivative depends on that input's value (for the linear inputs listed in VALUE_FREE the
derivative does not, and the gradient stays the finite one autodiff gives). Concrete
targets holding NaN are refused with ValueError (they are not probability rows), so those
are exercised under jit, where values are not checked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import functions as F
from funcnet import layers as L
from funcnet import nets

DTYPES = [jnp.float32, jnp.float64]


def _normal(rng, shape, dtype):
    return jnp.asarray(rng.standard_normal(shape), dtype)


def _probabilities(rng, shape, dtype):
    e = np.exp(rng.standard_normal(shape))
    return jnp.asarray(e / e.sum(-1, keepdims=True), dtype)


def _one_hot(rng, shape, dtype):
    return jnp.asarray(np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])], dtype)


def _labels(rng, shape, dtype):
    return jnp.asarray(rng.integers(0, shape[-1], shape[:-1]), jnp.int32)


class Case(NamedTuple):
    """A public function, how to make its inputs, which are float, which are targets."""

    name: str
    fn: Callable
    makers: tuple  # one (sampler, shape) per positional argument
    float_args: tuple[int, ...]
    targets: tuple[int, ...] = ()  # checked eagerly: NaN there is a ValueError outside jit
    value_free: tuple[int, ...] = ()  # derivative does not depend on this input's value
    zero_derivative: bool = False  # the function is piecewise constant

    def inputs(self, dtype, seed=0):
        rng = np.random.default_rng(seed)
        return tuple(sampler(rng, shape, dtype) for sampler, shape in self.makers)


S = (3, 4)
FUNCTION_CASES = [
    Case("step_function", F.step_function, ((_normal, S),), (0,), zero_derivative=True),
    Case("sigmoid", F.sigmoid, ((_normal, S),), (0,)),
    Case("sigmoid_grad", F.sigmoid_grad, ((_normal, S),), (0,)),
    # relu: at NaN the book's mask (x <= 0) is unset, so the upstream gradient passes on.
    Case("relu", F.relu, ((_normal, S),), (0,), value_free=(0,)),
    Case("identity_function", F.identity_function, ((_normal, S),), (0,), value_free=(0,)),
    Case("softmax", F.softmax, ((_normal, S),), (0,)),
    Case("softmax-1d", F.softmax, ((_normal, (5,)),), (0,)),
    Case("log_softmax", F.log_softmax, ((_normal, S),), (0,)),
    Case("sum_squares_error", F.sum_squares_error, ((_normal, S), (_normal, S)), (0, 1)),
    Case(
        "cross_entropy_error-one-hot",
        F.cross_entropy_error,
        ((_probabilities, S), (_one_hot, S)),
        (0, 1),
        targets=(1,),
    ),
    Case(
        "cross_entropy_error-labels",
        F.cross_entropy_error,
        ((_probabilities, S), (_labels, S)),
        (0,),
    ),
    Case(
        "softmax_cross_entropy-one-hot",
        F.softmax_cross_entropy,
        ((_normal, S), (_one_hot, S)),
        (0, 1),
        targets=(1,),
    ),
    Case(
        "softmax_cross_entropy-labels",
        F.softmax_cross_entropy,
        ((_normal, S), (_labels, S)),
        (0,),
    ),
]

# For layers, the inputs come from the registry; these inputs' derivatives do not depend
# on their own values (add and the bias are linear; relu passes g at NaN, see above).
# Keys are name prefixes (conv and pooling register one entry per stride and pad).
LAYER_VALUE_FREE = {
    "add": (0, 1),
    "affine": (2,),
    "relu": (0,),
    "batch_norm": (2,),  # dbeta = Σ dout
    "dropout": (0,),  # dx = g · mask
    "convolution": (2,),  # db = Σ dout
}
LAYER_TARGETS = {"softmax_with_loss": (1,)}
# Max pooling routes each g to its window's first maximum (a NaN wins, as NumPy's argmax):
# the gradient stays a routing of finite g, so it has no NaN whatever the inputs.
LAYER_ROUTING = ("pooling",)


def _by_prefix(table: dict, name: str) -> tuple[int, ...]:
    return next((v for k, v in table.items() if name == k or name.startswith(k + "_")), ())


def _one_per_family(entries):
    """Conv and pooling register one entry per stride/pad (``convolution_s2p1``); NaN
    propagation does not depend on those, so one configuration of each family is enough
    here (every configuration is still verified in tests/test_layers.py)."""
    seen, kept = set(), []
    for entry in entries:
        family = re.sub(r"_(s\d+p\d+|\d+x\d+s\d+p\d+)$", "", entry.name)
        if family not in seen:
            seen.add(family)
            kept.append(entry)
    return kept


LAYER_CASES = [
    Case(
        f"{entry.name}-{case.name}",
        entry.layer,
        case.make_inputs,
        case.argnums,
        LAYER_TARGETS.get(entry.name, ()),
        _by_prefix(LAYER_VALUE_FREE, entry.name),
    )
    for entry in _one_per_family(L.REGISTRY.values())
    for case in entry.cases
]


def _inputs(case: Case, dtype):
    if callable(case.makers):  # a registry case: make_inputs(rng, dtype)
        return case.makers(np.random.default_rng(0), dtype)
    return case.inputs(dtype)


def _with_value(args, i, value):
    """args with ``value`` in the first element of args[i]."""
    a = jnp.asarray(args[i])
    flat = a.reshape(-1).at[0].set(value)
    return (*args[:i], flat.reshape(a.shape), *args[i + 1 :])


def _with_nan(args, i):
    return _with_value(args, i, jnp.nan)


def _scalarized(fn, args, argnums, cotangent):
    def f(*diff):
        full = list(args)
        for i, d in zip(argnums, diff, strict=True):
            full[i] = d
        return jnp.sum(fn(*full) * cotangent)

    return f


def _cotangent(fn, args, seed=1):
    out = jax.eval_shape(fn, *args)
    return jnp.asarray(np.random.default_rng(seed).standard_normal(out.shape), out.dtype)


def _params(cases):
    return [
        pytest.param(case, i, dtype, id=f"{case.name}-arg{i}-{jnp.dtype(dtype).name}")
        for case in cases
        for i in case.float_args
        for dtype in DTYPES
    ]


ALL_CASES = FUNCTION_CASES + LAYER_CASES


@pytest.fixture(autouse=True)
def _x64_for_float64(request):
    """float64 cases run with x64 enabled (never globally)."""
    dtype = request.node.callspec.params.get("dtype") if hasattr(request.node, "callspec") else None
    if dtype is not None and jnp.dtype(dtype) == jnp.float64:
        with jax.enable_x64(True):
            yield
    else:
        yield


# --------------------------------------------------------------------------------------
# Functions and layers


@pytest.mark.parametrize("case, i, dtype", _params(ALL_CASES))
def test_a_nan_input_gives_a_nan_output(case, i, dtype):
    args = _with_nan(_inputs(case, dtype), i)
    out = jax.jit(case.fn)(*args)
    assert np.isnan(np.asarray(out)).any(), (case.name, i, out)
    if i not in case.targets:  # eagerly too (targets with NaN are refused eagerly)
        assert np.isnan(np.asarray(case.fn(*args))).any()


@pytest.mark.parametrize("case, i, dtype", _params(ALL_CASES))
def test_a_nan_cotangent_reaches_the_input(case, i, dtype):
    args = _inputs(case, dtype)
    cotangent = jnp.full(jax.eval_shape(case.fn, *args).shape, jnp.nan, dtype)
    grads = jax.jit(jax.grad(_scalarized(case.fn, args, (i,), cotangent)))(args[i])
    if case.zero_derivative:  # piecewise constant: the derivative is 0, not a number times g
        assert not np.asarray(grads).any()
    else:
        assert np.isnan(np.asarray(grads)).any(), (case.name, i, grads)


@pytest.mark.parametrize("case, i, dtype", _params(ALL_CASES))
def test_a_nan_input_gives_a_nan_gradient_where_the_derivative_depends_on_it(case, i, dtype):
    args = _with_nan(_inputs(case, dtype), i)
    argnums = case.float_args
    c = _cotangent(case.fn, args)
    f = _scalarized(case.fn, args, argnums, c)
    grads = jax.jit(jax.grad(f, range(len(argnums))))(*(args[k] for k in argnums))
    has_nan = any(np.isnan(np.asarray(g)).any() for g in grads)
    if case.name.startswith(LAYER_ROUTING):
        assert not has_nan and all(np.isfinite(np.asarray(g)).all() for g in grads)
    elif case.zero_derivative or i in case.value_free:
        # The derivative does not depend on this value: the gradient is the one at a
        # finite positive value in its place (relu: the mask x <= 0 is unset at NaN too).
        finite = _with_value(args, i, 1.0)
        f1 = _scalarized(case.fn, finite, argnums, c)
        want = jax.jit(jax.grad(f1, range(len(argnums))))(*(finite[k] for k in argnums))
        for g, w in zip(grads, want, strict=True):
            np.testing.assert_array_equal(g, w)
            assert np.isfinite(np.asarray(g)).all()
    else:
        assert has_nan, (case.name, i, grads)


@pytest.mark.parametrize("case, i, dtype", _params(LAYER_CASES))
def test_the_rule_and_autodiff_put_nan_in_the_same_places(case, i, dtype):
    args = _with_nan(_inputs(case, dtype), i)
    argnums = case.float_args
    c = _cotangent(case.fn, args)
    diff = tuple(args[k] for k in argnums)
    rule = jax.jit(jax.grad(_scalarized(case.fn, args, argnums, c), range(len(argnums))))(*diff)
    plain = jax.jit(jax.grad(_scalarized(case.fn.fun, args, argnums, c), range(len(argnums))))(
        *diff
    )
    for r, p in zip(rule, plain, strict=True):
        np.testing.assert_array_equal(np.isnan(np.asarray(r)), np.isnan(np.asarray(p)))


@pytest.mark.parametrize(
    "fn, t",
    [
        (F.cross_entropy_error, [[jnp.nan, 1.0, 0.0]]),
        (F.softmax_cross_entropy, [[0.0, jnp.inf, 0.0]]),
        (L.softmax_with_loss, [[jnp.nan, 1.0, 0.0]]),
    ],
)
def test_concrete_non_finite_targets_are_refused_naming_t(fn, t):
    with pytest.raises(ValueError, match=r"t holds 1 non-finite values \(first at index \(0, "):
        fn(jnp.full((1, 3), 1 / 3), jnp.asarray(t))


def test_relu_keeps_nan_like_the_books_maximum():
    x = jnp.array([jnp.nan, -1.0, 0.0, 1.0])
    for relu in (F.relu, L.relu, L.relu.fun, jax.jit(L.relu)):
        out = np.asarray(relu(x))
        np.testing.assert_array_equal(out, np.maximum(0, np.asarray(x)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_function_keeps_nan_and_gives_integers_for_integers(dtype):
    out = F.step_function(jnp.array([jnp.nan, -1.0, 0.0, 2.0], dtype))
    np.testing.assert_array_equal(out, [np.nan, 0.0, 0.0, 1.0])
    assert out.dtype == dtype
    assert F.step_function(jnp.array([-1, 2])).dtype == jnp.int32


# --------------------------------------------------------------------------------------
# Nets


def _net_problem(dtype, n=4, d=6, h=5, c=3):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = nets.init_two_layer_net(k1, d, h, c, weight_init_std=0.5, dtype=dtype)
    x = jax.random.normal(k2, (n, d), dtype)
    t = jax.random.randint(k3, (n,), 0, c, dtype=jnp.int32)
    return params, x, t


WHERE = ["x", "W1", "b1", "W2", "b2"]


def _poisoned(params, x, where):
    if where == "x":
        return params, x.at[0, 0].set(jnp.nan)
    return {
        **params,
        where: params[where].reshape(-1).at[0].set(jnp.nan).reshape(params[where].shape),
    }, x


NET_GRADIENTS = {
    "gradient": nets.two_layer_net_gradient,
    "autodiff_gradient": nets.two_layer_net_autodiff_gradient,
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
@pytest.mark.parametrize("where", WHERE)
def test_two_layer_net_predict_and_loss_are_nan_for_a_nan_input_or_weight(where, activation, dtype):
    params, x, t = _net_problem(dtype)
    params, x = _poisoned(params, x, where)
    net = nets.two_layer_net(activation)
    assert np.isnan(np.asarray(net.predict(params, x))).any()
    assert np.isnan(float(net.loss(params, x, t)))
    assert np.isnan(float(jax.jit(net.loss)(params, x, t)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("method", list(NET_GRADIENTS))
def test_every_gradient_leaf_of_the_two_layer_net_holds_nan(method, where, activation, dtype):
    params, x, t = _net_problem(dtype)
    params, x = _poisoned(params, x, where)
    grads = NET_GRADIENTS[method](params, x, t, activation=activation)
    for k, g in grads.items():
        assert np.isnan(np.asarray(g)).any(), (method, where, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "b1"])
def test_every_numerical_gradient_leaf_of_the_two_layer_net_holds_nan(where, dtype):
    # Central differences compile one program per leaf: two placements are enough here.
    params, x, t = _net_problem(dtype)
    params, x = _poisoned(params, x, where)
    for k, g in nets.two_layer_net_numerical_gradient(params, x, t).items():
        assert np.isnan(np.asarray(g)).any(), (where, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", WHERE)
def test_the_books_ch4_gradient_holds_nan_in_every_leaf(where, dtype):
    params, x, t = _net_problem(dtype)
    params, x = _poisoned(params, x, where)
    for k, g in nets.two_layer_net_ch4_gradient(params, x, t).items():
        assert np.isnan(np.asarray(g)).any(), (where, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "W"])
def test_simple_net_loss_is_nan_and_so_is_its_gradient(where, dtype):
    params = {"W": jnp.asarray(nets.SIMPLE_NET_BOOK_W, dtype)}
    x, t = jnp.array([0.6, 0.9], dtype), jnp.array([0, 0, 1])
    if where == "x":
        x = x.at[0].set(jnp.nan)
    else:
        params = {"W": params["W"].at[0, 0].set(jnp.nan)}
    assert np.isnan(float(nets.simple_net_loss(params, x, t)))
    assert np.isnan(np.asarray(jax.grad(nets.simple_net_loss)(params, x, t)["W"])).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_three_layer_net_predict_is_nan_for_a_nan_pixel(dtype):
    params = nets.init_three_layer_net(jax.random.key(0), 6, (5, 4), 3, dtype=dtype)
    x = jnp.ones((2, 6), dtype).at[1, 3].set(jnp.nan)
    out = np.asarray(nets.three_layer_net_predict(params, x))
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("batch_size", [None, 3])
def test_accuracy_is_nan_under_jit_and_an_error_eagerly(batch_size, where, dtype):
    params, x, t = _net_problem(dtype)
    params, x = _poisoned(params, x, where)
    acc = functools.partial(nets.accuracy, nets.two_layer_net_predict, batch_size=batch_size)
    assert np.isnan(float(jax.jit(acc)(params, x, t)))
    name = "x" if where == "x" else rf"params\['{where}'\]"
    with pytest.raises(ValueError, match=rf"accuracy: {name} holds 1 non-finite values"):
        acc(params, x, t)
