"""The gradient-verification suite: every registered layer's hand-written rule against
autodiff of its plain forward and against finite differences, under jit, vmap and second
order, in float64 and float32. Adding a layer to ``REGISTRY`` adds it to every test here.
"""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from funcnet import layers as L
from funcnet.check import AUTODIFF_RTOL, NUMERICAL_RTOL, check_layer, gradients_three_ways

CASES = [
    pytest.param(entry, case, id=f"{entry.name}-{case.name}")
    for entry in L.REGISTRY.values()
    for case in entry.cases
]


def _one_per_family(entries):
    """Conv and pooling register one entry per stride/pad (``convolution_s2p1``): the
    three-way checks below run on all of them, the costlier second-order, vmap and
    float32-agreement tests on one configuration of each family."""
    seen, kept = set(), []
    for entry in entries:
        family = re.sub(r"_(s\d+p\d+|\d+x\d+s\d+p\d+)$", "", entry.name)
        if family not in seen:
            seen.add(family)
            kept.append(entry)
    return kept


FAMILY_CASES = [
    pytest.param(entry, case, id=f"{entry.name}-{case.name}")
    for entry in _one_per_family(L.REGISTRY.values())
    for case in entry.cases
]


def inputs(case, dtype=jnp.float64, seed=0):
    return case.make_inputs(np.random.default_rng(seed), dtype)


def scalarized(fn, args, argnums, seed=1, jit=True):
    """Σ fn(*args) · c for a fixed random c, as a function of the differentiable args."""
    out = jax.eval_shape(fn, *args)
    c = jnp.asarray(np.random.default_rng(seed).standard_normal(out.shape), out.dtype)

    def f(*diff):
        full = list(args)
        for i, d in zip(argnums, diff, strict=True):
            full[i] = d
        return jnp.sum(fn(*full) * c)

    # jit: one compilation per transformation instead of one per eager primitive.
    return jax.jit(f) if jit else f


def diff_args(args, argnums):
    return tuple(args[i] for i in argnums)


@pytest.mark.parametrize("entry, case", CASES)
def test_rule_matches_autodiff_and_finite_differences_in_float64(entry, case, x64):
    custom, autodiff, numerical = gradients_three_ways(entry.layer, inputs(case), case.argnums)
    for c, a, n in zip(custom, autodiff, numerical, strict=True):
        assert c.dtype == jnp.float64
        scale = max(float(jnp.max(jnp.abs(a))), 1e-300)
        assert float(jnp.max(jnp.abs(c - a))) / scale <= 1e-12
        assert float(jnp.max(jnp.abs(c - n))) / scale <= 1e-7


@pytest.mark.parametrize("entry, case", FAMILY_CASES)
def test_rule_passes_jax_check_grads_in_reverse_mode_to_second_order(entry, case, x64):
    args = inputs(case)
    check_grads(
        scalarized(entry.layer, args, case.argnums),
        diff_args(args, case.argnums),
        order=2,
        modes=["rev"],
    )


