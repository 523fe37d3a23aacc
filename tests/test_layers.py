"""The gradient-verification suite: every registered layer's hand-written rule against
autodiff of its plain forward and against finite differences, under jit, vmap and second
order, in float64 and float32. Adding a layer to ``REGISTRY`` adds it to every test here.
"""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

from funcnet import layers as L
from funcnet.check import AUTODIFF_RTOL, NUMERICAL_RTOL
from funcnet.check._registry import _scalarized
from funcnet.gradient import numerical_gradient

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


def _three_way_cotangent(layer, args, seed):
    """The cotangent funcnet.check.gradients_three_ways draws (its own stream)."""
    out = jax.eval_shape(layer, *args)
    rng = np.random.default_rng((seed, 0xC07A))
    return jnp.asarray(rng.standard_normal(out.shape), out.dtype)


# f(diff_args) = Σ fn(*args) · cotangent, the other args held fixed (funcnet.check's).
_sum_times = _scalarized


# The three gradients of funcnet.check.gradients_three_ways, as two compiled programs that
# take the inputs and the cotangent as arguments: the float64 finite differences of a case
# compile once for its float64 and its float32 test (the same shapes), and all the
# finite differences of a case are one vmapped batch (its arguments raveled into one vector).
@functools.partial(jax.jit, static_argnums=(0, 1))
def _rule_and_autodiff(layer, argnums, args, cotangent):
    diff = tuple(args[i] for i in argnums)
    custom = jax.grad(_sum_times(layer, cotangent, args, argnums))(diff)
    autodiff = jax.grad(_sum_times(layer.fun, cotangent, args, argnums))(diff)
    return custom, autodiff


@functools.partial(jax.jit, static_argnums=(0, 1))
def _finite_differences(fun, argnums, args, cotangent):
    flat, unravel = ravel_pytree(tuple(args[i] for i in argnums))
    f = _sum_times(fun, cotangent, args, argnums)
    return unravel(numerical_gradient(lambda v: f(unravel(v)), flat))


def _three_ways(entry, case, dtype, cotangent_seed):
    """(custom, autodiff, numerical) like gradients_three_ways, on the case's seed-0 inputs
    of ``dtype`` (call with float64 enabled); numerical in float64 on the same values."""
    args = inputs(case, dtype)
    cotangent = _three_way_cotangent(entry.layer, args, cotangent_seed)
    custom, autodiff = _rule_and_autodiff(entry.layer, case.argnums, args, cotangent)
    args64 = tuple(
        a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args
    )
    numerical = _finite_differences(
        entry.layer.fun, case.argnums, args64, cotangent.astype(jnp.float64)
    )
    return custom, autodiff, numerical


def _relative_errors(got, reference):
    """Per argument, max |got − reference| / max |reference| (NaN stays NaN: fails a <=)."""
    errors = []
    for g, r in zip(got, reference, strict=True):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        scale = max(float(np.max(np.abs(r))), 1e-300)
        errors.append(float(np.max(np.abs(g - r))) / scale)
    return errors


@pytest.mark.parametrize("entry, case", CASES)
def test_rule_matches_autodiff_and_finite_differences_in_float64(entry, case, x64):
    custom, autodiff, numerical = _three_ways(entry, case, jnp.float64, cotangent_seed=0)
    assert all(c.dtype == jnp.float64 for c in custom)
    # Each argument relative to the scale of its autodiff gradient.
    scales = [max(float(jnp.max(jnp.abs(a))), 1e-300) for a in autodiff]
    for c, a, n, scale in zip(custom, autodiff, numerical, scales, strict=True):
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

    # Both Hessian-vector products in one compiled program.
    through_rule, through_plain = jax.jit(lambda: (hvp(entry.layer), hvp(entry.layer.fun)))()
    chex.assert_trees_all_close(through_rule, through_plain, rtol=1e-10, atol=1e-12)


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

    @jax.jit
    def everything(stacked, examples):
        # In one compiled program: the loop is unrolled, one gradient per example.
        batched = jax.vmap(grad_of(entry.layer))(*stacked)
        looped = [grad_of(entry.layer)(*ex) for ex in examples]
        reference = jax.vmap(grad_of(entry.layer.fun))(*stacked)
        return batched, looped, reference

    batched, looped, reference = everything(stacked, examples)
    for i, loop in enumerate(looped):
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda b, i=i: b[i], batched), loop, rtol=1e-12, atol=1e-14
        )
    chex.assert_trees_all_close(batched, reference, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("entry, case", FAMILY_CASES)
def test_float32_rule_agrees_with_float64_within_float32_tolerance(entry, case, x64):
    args64 = inputs(case, jnp.float64)
    args32 = inputs(case, jnp.float32)

    def grads(args):
        f = scalarized(entry.layer, args, case.argnums)
        return jax.grad(f, range(len(case.argnums)))(*diff_args(args, case.argnums))

    g32, g64 = jax.jit(lambda: (grads(args32), grads(args64)))()  # one compiled program
    for a, b in zip(g32, g64, strict=True):
        assert a.dtype == jnp.float32
        scale = float(jnp.max(jnp.abs(b)))
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * scale + 1e-6


@pytest.mark.parametrize("entry, case", CASES)
def test_rule_passes_in_float32_against_float64_finite_differences(entry, case, x64):
    # What check_layer(…, jnp.float32) computes and decides (its own tests are in
    # test_check.py): the float32 rule against float32 autodiff and float64 central
    # differences on the same values, each argument against its reference's scale.
    custom, autodiff, numerical = _three_ways(entry, case, jnp.float32, cotangent_seed=1)
    assert all(c.dtype == jnp.float32 for c in custom)
    assert all(e <= AUTODIFF_RTOL[jnp.dtype("float32")] for e in _relative_errors(custom, autodiff))
    assert all(
        e <= NUMERICAL_RTOL[jnp.dtype("float32")] for e in _relative_errors(custom, numerical)
    )


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
                argnums = tuple(range(len(case.argnums)))
                got = self.variant(jax.grad(f_rule, argnums))(*diff_args(args, case.argnums))
                want = _autodiff_of_plain_forward(entry.name, case.name)
                chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


@functools.cache
def _autodiff_of_plain_forward(name, case_name):
    """The reference of LayerVariantsTest, computed once for the four variants: jax.grad of
    the plain forward, jitted, on the case's float32 inputs (seed 0)."""
    entry = L.REGISTRY[name]
    (case,) = [c for c in entry.cases if c.name == case_name]
    args = case.make_inputs(np.random.default_rng(0), jnp.float32)
    f_plain = scalarized(entry.layer.fun, args, case.argnums)
    return jax.grad(f_plain, tuple(range(len(case.argnums))))(*diff_args(args, case.argnums))


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
