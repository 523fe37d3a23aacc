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
