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
    """args with ``value`` in the first element of args[i] (set on the host: an eager
    ``.at[0].set`` would compile a scatter for every shape)."""
    a = np.array(args[i])  # a copy, in args[i]'s dtype
    a.reshape(-1)[0] = value
    return (*args[:i], jnp.asarray(a), *args[i + 1 :])


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
        pytest.param(case, dtype, id=f"{case.name}-{jnp.dtype(dtype).name}")
        for case in cases
        for dtype in DTYPES
    ]


ALL_CASES = FUNCTION_CASES + LAYER_CASES
_LAYER_NAMES = frozenset(case.name for case in LAYER_CASES)


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


@functools.cache
def _program(case: Case) -> Callable:
    """``run(args, c) -> (fn(*args), rule_grads, plain_grads)``, jitted once per case.

    ``fn(*args)`` is the plain call (no autodiff); ``rule_grads`` are the gradients of
    Σ fn(args)·c with respect to every float argument, through the function (a layer's
    hand-written rule); ``plain_grads`` the same through a layer's plain forward
    (``fn.fun``, autodiff's own rules), None for a function. Every check below runs this
    one program on other values of the same shapes (a NaN in one input, a NaN cotangent,
    a finite value in the NaN's place), so each case compiles once per dtype.
    """
    argnums = case.float_args
    layer = case.name in _LAYER_NAMES

    def grads(fn, args, c):
        f = _scalarized(fn, args, argnums, c)
        return jax.grad(f, range(len(argnums)))(*(args[k] for k in argnums))

    def run(args, c):
        plain = grads(case.fn.fun, args, c) if layer else None
        return case.fn(*args), grads(case.fn, args, c), plain

    return jax.jit(run)


def _has_nan(a) -> bool:
    return bool(np.isnan(np.asarray(a)).any())


@pytest.mark.parametrize("case, dtype", _params(ALL_CASES))
def test_nan_in_any_input_or_in_the_cotangent_propagates_forward_and_backward(case, dtype):
    """For every float argument i (each check names it), under jit:

    1. a NaN input gives a NaN output (eagerly too, except for targets, refused eagerly);
    2. a NaN cotangent reaches the input's cotangent (0 for a piecewise-constant function);
    3. a NaN input gives a NaN gradient wherever the derivative depends on it: for a
       value-free input the gradient is the finite one at 1.0 in the NaN's place; max
       pooling's gradient is a routing of finite g, never NaN;
    4. a layer's rule and autodiff of its plain forward put NaN in the same places.
    """
    run = _program(case)
    args = _inputs(case, dtype)
    c = _cotangent(case.fn, args)
    argnums = case.float_args

    _, grads, _ = run(args, jnp.full(c.shape, jnp.nan, dtype))
    for i, g in zip(argnums, grads, strict=True):
        if case.zero_derivative:  # piecewise constant: the derivative is 0, not a number times g
            assert not np.asarray(g).any(), ("a NaN cotangent", case.name, i, g)
        else:
            assert _has_nan(g), ("a NaN cotangent does not reach", case.name, i, g)

    for i in argnums:
        args_i = _with_nan(args, i)
        out, grads, plain = run(args_i, c)
        assert _has_nan(out), ("a NaN input, the jitted output", case.name, i, out)
        if i not in case.targets:  # eagerly too (targets with NaN are refused eagerly)
            assert _has_nan(case.fn(*args_i)), ("a NaN input, the eager output", case.name, i)

        where = ("a NaN input, the gradient", case.name, i)
        has_nan = any(_has_nan(g) for g in grads)
        if case.name.startswith(LAYER_ROUTING):
            assert not has_nan and all(np.isfinite(np.asarray(g)).all() for g in grads), where
        elif case.zero_derivative or i in case.value_free:
            # The derivative does not depend on this value: the gradient is the one at a
            # finite positive value in its place (relu: the mask x <= 0 is unset at NaN too).
            _, want, _ = run(_with_value(args, i, 1.0), c)
            for g, w in zip(grads, want, strict=True):
                np.testing.assert_array_equal(g, w, err_msg=str(where))
                assert np.isfinite(np.asarray(g)).all(), where
        else:
            assert has_nan, (*where, grads)

        if plain is not None:  # a layer: its rule and autodiff put NaN in the same places
            for r, p in zip(grads, plain, strict=True):
                np.testing.assert_array_equal(
                    np.isnan(np.asarray(r)), np.isnan(np.asarray(p)), err_msg=str(where)
                )


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


