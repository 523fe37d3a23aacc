"""Batch normalization and dropout (ch6): the rules verified three ways, the book's
forward formulas, state that never receives a gradient, keys that fix the mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from funcnet import batch_norm as bn
from funcnet import check
from funcnet import dropout as do

ENTRIES = bn.REGISTRY_ENTRIES + do.REGISTRY_ENTRIES
CASES = [(e, c) for e in ENTRIES for c in e.cases]


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize(("entry", "case"), CASES, ids=[f"{e.name}-{c.name}" for e, c in CASES])
def test_rule_matches_autodiff_and_finite_differences(entry, case, dtype):
    result = check.check_layer(entry.name, entry.layer, case, dtype)
    assert result.passed, check.format_table([result])


@pytest.mark.parametrize(("entry", "case"), CASES, ids=[f"{e.name}-{c.name}" for e, c in CASES])
def test_rule_passes_check_grads_to_second_order(entry, case):
    with jax.enable_x64(True):
        args = case.make_inputs(np.random.default_rng(3), jnp.float64)

        def f(*diff):
            full = list(args)
            for i, a in zip(case.argnums, diff, strict=True):
                full[i] = a
            return entry.layer(*full)

        check_grads(f, tuple(args[i] for i in case.argnums), order=2, modes=["rev"])


def test_a_wrong_batch_norm_rule_is_caught():
    """The book's rule without the variance path (dxc += 2/N·xc·dvar) must fail the check."""

    def bad_bwd(res, dout):
        xc, xn, std, gamma, _ = res
        dout2 = dout.reshape(xc.shape)
        dxc = gamma * dout2 / std
        dx = dxc - jnp.mean(dxc, axis=0)
        return dx.reshape(dout.shape), jnp.sum(xn * dout2, 0), jnp.sum(dout2, 0)

    wrong = bn.make_layer("batch_norm", bn._batch_norm_plain, bn._batch_norm_fwd, bad_bwd)
    result = check.check_layer("batch_norm", wrong, bn.REGISTRY_ENTRIES[0].cases[0])
    assert not result.passed


def test_batch_norm_forward_is_the_books_formula_over_every_feature_of_a_4d_input():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((6, 2, 3, 3)) * 3 + 1
        gamma, beta = rng.standard_normal(18), rng.standard_normal(18)
        out = np.asarray(bn.batch_norm(x, gamma, beta))
        x2 = x.reshape(6, -1)
        xc = x2 - x2.mean(axis=0)
        expected = gamma * xc / np.sqrt((xc**2).mean(axis=0) + 1e-6) + beta
        np.testing.assert_allclose(out, expected.reshape(x.shape), rtol=1e-12)


