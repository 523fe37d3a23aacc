"""funcnet.check.verify: anyone's custom rule, right or wrong, judged right in float32
and float64 (and half precision), on the shapes real rules come in.

The real-world-shaped rules (solvers, a Pallas kernel, a custom_jvp, ...) are in
``_verify_rules.py``; ``_bench_verify.py`` times verify against check_grads on them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _verify_rules import CASES as RULES
from _verify_rules import clip_values, ode_solve

from funcnet.check import assert_rule_correct, verify

RNG = np.random.default_rng(0)


def _statuses(report) -> dict[str, set[str]]:
    by_dtype: dict[str, set[str]] = {}
    for r in report.rows:
        by_dtype.setdefault(r.dtype, set()).add(r.status)
    return by_dtype


# --------------------------------------------------------------------------------------
# Real-world-shaped rules: every right one passes, every wrong one fails, in both dtypes


# What else each case shows, checked on the same reports (one verify call per version).
def _forward_mode_reference(report):
    # lax.while_loop and pallas_call: reverse mode raises, jax.jvp works; a custom_jvp is
    # compared in forward mode by design.
    assert {r.reference for r in report.rows} == {"forward"}, str(report)


def _zero_gradient_passes_on_the_floor(report):
    shift = [r for r in report.rows if r.argument == "shift"]
    # The reference is rounding noise (relative error ~1), yet within the absolute floor.
    assert any(r.autodiff.rel > 0.5 for r in shift), str(report)


def _only_the_small_leaf_fails(report):
    # Judged on its own scale; against W's it would pass.
    assert {r.argument + r.leaf for r in report.failures()} == {"params['t']"}, str(report)


def _only_the_nan_leaf_fails(report):
    failed = report.failures()
    assert {(r.argument, r.leaf) for r in failed} == {("params", "['b']")}, str(report)
    assert all("NaN/inf in the rule" in r.note for r in failed)


RIGHT_ALSO = {
    "fixed point (while_loop)": _forward_mode_reference,
    "Pallas kernel (interpret)": _forward_mode_reference,
    "custom_jvp norm": _forward_mode_reference,
    "exactly zero gradient": _zero_gradient_passes_on_the_floor,
}
WRONG_ALSO = {
    "sign slip in a small leaf": _only_the_small_leaf_fails,
    "NaN in one leaf": _only_the_nan_leaf_fails,
}


@pytest.mark.parametrize("name", RULES)
def test_a_right_rule_passes_in_float32_and_float64(name):
    # Newton–Schulz's carry starts from jnp.eye(n), float64 under x64: its float32 row
    # passes only because that row runs with x64 off, as the user's float32 program does.
    case = RULES[name]
    report = assert_rule_correct(case.make(False), *case.args, **case.options)
    assert _statuses(report) == {"float64": {"PASS"}, "float32": {"PASS"}}, str(report)
    RIGHT_ALSO.get(name, lambda r: None)(report)


@pytest.mark.parametrize("name", RULES)
def test_a_wrong_rule_fails_in_float32_and_float64(name):
    case = RULES[name]
    report = verify(case.make(True), *case.args, **case.options)
    statuses = _statuses(report)
    assert set(statuses) == {"float64", "float32"}
    assert all(s == {"PASS", "FAIL"} or s == {"FAIL"} for s in statuses.values()), str(report)
    WRONG_ALSO.get(name, lambda r: None)(report)


def test_a_rule_nonlinear_in_its_cotangent_fails_for_every_seed():
    # clip(g) equals g for small cotangents: one random cotangent can miss it, the
    # linearity check (pullback(β·c) = β·pullback(c)) cannot.
    case = RULES["clip (cotangent clipped)"]
    x = np.asarray([0.3, -0.2, 0.1])
    for seed in range(5):
        report = verify(clip_values(True), x, seed=seed, cotangents=1, dtypes=(jnp.float64,))
        assert not report.passed, str(report)
        assert not report.rows[0].linearity.passed
    assert verify(clip_values(False), *case.args, cotangents=1, dtypes=(jnp.float64,)).passed


def test_assert_rule_correct_names_dtype_argument_leaf_and_reference():
    case = RULES["NaN in one leaf"]
    with pytest.raises(AssertionError) as info:
        assert_rule_correct(case.make(True), *case.args, dtypes=(jnp.float64,))
    message = str(info.value)
    for part in ("float64", "argument params, leaf ['b']", "reverse autodiff", "NaN"):
        assert part in message, message


def test_outputs_selects_the_outputs_a_rule_is_meant_for():
    case = RULES["diagnostic output ignored"]  # passes with outputs=0 above
    # Without outputs=, the deliberately ignored diagnostic makes the right rule fail.
    assert not verify(case.make(False), *case.args, dtypes=(jnp.float64,)).passed
    assert verify(
        case.make(False), *case.args, dtypes=(jnp.float64,), outputs=lambda out: out[0]
    ).passed


def test_rtol_per_dtype():
    # The continuous adjoint is accurate to the solver's O(h⁴) ~ 3e-8 only.
    args = RULES["ODE adjoint (RK4)"].args
    assert not verify(ode_solve(False), *args, dtypes=(jnp.float64,)).passed
    assert verify(ode_solve(False), *args, dtypes=(jnp.float64,), rtol={jnp.float64: 1e-6}).passed


# --------------------------------------------------------------------------------------
# Small rules: pytrees, several outputs, integer and non-array arguments


def _sigmoid(wrong: bool, detach: bool = False):
    @jax.custom_vjp
    def sigmoid(x):
        return 1 / (1 + jnp.exp(-x))

    def fwd(x):
        y = sigmoid(x)
        return y, jax.lax.stop_gradient(y) if detach else y

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


def _layer_with_everything(wrong: bool):
    """A pytree with float, int and bool leaves, a callable, a string, a Python int and
    None among the arguments, and ``scale`` passed by keyword (custom_vjp binds keywords
    to positions, so it cannot be keyword-only)."""

    def plain(params, x, activation, mode, repeat, unused, scale):
        h = activation(x @ params["W"]) * params["mask"] * scale
        for _ in range(repeat):
            h = h + params["offset"].astype(h.dtype)
        return jnp.sum(h, axis=0) if mode == "sum" else h

    f = jax.custom_vjp(plain, nondiff_argnums=(2, 3, 4, 5))

    def fwd(params, x, activation, mode, repeat, unused, scale):
        return plain(params, x, activation, mode, repeat, unused, scale=scale), (params, x, scale)

    def bwd(activation, mode, repeat, unused, res, g):
        params, x, scale = res
        g = jnp.broadcast_to(g, (x.shape[0], *g.shape)) if mode == "sum" else g
        z = x @ params["W"]
        dz = g * params["mask"] * scale * jax.vmap(jax.vmap(jax.grad(activation)))(z)
        dW = x.T @ dz * (-1 if wrong else 1)
        zero_int = np.zeros(params["offset"].shape, jax.dtypes.float0)
        zero_bool = np.zeros(params["mask"].shape, jax.dtypes.float0)
        dscale = jnp.sum(g * activation(z) * params["mask"])
        return {"W": dW, "mask": zero_bool, "offset": zero_int}, dz @ params["W"].T, dscale

    f.defvjp(fwd, bwd)
    return f


X = RNG.standard_normal((3, 4))
W = RNG.standard_normal((4, 4))
SMALL = {
    "elementwise": (_sigmoid, (X,), {}),
    "matmul": (_matmul, (X, W), {}),
    "several outputs": (_two_outputs, (X,), {}),
    "pytree in and out": (_pytree, ({"W": W, "b": RNG.standard_normal(4)}, X), {}),
    "integer argument": (_gather, (RNG.standard_normal(6), np.array([0, 2, 2, 5])), {}),
    "nondiff_argnums": (_power, (3, RNG.standard_normal(5) + 2.0), {}),
    "int/bool leaves, callable, str, int, None, kwargs": (
        _layer_with_everything,
        (
            {"W": W, "mask": np.array([True, False, True, True]), "offset": np.arange(4)},
            X,
            jnp.tanh,
            "sum",
            2,
            None,
        ),
        {"kwargs": {"scale": np.asarray(1.5)}},
    ),
}


@pytest.mark.parametrize("name", SMALL)
def test_small_rules_right_pass_and_wrong_fail_in_both_dtypes(name):
    make, args, options = SMALL[name]
    report = verify(make(False), *args, **options)
    assert _statuses(report) == {"float64": {"PASS"}, "float32": {"PASS"}}, str(report)
    report = verify(make(True), *args, **options)
    assert {r.dtype for r in report.failures()} == {"float64", "float32"}, str(report)


def test_only_float_leaves_are_differentiated():
    make, args, options = SMALL["int/bool leaves, callable, str, int, None, kwargs"]
    report = verify(make(False), *args, dtypes=(jnp.float64,), **options)
    assert [r.argument + r.leaf for r in report.rows] == ["params['W']", "x", "scale"]
    make, args, _ = SMALL["integer argument"]
    assert [r.argument for r in verify(make(False), *args, dtypes=(jnp.float64,)).rows] == ["x"]
    make, args, _ = SMALL["nondiff_argnums"]
    assert [r.argument for r in verify(make(False), *args, dtypes=(jnp.float64,)).rows] == ["x"]
    with pytest.raises(ValueError, match="argnums must name arguments with float leaves"):
        verify(_gather(False), *SMALL["integer argument"][1], argnums=[1])


def test_argnums_by_position_and_keyword_name():
    make, args, options = SMALL["int/bool leaves, callable, str, int, None, kwargs"]
    report = verify(make(False), *args, argnums=["scale"], dtypes=(jnp.float64,), **options)
    assert [r.argument for r in report.rows] == ["scale"] and report.passed


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_rows_against_a_float64_reference(dtype):
    x = np.linspace(-3, 3, 7)
    report = verify(_sigmoid(False), x, dtypes=(dtype,))
    assert report.passed and report.rows[0].reference == "reverse f64", str(report)
    assert not verify(_sigmoid(True), x, dtypes=(dtype,)).passed


def test_transforms_jit_vmap_and_second_order():
    x = np.linspace(-2, 2, 5)
    report = verify(_sigmoid(False), x, transforms=("jit", "vmap", "grad"), dtypes=(jnp.float64,))
    assert report.passed and [r.reference for r in report.rows] == [
        "reverse",
        "jit",
        "vmap",
        "grad",
    ]
    # Right to first order, wrong to second: the residual y is detached from x.
    report = verify(_sigmoid(False, detach=True), x, transforms=("grad",), dtypes=(jnp.float64,))
    assert [r.status for r in report.rows] == ["PASS", "FAIL"], str(report)


def test_an_exception_in_one_row_is_that_rows_error():
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    def bwd(x, g):
        if x.dtype != jnp.float64:
            raise RuntimeError("this rule only knows float64")
        return (g * jnp.cos(x),)

    f.defvjp(lambda x: (jnp.sin(x), x), bwd)
    report = verify(f, np.linspace(0, 1, 3))
    assert _statuses(report) == {"float64": {"PASS"}, "float32": {"ERROR"}}, str(report)
    assert "this rule only knows float64" in str(report)
    assert not report.passed


def test_bad_inputs_raise_clear_errors():
    f = _sigmoid(False)
    with pytest.raises(ValueError, match="dtypes is empty"):
        verify(f, X, dtypes=())
    with pytest.raises(ValueError, match="dtypes must be among"):
        verify(f, X, dtypes=(jnp.int32,))
    with pytest.raises(ValueError, match="have no elements"):
        verify(f, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="nothing to differentiate"):
        verify(f, np.arange(3))
    with pytest.raises(TypeError, match="complex rules are not supported"):
        verify(f, X + 1j)
    with pytest.raises(ValueError, match="cotangents must be an int"):
        verify(f, X, cotangents=0)
    for seed in ("a", -1, True, 2**63, 1.5):
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*63\)"):
            verify(f, X, seed=seed)
    assert verify(f, X, seed=np.int64(5)).passed
    with pytest.raises(ValueError, match="transforms must be"):
        verify(f, X, transforms=("pmap",))
    with pytest.raises(ValueError, match="rtol must be a finite number"):
        verify(f, X, rtol=float("nan"))
    with pytest.raises(TypeError, match="not a jax.custom_vjp"):
        verify(jnp.sin, X)
    # with a reference, any function can be compared with it (here: itself, trivially)
    assert verify(jnp.sin, X, reference=jnp.sin).passed


def test_an_empty_argument_beside_another_is_refused_not_passed():
    @jax.custom_vjp
    def f(x, e):
        return jnp.sum(x**2) + jnp.sum(e)

    f.defvjp(lambda x, e: (f(x, e), (x, e)), lambda r, g: (2 * g * r[0], jnp.zeros_like(r[1])))
    with pytest.raises(ValueError, match=r"argument\(s\) e have no elements"):
        verify(f, X, np.zeros((0,)))
    assert verify(f, X, np.zeros((0,)), argnums="x").passed


def test_a_report_without_rows_does_not_pass():
    from funcnet.check import VerifyReport

    assert not VerifyReport("f", ()).passed


# The way to verify all of a project's rules: one parametrized test over a dict of
# (rule, example inputs, options), as tests/test_layers.py does over funcnet's REGISTRY.
PROJECT_RULES = {"sigmoid": (_sigmoid(False), (X,), {}), "matmul": (_matmul(False), (X, W), {})}


@pytest.mark.parametrize("name", PROJECT_RULES)
def test_every_rule_of_a_project(name):
    rule, args, options = PROJECT_RULES[name]
    assert_rule_correct(rule, *args, **options)


def test_a_jitted_rule_is_verified_through_its_wrapper():
    report = verify(jax.jit(_sigmoid(True)), X, dtypes=(jnp.float64,))
    assert [r.status for r in report.rows] == ["FAIL"], str(report)


def test_funcnet_layers_are_verified_through_their_wrappers():
    # A funcnet layer wraps its custom_vjp (validation first) and carries ``.fun``; its
    # ``__wrapped__`` is the plain forward, which must not be taken for the rule.
    from funcnet import conv, layers

    kx, kw, kb = jax.random.split(jax.random.key(2), 3)
    x = jax.random.normal(kx, (2, 3, 7, 7))
    W, b = jax.random.normal(kw, (4, 3, 3, 3)), jax.random.normal(kb, (4,))
    for f, args in (
        (layers.sigmoid, (jnp.linspace(-2.0, 2.0, 5),)),
        (conv.convolution_layer(stride=2, pad=1), (x, W, b)),
        (jax.jit(layers.sigmoid), (jnp.linspace(-2.0, 2.0, 5),)),
    ):
        report = verify(f, *args, dtypes=(jnp.float64,))
        assert report.passed and report.rows, str(report)


def test_the_rule_and_the_reference_pull_back_bitwise_the_same_cotangents():
    # The cotangents used to be drawn inside the compiled program, where XLA could compute
    # them twice with different float32 roundings: pooling's exact rule then differed
    # from autodiff of its plain forward by one float32 ulp (2.4e-07) and its float64 row
    # FAILed. Drawn once outside the program, both see the same values.
    from funcnet import conv

    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    for stride in (1, 2):
        report = verify(conv.pooling_layer(2, 2, stride=stride), x, dtypes=(jnp.float64,))
        assert report.passed, str(report)
        assert report.rows[0].autodiff.abs == 0.0, str(report)  # an exact rule: no rounding
