"""verify's verdicts on the rules JAX users write where the two references disagree or
cannot be computed: finite differences that do not measure the plain forward's autodiff,
a NaN autodiff of a NaN-safe rule, small leaves in float32 and half precision, forwards
that cannot be batched, wrappers around a rule, and the errors a row reports."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.check import verify

F32 = (jnp.float32,)


def _rule(forward, backward):
    """A one-argument custom_vjp: ``backward(x, g)`` is the cotangent of x."""
    f = jax.custom_vjp(forward)
    f.defvjp(lambda x: (forward(x), x), lambda x, g: (backward(x, g),))
    return f


def _notes(report) -> str:
    return " | ".join(r.note for r in report.rows)


# --------------------------------------------------------------------------------------
# Finite differences that differ from the plain forward's autodiff are not counted


def _dropout(wrong: bool):
    @jax.custom_vjp
    def dropout(x, key):
        return x * jax.random.bernoulli(key, 0.5, x.shape)

    def fwd(x, key):
        mask = jax.random.bernoulli(key, 0.5, x.shape)
        return x * mask, mask

    def bwd(mask, g):
        return (g * mask * (2.0 if wrong else 1.0), None)

    dropout.defvjp(fwd, bwd)
    return dropout


def test_a_rule_drawing_random_numbers_is_judged_in_float32():
    # float64 finite differences run with x64 on, where bernoulli draws another mask.
    x = jnp.linspace(-1.0, 1.0, 24)
    key = jax.random.key(3)
    report = verify(_dropout(False), x, key, dtypes=F32)
    assert report.passed, str(report)
    assert "finite differences not counted" in _notes(report), str(report)
    assert not verify(_dropout(True), x, key, dtypes=F32).passed


@pytest.mark.parametrize(
    "case",
    ["sin at |x| = 1e4", "sin(100 x)", "a float32 kernel", "stop_gradient"],
)
def test_right_rules_pass_where_finite_differences_cannot_follow(case):
    x = jnp.linspace(-1.0, 1.0, 7)
    if case == "sin at |x| = 1e4":  # the step 1e-4·|x| is 1: truncation error of order 1
        f, x = _rule(jnp.sin, lambda x, g: g * jnp.cos(x)), x + 1e4
    elif case == "sin(100 x)":  # truncation error 1e-5 > the float64 tolerance 1e-6
        f = _rule(lambda x: jnp.sin(100 * x), lambda x, g: 100 * g * jnp.cos(100 * x))
    elif case == "a float32 kernel":  # float64 differences of float32 rounding
        f = _rule(
            lambda x: jnp.exp(x.astype(jnp.float32)).astype(x.dtype),
            lambda x, g: g * jnp.exp(x.astype(jnp.float32)).astype(x.dtype),
        )
    else:  # the rule follows the forward's stop_gradient, as autodiff does
        f = _rule(
            lambda x: x / jax.lax.stop_gradient(jnp.linalg.norm(x)),
            lambda x, g: g / jnp.linalg.norm(x),
        )
    # a float32 kernel is checked in float32 (in a float64 row its rounding is an error)
    report = verify(f, x, dtypes=F32 if case == "a float32 kernel" else (jnp.float64, *F32))
    assert report.passed, str(report)
    assert "finite differences not counted" in _notes(report), str(report)


def test_a_wrong_rule_still_fails_where_finite_differences_are_not_counted():
    x = jnp.linspace(-1.0, 1.0, 7)
    wrong = _rule(  # the true derivative, not the stop_gradient one: autodiff disagrees
        lambda x: x / jax.lax.stop_gradient(jnp.linalg.norm(x)),
        lambda x, g: g / jnp.linalg.norm(x) - x * jnp.vdot(x, g) / jnp.linalg.norm(x) ** 3,
    )
    report = verify(wrong, x)
    assert not report.passed
    assert all("autodiff: off by" in r.note for r in report.rows), str(report)
    off = _rule(lambda x: jnp.sin(100 * x), lambda x, g: 100.001 * g * jnp.cos(100 * x))
    assert not verify(off, x, dtypes=(jnp.float64,)).passed


# --------------------------------------------------------------------------------------
# A NaN-safe rule where the plain forward's autodiff is NaN


def _safe_sqrt(wrong: bool):
    def forward(x):
        return jnp.where(x > 0, jnp.sqrt(jnp.where(x > 0, x, 1.0)), 0.0) + jnp.sqrt(
            jnp.maximum(x, 0.0)
        )

    def backward(x, g):
        safe = jnp.where(x > 0, x, 1.0)
        d = jnp.where(x > 0, 1.0 / jnp.sqrt(safe), 0.0)
        return g * (jnp.nan if wrong else 1.0) * d

    return _rule(forward, backward)


def test_a_nan_safe_rule_is_judged_against_finite_differences():
    x = jnp.array([-2.0, -0.5, 0.3, 1.0, 2.5])  # sqrt(max(x, 0))' is NaN·0 at x < 0
    report = verify(_safe_sqrt(False), x)
    assert report.passed, str(report)
    assert all("autodiff of the plain forward is NaN" in r.note for r in report.rows)
    bad = verify(_safe_sqrt(True), x)
    assert not bad.passed and "NaN/inf in the rule" in _notes(bad), str(bad)


def test_a_nan_reference_everywhere_still_asks_for_other_inputs():
    f = _rule(jnp.log, lambda x, g: g / x)
    report = verify(f, jnp.array([-1.0, -2.0]), dtypes=(jnp.float64,))
    assert not report.passed and "pick other inputs" in _notes(report), str(report)


# --------------------------------------------------------------------------------------
# Small leaves in float32 and half precision


def _loss_with_a_small_leaf(sign: float, size: float):
    @jax.custom_vjp
    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["W"])) + size * jnp.sum(jnp.sin(p["s"]))

    def fwd(p, x):
        return loss(p, x), (p, x)

    def bwd(res, g):
        p, x = res
        dh = g * (1 - jnp.tanh(x @ p["W"]) ** 2)
        return {"W": x.T @ dh, "s": sign * g * size * jnp.cos(p["s"])}, dh @ p["W"].T

    loss.defvjp(fwd, bwd)
    return loss


@pytest.mark.parametrize(
    "dtype, size", [(jnp.float32, 1e-6), (jnp.bfloat16, 0.05), (jnp.float16, 0.01)]
)
def test_a_sign_slip_in_a_small_leaf_fails_in_its_own_dtype(dtype, size):
    rng = np.random.default_rng(0)
    p = {"W": rng.standard_normal((8, 8)), "s": np.array([0.3, 0.5])}
    x = rng.standard_normal((4, 8))
    right = verify(_loss_with_a_small_leaf(1.0, size), p, x, dtypes=(dtype,))
    assert right.passed, str(right)
    wrong = verify(_loss_with_a_small_leaf(-1.0, size), p, x, dtypes=(dtype,))
    failed = {(r.argument + r.leaf) for r in wrong.failures()}
    assert failed == {"p['s']"}, str(wrong)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_a_leaf_that_cancels_to_zero_keeps_a_floor_as_large_as_its_rounding(dtype):
    # x's gradient is exactly 0: autodiff gives g − g = 0, the rule exp(log x)/x − 1, its
    # rounding (eps of the dtype), beside a leaf of order 1. Without the rule's own
    # rounding (rule in the dtype against the rule in float64) in the floor, this failed.
    @jax.custom_vjp
    def f(x, y):
        return jnp.sum(x) - jnp.sum(x) + jnp.sum(jnp.sin(y))

    def bwd(res, g):
        x, y = res
        return g * (jnp.exp(jnp.log(x)) / x - 1), g * jnp.cos(y)

    f.defvjp(lambda x, y: (f(x, y), (x, y)), bwd)
    x, y = jnp.linspace(0.3, 4.0, 11), jnp.linspace(-1.0, 1.0, 5)
    report = verify(f, x, y, dtypes=(jnp.float64, dtype))
    assert report.passed, str(report)


def _constant_one(wrong: float):
    """sin²x + cos²x = 1, summed: the gradient is exactly 0 (autodiff gives 2 sin cos −
    2 cos sin, rounding noise); the rule returns ``wrong · x`` (0: the right rule)."""

    def plain(x):
        return jnp.sum(jnp.sin(x) ** 2 + jnp.cos(x) ** 2)

    return _rule(plain, lambda x, g: g * wrong * x)


@pytest.mark.parametrize("wrong", [0.0, 1e-3, 1e-7])
def test_a_call_whose_every_gradient_is_zero_is_judged_by_finite_differences(wrong):
    # Checked alone, a zero gradient has no other leaf to give the floor a scale: the
    # floor was a few eps of autodiff's own rounding noise, and the right rule failed.
    report = verify(_constant_one(wrong), jnp.linspace(-2.0, 2.0, 9))
    assert report.passed == (wrong == 0.0), str(report)
    if wrong:
        assert all("numeric" in r.note for r in report.failures()), str(report)
    else:
        assert "zero to within what float64 finite differences resolve" in _notes(report)


def test_a_zero_leaf_checked_alone_passes_as_it_does_beside_the_other():
    from tests._verify_rules import shifted_softmax

    x, shift = np.random.default_rng(0).standard_normal((2, 5)), np.asarray(0.7)
    assert verify(shifted_softmax(False), x, shift).passed
    alone = verify(shifted_softmax(False), x, shift, argnums="shift")
    assert alone.passed, str(alone)
    assert not verify(shifted_softmax(True), x, shift, argnums="shift").passed


def _cube_jvp(stop_gradient: bool):
    cube = jax.custom_jvp(lambda x: x**3)

    @cube.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        slope = jax.lax.stop_gradient(x) if stop_gradient else x
        return cube(x), 3 * slope**2 * t

    return cube


def test_the_grad_transform_checks_a_custom_jvp_rule():
    x = jnp.linspace(-2.0, 2.5, 7)
    right = verify(_cube_jvp(False), x, transforms=("grad",))
    assert right.passed and {r.status for r in right.rows} == {"PASS"}, str(right)
    wrong = verify(_cube_jvp(True), x, transforms=("grad",))
    assert {(r.dtype, r.reference) for r in wrong.failures()} == {
        ("float64", "grad"),
        ("float32", "grad"),
    }, str(wrong)


def test_the_grad_transform_says_which_function_has_no_second_derivative():
    def plain(x):  # a while_loop: no reverse mode through it
        return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * x, c[1] + 1), (x, 0))[0]

    @jax.custom_vjp
    def power4(x):
        return plain(x)

    power4.defvjp(lambda x: (plain(x), x), lambda x, g: (g * 4 * x**3,))
    report = verify(power4, jnp.linspace(0.5, 1.5, 4), transforms=("grad",))
    grad_rows = [r for r in report.rows if r.reference == "grad"]
    assert grad_rows and all(r.status == "n/a" for r in grad_rows), str(report)
    assert all("the plain forward has no reverse-mode" in r.note for r in grad_rows)


def _implicit_solve(factor: float):
    """x = A⁻¹b with the implicit-differentiation backward (λ = A⁻ᵀg, dA = −λxᵀ, db = λ);
    ``factor`` scales dA (1: the right rule)."""

    @jax.custom_vjp
    def solve(A, b):
        return jnp.linalg.solve(A, b)

    def fwd(A, b):
        x = jnp.linalg.solve(A, b)
        return x, (A, x)

    def bwd(res, g):
        A, x = res
        lam = jnp.linalg.solve(A.T, g)
        return -factor * jnp.outer(lam, x), lam

    solve.defvjp(fwd, bwd)
    return solve


@pytest.mark.parametrize("factor", [1.0, 1.5, -1.0])
def test_an_ill_conditioned_rule_is_held_to_autodiffs_own_float32_accuracy(factor):
    # A 5×5 Hilbert matrix (condition number 4.8e5): float32 rounds every gradient of the
    # solve by ~0.5%, autodiff's too. The right rule failed in float32 (rel 3e-4 from
    # float32 autodiff against rtol 1e-4), and against float64 references taken at the
    # unrounded inputs, which float32's rounding moves by eps32 · conditioning.
    H = np.array([[1.0 / (i + j + 1) for j in range(5)] for i in range(5)])
    report = verify(_implicit_solve(factor), H, np.linspace(-1.0, 1.0, 5))
    if factor == 1.0:
        assert report.passed, str(report)
    else:
        failed = {(r.dtype, r.argument) for r in report.failures()}
        assert failed == {("float64", "A"), ("float32", "A")}, str(report)


def test_a_rule_that_rounds_more_than_the_plain_forward_still_fails_in_float32():
    # the same well-conditioned product, the rule's cotangent rounded through bfloat16
    def plain(x):
        return jnp.sin(x) * 3.0

    sloppy = _rule(plain, lambda x, g: (g * 3.0 * jnp.cos(x)).astype(jnp.bfloat16).astype(x.dtype))
    report = verify(sloppy, jnp.linspace(-1.0, 1.0, 16), dtypes=F32)
    assert not report.passed, str(report)


def test_a_surrogate_rule_without_its_reference_fails_with_a_hint():
    # a straight-through sign: the plain forward's derivative is exactly 0 everywhere
    ste = _rule(jnp.sign, lambda x, g: g)
    report = verify(ste, jnp.linspace(-1.0, 1.0, 6) + 0.05)
    assert not report.passed
    assert all("needs reference=" in r.note for r in report.failures()), str(report)
    assert all("the reference is exactly 0 here" in r.note for r in report.failures())
    assert verify(ste, jnp.linspace(-1.0, 1.0, 6) + 0.05, reference=lambda x: x).passed


def test_a_rule_the_differences_confirm_against_autodiff_says_so():
    # cholesky(symmetrize_input=False) reads only the lower triangle; JAX's derivative of
    # it is the symmetric one, the rule returns the true partials (the differences agree)
    def plain(S):
        return jax.lax.linalg.cholesky(S, symmetrize_input=False)

    @jax.custom_vjp
    def chol(S):
        return plain(S)

    def bwd(L, g):
        _, vjp = jax.vjp(lambda S: plain(jnp.tril(S) + jnp.tril(S, -1).T), jnp.tril(L @ L.T))
        return (jnp.tril(vjp(g)[0] + jnp.triu(vjp(g)[0], 1).T),)

    chol.defvjp(lambda S: (plain(S), plain(S)), bwd)
    A = np.random.default_rng(0).standard_normal((4, 4))
    report = verify(chol, A @ A.T + 4 * np.eye(4), dtypes=(jnp.float64,))
    assert not report.passed, str(report)
    assert "the finite differences agree with the rule" in _notes(report), str(report)


# --------------------------------------------------------------------------------------
# Forwards that cannot be batched, wrappers, arguments, errors


def test_a_callback_forward_without_a_batching_rule_is_checked():
    def host_sinh(x):
        spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
        return jax.pure_callback(lambda v: np.sinh(v).astype(v.dtype), spec, x)

    report = verify(_rule(host_sinh, lambda x, g: g * jnp.cosh(x)), jnp.linspace(-1, 1, 4))
    assert report.passed, str(report)
    assert {r.reference for r in report.rows} == {"none"}, str(report)
    wrong = verify(_rule(host_sinh, lambda x, g: g * jnp.sinh(x)), jnp.linspace(-1, 1, 4))
    assert not wrong.passed


def test_a_wrapper_that_computes_something_else_needs_a_reference():
    lse = _rule(lambda x: jax.nn.logsumexp(x), lambda x, g: g * jax.nn.softmax(x))
    xb = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)))

    @functools.wraps(lse)
    def doubled(x):
        return lse(2 * x)

    for f in (jax.vmap(lse), doubled):
        with pytest.raises(TypeError, match="pass reference="):
            verify(f, xb)
    assert verify(jax.vmap(lse), xb, reference=jax.vmap(lse.fun)).passed
    assert verify(doubled, xb[0], reference=lambda x: lse.fun(2 * x)).passed
    assert verify(jax.jit(jax.jit(lse)), xb[0]).passed  # jit computes what it wraps


def test_a_row_that_raises_keeps_the_whole_message_and_the_exception():
    f = jax.custom_vjp(lambda x: x**2)
    f.defvjp(lambda x: (x**2, x), lambda x, g: (jnp.sum(2 * g * x),))  # a scalar for (3,)
    report = verify(f, jnp.ones(3))
    row = report.rows[0]
    assert row.status == "ERROR" and isinstance(row.error, ValueError)
    assert "corresponding to an input of type float64[3]" in row.note, row.note
    assert row.describe().startswith("float64: the row raised ValueError"), row.describe()


def test_argnums_names_a_positional_argument_and_dtypes_takes_one_dtype():
    @jax.custom_vjp
    def scale(x, s):
        return x * s

    scale.defvjp(lambda x, s: (x * s, (x, s)), lambda r, g: (g * r[1], jnp.sum(g * r[0])))
    report = verify(scale, jnp.arange(3.0), 2.0, argnums="s", dtypes=jnp.float32)
    assert [(r.dtype, r.argument) for r in report.rows] == [("float32", "s")], str(report)
    assert verify(scale, jnp.arange(3.0), 2.0, argnums=["x", 1], dtypes="float64").passed


def test_a_rule_with_arguments_bound_by_functools_partial():
    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def scale(k, x, s):
        return k * x * s

    def bwd(k, res, g):
        x, s = res
        return (g * k * s, jnp.sum(g * k * x))

    scale.defvjp(lambda k, x, s: (scale(k, x, s), (x, s)), bwd)
    report = verify(functools.partial(scale, 3.0, jnp.arange(3.0)), 2.0)
    assert report.passed and report.name == "scale", str(report)
    assert [r.argument for r in report.rows] == ["s", "s"], str(report)