@pytest.mark.parametrize("entry, case", FAMILY_CASES)
def test_hessian_vector_products_through_the_rule_equal_the_plain_forwards(entry, case, x64):
    args = inputs(case)
    primals = diff_args(args, case.argnums)
    tangents = tuple(
        jnp.asarray(np.random.default_rng(7).standard_normal(p.shape)) for p in primals
    )

    def hvp(fn):
        f = scalarized(fn, args, case.argnums)
        argnums = tuple(range(len(primals)))

        def directional(*p):
            g = jax.grad(f, argnums)(*p)
            return sum(jnp.vdot(gi, ti) for gi, ti in zip(g, tangents, strict=True))

        return jax.grad(directional, argnums)(*primals)

    chex.assert_trees_all_close(hvp(entry.layer), hvp(entry.layer.fun), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("entry, case", FAMILY_CASES)
def test_per_example_gradients_under_vmap_match_a_python_loop(entry, case, x64):
    examples = [inputs(case, seed=s) for s in range(3)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *examples)

    def grad_of(fn):
        def per_example(*args):
            return jax.grad(scalarized(fn, args, case.argnums), range(len(case.argnums)))(
                *diff_args(args, case.argnums)
            )

        return per_example

    batched = jax.vmap(grad_of(entry.layer))(*stacked)
    looped = [grad_of(entry.layer)(*ex) for ex in examples]
    reference = jax.vmap(grad_of(entry.layer.fun))(*stacked)
    for i, loop in enumerate(looped):
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda b, i=i: b[i], batched), loop, rtol=1e-12, atol=1e-14
        )
    chex.assert_trees_all_close(batched, reference, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("entry, case", FAMILY_CASES)
def test_float32_rule_agrees_with_float64_within_float32_tolerance(entry, case, x64):
    args64 = inputs(case, jnp.float64)
    args32 = inputs(case, jnp.float32)
    g64 = jax.grad(scalarized(entry.layer, args64, case.argnums), range(len(case.argnums)))(
        *diff_args(args64, case.argnums)
    )
    g32 = jax.grad(scalarized(entry.layer, args32, case.argnums), range(len(case.argnums)))(
        *diff_args(args32, case.argnums)
    )
    for a, b in zip(g32, g64, strict=True):
        assert a.dtype == jnp.float32
        scale = float(jnp.max(jnp.abs(b)))
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * scale + 1e-6


@pytest.mark.parametrize("entry, case", CASES)
def test_check_layer_passes_in_float32_against_float64_finite_differences(entry, case):
    result = check_layer(entry.name, entry.layer, case, jnp.float32)
    assert result.passed, result
    assert result.autodiff_rel <= AUTODIFF_RTOL[jnp.dtype("float32")]
    assert result.numerical_rel <= NUMERICAL_RTOL[jnp.dtype("float32")]


class LayerVariantsTest(chex.TestCase):
    """The rules give the same gradients with and without jit and device placement.

    One case per layer keeps the eager variants fast; the parametrized tests above cover
    every case.
    """

    @chex.variants(with_jit=True, without_jit=True, with_device=True, without_device=True)
    def test_every_rule_matches_autodiff_in_every_variant(self):
        for entry in L.REGISTRY.values():
            for case in entry.cases[-1:]:
                args = case.make_inputs(np.random.default_rng(0), jnp.float32)
                # Not jitted here: the variant decides whether the rule runs eagerly.
                f_rule = scalarized(entry.layer, args, case.argnums, jit=False)
                f_plain = scalarized(entry.layer.fun, args, case.argnums)
                argnums = tuple(range(len(case.argnums)))
                got = self.variant(jax.grad(f_rule, argnums))(*diff_args(args, case.argnums))
                want = jax.grad(f_plain, argnums)(*diff_args(args, case.argnums))
                chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


# --- Layer-specific behaviour -----------------------------------------------------------


def test_mul_and_add_give_the_books_apple_numbers(x64):
    # ch5.4.1: apple 100, 2 apples, tax 1.1 -> 220; dApple 2.2, dApple_num 110, dTax 200
    def price(apple, apple_num, tax):
        return L.mul(L.mul(apple, apple_num), tax)

    assert float(price(100.0, 2.0, 1.1)) == pytest.approx(220.0)
    grads = jax.grad(price, (0, 1, 2))(100.0, 2.0, 1.1)
    np.testing.assert_allclose(grads, [2.2, 110.0, 200.0], rtol=1e-12)


def test_relu_rule_and_plain_forward_both_give_zero_gradient_at_exactly_zero():
    x = jnp.array([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(jax.grad(lambda v: L.relu(v).sum())(x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(jax.grad(lambda v: L.relu.fun(v).sum())(x), [0.0, 0.0, 1.0])


def test_sigmoid_layer_is_finite_at_plus_minus_1000():
    x = jnp.array([-1000.0, 0.0, 1000.0])
    np.testing.assert_array_equal(L.sigmoid(x), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(jax.grad(lambda v: L.sigmoid(v).sum())(x), [0.0, 0.25, 0.0])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_softmax_with_loss_is_finite_for_huge_logits(dtype, x64):
    x = jnp.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0]], dtype)
    t = jnp.array([2, 1])
    loss = L.softmax_with_loss(x, t)
    np.testing.assert_allclose(loss, 1e4, rtol=1e-6)  # (2e4 + 0) / 2
    g = jax.grad(L.softmax_with_loss)(x, t)
    np.testing.assert_allclose(g, [[0.5, 0.0, -0.5], [0.0, 0.0, 0.0]], atol=1e-6)


def test_softmax_with_loss_multiplies_by_the_upstream_gradient(x64):
    # The DESIGN trap: the book's backward(dout=1) ignores dout.
    x = jnp.array([[0.3, 2.9, 4.0], [1.0, -1.0, 0.5]])
    t = jnp.array([0, 2])
    once = jax.grad(L.softmax_with_loss)(x, t)
    thrice = jax.grad(lambda v: 3.0 * L.softmax_with_loss(v, t))(x)
    np.testing.assert_allclose(thrice, 3.0 * once, rtol=1e-14)


def test_softmax_with_loss_backward_is_y_minus_t_over_n(x64):
    x = jnp.array([[0.3, 2.9, 4.0], [1.0, -1.0, 0.5]])
    t = jax.nn.one_hot(jnp.array([0, 2]), 3, dtype=jnp.float64)
    y = jax.nn.softmax(x)
    np.testing.assert_allclose(jax.grad(L.softmax_with_loss)(x, t), (y - t) / 2, rtol=1e-14)


def test_softmax_with_loss_gives_integer_labels_no_cotangent():
    _, vjp = jax.vjp(L.softmax_with_loss.rule, jnp.ones((2, 3)), jnp.array([0, 1]))
    dx, dt = vjp(jnp.float32(1.0))
    assert dx.shape == (2, 3)
    assert dt.dtype == jax.dtypes.float0


def test_affine_backward_matches_autodiff_on_4d_input(x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 3, 4, 5)))
    W = jnp.asarray(rng.standard_normal((60, 4)))
    b = jnp.asarray(rng.standard_normal(4))
    got = jax.grad(lambda *a: L.affine(*a).sum(), (0, 1, 2))(x, W, b)
    want = jax.grad(lambda *a: L.affine.fun(*a).sum(), (0, 1, 2))(x, W, b)
    assert got[0].shape == x.shape
    chex.assert_trees_all_close(got, want, rtol=1e-12)


@pytest.mark.parametrize("name", ["mul", "add", "affine"])
def test_cotangents_keep_their_primals_dtype_when_inputs_mix_precisions(name, x64):
    entry = L.REGISTRY[name]
    case = entry.cases[1]
    args = list(inputs(case, jnp.float32))
    args[0] = args[0].astype(jnp.float64)  # a float64 input beside float32 ones
    grads = jax.grad(scalarized(entry.layer, args, case.argnums), range(len(case.argnums)))(
        *diff_args(args, case.argnums)
    )
    for i, g in zip(case.argnums, grads, strict=True):
        assert g.dtype == args[i].dtype, (name, i, g.dtype, args[i].dtype)


def test_softmax_with_loss_ignores_a_masked_minus_inf_logit():
    x = jnp.array([[-jnp.inf, 0.0, 0.0]])
    for t in (jnp.array([1]), jnp.array([[0.0, 1.0, 0.0]])):
        np.testing.assert_allclose(L.softmax_with_loss(x, t), np.log(2), rtol=1e-6)
        np.testing.assert_allclose(L.softmax_with_loss.fun(x, t), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(L.softmax_with_loss)(x, jnp.array([1])), [[0.0, -0.5, 0.5]], atol=1e-7
    )


# --- Bad input --------------------------------------------------------------------------


def test_affine_names_both_shapes_when_features_do_not_match_rows():
    with pytest.raises(
        ValueError, match=r"x has 784 features but W has 50 rows; x \(100, 784\), W \(50, 10\)"
    ):
        L.affine(jnp.ones((100, 784)), jnp.ones((50, 10)), jnp.ones(10))


def test_affine_names_both_shapes_when_bias_does_not_match_columns():
    with pytest.raises(ValueError, match=r"b must have shape \(10,\).*b \(5,\), W \(784, 10\)"):
        L.affine(jnp.ones((3, 784)), jnp.ones((784, 10)), jnp.ones(5))


def test_affine_rejects_non_matrix_weights():
    with pytest.raises(ValueError, match=r"W must be 2-D"):
        L.affine(jnp.ones((3, 4)), jnp.ones(4), jnp.ones(1))


def test_affine_shape_errors_are_raised_under_jit_too():
    with pytest.raises(ValueError, match="features but W has"):
        jax.jit(L.affine)(jnp.ones((2, 3)), jnp.ones((4, 5)), jnp.ones(5))


def test_softmax_with_loss_rejects_labels_of_the_wrong_shape():
    with pytest.raises(
        ValueError, match=r"integer labels t must have shape \(4,\) for x \(4, 3\), got t \(3,\)"
    ):
        L.softmax_with_loss(jnp.ones((4, 3)), jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"one-hot t must have x's shape; x \(4, 3\), t \(4, 2\)"):
        L.softmax_with_loss(jnp.ones((4, 3)), jnp.ones((4, 2)))


def test_softmax_with_loss_rejects_out_of_range_labels_eagerly():
    with pytest.raises(ValueError, match="label 3 is out of range for 3 classes"):
        L.softmax_with_loss(jnp.ones((2, 3)), jnp.array([0, 3]))
    with pytest.raises(ValueError, match="label -2 is out of range"):
        L.softmax_with_loss(jnp.ones((2, 3)), jnp.array([-2, 0]))


def test_softmax_with_loss_rejects_integer_scores():
    with pytest.raises(ValueError, match="floating point"):
        L.softmax_with_loss(jnp.ones((2, 3), jnp.int32), jnp.array([0, 1]))


def test_empty_batches_get_a_clear_error():
    with pytest.raises(ValueError, match=r"affine: x holds an empty batch, x \(0, 3\)"):
        L.affine(jnp.ones((0, 3)), jnp.ones((3, 2)), jnp.ones(2))
    with pytest.raises(ValueError, match=r"softmax_with_loss: x holds an empty batch"):
        L.softmax_with_loss(jnp.ones((0, 3)), jnp.zeros((0,), jnp.int32))


def test_mul_and_add_reject_unbroadcastable_shapes():
    with pytest.raises(ValueError, match=r"mul: x \(2, 3\) and y \(4,\) cannot be broadcast"):
        L.mul(jnp.ones((2, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match=r"add: x \(2, 3\) and y \(2,\) cannot be broadcast"):
        L.add(jnp.ones((2, 3)), jnp.ones(2))