@functools.cache  # made once per dtype (each test poisons its own copies)
def _net_problem(dtype, n=4, d=6, h=5, c=3):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = nets.init_two_layer_net(k1, d, h, c, weight_init_std=0.5, dtype=dtype)
    x = jax.random.normal(k2, (n, d), dtype)
    t = jax.random.randint(k3, (n,), 0, c, dtype=jnp.int32)
    return params, x, t


WHERE = ["x", "W1", "b1", "W2", "b2"]


def _nan_first(a):
    """a copy of ``a`` with NaN in its first element."""
    return _with_nan((a,), 0)[0]


def _poisoned(params, x, where):
    if where == "x":
        return params, _nan_first(x)  # x[0, 0]
    return {**params, where: _nan_first(params[where])}, x


NET_GRADIENTS = {
    "gradient": nets.two_layer_net_gradient,
    "autodiff_gradient": nets.two_layer_net_autodiff_gradient,
}


# Jitted once at module level: the poisoned params and inputs have the clean ones' shapes,
# so every placement of the NaN runs the same compiled program.
_JIT_LOSS = {a: jax.jit(nets.two_layer_net(a).loss) for a in nets.ACTIVATIONS}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
def test_two_layer_net_predict_and_loss_are_nan_for_a_nan_input_or_weight(activation, dtype):
    net = nets.two_layer_net(activation)
    for where in WHERE:
        params, x, t = _net_problem(dtype)
        params, x = _poisoned(params, x, where)
        assert np.isnan(np.asarray(net.predict(params, x))).any(), where
        assert np.isnan(float(net.loss(params, x, t))), where
        assert np.isnan(float(_JIT_LOSS[activation](params, x, t))), where


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
@pytest.mark.parametrize("method", list(NET_GRADIENTS))
def test_every_gradient_leaf_of_the_two_layer_net_holds_nan(method, activation, dtype):
    for where in WHERE:
        params, x, t = _net_problem(dtype)
        params, x = _poisoned(params, x, where)
        grads = NET_GRADIENTS[method](params, x, t, activation=activation)
        for k, g in grads.items():
            assert np.isnan(np.asarray(g)).any(), (method, where, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_numerical_gradient_leaf_of_the_two_layer_net_holds_nan(dtype):
    # Central differences compile one program per leaf: two placements are enough here.
    for where in ("x", "b1"):
        params, x, t = _net_problem(dtype)
        params, x = _poisoned(params, x, where)
        for k, g in nets.two_layer_net_numerical_gradient(params, x, t).items():
            assert np.isnan(np.asarray(g)).any(), (where, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_books_ch4_gradient_holds_nan_in_every_leaf(dtype):
    for where in WHERE:
        params, x, t = _net_problem(dtype)
        params, x = _poisoned(params, x, where)
        for k, g in nets.two_layer_net_ch4_gradient(params, x, t).items():
            assert np.isnan(np.asarray(g)).any(), (where, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simple_net_loss_is_nan_and_so_is_its_gradient(dtype):
    for where in ("x", "W"):
        params = {"W": jnp.asarray(nets.SIMPLE_NET_BOOK_W, dtype)}
        x, t = jnp.array([0.6, 0.9], dtype), jnp.array([0, 0, 1])
        if where == "x":
            x = _nan_first(x)
        else:
            params = {"W": _nan_first(params["W"])}  # W[0, 0]
        assert np.isnan(float(nets.simple_net_loss(params, x, t))), where
        assert np.isnan(np.asarray(jax.grad(nets.simple_net_loss)(params, x, t)["W"])).any(), where


@pytest.mark.parametrize("dtype", DTYPES)
def test_three_layer_net_predict_is_nan_for_a_nan_pixel(dtype):
    params = nets.init_three_layer_net(jax.random.key(0), 6, (5, 4), 3, dtype=dtype)
    x = np.ones((2, 6), dtype)
    x[1, 3] = np.nan
    x = jnp.asarray(x)
    out = np.asarray(nets.three_layer_net_predict(params, x))
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [None, 3])
def test_accuracy_is_nan_under_jit_and_an_error_eagerly(batch_size, dtype):
    acc = functools.partial(nets.accuracy, nets.two_layer_net_predict, batch_size=batch_size)
    jit_acc = jax.jit(acc)  # one program for every placement (same shapes)
    for where in WHERE:
        params, x, t = _net_problem(dtype)
        params, x = _poisoned(params, x, where)
        assert np.isnan(float(jit_acc(params, x, t))), where
        name = "x" if where == "x" else rf"params\['{where}'\]"
        with pytest.raises(ValueError, match=rf"accuracy: {name} holds 1 non-finite values"):
            acc(params, x, t)
