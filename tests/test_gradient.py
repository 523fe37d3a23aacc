import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.gradient import gradient_descent, numerical_diff, numerical_gradient


def function_1(x):
    return 0.01 * x**2 + 0.1 * x


def function_2(x):
    return jnp.sum(x**2)


def test_numerical_diff_reproduces_the_books_printed_values(x64):
    # ch4.3.2: the book prints exactly these two floats.
    assert float(numerical_diff(function_1, jnp.array(5.0))) == 0.1999999999990898
    assert float(numerical_diff(function_1, jnp.array(10.0))) == 0.2999999999986347


@pytest.mark.parametrize(
    "point, expected",
    [((3.0, 4.0), (6.0, 8.0)), ((0.0, 2.0), (0.0, 4.0)), ((3.0, 0.0), (6.0, 0.0))],
)
def test_numerical_gradient_matches_book(point, expected, x64):
    # ch4.4
    g = numerical_gradient(function_2, jnp.array(point))
    np.testing.assert_allclose(g, expected, atol=1e-9)
    assert g.dtype == jnp.float64


def test_numerical_gradient_of_a_pytree_keeps_its_structure(x64):
    params = {"W": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([1.0, -2.0])}

    def f(p):
        return jnp.sum(p["W"] ** 3) + jnp.sum(jnp.sin(p["b"]))

    g = numerical_gradient(f, params)
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(params)
    exact = jax.grad(f)(params)
    np.testing.assert_allclose(g["W"], exact["W"], rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(g["b"], exact["b"], rtol=1e-7)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
def test_numerical_gradient_is_the_same_for_any_chunk_size(chunk_size, x64):
    x = jnp.linspace(-1.0, 1.0, 7)
    reference = numerical_gradient(lambda v: jnp.sum(jnp.exp(v) * v), x)
    chunked = numerical_gradient(lambda v: jnp.sum(jnp.exp(v) * v), x, chunk_size=chunk_size)
    np.testing.assert_allclose(chunked, reference, rtol=1e-11)


def test_numerical_gradient_works_under_jit_and_promotes_integers(x64):
    g = jax.jit(lambda x: numerical_gradient(function_2, x))(jnp.array([3.0, 4.0]))
    np.testing.assert_allclose(g, [6.0, 8.0], atol=1e-9)
    g_int = numerical_gradient(function_2, jnp.array([3, 4]))
    assert jnp.issubdtype(g_int.dtype, jnp.floating)
    np.testing.assert_allclose(g_int, [6.0, 8.0], atol=1e-9)


def test_numerical_gradient_in_float32_is_only_roughly_right():
    # The DESIGN trap: h = 1e-4 in float32 gives about three correct digits.
    g = numerical_gradient(function_2, jnp.array([3.0, 4.0], jnp.float32))
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(g, [6.0, 8.0], rtol=2e-2)


def test_numerical_gradient_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        numerical_gradient(function_2, jnp.ones(3), chunk_size=0)


def test_gradient_descent_reaches_the_minimum_like_the_book(x64):
    # ch4.4.1: from (-3, 4), lr 0.1, 100 steps -> about (-6.1e-10, 8.1e-10)
    x, history = gradient_descent(function_2, jnp.array([-3.0, 4.0]), lr=0.1, step_num=100)
    np.testing.assert_allclose(x, [-6.1e-10, 8.1e-10], rtol=2e-2)
    assert history.shape == (100, 2)
    np.testing.assert_array_equal(history[0], [-3.0, 4.0])
    # Each step multiplies the point by 1 - 2·lr = 0.8.
    np.testing.assert_allclose(history[1], [-2.4, 3.2], rtol=1e-9)


def test_gradient_descent_with_too_large_a_rate_diverges(x64):
    x, _ = gradient_descent(function_2, jnp.array([-3.0, 4.0]), lr=10.0, step_num=100)
    assert not np.all(np.abs(np.asarray(x)) < 1e10)


def test_gradient_descent_with_too_small_a_rate_barely_moves(x64):
    x, _ = gradient_descent(function_2, jnp.array([-3.0, 4.0]), lr=1e-10, step_num=100)
    np.testing.assert_allclose(x, [-3.0, 4.0], atol=1e-6)
    assert not np.array_equal(x, [-3.0, 4.0])


def test_gradient_descent_accepts_an_exact_gradient_and_pytrees(x64):
    start = {"a": jnp.array([-3.0]), "b": jnp.array([4.0])}

    def f(p):
        return jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 2)

    x, history = gradient_descent(f, start, lr=0.1, step_num=3, grad_fn=jax.grad(f))
    np.testing.assert_allclose(x["a"], [-3.0 * 0.8**3], rtol=1e-12)
    assert history["b"].shape == (3, 1)
