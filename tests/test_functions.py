import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import functions as F

# ch4.2: the book's example prediction and its target (one-hot at index 2).
Y_GOOD = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
Y_BAD = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]
T = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def test_step_function_is_one_only_above_zero():
    np.testing.assert_array_equal(F.step_function(jnp.array([-1.0, 0.0, 2.0])), [0, 0, 1])
    assert F.step_function(jnp.array([-1.0, 1.0])).dtype == jnp.float32
    assert F.step_function(jnp.array([-1, 1])).dtype == jnp.int32


def test_sigmoid_matches_book_values(x64):
    # ch3.2.4: sigmoid(np.array([-1.0, 1.0, 2.0]))
    np.testing.assert_allclose(
        F.sigmoid(jnp.array([-1.0, 1.0, 2.0])), [0.26894142, 0.73105858, 0.88079708], rtol=1e-7
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_sigmoid_is_finite_and_saturates_at_plus_minus_1000(dtype, x64):
    y = F.sigmoid(jnp.array([-1000.0, 1000.0], dtype))
    np.testing.assert_array_equal(y, [0.0, 1.0])
    g = jax.grad(lambda x: F.sigmoid(x).sum())(jnp.array([-1000.0, 1000.0], dtype))
    assert np.all(np.isfinite(g))


def test_sigmoid_accepts_integer_input():
    np.testing.assert_allclose(
        F.sigmoid(jnp.array([-1, 1, 2])), [0.26894142, 0.73105858, 0.88079708], rtol=1e-6
    )


def test_sigmoid_keeps_relative_precision_far_in_the_left_tail(x64):
    np.testing.assert_allclose(F.sigmoid(jnp.array(-30.0)), 1 / (1 + np.exp(30.0)), rtol=1e-12)


def test_sigmoid_grad_is_y_times_one_minus_y(x64):
    x = jnp.linspace(-5, 5, 11)
    np.testing.assert_allclose(F.sigmoid_grad(x), jax.vmap(jax.grad(F.sigmoid))(x), rtol=1e-12)


def test_relu_and_its_autodiff_derivative_at_zero_is_zero():
    np.testing.assert_array_equal(F.relu(jnp.array([-2.0, 0.0, 3.0])), [0.0, 0.0, 3.0])
    assert jax.grad(F.relu)(0.0) == 0.0
    assert jax.grad(F.relu)(1e-3) == 1.0


def test_identity_function_returns_its_input():
    x = jnp.array([[1.0, -2.0]])
    np.testing.assert_array_equal(F.identity_function(x), x)


def test_softmax_matches_book_values(x64):
    # ch3.5.1
    np.testing.assert_allclose(
        F.softmax(jnp.array([0.3, 2.9, 4.0])), [0.01821127, 0.24519181, 0.73659691], rtol=1e-6
    )
    # ch3.5.2: the overflow example
    np.testing.assert_allclose(
        F.softmax(jnp.array([1010.0, 1000.0, 990.0])),
        [9.99954600e-01, 4.53978686e-05, 2.06106005e-09],
        rtol=1e-6,
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_softmax_is_finite_for_huge_logits(dtype, x64):
    y = F.softmax(jnp.array([[1e4, 0.0, -1e4], [5.0, 5.0, 5.0]], dtype))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=-1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(y[0], [1.0, 0.0, 0.0])


def test_softmax_works_row_wise_on_batches(x64):
    x = jnp.array([[0.3, 2.9, 4.0], [1010.0, 1000.0, 990.0]])
    np.testing.assert_allclose(F.softmax(x)[1], F.softmax(x[1]), rtol=1e-12)


def test_sum_squares_error_matches_book(x64):
    # ch4.2.1
    assert float(F.sum_squares_error(jnp.array(Y_GOOD), jnp.array(T))) == pytest.approx(0.0975)
    assert float(F.sum_squares_error(jnp.array(Y_BAD), jnp.array(T))) == pytest.approx(0.5975)


def test_sum_squares_error_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"y \(3,\) and t \(2,\)"):
        F.sum_squares_error(jnp.ones(3), jnp.ones(2))


def test_cross_entropy_error_matches_book(x64):
    # ch4.2.2: 0.510825457099338 and 2.302584092994546
    assert float(F.cross_entropy_error(jnp.array(Y_GOOD), jnp.array(T))) == pytest.approx(
        0.510825457, abs=1e-9
    )
    assert float(F.cross_entropy_error(jnp.array(Y_BAD), jnp.array(T))) == pytest.approx(
        2.302584092, abs=1e-9
    )


def test_cross_entropy_error_accepts_one_hot_or_labels_and_averages_the_batch(x64):
    y = jnp.array([Y_GOOD, Y_BAD])
    one_hot = jnp.array([T, T])
    labels = jnp.array([2, 2])
    both = float(F.cross_entropy_error(y, one_hot))
    assert both == pytest.approx(float(F.cross_entropy_error(y, labels)), rel=1e-15)
    assert both == pytest.approx((0.510825457099338 + 2.302584092994546) / 2, rel=1e-12)
    # 1-D y with a scalar label is a batch of one.
    assert float(F.cross_entropy_error(jnp.array(Y_GOOD), jnp.array(2))) == pytest.approx(
        0.510825457
    )


def test_cross_entropy_error_is_finite_for_zero_probability(x64):
    y = jnp.array([0.0, 1.0])
    assert np.isfinite(F.cross_entropy_error(y, jnp.array(0)))


def test_cross_entropy_error_rejects_out_of_range_labels_and_bad_shapes():
    y = jnp.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="label 3 is out of range for 3 classes"):
        F.cross_entropy_error(y, jnp.array([0, 3]))
    with pytest.raises(ValueError, match="label -1 is out of range"):
        F.cross_entropy_error(y, jnp.array([-1, 0]))
    with pytest.raises(ValueError, match=r"t must have shape \(2,\) for y \(2, 3\), got t \(3,\)"):
        F.cross_entropy_error(y, jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer dtype"):
        F.cross_entropy_error(y, jnp.array([0.0, 1.0]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_softmax_cross_entropy_is_exact_and_finite_for_huge_logits(dtype, x64):
    logits = jnp.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], dtype)
    labels = jnp.array([2, 1])
    loss = F.softmax_cross_entropy(logits, labels)
    # Row 0: -log softmax = 2e4 for the smallest logit; row 1: log 3.
    np.testing.assert_allclose(loss, (2e4 + np.log(3)) / 2, rtol=1e-6)
    g = jax.grad(F.softmax_cross_entropy)(logits, labels)
    assert np.all(np.isfinite(g))


def test_softmax_cross_entropy_agrees_with_book_loss_up_to_the_delta(x64):
    x = jnp.array([[0.3, 2.9, 4.0], [1.0, -1.0, 0.5]])
    t = jnp.array([0, 2])
    exact = F.softmax_cross_entropy(x, t)
    book = F.cross_entropy_error(F.softmax(x), t)
    # The book's 1e-7 inside the log lowers the loss by about 1e-7 / y per example.
    assert 0 < float(exact - book) < 1e-5
    np.testing.assert_allclose(exact, F.softmax_cross_entropy(x, jax.nn.one_hot(t, 3)), rtol=1e-14)