def test_running_statistics_follow_the_books_update_and_get_no_gradient():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((8, 4)) * 2 + 3
        gamma, beta = np.ones(4), np.zeros(4)
        state = bn.init_batch_norm_state(4, jnp.float64)
        _, s1 = bn.batch_norm_train(x, gamma, beta, state)
        np.testing.assert_allclose(s1["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(s1["running_var"], 0.1 * x.var(axis=0), rtol=1e-12)
        _, s2 = bn.batch_norm_train(x, gamma, beta, s1)
        np.testing.assert_allclose(s2["running_mean"], 0.19 * x.mean(axis=0), rtol=1e-12)

        def loss_through_state(x):
            _, s = bn.batch_norm_train(x, gamma, beta, state)
            return jnp.sum(s["running_mean"]) + jnp.sum(s["running_var"])

        assert not np.any(np.asarray(jax.grad(loss_through_state)(x)))
        out = bn.batch_norm_inference(x, gamma, beta, s2)
        expected = (x - s2["running_mean"]) / np.sqrt(s2["running_var"] + 1e-6)
        np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_batch_norm_rejects_mismatched_gamma_and_state_naming_both_shapes():
    x = jnp.ones((4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"gamma must have shape \(18,\).*\(4, 2, 3, 3\)"):
        bn.batch_norm(x, jnp.ones(2), jnp.zeros(18))
    with pytest.raises(ValueError, match=r"non-empty batch"):
        bn.batch_norm(jnp.ones((5,)), jnp.ones(5), jnp.zeros(5))
    with pytest.raises(ValueError, match=r"state\['running_mean'\] must have shape \(18,\)"):
        bn.batch_norm_inference(x, jnp.ones(18), jnp.zeros(18), bn.init_batch_norm_state(2))


def test_nan_propagates_through_batch_norm_and_dropout():
    x = jnp.array([[1.0, jnp.nan], [2.0, 3.0], [0.5, 1.0]])
    assert np.isnan(bn.batch_norm(x, jnp.ones(2), jnp.zeros(2))[:, 1]).all()
    assert np.isfinite(bn.batch_norm(x, jnp.ones(2), jnp.zeros(2))[:, 0]).all()
    y = do.dropout(x, jax.random.key(0), 0.5)
    assert np.isnan(y[0, 1])  # NaN·0 stays NaN, kept or dropped


def test_dropout_mask_is_fixed_by_the_key_and_keeps_one_minus_ratio():
    x = jnp.ones((200, 500))
    a = do.dropout(x, jax.random.key(7), 0.2)
    b = do.dropout(x, jax.random.key(7), 0.2)
    c = do.dropout(x, jax.random.key(8), 0.2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    kept = float(jnp.mean(a))
    # 100,000 Bernoulli(0.8) draws: std of the mean 0.00126; 5 sigma
    assert abs(kept - 0.8) < 0.0065
    g = jax.grad(lambda x: jnp.sum(do.dropout(x, jax.random.key(7), 0.2) * 3.0))(x)
    np.testing.assert_array_equal(g, 3.0 * a)  # dout · mask, deterministic
    np.testing.assert_allclose(do.dropout_inference(x, 0.2), 0.8 * x)


@pytest.mark.parametrize("ratio", [1.0, -0.1, float("nan")])
def test_dropout_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ValueError, match="dropout: ratio"):
        do.dropout(jnp.ones(3), jax.random.key(0), ratio)


def test_dropout_refuses_a_plain_int_key():
    with pytest.raises(TypeError, match="dropout: key must be a jax.random key"):
        do.dropout(jnp.ones(3), 0, 0.5)


# --------------------------------------------------------------------------------------
# State is floating; momentum and gamma/beta are checked (issue 23)

_INT_STATE = {"running_mean": jnp.zeros(2, jnp.int32), "running_var": jnp.zeros(2, jnp.int32)}
_X2 = jnp.asarray(np.random.default_rng(0).normal([1.0, 2.3], 1.0, (5, 2)), jnp.float32)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_init_batch_norm_state_refuses_an_integer_or_bool_dtype(dtype):
    # init_batch_norm_state(2, jnp.int32) was accepted and ten updates left [0 0].
    with pytest.raises(TypeError, match=r"^init_batch_norm_state: dtype must be floating"):
        bn.init_batch_norm_state(2, dtype)


def test_integer_state_is_refused_by_every_entry_point():
    msg = r"state\['running_mean'\] must be floating \(e.g. float32\), got int32 \(2,\)"
    with pytest.raises(TypeError, match="^running_update: " + msg):
        bn.running_update(_INT_STATE, _X2)
    with pytest.raises(TypeError, match="^running_update: " + msg):
        bn.batch_norm_train(_X2, jnp.ones(2), jnp.zeros(2), _INT_STATE)
    with pytest.raises(TypeError, match="^batch_norm_inference: " + msg):
        bn.batch_norm_inference(_X2, jnp.ones(2), jnp.zeros(2), _INT_STATE)


def test_integer_model_state_is_refused_by_the_net_fit_and_fit_many():
    from funcnet import nets, optimizers, train

    params, state = nets.init_multi_layer_net_extend(
        jax.random.key(0), 2, [3], 2, use_batchnorm=True
    )
    bad = jax.tree.map(lambda a: a.astype(jnp.int32), state)
    msg = r"model_state\['BatchNorm1'\]\['running_mean'\] must be floating.*got int32 \(3,\)"
    net = nets.multi_layer_net_extend()
    t = jnp.asarray([0, 1, 0, 1, 1])
    with pytest.raises(TypeError, match="^multi_layer_net_extend_loss: " + msg):
        net.loss(params, bad, _X2, t, jax.random.key(1))
    with pytest.raises(TypeError, match="^multi_layer_net_extend_predict: " + msg):
        net.predict(params, bad, _X2)
    data = (np.asarray(_X2), np.asarray(t))
    with pytest.raises(TypeError, match="^fit: " + msg):
        train.fit(
            params,
            data,
            data,
            key=jax.random.key(1),
            loss_fn=net.loss,
            predict_fn=net.predict,
            model_state=bad,
            iters=1,
            batch_size=5,
        )
    stack = jax.tree.map(lambda a: jnp.stack([a, a]), (params, bad))
    with pytest.raises(TypeError, match="^fit_many: " + msg.replace(r"\(3,\)", r"\(2, 3\)")):
        train.fit_many(
            stack[0],
            data,
            data,
            keys=jax.random.split(jax.random.key(1), 2),
            loss_fn=net.loss,
            predict_fn=net.predict,
            optimizer=optimizers.sgd(0.1),
            model_state=stack[1],
            iters=1,
            batch_size=5,
        )


def test_ten_float16_running_updates_follow_the_books_average():
    # The book's running average in float64 against a float16 state (computed in float32).
    state = bn.init_batch_norm_state(2, jnp.float16)
    mean, var = np.zeros(2), np.zeros(2)
    x = np.asarray(_X2, np.float64)
    for _ in range(10):
        state = bn.running_update(state, _X2)
        mean = 0.9 * mean + 0.1 * x.mean(0)
        var = 0.9 * var + 0.1 * x.var(0)
    assert state["running_mean"].dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(state["running_mean"], np.float64), mean, rtol=4e-3)
    np.testing.assert_allclose(np.asarray(state["running_var"], np.float64), var, rtol=4e-3)


@pytest.mark.parametrize(
    ("momentum", "error", "message"),
    [
        (1.5, ValueError, r"^running_update: momentum must lie in \[0, 1\], got 1.5$"),
        (-0.1, ValueError, r"^running_update: momentum must lie in \[0, 1\], got -0.1$"),
        (float("nan"), ValueError, r"^running_update: momentum must be a finite number, got nan"),
        ("0.9", TypeError, r"^running_update: momentum must be a real number, got str '0.9'"),
        (jnp.ones(2), TypeError, r"^running_update: momentum must be a real number"),
    ],
)
def test_running_update_checks_its_momentum(momentum, error, message):
    # momentum=1.5 gave a negative running variance; NaN gave a NaN state silently.
    with pytest.raises(error, match=message):
        bn.running_update(bn.init_batch_norm_state(2), _X2, momentum)


@pytest.mark.parametrize(
    ("gamma", "beta", "error", "message"),
    [
        (jnp.ones(3), jnp.zeros(2), ValueError, r"gamma must have shape \(2,\).*got gamma \(3,\)"),
        (jnp.ones(2), jnp.zeros((1, 2)), ValueError, r"beta must have shape \(2,\).*\(1, 2\)"),
        (jnp.ones(2, jnp.int32), jnp.zeros(2), TypeError, r"gamma must be floating point"),
    ],
)
def test_batch_norm_inference_checks_gamma_and_beta(gamma, beta, error, message):
    # A wrong gamma shape ended in JAX's "Incompatible shapes for broadcasting".
    state = bn.init_batch_norm_state(2)
    with pytest.raises(error, match="^batch_norm_inference: " + message):
        bn.batch_norm_inference(_X2, gamma, beta, state)


def test_dropout_inference_promotes_integer_input_like_the_book():
    # The book's NumPy: [2, 4, 6] * (1 - 0.5) = [1., 2., 3.]; it was [0 0 0].
    out = do.dropout_inference(jnp.asarray([2, 4, 6]), 0.5)
    assert jnp.issubdtype(out.dtype, jnp.floating)
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])
    half = do.dropout_inference(jnp.asarray([2.0, 4.0], jnp.bfloat16), 0.5)
    assert half.dtype == jnp.bfloat16
