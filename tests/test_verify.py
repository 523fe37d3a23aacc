"""funcnet.check.verify: one call verifies anyone's custom_vjp rule, and catches wrong ones."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.check import assert_rule_correct, verify

RNG = np.random.default_rng(0)


def _sigmoid(wrong: bool):
    @jax.custom_vjp
    def sigmoid(x):
        return 1 / (1 + jnp.exp(-x))

    def fwd(x):
        y = sigmoid(x)
        return y, y

    def bwd(y, g):
        return (g * y,) if wrong else (g * y * (1 - y),)  # wrong: forgot (1 - y)

    sigmoid.defvjp(fwd, bwd)
    return sigmoid


def _matmul(wrong: bool):
    @jax.custom_vjp
    def matmul(x, W):
        return x @ W

    def fwd(x, W):
        return x @ W, (x, W)

    def bwd(res, g):
        x, W = res
        dW = x.T @ g
        return g @ W.T, dW.T if wrong else dW  # wrong: a transposed dW

    matmul.defvjp(fwd, bwd)
    return matmul


def _two_outputs(wrong: bool):
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x), x**2

    def fwd(x):
        return f(x), x

    def bwd(x, g):
        g_sin, g_sq = g
        return (g_sin * jnp.cos(x) + g_sq * (x if wrong else 2 * x),)

    f.defvjp(fwd, bwd)
    return f


def _pytree(wrong: bool):
    @jax.custom_vjp
    def layer(params, x):
        return {"out": x @ params["W"] + params["b"], "norm": jnp.sum(params["W"] ** 2)}

    def fwd(params, x):
        return layer(params, x), (params, x)

    def bwd(res, g):
        params, x = res
        dW = x.T @ g["out"] + 2 * g["norm"] * params["W"]
        db = jnp.sum(g["out"], axis=0) * (2 if wrong else 1)
        return {"W": dW, "b": db}, g["out"] @ params["W"].T

    layer.defvjp(fwd, bwd)
    return layer


def _gather(wrong: bool):
    @jax.custom_vjp
    def pick(x, idx):
        return x[idx] * 3.0

    def fwd(x, idx):
        return pick(x, idx), (jnp.zeros_like(x), idx)

    def bwd(res, g):
        zeros, idx = res
        return zeros.at[idx].add(g * (2.0 if wrong else 3.0)), None

    pick.defvjp(fwd, bwd)
    return pick


def _power(wrong: bool):
    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def power(n, x):
        return x**n

    def fwd(n, x):
        return x**n, x

    def bwd(n, x, g):
        return (g * (n if not wrong else n + 1) * x ** (n - 1),)

    power.defvjp(fwd, bwd)
    return power


X = RNG.standard_normal((3, 4))
W = RNG.standard_normal((4, 4))
CASES = {
    "elementwise": (_sigmoid, (X,)),
    "matmul": (_matmul, (X[:, :4], W)),
    "several outputs": (_two_outputs, (X,)),
    "pytree in and out": (_pytree, ({"W": W, "b": RNG.standard_normal(4)}, X)),
    "integer argument": (_gather, (RNG.standard_normal(6), np.array([0, 2, 2, 5]))),
    "nondiff_argnums": (_power, (3, RNG.standard_normal(5) + 2.0)),
}


@pytest.mark.parametrize("name", CASES)
def test_a_correct_rule_passes(name):
    make, args = CASES[name]
    report = verify(make(False), *args)
    assert report.passed, str(report)
    assert "PASS" in str(report) and "FAIL" not in str(report)
    assert {r.dtype for r in report.results} == {"float64", "float32"}


@pytest.mark.parametrize("name", CASES)
def test_a_wrong_rule_is_caught_in_both_dtypes(name):
    make, args = CASES[name]
    report = verify(make(True), *args)
    assert not report.passed
    failed = {r.dtype for r in report.results if not r.passed}
    assert failed == {"float64", "float32"}, str(report)
    with pytest.raises(AssertionError, match="is wrong"):
        assert_rule_correct(make(True), *args)


def test_integer_and_nondiff_arguments_are_not_differentiated():
    make, args = CASES["integer argument"]
    assert [r.case for r in verify(make(False), *args).results] == ["arg 0", "arg 0"]
    make, args = CASES["nondiff_argnums"]
    assert [r.case for r in verify(make(False), *args).results] == ["arg 1", "arg 1"]
    with pytest.raises(ValueError, match="argnums must name float arguments"):
        verify(_gather(False), *CASES["integer argument"][1], argnums=[1])


def test_a_plain_function_needs_a_reference():
    with pytest.raises(TypeError, match="not a jax.custom_vjp function"):
        verify(jnp.sin, X)
    # with a reference, any function can be compared with it (here: itself, trivially)
    assert verify(jnp.sin, X, reference=jnp.sin).passed
