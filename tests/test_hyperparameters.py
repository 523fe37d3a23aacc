"""Hyperparameters (lr, ratio, momentum, ε, λ, β's, h, init std) traced under jit and vmap,
the NaN policy for traced values out of range, and integer inputs never truncated.

Policy (docs/reliability.md, "Dtypes and hyperparameters"): a concrete hyperparameter out of
range raises ``ValueError``; a traced one (its value cannot be seen) gives NaN results, so a
``fit_many`` run with it is flagged as diverged and the other runs are unaffected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import _checks, functions, gradient, layers, nets, optimizers, train
from funcnet import batch_norm as bn
from funcnet import dropout as do

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32)
T = jnp.asarray([0, 1, 2, 0, 1, 2])
KEY = jax.random.key(3)
STATE = bn.init_batch_norm_state(4)
GAMMA, BETA = jnp.ones(4), jnp.zeros(4)
MLP = nets.init_multi_layer_net(jax.random.key(0), 4, [5], 3)
TWO = nets.init_two_layer_net(jax.random.key(0), 4, 5, 3)
CONV = nets.init_simple_convnet(
    jax.random.key(0), (1, 6, 6), filter_num=2, filter_size=3, hidden_size=3, output_size=3
)
IMAGES = jnp.asarray(RNG.normal(size=(2, 1, 6, 6)), jnp.float32)
EXT, EXT_STATE = nets.init_multi_layer_net_extend(jax.random.key(0), 4, [5], 3, use_batchnorm=True)


def _square(x):
    return jnp.sum(x**2)


class Case(NamedTuple):
    """``fn(value)`` with one hyperparameter; ``good`` values in range, ``bad`` ones out of
    range (concrete: ``ValueError``; traced: NaN in every floating leaf of the result)."""

    id: str
    fn: Callable[[Any], Any]
    good: tuple[float, float]
    bad: tuple[float, ...]
    tol: float = 2e-5  # float32 central differences: jit's fused rounding differs by ~ε/h
    # Central differences eagerly compile one program per leaf and call: the concrete
    # reference runs as one program with the value static (still concrete, still checked).
    jit_reference: bool = False


def _optimizer_case(name: str, hp: str, good, bad) -> Case:
    params = {"w": jnp.asarray([0.5, -1.0, 2.0])}
    grads = ({"w": jnp.asarray([0.3, -0.2, 1.0])}, {"w": jnp.asarray([-0.1, 0.4, 0.5])})

    def fn(value):
        opt = optimizers.OPTIMIZERS[name](**{hp: value})
        state = opt.init(params)
        for g in grads:
            updates, state = opt.update(g, state, params)
        return updates

    return Case(f"{name}-{hp}", fn, good, bad)


_OPTIMIZER_HPS = {
    "sgd": {"lr": ((0.1, 0.01), (-0.1,))},
    "momentum": {"lr": ((0.1, 0.01), (-0.1,)), "momentum": ((0.9, 0.5), (1.0,))},
    "nesterov": {"lr": ((0.1, 0.01), (-0.1,)), "momentum": ((0.9, 0.5), (-0.5,))},
    "adagrad": {"lr": ((0.1, 0.01), (-0.1,)), "eps": ((1e-7, 1e-3), (-1e-3,))},
    "rmsprop": {
        "lr": ((0.1, 0.01), (-0.1,)),
        "decay_rate": ((0.99, 0.9), (1.0,)),
        "eps": ((1e-7, 1e-3), (-1e-3,)),
    },
    "adam": {
        "lr": ((0.1, 0.01), (-0.1,)),
        "beta1": ((0.9, 0.8), (1.0,)),
        "beta2": ((0.999, 0.99), (1.5,)),
        "eps": ((1e-7, 1e-3), (-1e-3,)),
    },
}

CASES = [
    Case(
        "numerical_diff-h",
        lambda h: gradient.numerical_diff(lambda x: x**3, jnp.float32(2.0), h),
        (1e-2, 1e-3),
        (-1e-3, 0.0),
    ),
    Case(
        "numerical_gradient-h",
        lambda h: gradient.numerical_gradient(_square, jnp.asarray([1.0, 2.0]), h),
        (1e-2, 1e-3),
        (-1e-3,),
    ),
    Case(
        "gradient_descent-lr",  # the book's default: the numerical gradient
        lambda lr: gradient.gradient_descent(_square, jnp.asarray([1.0, -2.0]), lr, 3)[0],
        (0.1, 0.01),
        (-0.1, 0.0),
    ),
    Case(
        "gradient_descent-lr-grad_fn",
        lambda lr: gradient.gradient_descent(
            _square, jnp.asarray([1.0, -2.0]), lr, 3, grad_fn=jax.grad(_square)
        )[0],
        (0.1, 0.01),
        (-0.1,),
    ),
    Case("dropout-ratio", lambda r: do.dropout(X, KEY, r), (0.5, 0.2), (1.0, -0.1)),
    Case("dropout_inference-ratio", lambda r: do.dropout_inference(X, r), (0.5, 0.2), (1.0,)),
    Case("running_update-momentum", lambda m: bn.running_update(STATE, X, m), (0.9, 0.5), (1.5,)),
    Case(
        "batch_norm_train-momentum",  # the state: the output does not depend on momentum
        lambda m: bn.batch_norm_train(X, GAMMA, BETA, STATE, m)[1],
        (0.9, 0.0),
        (-0.5,),
    ),
    Case("weight_decay-lambda", lambda lam: nets.weight_decay(MLP, lam), (0.1, 1.0), (-0.1,)),
    Case(
        "multi_layer_net_loss-lambda",
        lambda lam: nets.multi_layer_net_loss(MLP, X, T, weight_decay_lambda=lam),
        (0.1, 1.0),
        (-1.0,),
    ),
    Case(
        "multi_layer_net-lambda",
        lambda lam: nets.multi_layer_net(weight_decay_lambda=lam).loss(MLP, X, T),
        (0.1, 1.0),
        (-1.0,),
    ),
    Case(  # the weights' gradients (the biases' do not depend on λ)
        "multi_layer_net-lambda-gradient",
        lambda lam: {
            k: v
            for k, v in nets.multi_layer_net(weight_decay_lambda=lam).gradient(MLP, X, T).items()
            if k.startswith("W")
        },
        (0.1, 1.0),
        (-1.0,),
    ),
    Case(
        "multi_layer_net_extend_loss-dropout_ratio",
        lambda r: nets.multi_layer_net_extend_loss(
            EXT, EXT_STATE, X, T, KEY, use_dropout=True, dropout_ratio=r
        )[0],
        (0.5, 0.2),
        (1.0,),
    ),
    Case(
        "multi_layer_net_extend_loss-lambda",
        lambda lam: nets.multi_layer_net_extend_loss(
            EXT, EXT_STATE, X, T, KEY, weight_decay_lambda=lam
        )[0],
        (0.1, 1.0),
        (-1.0,),
    ),
    Case(
        "multi_layer_net_extend_predict-dropout_ratio",
        lambda r: nets.multi_layer_net_extend_predict(
            EXT, EXT_STATE, X, use_dropout=True, dropout_ratio=r
        ),
        (0.5, 0.2),
        (1.0,),
    ),
    Case(
        "multi_layer_net_extend-dropout_ratio",
        lambda r: nets.multi_layer_net_extend(use_dropout=True, dropout_ratio=r).loss(
            EXT, EXT_STATE, X, T, KEY
        )[0],
        (0.5, 0.2),
        (1.5,),
    ),
    Case(
        "init_two_layer_net-weight_init_std",
        lambda s: nets.init_two_layer_net(KEY, 4, 3, 2, weight_init_std=s)["W1"],
        (0.01, 0.1),
        (-0.01,),
    ),
    Case(
        "init_simple_convnet-weight_init_std",
        lambda s: nets.init_simple_convnet(
            KEY, (1, 6, 6), filter_num=2, filter_size=3, hidden_size=3, weight_init_std=s
        )["W1"],
        (0.01, 0.1),
        (-0.01,),
    ),
    Case(
        "init_multi_layer_net-weight_init_std",
        lambda s: nets.init_multi_layer_net(KEY, 4, [5], 3, weight_init_std=s)["W2"],
        (0.01, 0.1),
        (-0.01,),
    ),
    Case(
        "init_multi_layer_net_extend-weight_init_std",
        lambda s: nets.init_multi_layer_net_extend(
            KEY, 4, [5], 3, weight_init_std=s, use_batchnorm=True
        )[0]["W2"],
        (0.01, 0.1),
        (-0.01,),
    ),
    Case(
        "init_three_layer_net-weight_init_std",
        lambda s: nets.init_three_layer_net(KEY, 4, (3, 3), 2, weight_init_std=s)["W3"],
        (0.01, 0.1),
        (-0.01,),
    ),
    Case(
        "two_layer_net_numerical_gradient-h",
        lambda h: nets.two_layer_net_numerical_gradient(TWO, X, T, h=h),
        (0.1, 0.05),
        (-1e-3,),
        1e-3,
        True,
    ),
    Case(
        "multi_layer_net_numerical_gradient-h",
        lambda h: nets.multi_layer_net_numerical_gradient(MLP, X, T, h=h),
        (0.1, 0.05),
        (0.0,),
        1e-3,
        True,
    ),
    Case(
        "multi_layer_net_extend-numerical_gradient-h",
        lambda h: nets.multi_layer_net_extend().numerical_gradient(EXT, EXT_STATE, X, T, KEY, h),
        (0.1, 0.05),
        (-1e-3,),
        1e-3,
        True,
    ),
    Case(
        "simple_convnet_numerical_gradient-h",
        lambda h: nets.simple_convnet_numerical_gradient(CONV, IMAGES, T[:2], h=h),
        (0.1, 0.05),
        (-1e-3,),
        1e-3,
        True,
    ),
    *(
        _optimizer_case(name, hp, good, bad)
        for name, hps in _OPTIMIZER_HPS.items()
        for hp, (good, bad) in hps.items()
    ),
]


def _floating_leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]


def _assert_trees_close(actual, expected, tol=2e-5):
    for a, e in zip(_floating_leaves(actual), _floating_leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol / 20)


def test_every_optimizer_hyperparameter_is_in_the_table():
    import inspect

    for name, factory in optimizers.OPTIMIZERS.items():
        assert set(inspect.signature(factory).parameters) == set(_OPTIMIZER_HPS[name]), name


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_traced_hyperparameter_gives_the_concrete_result_and_nan_out_of_range(case):
    good, bad = case.good, case.bad
    # jit of vmap over good and bad values, one program (the hyperparameter is a tracer):
    # good rows as their concrete calls, every bad (out-of-range or NaN) row NaN in every
    # floating leaf.
    values = jnp.asarray([*good, *bad, math.nan], jnp.float32)
    batched = jax.jit(jax.vmap(case.fn))(values)
    concrete = jax.jit(case.fn, static_argnums=0) if case.jit_reference else case.fn
    for i, value in enumerate(good):
        _assert_trees_close(jax.tree.map(lambda b, i=i: b[i], batched), concrete(value), case.tol)
    for leaf in _floating_leaves(batched):
        assert np.isnan(leaf[len(good) :]).all(), f"{case.id}: a bad traced value gave numbers"
    # A concrete value out of range is an error naming the argument.
    for value in (*bad, math.nan):
        with pytest.raises(ValueError, match=r"must (be|lie)"):
            case.fn(value)


# Every init_* of funcnet.nets that takes a weight scale: (name, init(key, std, dtype) -> W1)
INITS_WITH_A_SCALE = {
    "init_two_layer_net": lambda k, s, d: nets.init_two_layer_net(
        k, 4, 3, 2, weight_init_std=s, dtype=d
    )["W1"],
    "init_three_layer_net": lambda k, s, d: nets.init_three_layer_net(
        k, 4, (3, 3), 2, weight_init_std=s, dtype=d
    )["W1"],
    "init_multi_layer_net": lambda k, s, d: nets.init_multi_layer_net(
        k, 4, [3], 2, weight_init_std=s, dtype=d
    )["W1"],
    "init_multi_layer_net_extend": lambda k, s, d: nets.init_multi_layer_net_extend(
        k, 4, [3], 2, weight_init_std=s, dtype=d
    )[0]["W1"],
    "init_simple_convnet": lambda k, s, d: nets.init_simple_convnet(
        k, (1, 6, 6), filter_num=2, filter_size=3, hidden_size=3, weight_init_std=s, dtype=d
    )["W1"],
}


def test_every_init_with_a_weight_scale_is_in_the_table():
    import inspect

    with_scale = {
        name
        for name in dir(nets)
        if name.startswith("init_")
        and "weight_init_std" in inspect.signature(getattr(nets, name)).parameters
    }
    assert with_scale == set(INITS_WITH_A_SCALE)


@pytest.mark.parametrize("name", sorted(INITS_WITH_A_SCALE))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
def test_every_init_takes_a_0d_jitted_or_vmapped_scale_and_keeps_its_dtype(name, dtype):
    # init_multi_layer_net(_extend) raised TypeError for all three; the others returned
    # float32 weights for a float16 dtype when a float32 scale was vmapped over
    init = INITS_WITH_A_SCALE[name]
    expected = init(KEY, 0.1, dtype)
    from_array = init(KEY, jnp.asarray(0.1), dtype)
    jitted = jax.jit(lambda s: init(KEY, s, dtype))(jnp.float32(0.1))
    mapped = jax.vmap(lambda s: init(KEY, s, dtype))(jnp.asarray([0.1, 0.2], jnp.float32))
    for got in (from_array, jitted, mapped[0]):
        assert got.dtype == expected.dtype == dtype
        # the same numbers, up to the rounding of one compiled program against another
        tol = 4 * float(jnp.finfo(dtype).eps)
        np.testing.assert_allclose(
            np.asarray(got, np.float32), np.asarray(expected, np.float32), rtol=tol, atol=tol / 10
        )


def test_init_multi_layer_net_extend_names_itself_in_its_errors():
    with pytest.raises(ValueError, match=r"^init_multi_layer_net_extend: weight_init_std"):
        nets.init_multi_layer_net_extend(KEY, 4, [3], 2, weight_init_std=-1.0)
    with pytest.raises(TypeError, match=r"^init_multi_layer_net_extend: weight_init_std must"):
        nets.init_multi_layer_net_extend(KEY, 4, [3], 2, weight_init_std=None)
    # the names still work, case-insensitively
    he = nets.init_multi_layer_net_extend(KEY, 4, [3], 2, weight_init_std="He")[0]
    np.testing.assert_array_equal(he["W1"], nets.init_multi_layer_net(KEY, 4, [3], 2)["W1"])


def test_dropout_mask_takes_a_traced_ratio():
    def mask(r):
        return do.dropout_mask(KEY, (50,), r)

    np.testing.assert_array_equal(jax.jit(mask)(0.3), mask(0.3))
    np.testing.assert_array_equal(jax.vmap(mask)(jnp.asarray([0.3, 0.7]))[1], mask(0.7))


def test_check_float_returns_tracers_and_refuses_traced_bools():
    # Before the fix every traced value raised "Cannot interpret 'numpy.floating |
    # numpy.integer' as a data type".
    assert float(jax.jit(lambda v: _checks.check_float("f", "lr", v) * 2)(0.25)) == 0.5
    assert int(jax.jit(lambda v: _checks.check_float("f", "n", v) + 1)(jnp.int32(2))) == 3
    with pytest.raises(TypeError, match=r"f: flag must be a real scalar, got traced bool"):
        jax.jit(lambda v: _checks.check_float("f", "flag", v))(True)
    with pytest.raises(TypeError, match=r"f: lr must be a real scalar, got traced float32 \(2,\)"):
        jax.jit(lambda v: _checks.check_float("f", "lr", v))(jnp.ones(2))


# --------------------------------------------------------------------------------------
# fit_many over a hyperparameter: out-of-range runs are flagged, the others unaffected

_BLOB_X = np.asarray(jax.random.normal(jax.random.key(5), (80, 4)), np.float32)
_BLOB_T = np.argmax(_BLOB_X @ np.asarray(jax.random.normal(jax.random.key(6), (4, 3))), 1)
_TRAIN, _TEST = (_BLOB_X[:60], _BLOB_T[:60].astype(np.int32)), (_BLOB_X[60:], _BLOB_T[60:])


def test_fit_many_searches_the_dropout_ratio_and_flags_a_ratio_of_one():
    runs = 3
    keys = jax.random.split(jax.random.key(1), runs)
    params, state = jax.vmap(
        lambda k: nets.init_multi_layer_net_extend(k, 4, [6], 3, use_batchnorm=True)
    )(jax.random.split(jax.random.key(0), runs))

    def loss_fn(hp):
        return nets.multi_layer_net_extend(use_dropout=True, dropout_ratio=hp["ratio"]).loss

    def predict_fn(params, state, x):
        return nets.multi_layer_net_extend_predict(params, state, x, use_dropout=True)

    (_, final_state), history = train.fit_many(
        params,
        _TRAIN,
        _TEST,
        keys=keys,
        loss_fn=loss_fn,
        predict_fn=predict_fn,
        optimizer=lambda hp: optimizers.sgd(0.1),
        hparams={"ratio": np.asarray([0.0, 0.3, 1.0], np.float32)},
        model_state=state,
        iters=6,
        batch_size=20,
    )
    assert history.diverged.tolist() == [False, False, True]
    assert np.isfinite(history.loss[:2]).all() and np.isnan(history.loss[2]).all()


def test_fit_many_flags_a_negative_learning_rate_as_diverged():
    runs = 3
    params = jax.vmap(lambda k: nets.init_two_layer_net(k, 4, 5, 3))(
        jax.random.split(jax.random.key(0), runs)
    )
    net = nets.two_layer_net("relu")
    _, history = train.fit_many(
        params,
        _TRAIN,
        _TEST,
        keys=jax.random.split(jax.random.key(1), runs),
        loss_fn=lambda hp: net.loss,
        predict_fn=net.predict,
        optimizer=lambda hp: optimizers.momentum(hp["lr"], hp["momentum"]),
        hparams={
            "lr": np.asarray([0.1, -0.1, 0.1], np.float32),
            "momentum": np.asarray([0.9, 0.9, 1.5], np.float32),
        },
        iters=4,
        batch_size=20,
    )
    assert history.diverged.tolist() == [False, True, True]
    assert np.isfinite(history.loss[0]).all()


def test_fit_many_refuses_non_numeric_hyperparameters():
    params = jax.vmap(lambda k: nets.init_two_layer_net(k, 4, 5, 3))(
        jax.random.split(jax.random.key(0), 2)
    )
    with pytest.raises(TypeError, match=r"fit_many: hparams\['lr'\] must hold real numbers"):
        train.fit_many(
            params,
            _TRAIN,
            _TEST,
            keys=jax.random.split(jax.random.key(1), 2),
            loss_fn=lambda hp: nets.two_layer_net("relu").loss,
            predict_fn=nets.two_layer_net("relu").predict,
            optimizer=lambda hp: optax.sgd(0.1),
            hparams={"lr": np.asarray([True, False])},
            iters=2,
        )


# --------------------------------------------------------------------------------------
# Integer inputs: promoted like the book's NumPy, or refused; never truncated

_INT_X = np.asarray([[2, 4, -6], [1, 0, 3]])
_FUNCTIONS = {
    "step_function": (lambda x: functions.step_function(x), "i"),
    "sigmoid": (lambda x: functions.sigmoid(x), "f"),
    "sigmoid_grad": (lambda x: functions.sigmoid_grad(x), "f"),
    "relu": (lambda x: functions.relu(x), "i"),
    "identity_function": (lambda x: functions.identity_function(x), "i"),
    "softmax": (lambda x: functions.softmax(x), "f"),
    "log_softmax": (lambda x: functions.log_softmax(x), "f"),
    "sum_squares_error": (lambda x: functions.sum_squares_error(x, x + 1), "f"),
    "cross_entropy_error": (lambda x: functions.cross_entropy_error(x, np.asarray([0, 1])), "f"),
    "softmax_cross_entropy": (
        lambda x: functions.softmax_cross_entropy(x, np.asarray([0, 1])),
        "f",
    ),
    "dropout_inference": (lambda x: do.dropout_inference(x, 0.5), "f"),
    "batch_norm_inference": (
        lambda x: bn.batch_norm_inference(
            x,
            jnp.full(3, 0.5),
            jnp.full(3, 0.25),
            {"running_mean": jnp.full(3, 0.5), "running_var": jnp.full(3, 2.0)},
        ),
        "f",
    ),
    "numerical_diff": (lambda x: gradient.numerical_diff(lambda v: jnp.sum(v**2), x), "f"),
    "numerical_gradient": (lambda x: gradient.numerical_gradient(lambda v: jnp.sum(v**2), x), "f"),
    "gradient_descent": (lambda x: gradient.gradient_descent(_square, x, 0.1, 2)[0], "f"),
    "multi_layer_net_predict": (
        lambda x: nets.multi_layer_net_predict(
            nets.init_multi_layer_net(jax.random.key(0), 3, [4], 2), x
        ),
        "f",
    ),
}


@pytest.mark.parametrize("name", list(_FUNCTIONS))
def test_integer_input_gives_what_numpy_gives_for_its_float_values(name):
    # dropout_inference([2, 4, 6], 0.5) returned [0 0 0] (1 - ratio cast to int32); the
    # book's NumPy gives [1. 2. 3.]. Every function: integer x gives the float result of
    # the same values, in a floating dtype where NumPy's result is floating.
    fn, kind = _FUNCTIONS[name]
    got = fn(jnp.asarray(_INT_X))
    want = fn(jnp.asarray(_INT_X, jnp.float32))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert np.asarray(g).dtype.kind == kind, f"{name}: {g.dtype}"
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), 1e-6)


def _registry_cases():
    """The first case of one entry per family (conv and pooling register one entry per
    stride/pad, ``convolution_s2p1``: the dtype logic is the same for all of them)."""
    seen, kept = set(), []
    for entry in layers.REGISTRY.values():
        family = re.sub(r"_(s\d+p\d+|\d+x\d+s\d+p\d+)$", "", entry.name)
        if family not in seen:
            seen.add(family)
            kept.append((entry, entry.cases[0]))
    return kept


@pytest.mark.parametrize(
    ("entry", "case"), _registry_cases(), ids=[e.name for e, _ in _registry_cases()]
)
def test_every_layer_keeps_exact_integers_or_refuses_them_never_truncates(entry, case):
    args = case.make_inputs(np.random.default_rng(1), jnp.float32)
    ints = tuple(
        jnp.round(4 * a).astype(jnp.int32) if i in case.argnums else a for i, a in enumerate(args)
    )
    try:
        got = entry.layer(*ints)
    except (TypeError, ValueError) as e:
        assert "float" in str(e), f"{entry.name}: unclear refusal: {e}"
        return
    as_float = tuple(a.astype(jnp.float32) if i in case.argnums else a for i, a in enumerate(ints))
    want = entry.layer(*as_float)
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), 1e-6)


# --------------------------------------------------------------------------------------
# Mixed dtypes: every cotangent takes its primal's dtype (as autodiff of the plain forward)


def _mixed(entry, case, low):
    """Inputs with argument ``low`` in float16 and the other differentiated ones float32."""
    args = list(case.make_inputs(np.random.default_rng(2), jnp.float32))
    args[low] = args[low].astype(jnp.float16)
    return args


_MIXED = [
    (e, c, i)
    for e, c in _registry_cases()
    for i in c.argnums
    if len(c.argnums) > 1  # one differentiated argument has nothing to mix with
]


@pytest.mark.parametrize(
    ("entry", "case", "low"), _MIXED, ids=[f"{e.name}-arg{i}" for e, _, i in _MIXED]
)
def test_rule_cotangents_take_their_primals_dtypes_with_mixed_inputs(entry, case, low):
    # batch_norm returned a float32 dx for float16 x with float32 gamma.
    args = _mixed(entry, case, low)
    try:
        entry.layer(*args)
    except (TypeError, ValueError) as e:  # a layer may refuse mixed dtypes, clearly
        assert "dtype" in str(e) or "float" in str(e), str(e)
        return

    @jax.jit
    def cotangents(args):
        def g(*d, f):
            full = list(args)
            for i, a in zip(case.argnums, d, strict=True):
                full[i] = a
            return f(*full)

        diff = [args[i] for i in case.argnums]
        result = []
        for f in (entry.layer, entry.layer.fun):
            out, vjp = jax.vjp(lambda *d, f=f: g(*d, f=f), *diff)
            result.append(vjp(jnp.ones_like(out)))
        return result

    ours, reference = cotangents(args)
    for i, c, r in zip(case.argnums, ours, reference, strict=True):
        assert c.dtype == args[i].dtype == r.dtype, (i, c.dtype, args[i].dtype, r.dtype)
