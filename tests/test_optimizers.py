"""funcnet.optimizers: the book's update rules against their formulas and against optax."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import optimizers

STEPS = 50


# --------------------------------------------------------------------------------------
# NumPy transcriptions of the formulas (ch6.1, the book's common/optimizer.py), updating a
# dict of float64 arrays in place like the book's classes.


class NumpySGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for k in params:
            params[k] -= self.lr * grads[k]


class NumpyMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {k: np.zeros_like(p) for k, p in params.items()}
        for k in params:
            self.v[k] = self.momentum * self.v[k] - self.lr * grads[k]
            params[k] += self.v[k]


class NumpyNesterov:
    """The issue's (and arXiv:1212.0901's) order: the step uses v before it changes."""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {k: np.zeros_like(p) for k, p in params.items()}
        for k in params:
            params[k] += self.momentum * self.momentum * self.v[k]
            params[k] -= (1 + self.momentum) * self.lr * grads[k]
            self.v[k] = self.momentum * self.v[k] - self.lr * grads[k]


class NumpyNesterovBookCode(NumpyNesterov):
    """The book repository's order: v changes first, then the step adds momentum²·v."""

    def update(self, params, grads):
        if self.v is None:
            self.v = {k: np.zeros_like(p) for k, p in params.items()}
        for k in params:
            self.v[k] *= self.momentum
            self.v[k] -= self.lr * grads[k]
            params[k] += self.momentum * self.momentum * self.v[k]
            params[k] -= (1 + self.momentum) * self.lr * grads[k]


class NumpyAdaGrad:
    def __init__(self, lr=0.01):
        self.lr, self.h = lr, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {k: np.zeros_like(p) for k, p in params.items()}
        for k in params:
            self.h[k] += grads[k] * grads[k]
            params[k] -= self.lr * grads[k] / (np.sqrt(self.h[k]) + 1e-7)


class NumpyRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr, self.decay_rate, self.h = lr, decay_rate, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {k: np.zeros_like(p) for k, p in params.items()}
        for k in params:
            self.h[k] *= self.decay_rate
            self.h[k] += (1 - self.decay_rate) * grads[k] * grads[k]
            params[k] -= self.lr * grads[k] / (np.sqrt(self.h[k]) + 1e-7)


class NumpyAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter, self.m, self.v = 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = {k: np.zeros_like(p) for k, p in params.items()}
            self.v = {k: np.zeros_like(p) for k, p in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for k in params:
            self.m[k] += (1 - self.beta1) * (grads[k] - self.m[k])
            self.v[k] += (1 - self.beta2) * (grads[k] ** 2 - self.v[k])
            params[k] -= lr_t * self.m[k] / (np.sqrt(self.v[k]) + 1e-7)


# (name, funcnet factory kwargs, NumPy class kwargs): the book's defaults and other values.
CASES = [
    ("sgd", {}, NumpySGD, {}),
    ("sgd", {"lr": 0.3}, NumpySGD, {"lr": 0.3}),
    ("momentum", {}, NumpyMomentum, {}),
    ("momentum", {"lr": 0.1, "momentum": 0.5}, NumpyMomentum, {"lr": 0.1, "momentum": 0.5}),
    ("nesterov", {}, NumpyNesterov, {}),
    ("nesterov", {"lr": 0.05, "momentum": 0.7}, NumpyNesterov, {"lr": 0.05, "momentum": 0.7}),
    ("adagrad", {}, NumpyAdaGrad, {}),
    ("adagrad", {"lr": 1.5}, NumpyAdaGrad, {"lr": 1.5}),
    ("rmsprop", {}, NumpyRMSprop, {}),
    ("rmsprop", {"lr": 0.1, "decay_rate": 0.9}, NumpyRMSprop, {"lr": 0.1, "decay_rate": 0.9}),
    ("adam", {}, NumpyAdam, {}),
    (
        "adam",
        {"lr": 0.3, "beta1": 0.8, "beta2": 0.99},
        NumpyAdam,
        {"lr": 0.3, "beta1": 0.8, "beta2": 0.99},
    ),
]


def _initial_params(dtype=np.float64):
    """A random pytree: a matrix, a vector and a scalar, like a small net's weights."""
    rng = np.random.default_rng(0)
    return {
        "W1": rng.normal(size=(4, 3)).astype(dtype),
        "b1": rng.normal(size=(3,)).astype(dtype),
        "s": np.asarray(rng.normal(), dtype),
    }


def _gradient(params, i):
    """A gradient that depends on the params (a quadratic's pull) and on the step (noise).

    The same function of NumPy or JAX leaves, so both sides see the same gradients."""
    rng = np.random.default_rng(1000 + i)
    return {
        k: 0.5 * p + rng.normal(size=np.shape(p)).astype(np.asarray(p).dtype)
        for k, p in params.items()
    }


def _run(opt, params, steps=STEPS, update=None):
    """``steps`` updates of ``opt`` (optionally through a given, e.g. jitted, update)."""
    update = opt.update if update is None else update
    params = jax.tree.map(jnp.asarray, params)
    state = opt.init(params)
    for i in range(steps):
        grads = jax.tree.map(jnp.asarray, _gradient(jax.device_get(params), i))
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _run_numpy(book, params, steps=STEPS):
    params = {k: np.array(v, np.float64) for k, v in params.items()}
    for i in range(steps):
        book.update(params, _gradient(params, i))
    return params


def _assert_rel_close(actual, expected, rtol):
    """Each leaf within ``rtol`` of the expected one, relative to its norm."""
    for k in expected:
        a, e = np.asarray(actual[k], np.float64), np.asarray(expected[k], np.float64)
        err = np.linalg.norm(a - e) / np.linalg.norm(e)
        assert err <= rtol, f"{k}: relative difference {err:.3g} > {rtol:g}"


def _case_id(case):
    name, kwargs, _, _ = case
    return name + ("-" + "-".join(f"{k}={v}" for k, v in kwargs.items()) if kwargs else "-book")


# --------------------------------------------------------------------------------------
# The formulas


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_fifty_steps_match_the_numpy_transcription_of_the_formula(x64, case):
    name, kwargs, book_class, book_kwargs = case
    params = _initial_params()
    ours, _ = _run(optimizers.OPTIMIZERS[name](**kwargs), params)
    _assert_rel_close(ours, _run_numpy(book_class(**book_kwargs), params), 1e-12)


@pytest.mark.parametrize("case", CASES[::2], ids=_case_id)
def test_jitted_update_gives_the_same_fifty_steps(x64, case):
    name, kwargs, book_class, book_kwargs = case
    opt = optimizers.OPTIMIZERS[name](**kwargs)
    params = _initial_params()
    jitted, _ = _run(opt, params, update=jax.jit(opt.update))
    _assert_rel_close(jitted, _run_numpy(book_class(**book_kwargs), params), 1e-12)


@pytest.mark.parametrize("case", CASES[::2], ids=_case_id)
def test_float32_params_get_float32_updates_and_state_close_to_float64(case):
    name, kwargs, book_class, book_kwargs = case
    opt = optimizers.OPTIMIZERS[name](**kwargs)
    params32 = _initial_params(np.float32)
    ours, state = _run(opt, params32, steps=10, update=jax.jit(opt.update))
    for leaf in jax.tree.leaves((ours, state)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32
    _assert_rel_close(ours, _run_numpy(book_class(**book_kwargs), params32, steps=10), 1e-5)


def test_adam_counts_its_steps_in_int32():
    opt = optimizers.adam()
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    for _ in range(3):
        _, state = opt.update({"w": jnp.ones(3)}, state)
    assert state.iter.dtype == jnp.int32 and int(state.iter) == 3


def test_nesterov_differs_from_the_book_repositorys_code_order(x64):
    # The book's code changes v before adding momentum²·v: g weighs -(1+m+m²)·lr, not
    # -(1+m)·lr. From v = 0 the first step shows it.
    lr, mu = 0.1, 0.9
    g = {"w": jnp.array([1.0, -2.0])}
    updates, _ = optimizers.nesterov(lr, mu).update(g, optimizers.nesterov(lr, mu).init(g))
    np.testing.assert_allclose(updates["w"], -(1 + mu) * lr * g["w"], rtol=1e-15)
    params = _initial_params()
    ours, _ = _run(optimizers.nesterov(), params)
    book_code = _run_numpy(NumpyNesterovBookCode(), params)
    diff = max(np.max(np.abs(np.asarray(ours[k]) - book_code[k])) for k in params)
    assert diff > 1e-3


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_nan_gradient_gives_nan_updates(name):
    opt = optimizers.OPTIMIZERS[name]()
    params = {"w": jnp.ones(3)}
    updates, state = opt.update({"w": jnp.array([1.0, jnp.nan, 2.0])}, opt.init(params))
    assert bool(jnp.isnan(updates["w"][1]))
    assert bool(jnp.all(jnp.isfinite(updates["w"][jnp.array([0, 2])])))


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_zero_gradient_gives_a_zero_step_not_nan(name):
    opt = optimizers.OPTIMIZERS[name]()
    params = {"w": jnp.ones(3)}
    updates, _ = opt.update({"w": jnp.zeros(3)}, opt.init(params))
    np.testing.assert_array_equal(updates["w"], np.zeros(3))


def _run_traceable(opt, params, steps=5):
    """Like :func:`_run`, traceable: gradients from a jax key instead of NumPy."""
    params = jax.tree.map(jnp.asarray, params)
    state = opt.init(params)
    for i in range(steps):
        rng = np.random.default_rng(1000 + i)
        noise = {k: jnp.asarray(rng.normal(size=np.shape(p))) for k, p in params.items()}
        grads = {k: 0.5 * params[k] + noise[k] for k in params}
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_learning_rate_may_be_traced_under_vmap(x64):
    # One program for many learning rates (the hyperparameter search vmaps over them).
    params = _initial_params()
    lrs = jnp.array([0.001, 0.01, 0.1])

    def final(lr):
        return _run_traceable(optimizers.adam(lr), params)

    batched = jax.jit(jax.vmap(final))(lrs)
    for i, lr in enumerate([0.001, 0.01, 0.1]):
        expected = _run_numpy(NumpyAdam(lr=lr), params, steps=5)
        _assert_rel_close({k: v[i] for k, v in batched.items()}, expected, 1e-12)


def test_works_in_an_optax_chain(x64):
    opt = optax.chain(optax.clip(0.5), optimizers.momentum(0.1, 0.5))
    params = {"w": jnp.array([2.0, -3.0])}
    updates, _ = opt.update({"w": jnp.array([4.0, -0.2])}, opt.init(params))
    np.testing.assert_allclose(updates["w"], [-0.05, 0.02], rtol=1e-15)


# --------------------------------------------------------------------------------------
# optax: the same computation where it is one, the difference where it is not


def _adam_with_books_epsilon(lr, b1, b2, eps):
    """optax.adam with ε/√(1−β2ᵗ) at step t (t = count + 1): the book's rule exactly."""
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=lr, b1=b1, b2=b2, eps=lambda count: eps / jnp.sqrt(1 - b2 ** (count + 1))
    )


SAME_AS_OPTAX = [
    ("sgd", optimizers.sgd(0.1), optax.sgd(0.1)),
    ("momentum", optimizers.momentum(0.1, 0.8), optax.sgd(0.1, momentum=0.8)),
    ("nesterov", optimizers.nesterov(0.1, 0.8), optax.sgd(0.1, momentum=0.8, nesterov=True)),
    (
        "adagrad-eps0",
        optimizers.adagrad(0.5, eps=0.0),
        optax.adagrad(0.5, initial_accumulator_value=0.0, eps=0.0),
    ),
    (
        "rmsprop",
        optimizers.rmsprop(0.1, 0.99),
        optax.rmsprop(0.1, decay=0.99, eps=1e-7, eps_in_sqrt=False),
    ),
    ("adam-eps0", optimizers.adam(0.1, 0.9, 0.999, eps=0.0), optax.adam(0.1, 0.9, 0.999, eps=0.0)),
    ("adam", optimizers.adam(0.1), _adam_with_books_epsilon(0.1, 0.9, 0.999, 1e-7)),
]


@pytest.mark.parametrize(
    "ours, peer", [c[1:] for c in SAME_AS_OPTAX], ids=[c[0] for c in SAME_AS_OPTAX]
)
def test_equals_its_optax_peer_with_these_arguments(x64, ours, peer):
    params = _initial_params()
    _assert_rel_close(_run(ours, params)[0], _run(peer, params)[0], 1e-12)


def _first_update(opt, g):
    return opt.update(g, opt.init(g))[0]


def test_optax_adagrad_starts_its_accumulator_at_0_1_with_epsilon_in_the_root(x64):
    g = {"w": jnp.array([0.02, -3.0])}
    lr = 0.5
    book = _first_update(optimizers.adagrad(lr), g)["w"]
    peer = _first_update(optax.adagrad(lr), g)["w"]
    np.testing.assert_allclose(book, -lr * g["w"] / (jnp.abs(g["w"]) + 1e-7), rtol=1e-15)
    np.testing.assert_allclose(peer, -lr * g["w"] / jnp.sqrt(0.1 + g["w"] ** 2 + 1e-7), rtol=1e-12)
    # A small gradient's first step: the book's is a full lr, optax's is damped by the 0.1.
    assert abs(float(book[0])) == pytest.approx(lr, rel=1e-5)
    assert abs(float(peer[0])) < 0.1 * lr


def test_optax_adam_puts_epsilon_after_the_bias_correction(x64):
    # Same ε = 1e-7 on both sides: at t = 1 the book's ε acts like optax's ε·31.6.
    g = {"w": jnp.array([1e-6, 1.0])}
    lr, b2 = 0.1, 0.999
    book = _first_update(optimizers.adam(lr), g)["w"]
    peer = _first_update(optax.adam(lr, eps=1e-7), g)["w"]
    # t = 1: m = 0.1·g, v = 0.001·g², lr_t = lr·√0.001/0.1.
    np.testing.assert_allclose(
        book,
        -lr * math.sqrt(1 - b2) * g["w"] / (math.sqrt(1 - b2) * jnp.abs(g["w"]) + 1e-7),
        rtol=1e-12,
    )
    np.testing.assert_allclose(peer, -lr * g["w"] / (jnp.abs(g["w"]) + 1e-7), rtol=1e-12)
    assert float(book[0]) / float(peer[0]) == pytest.approx(
        (1e-6 + 1e-7) / (1e-6 + 1e-7 / math.sqrt(1 - b2)), rel=1e-9
    )


def test_optax_rmsprop_defaults_differ_from_the_books(x64):
    params = _initial_params()
    ours, _ = _run(optimizers.rmsprop(0.01), params, steps=5)
    peer, _ = _run(optax.rmsprop(0.01), params, steps=5)  # decay 0.9, ε 1e-8 in the root
    assert max(float(jnp.max(jnp.abs(ours[k] - peer[k]))) for k in params) > 1e-4


@pytest.mark.parametrize(
    "ours, peer",
    [
        (optimizers.momentum(0.1, 0.8), optax.sgd(0.1, momentum=0.8)),
        (optimizers.nesterov(0.1, 0.8), optax.sgd(0.1, momentum=0.8, nesterov=True)),
    ],
    ids=["momentum", "nesterov"],
)
def test_books_velocity_is_minus_lr_times_optaxs_trace(x64, ours, peer):
    params = _initial_params()
    _, state = _run(ours, params)
    _, peer_state = _run(peer, params)
    trace = peer_state[0].trace  # chain(trace, scale_by_learning_rate)
    for k in params:
        np.testing.assert_allclose(state.v[k], -0.1 * trace[k], rtol=1e-12)


def test_with_a_schedule_optax_rescales_the_whole_momentum_trace(x64):
    # optax multiplies today's lr into the trace of every past gradient; the book's v keeps
    # each gradient at the lr of its own step. Same rule only for a constant lr.
    g = {"w": jnp.array([1.0])}
    schedule = optax.piecewise_constant_schedule(0.1, {1: 0.1})  # lr 0.1, then 0.01

    def two_steps(opt):
        state = opt.init(g)
        _, state = opt.update(g, state)
        return opt.update(g, state)[0]["w"]

    peer = two_steps(optax.sgd(schedule, momentum=0.9))
    book = two_steps(optax.inject_hyperparams(optimizers.momentum)(lr=schedule, momentum=0.9))
    np.testing.assert_allclose(peer, [-0.01 * (1 + 0.9)], rtol=1e-12)  # -lr₂·(g + 0.9·g)
    np.testing.assert_allclose(book, [0.9 * -0.1 - 0.01], rtol=1e-12)  # 0.9·v₁ − lr₂·g


# --------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "factory, kwargs, error, message",
    [
        (
            optimizers.sgd,
            {"lr": -0.1},
            ValueError,
            r"sgd: lr must be a finite number >= 0, got -0.1",
        ),
        (optimizers.sgd, {"lr": float("nan")}, ValueError, r"sgd: lr must be .* got nan"),
        (optimizers.adam, {"lr": float("inf")}, ValueError, r"adam: lr must be .* got inf"),
        (
            optimizers.momentum,
            {"momentum": 1.0},
            ValueError,
            r"momentum: momentum must lie in \[0, 1\), got 1.0",
        ),
        (
            optimizers.nesterov,
            {"momentum": -0.5},
            ValueError,
            r"nesterov: momentum must lie in \[0, 1\)",
        ),
        (
            optimizers.rmsprop,
            {"decay_rate": 1.0},
            ValueError,
            r"rmsprop: decay_rate must lie in \[0, 1\)",
        ),
        (
            optimizers.rmsprop,
            {"decay_rate": float("nan")},
            ValueError,
            r"rmsprop: decay_rate .* got nan",
        ),
        (optimizers.adam, {"beta1": 1.5}, ValueError, r"adam: beta1 must lie in \[0, 1\), got 1.5"),
        (optimizers.adam, {"beta2": -0.1}, ValueError, r"adam: beta2 must lie"),
        (
            optimizers.adagrad,
            {"eps": -1e-7},
            ValueError,
            r"adagrad: eps must be a finite number >= 0",
        ),
        (optimizers.sgd, {"lr": "0.1"}, TypeError, r"sgd: lr must be a real number, got str"),
        (optimizers.sgd, {"lr": None}, TypeError, r"sgd: lr must be a real number, got NoneType"),
        (optimizers.adam, {"lr": True}, TypeError, r"adam: lr must be a real number, got bool"),
        (optimizers.sgd, {"lr": 1j}, TypeError, r"sgd: lr must be a real number, got complex"),
        (
            optimizers.sgd,
            {"lr": jnp.ones(2)},
            ValueError,
            r"sgd: lr must be a scalar, got shape \(2,\)",
        ),
        (
            optimizers.momentum,
            {"lr": jnp.array(-1.0)},
            ValueError,
            r"momentum: lr must be .* got -1.0",
        ),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(factory, kwargs, error, message):
    with pytest.raises(error, match=message):
        factory(**kwargs)


def test_zero_learning_rate_and_zero_momentum_are_allowed():
    g = {"w": jnp.array([1.0, 2.0])}
    np.testing.assert_array_equal(_first_update(optimizers.sgd(0.0), g)["w"], [0.0, 0.0])
    np.testing.assert_allclose(_first_update(optimizers.momentum(0.5, 0.0), g)["w"], [-0.5, -1.0])


# --------------------------------------------------------------------------------------
# Half precision: 1 − β and ε computed in float32, the update rounded once at the end

HALF_CASES = [
    ("sgd", {"lr": 0.1}, NumpySGD),
    ("momentum", {"lr": 0.1, "momentum": 0.9}, NumpyMomentum),
    ("nesterov", {"lr": 0.1, "momentum": 0.9}, NumpyNesterov),
    ("adagrad", {"lr": 0.1}, NumpyAdaGrad),
    ("rmsprop", {"lr": 0.1, "decay_rate": 0.99}, NumpyRMSprop),
    ("adam", {"lr": 0.1, "beta1": 0.9, "beta2": 0.999}, NumpyAdam),
]


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("case", HALF_CASES, ids=[c[0] for c in HALF_CASES])
def test_half_precision_updates_are_the_float32_formula_rounded_once(case, dtype):
    # adam on bfloat16 params with lr 0.1 and gradient 1 updated by -0 (0.999 is 1.0 in
    # bfloat16, so 1 - β2 was 0); rmsprop's first bf16 step was -0.92 instead of -1.
    name, kwargs, book_class = case
    opt = optimizers.OPTIMIZERS[name](**kwargs)
    rng = np.random.default_rng(7)
    params = {"w": jnp.asarray(rng.normal(size=5), dtype)}
    state = opt.init(params)
    book, book_params = book_class(**kwargs), {"w": np.zeros(5, np.float32)}
    update = jax.jit(opt.update)
    for step in range(6):
        g = jnp.asarray(rng.normal(size=5) if step else np.ones(5), dtype)
        updates, state = update({"w": g}, state, params)
        assert updates["w"].dtype == dtype
        before = book_params["w"].copy()
        book.update(book_params, {"w": np.asarray(g, np.float32)})  # the formula in float32
        want = book_params["w"] - before
        assert want.dtype == np.float32
        eps = float(jnp.finfo(dtype).eps)
        np.testing.assert_allclose(np.asarray(updates["w"], np.float32), want, rtol=eps, atol=0)
        params = optax.apply_updates(params, updates)


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_integer_or_bool_leaves_are_refused_not_left_in_place(name):
    opt = optimizers.OPTIMIZERS[name]()
    pattern = rf"^{name}: params\['b'\] must be floating \(e.g. float32\), got int32 \(2,\);"
    with pytest.raises(TypeError, match=pattern):
        opt.init({"w": jnp.ones(2), "b": jnp.zeros(2, jnp.int32)})
    state = opt.init({"w": jnp.ones(2)})
    with pytest.raises(TypeError, match=rf"^{name}: grads\['w'\] must be floating.*got bool"):
        opt.update({"w": jnp.ones(2, bool)}, state)


# --------------------------------------------------------------------------------------
# Gradients of another shape or structure than the params the state was made for


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
@pytest.mark.parametrize("jitted", [False, True], ids=["eager", "jit"])
def test_gradients_of_another_shape_are_refused_naming_the_leaf_and_both_shapes(name, jitted):
    # adam & co. raised "TypeError: sub got incompatible shapes"; sgd returned updates of
    # the gradients' shape, which apply_updates then broadcast into the params
    opt = optimizers.OPTIMIZERS[name]()
    params = {"w": jnp.ones(3), "layer": {"b": jnp.ones((2, 2))}}
    state = opt.init(params)
    update = jax.jit(opt.update) if jitted else opt.update
    bad = {"w": jnp.ones(4), "layer": {"b": jnp.ones((2, 2))}}
    with pytest.raises(
        ValueError, match=rf"^{name}: grads\['w'\] has shape \(4,\), expected \(3,\)"
    ):
        update(bad, state)
    bad = {"w": jnp.ones(3), "layer": {"b": jnp.ones((2, 1))}}
    with pytest.raises(
        ValueError, match=r"grads\['layer'\]\['b'\] has shape \(2, 1\), expected \(2, 2\)"
    ):
        update(bad, state, params)
    # the params passed to update are held to the same structure
    with pytest.raises(
        ValueError, match=rf"^{name}: params\['w'\] has shape \(1,\), expected \(3,\)"
    ):
        update(params, state, {**params, "w": jnp.ones(1)})


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_gradients_of_another_structure_are_refused_naming_the_missing_and_extra_leaves(name):
    opt = optimizers.OPTIMIZERS[name]()
    state = opt.init({"w": jnp.ones(3), "b": jnp.ones(2)})
    pattern = (
        rf"^{name}: grads do not match the params .*: missing grads\['w'\]; unexpected grads\['v'\]"
    )
    with pytest.raises(ValueError, match=pattern):
        opt.update({"b": jnp.ones(2), "v": jnp.ones(3)}, state)
    with pytest.raises(ValueError, match=rf"^{name}: grads do not match .*missing grads\['w'\]$"):
        opt.update({"b": jnp.ones(2)}, state)


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_the_shape_checks_are_made_while_tracing_and_add_nothing_to_the_program(name):
    opt = optimizers.OPTIMIZERS[name]()
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    text = str(jax.make_jaxpr(opt.update)(params, state, params))
    assert "callback" not in text and "check" not in text
    # vmapped (fit_many): the checks see one run's shapes, as init did
    states = jax.vmap(opt.init)({"w": jnp.ones((2, 3))})
    updates, _ = jax.vmap(opt.update)({"w": jnp.ones((2, 3))}, states)
    assert updates["w"].shape == (2, 3)


def test_sgd_keeps_no_arrays_in_its_state():
    state = optimizers.sgd(0.1).init({"w": jnp.ones(3)})
    assert jax.tree.leaves(state) == []
    assert state == optimizers.sgd(0.5).init({"w": jnp.zeros(3)})
