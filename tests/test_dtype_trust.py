"""Dtypes that used to give silently wrong results (docs/reliability.md, "Dtypes and
hyperparameters"): half-precision sums and means, integer and bool inputs, bool one-hot
targets.

- float16/bfloat16: every sum, mean and ``/ N`` is computed in float32 and the result
  rounded once to the input's dtype (a float16 sum of 8,000 losses of 10 was inf; a
  float16 N above 65,504 is inf; float16 squares overflow above 256).
- integer and bool inputs are converted to the default float before any arithmetic
  (uint8 ``0 - 1`` wraps to 255; int8 ``200**2`` wraps).
- bool one-hot rows are checked like float ones: exactly one True per row.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import batch_norm as bn
from funcnet import functions as F
from funcnet import layers as L
from funcnet.nets import accuracy, count_correct

# float16 is where these failed: on CPU, XLA already accumulates bfloat16 reductions in
# float32 and bfloat16 has float32's range. bfloat16 takes the same code path
# (funcnet._checks.accumulation_dtype gives float32 for both); its own failure, the
# probability-row tolerance, has a test below.
HALF = [jnp.float16]

# --------------------------------------------------------------------------------------
# 1. Losses in half precision: sums over the batch in float32, the loss rounded once

LOSSES = {
    "softmax_cross_entropy": lambda x, t: F.softmax_cross_entropy(x, t),
    "softmax_with_loss": lambda x, t: L.softmax_with_loss(x, t),
    "cross_entropy_error": lambda x, t: F.cross_entropy_error(F.softmax(x), t),
}


def _big_batch(dtype, n=8000):
    # Every row: logit 10 on class 0, label 3, so each row's loss is about 10.
    x = jnp.zeros((n, 10), dtype).at[:, 0].set(10.0)
    return x, jnp.full((n,), 3, jnp.int32)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
def test_half_precision_loss_of_8000_rows_is_the_float32_loss_rounded(name, dtype, one_hot):
    x, t = _big_batch(dtype)
    if one_hot:
        t = jax.nn.one_hot(t, 10, dtype=dtype)
    loss = LOSSES[name](x, t)
    want = LOSSES[name](x.astype(jnp.float32), t.astype(jnp.float32) if one_hot else t)
    assert loss.dtype == dtype
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-2)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float16_loss_over_more_than_65504_rows_divides_by_a_finite_n(name):
    # N = 70,000 is inf in float16: the mean was sum/inf = 0.
    x = jnp.zeros((70_000, 2), jnp.float16)
    loss = LOSSES[name](x, jnp.zeros(70_000, jnp.int32))
    np.testing.assert_allclose(float(loss), np.log(2), rtol=1e-3)


@pytest.mark.parametrize("dtype", HALF)
def test_softmax_with_loss_rule_scales_by_n_in_float32(dtype):
    # dx = (y - t)/N = ±0.5/70,000 = ±7.1e-6: the float16 N was inf, so dx was all 0.
    n = 70_000
    x, t = jnp.zeros((n, 2), dtype), jnp.zeros(n, jnp.int32)
    dx = jax.grad(L.softmax_with_loss)(x, t)
    assert dx.dtype == dtype
    want = np.tile([-0.5 / n, 0.5 / n], (n, 1))
    np.testing.assert_allclose(np.asarray(dx, np.float64), want, rtol=2e-2)
    auto = jax.grad(L.softmax_with_loss.fun)(x, t)
    np.testing.assert_allclose(np.asarray(auto, np.float64), want, rtol=2e-2)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_softmax_over_70000_classes_sums_its_denominator_in_float32(dtype):
    x = jnp.zeros(70_000, dtype)
    y, logp = F.softmax(x), F.log_softmax(x)
    assert y.dtype == logp.dtype == dtype
    np.testing.assert_allclose(np.asarray(y, np.float64), 1 / 70_000, rtol=1e-2)
    np.testing.assert_allclose(np.asarray(logp, np.float64), -np.log(70_000), rtol=1e-2)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_sum_squares_error_squares_and_sums_in_float32(dtype):
    # 300² = 90,000 overflows float16; 4,000 terms of 0.5 stall a bfloat16 running sum.
    y = jnp.full(4000, 1.0, dtype).at[0].set(300.0)
    t = jnp.zeros(4000, dtype)
    loss = F.sum_squares_error(y, t)
    assert loss.dtype == dtype
    np.testing.assert_allclose(float(loss), 0.5 * (300**2 + 3999), rtol=1e-2)


def test_float16_cross_entropy_error_keeps_the_books_1e7_delta():
    # 1e-7 is below float16's normal range: log(0 + 1e-7) must still be log(1e-7).
    y = jnp.array([[0.0, 1.0]], jnp.float16)
    loss = F.cross_entropy_error(y, jnp.array([0]))
    np.testing.assert_allclose(float(loss), -np.log(1e-7), rtol=1e-3)


# --------------------------------------------------------------------------------------
# 2. Batch norm in half precision: statistics and the rule's sums in float32


X_BN = [[-300.0], [-100.0], [100.0], [300.0]]


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_batch_norm_normalises_deviations_of_300(dtype):
    x = jnp.asarray(X_BN, dtype)
    gamma, beta = jnp.ones(1, dtype), jnp.zeros(1, dtype)
    out = bn.batch_norm(x, gamma, beta)
    assert out.dtype == dtype
    want = bn.batch_norm(x.astype(jnp.float32), gamma.astype(jnp.float32), beta.astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(
        np.asarray(want).ravel(), [-1.3416, -0.4472, 0.4472, 1.3416], rtol=1e-4
    )


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_batch_norm_rule_matches_float32(dtype):
    x = jnp.asarray([[-300.0, 2.0], [-100.0, -1.0], [100.0, 0.5], [300.0, 4.0]], dtype)
    gamma, beta = jnp.asarray([1.5, 0.5], dtype), jnp.asarray([0.1, -0.2], dtype)
    w = jnp.asarray([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.3], [2.0, 0.7]], dtype)

    def loss(layer):
        return lambda *a: jnp.sum(layer(*a).astype(jnp.float32) * w.astype(jnp.float32))

    args32 = tuple(a.astype(jnp.float32) for a in (x, gamma, beta))
    want = jax.grad(loss(bn.batch_norm), (0, 1, 2))(*args32)
    for layer in (bn.batch_norm, bn.batch_norm.fun):  # the rule and autodiff of the forward
        got = jax.grad(loss(layer), (0, 1, 2))(x, gamma, beta)
        for g, ref in zip(got, want, strict=True):
            assert g.dtype == dtype
            scale = float(np.abs(ref).max())
            np.testing.assert_allclose(np.asarray(g, np.float32), ref, atol=2e-2 * scale)


@pytest.mark.parametrize("state_dtype", [jnp.float16, jnp.float32])
def test_running_update_of_float16_x_has_a_finite_variance(state_dtype):
    x = jnp.asarray(X_BN, jnp.float16)
    state = bn.running_update(bn.init_batch_norm_state(1, state_dtype), x)
    assert state["running_var"].dtype == state_dtype
    # var of [-300, -100, 100, 300] is 50,000; the state takes 0.1 of it.
    np.testing.assert_allclose(np.asarray(state["running_var"], np.float32), [5000.0], rtol=1e-3)


def test_float16_batch_norm_inference_subtracts_the_mean_without_overflow():
    # 60,000 − (−60,000) = 120,000 overflows float16; the normalised value is about 490.
    x = jnp.asarray([[60_000.0]], jnp.float16)
    state = {
        "running_mean": jnp.asarray([-60_000.0], jnp.float16),
        "running_var": jnp.asarray([60_000.0], jnp.float16),
    }
    one, zero = jnp.ones(1, jnp.float16), jnp.zeros(1, jnp.float16)
    out = bn.batch_norm_inference(x, one, zero, state)
    assert out.dtype == jnp.float16
    np.testing.assert_allclose(float(out[0, 0]), 120_000 / np.sqrt(60_000), rtol=1e-3)


# --------------------------------------------------------------------------------------
# 3. and 5. Integer and bool inputs: converted to the default float before any arithmetic


INT_CASES = {
    "uint8": np.array([[1, 0, 1]], np.uint8),
    "int8": np.array([[-100, 100]], np.int8),
    "int16-wide": np.array([[-30_000, 30_000, 0]], np.int16),
    "bool": np.array([[True, False, True]]),
}


@pytest.mark.parametrize("case", sorted(INT_CASES))
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_integer_and_bool_scores_give_the_float_result(fn, case):
    x = INT_CASES[case]
    got = getattr(F, fn)(jnp.asarray(x))
    want = getattr(F, fn)(jnp.asarray(x, jnp.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("case", sorted(INT_CASES))
def test_integer_and_bool_logits_give_the_float_cross_entropy(case):
    x = INT_CASES[case]
    t = np.zeros(x.shape[0], np.int32)
    got = F.softmax_cross_entropy(jnp.asarray(x), t)
    want = F.softmax_cross_entropy(jnp.asarray(x, jnp.float32), t)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize(
    "y, t, want",
    [
        (np.array([-100], np.int8), np.array([100], np.int8), 20_000.0),
        (np.array([0], np.uint8), np.array([20], np.uint8), 200.0),  # 0 - 20 wraps to 236
        (np.array([200], np.uint8), np.array([0], np.int8), 20_000.0),
        (np.array([True]), np.array([False]), 0.5),
    ],
    ids=["int8", "uint8", "uint8-int8", "bool"],
)
def test_integer_and_bool_sum_squares_error_is_computed_in_float(y, t, want):
    loss = F.sum_squares_error(jnp.asarray(y), jnp.asarray(t))
    assert loss.dtype == jnp.float32
    assert float(loss) == want


def test_integer_inputs_take_float64_with_x64(x64):
    x = jnp.array([[1, 0, 1]], jnp.uint8)
    assert F.softmax(x).dtype == jnp.float64
    assert F.sum_squares_error(jnp.array([-100], jnp.int8), jnp.array([100], jnp.int8)) == 20_000.0
    np.testing.assert_allclose(F.log_softmax(x), F.log_softmax(x.astype(jnp.float64)), rtol=1e-15)


def test_bool_scores_are_ones_and_zeros():
    x = jnp.array([[True, False]])
    np.testing.assert_allclose(F.softmax(x), [[1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))]], 1e-6)
    np.testing.assert_allclose(F.cross_entropy_error(x, jnp.array([0])), 0.0, atol=1e-6)


# --------------------------------------------------------------------------------------
# 4. Bool one-hot targets are checked like float ones


BAD_BOOL_ROWS = {
    "two-trues": np.array([[True, True, False], [False, True, False]]),
    "all-false": np.array([[False, False, False], [False, True, False]]),
}
TARGET_USERS = {
    "softmax_cross_entropy": lambda t: F.softmax_cross_entropy(jnp.zeros((2, 3)), t),
    "cross_entropy_error": lambda t: F.cross_entropy_error(jnp.full((2, 3), 1 / 3), t),
    "accuracy": lambda t: accuracy(lambda p, a: a + p["w"], {"w": jnp.zeros(1)}, jnp.eye(3)[:2], t),
    "count_correct": lambda t: count_correct(
        lambda p, a: a + p["w"], {"w": jnp.zeros(1)}, jnp.eye(3)[:2], t, batch_size=1
    ),
}


@pytest.mark.parametrize("rows", sorted(BAD_BOOL_ROWS))
@pytest.mark.parametrize("name", sorted(TARGET_USERS))
def test_bool_one_hot_rows_without_exactly_one_true_are_refused(name, rows):
    t = BAD_BOOL_ROWS[rows]
    sums = "2" if rows == "two-trues" else "0"
    where = "accuracy" if name == "count_correct" else name  # count_correct's errors say so
    with pytest.raises(
        ValueError, match=rf"^{where}: t must hold probability rows.*row 0 sums to {sums}"
    ):
        TARGET_USERS[name](t)
    # The same rows as floats are refused with the same error.
    with pytest.raises(
        ValueError, match=rf"^{where}: t must hold probability rows.*row 0 sums to {sums}"
    ):
        TARGET_USERS[name](t.astype(np.float32))
    # Rows with exactly one True are accepted and mean what the float rows mean.
    good = np.array([[True, False, False], [False, True, False]])
    np.testing.assert_allclose(
        TARGET_USERS[name](good), TARGET_USERS[name](good.astype(np.float32))
    )


def test_bfloat16_soft_targets_are_checked_with_bfloat16s_tolerance():
    # bfloat16 rounds 0.1, 0.2, 0.7 to a sum of 1.0005: NumPy calls bfloat16 kind "V", and
    # the check used to hold such rows to 1e-6.
    t = jnp.asarray([[0.1, 0.2, 0.7]], jnp.bfloat16)
    loss = F.softmax_cross_entropy(jnp.zeros((1, 3), jnp.bfloat16), t)
    np.testing.assert_allclose(float(loss), np.log(3), rtol=1e-2)
    with pytest.raises(ValueError, match="row 0 sums to 1.5"):
        F.softmax_cross_entropy(jnp.zeros((1, 3)), jnp.asarray([[0.5, 0.5, 0.5]], jnp.bfloat16))
