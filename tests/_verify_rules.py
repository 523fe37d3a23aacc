"""Real-world-shaped custom rules, each in a right and a wrong version, for
``tests/test_verify.py`` and ``tests/_bench_verify.py``.

``CASES[name]`` is a :class:`RuleCase`: ``make(wrong)`` builds the function, ``args`` are
float64 NumPy example inputs (verify casts them per dtype row) and ``options`` the
``verify`` options the rule needs (a surrogate ``reference``, ``outputs=``, ``rtol``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

RNG = np.random.default_rng(21)


class RuleCase(NamedTuple):
    make: Callable[[bool], Callable[..., Any]]
    args: tuple
    options: dict


# --- a fixed-point solver (lax.while_loop) with an implicit-function rule ----------------


def fixed_point(wrong: bool):
    """z* = tanh(W z* + x), solved by iteration until the step is below 10 eps.

    Rule (implicit function theorem): with D = diag(1 − z*²), u solves (I − Wᵀ D) u = c;
    then x̄ = D u and W̄ = (D u) z*ᵀ. The wrong rule skips the solve (u = c), the bug of
    differentiating only the last iteration."""

    def solve(W, x):
        tol = 10 * jnp.finfo(x.dtype).eps

        def cond(state):
            z, step, i = state
            return (step > tol) & (i < 500)

        def body(state):
            z, _, i = state
            z_new = jnp.tanh(W @ z + x)
            return z_new, jnp.max(jnp.abs(z_new - z)), i + 1

        z0 = jnp.zeros_like(x)
        return lax.while_loop(cond, body, (z0, jnp.asarray(jnp.inf, x.dtype), 0))[0]

    f = jax.custom_vjp(solve)

    def fwd(W, x):
        z = solve(W, x)
        return z, (W, z)

    def bwd(res, c):
        W, z = res
        d = 1 - z**2
        u = c if wrong else jnp.linalg.solve(jnp.eye(z.shape[0], dtype=z.dtype) - W.T * d, c)
        du = d * u
        return jnp.outer(du, z), du

    f.defvjp(fwd, bwd)
    return f


_W = RNG.standard_normal((4, 4))
_W *= 0.5 / np.linalg.norm(_W, 2)  # a contraction: the iteration converges

# --- Newton–Schulz matrix square root (lax.scan, float32 carry) with a Sylvester rule ----


def newton_schulz_sqrt(wrong: bool):
    """Y = A^½ by 20 coupled Newton–Schulz steps; the carry starts from ``jnp.eye(n)``
    (the default float dtype: float32 in a float32 program).

    Rule: dA = dY·Y + Y·dY, so Ā solves the Sylvester equation Ā Yᵀ + Yᵀ Ā = Ȳ
    (row-major vec: (I ⊗ Y + Yᵀ ⊗ I) vec Ā = vec Ȳ). The wrong rule uses the scalar
    formula Ā = Ȳ Y⁻¹ / 2."""

    def sqrtm(A):
        n = A.shape[0]
        norm = jnp.sqrt(jnp.sum(A * A))
        eye = jnp.eye(n)

        def step(carry, _):
            Y, Z = carry
            T = 0.5 * (3.0 * eye - Z @ Y)
            return (Y @ T, T @ Z), None

        (Y, _), _ = lax.scan(step, (A / norm, eye), None, length=20)
        return Y * jnp.sqrt(norm)

    f = jax.custom_vjp(sqrtm)

    def fwd(A):
        Y = sqrtm(A)
        return Y, Y

    def bwd(Y, G):
        n = Y.shape[0]
        if wrong:
            return (0.5 * G @ jnp.linalg.inv(Y),)
        eye = jnp.eye(n, dtype=Y.dtype)
        K = jnp.kron(eye, Y) + jnp.kron(Y.T, eye)
        return (jnp.linalg.solve(K, G.reshape(-1)).reshape(n, n),)

    f.defvjp(fwd, bwd)
    return f


_Q = np.linalg.qr(RNG.standard_normal((3, 3)))[0]
_SPD = _Q @ np.diag([0.6, 1.1, 1.8]) @ _Q.T

# --- an ODE solve (RK4) with a continuous adjoint rule -----------------------------------


def _dynamics(y, theta):
    return -theta * y + 0.5 * jnp.tanh(y[::-1])


def _rk4_step(fun, y, h):
    k1 = fun(y)
    k2 = fun(y + 0.5 * h * k1)
    k3 = fun(y + 0.5 * h * k2)
    k4 = fun(y + h * k3)
    return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


_ODE_STEPS, _ODE_T = 40, 1.0


def ode_solve(wrong: bool):
    """y(T) for y' = −θ·y + ½ tanh(reversed y), y(0) = y0, by 40 RK4 steps.

    Rule (continuous adjoint): integrate [y, a, θ̄] backward from T with a' = −aᵀ∂f/∂y,
    θ̄' = −aᵀ∂f/∂θ; ȳ0 = a(0). Accurate to the solver's O(h⁴), hence rtol=1e-6 in float64. The
    wrong rule returns −θ̄ (a sign slip)."""

    def solve(y0, theta):
        h = _ODE_T / _ODE_STEPS

        def step(y, _):
            return _rk4_step(lambda v: _dynamics(v, theta), y, h), None

        return lax.scan(step, y0, None, length=_ODE_STEPS)[0]

    f = jax.custom_vjp(solve)

    def fwd(y0, theta):
        y = solve(y0, theta)
        return y, (y, theta)

    def bwd(res, g):
        yT, theta = res
        h = _ODE_T / _ODE_STEPS

        def augmented(state):
            y, a, _ = state
            dy, pullback = jax.vjp(_dynamics, y, theta)
            a_y, a_theta = pullback(a)
            return (-dy, a_y, a_theta)  # backward in time: d/ds of (y, a, θ̄), s = T − t

        def step(state, _):
            def fun(s):
                return augmented(s)

            k1 = fun(state)
            add = lambda s, k, c: jax.tree_util.tree_map(lambda u, v: u + c * v, s, k)  # noqa: E731
            k2 = fun(add(state, k1, 0.5 * h))
            k3 = fun(add(state, k2, 0.5 * h))
            k4 = fun(add(state, k3, h))
            new = jax.tree_util.tree_map(
                lambda s, a, b, c, d: s + h / 6 * (a + 2 * b + 2 * c + d), state, k1, k2, k3, k4
            )
            return new, None

        (_, a0, theta_bar), _ = lax.scan(
            step, (yT, g, jnp.zeros_like(theta)), None, length=_ODE_STEPS
        )
        return a0, -theta_bar if wrong else theta_bar

    f.defvjp(fwd, bwd)
    return f


# --- a straight-through round (checked against the surrogate it differentiates) ----------


def straight_through_round(wrong: bool):
    """round(x) forward, the identity's gradient backward (the straight-through estimator);
    the wrong rule passes g·sign(x), a sign slip for negative inputs."""

    def plain(x):
        return jnp.round(x)

    f = jax.custom_vjp(plain)
    f.defvjp(
        lambda x: (jnp.round(x), jnp.sign(x)),
        lambda s, g: (g * s,) if wrong else (g,),
    )
    return f


# --- a value clipper; the wrong rule clips the cotangent instead --------------------------


def clip_values(wrong: bool):
    """clip(x, −1, 1) with the rule g·1[|x| < 1]; the wrong rule returns clip(g, −1, 1),
    right for cotangents inside (−1, 1) only (so one random cotangent may miss it)."""

    def plain(x):
        return jnp.clip(x, -1.0, 1.0)

    f = jax.custom_vjp(plain)
    f.defvjp(
        lambda x: (plain(x), x),
        lambda x, g: (jnp.clip(g, -1.0, 1.0),) if wrong else (g * (jnp.abs(x) < 1),),
    )
    return f


# --- an affine layer whose wrong rule has NaN in one leaf (db) ---------------------------


def affine_nan_leaf(wrong: bool):
    """params {"W", "b"}, x ↦ x W + b. The wrong rule normalises db by the number of
    masked rows, which is 0 here: 0/0 = NaN in db alone."""

    def plain(params, x):
        return x @ params["W"] + params["b"]

    f = jax.custom_vjp(plain)

    def bwd(res, g):
        params, x = res
        db = jnp.sum(g, axis=0)
        if wrong:
            masked = jnp.sum(jnp.zeros(x.shape[0], g.dtype))
            db = db * masked / masked
        return {"W": x.T @ g, "b": db}, g @ params["W"].T

    f.defvjp(lambda params, x: (plain(params, x), (params, x)), bwd)
    return f


# --- a softmax with a shift argument whose gradient is exactly zero ----------------------


def shifted_softmax(wrong: bool):
    """softmax(x + shift): invariant to the scalar shift, so ∂/∂shift is exactly 0 and the
    rule returns 0 (autodiff of the plain forward gives rounding noise). The wrong rule
    returns Σ g·y for it."""

    def plain(x, shift):
        return jax.nn.softmax(x + shift)

    f = jax.custom_vjp(plain)

    def bwd(y, g):
        dx = y * (g - jnp.sum(g * y, axis=-1, keepdims=True))
        dshift = jnp.sum(g * y) if wrong else jnp.zeros(())
        return dx, dshift.astype(y.dtype)

    f.defvjp(lambda x, shift: (plain(x, shift), plain(x, shift)), bwd)
    return f


# --- a sign slip in one small leaf -------------------------------------------------------


def small_leaf(wrong: bool):
    """params {"W" (4, 3), "t" (3,)}: x W + 1e-4·t. t's gradient is ~1e-5 of W's; the
    wrong rule flips its sign (judged against W's scale it would pass)."""

    def plain(params, x):
        return x @ params["W"] + 1e-4 * params["t"]

    f = jax.custom_vjp(plain)

    def bwd(res, g):
        params, x = res
        dt = 1e-4 * jnp.sum(g, axis=0)
        return {"W": x.T @ g, "t": -dt if wrong else dt}, g @ params["W"].T

    f.defvjp(lambda params, x: (plain(params, x), (params, x)), bwd)
    return f


# --- a rule that ignores a diagnostic output (outputs=0) ---------------------------------


def sqrt_with_diagnostic(wrong: bool):
    """(√x by 30 Newton steps, log mean x² as a diagnostic for logging). The rule
    backpropagates the root only (ḡ/(2√x)) and ignores the diagnostic's cotangent, so it is
    checked with outputs=0. The wrong rule forgets the factor ½."""

    def plain(x):
        def step(y, _):
            return 0.5 * (y + x / y), None

        y = lax.scan(step, jnp.ones_like(x), None, length=30)[0]
        return y, jnp.log(jnp.mean(x**2))

    f = jax.custom_vjp(plain)

    def bwd(y, g):
        g_root, _ = g  # the diagnostic's cotangent is ignored on purpose
        return (g_root / (y if wrong else 2 * y),)

    f.defvjp(lambda x: (plain(x), plain(x)[0]), bwd)
    return f


# --- a Pallas kernel (interpret mode) with its rule --------------------------------------


def pallas_swish(wrong: bool):
    """x·sigmoid(β·x) as a Pallas kernel (interpret mode, runs on CPU), its rule another
    kernel: dx = g·(s + βx·s(1 − s)), dβ = Σ g·x²·s(1 − s). The wrong rule drops dβ's x²
    (uses x). Reverse mode cannot go through pallas_call: the reference is forward mode."""
    from jax.experimental import pallas as pl

    def call(kernel, out_shape, *operands):
        return pl.pallas_call(kernel, out_shape=out_shape, interpret=True)(*operands)

    def forward_kernel(x_ref, b_ref, o_ref):
        x = x_ref[...]
        o_ref[...] = x * jax.nn.sigmoid(b_ref[...] * x)

    def backward_kernel(x_ref, b_ref, g_ref, dx_ref, db_ref):
        x, b, g = x_ref[...], b_ref[...], g_ref[...]
        s = jax.nn.sigmoid(b * x)
        ds = s * (1 - s)
        dx_ref[...] = g * (s + b * x * ds)
        db_ref[...] = g * (x if wrong else x * x) * ds

    def swish(x, beta):
        b = jnp.broadcast_to(beta, x.shape)
        return call(forward_kernel, jax.ShapeDtypeStruct(x.shape, x.dtype), x, b)

    f = jax.custom_vjp(swish)

    def bwd(res, g):
        x, beta = res
        b = jnp.broadcast_to(beta, x.shape)
        shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
        dx, db = call(backward_kernel, (shape, shape), x, b, g)
        return dx, jnp.sum(db).reshape(beta.shape)

    f.defvjp(lambda x, beta: (swish(x, beta), (x, beta)), bwd)
    return f


# --- a custom_jvp -------------------------------------------------------------------------


def safe_norm(wrong: bool):
    """‖x‖ with the jvp (x·ẋ)/‖x‖ (jax.custom_jvp). The wrong rule forgets to divide."""

    @jax.custom_jvp
    def norm(x):
        return jnp.sqrt(jnp.sum(x * x))

    @norm.defjvp
    def norm_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        y = norm(x)
        return y, jnp.sum(x * t) if wrong else jnp.sum(x * t) / y

    return norm


CASES: dict[str, RuleCase] = {
    "fixed point (while_loop)": RuleCase(fixed_point, (_W, RNG.standard_normal(4)), {}),
    "Newton-Schulz sqrtm (scan)": RuleCase(newton_schulz_sqrt, (_SPD,), {}),
    "ODE adjoint (RK4)": RuleCase(
        ode_solve, (RNG.standard_normal(3), RNG.uniform(0.5, 1.5, 3)), {"rtol": {"float64": 1e-6}}
    ),
    "straight-through round": RuleCase(
        straight_through_round,
        (RNG.uniform(-3, 3, 6),),
        {"reference": lambda x: x},
    ),
    "clip (cotangent clipped)": RuleCase(clip_values, (RNG.uniform(-0.9, 0.9, 3),), {}),
    "NaN in one leaf": RuleCase(
        affine_nan_leaf,
        (
            {"W": RNG.standard_normal((3, 2)), "b": RNG.standard_normal(2)},
            RNG.standard_normal((4, 3)),
        ),
        {},
    ),
    "exactly zero gradient": RuleCase(
        shifted_softmax, (RNG.standard_normal((2, 5)), np.asarray(0.7)), {}
    ),
    "sign slip in a small leaf": RuleCase(
        small_leaf,
        (
            {"W": RNG.standard_normal((4, 3)), "t": RNG.standard_normal(3)},
            10 * RNG.standard_normal((8, 4)),
        ),
        {},
    ),
    "diagnostic output ignored": RuleCase(
        sqrt_with_diagnostic, (RNG.uniform(0.5, 3.0, 4),), {"outputs": 0}
    ),
    "Pallas kernel (interpret)": RuleCase(
        pallas_swish, (RNG.standard_normal(8), np.asarray(1.3)), {}
    ),
    "custom_jvp norm": RuleCase(safe_norm, (RNG.standard_normal(5),), {}),
}


def plain_check_grads_target(case: RuleCase, wrong: bool) -> Callable[..., Any]:
    """The function ``jax.test_util.check_grads`` is given for a case: the rule itself,
    with ``outputs=0`` applied (check_grads has no such option) and the surrogate
    reference ignored (check_grads has none: it differentiates ``f`` numerically)."""
    f = case.make(wrong)
    if case.options.get("outputs") == 0:
        return functools.wraps(f)(lambda *a: f(*a)[0])
    return f
