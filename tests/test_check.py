import jax.numpy as jnp
import pytest

from funcnet import check
from funcnet import functions as F
from funcnet.layers import REGISTRY, make_layer


def _sigmoid_without_one_minus_y():
    """A deliberately wrong Sigmoid: backward g·y instead of g·(1 - y)·y."""

    def plain(x):
        return F.sigmoid(x)

    def fwd(x):
        y = F.sigmoid(x)
        return y, y

    def bwd(y, g):
        return (g * y,)

    return make_layer("wrong_sigmoid", plain, fwd, bwd)


def _affine_with_transposed_db_sum():
    """A deliberately wrong Affine: db summed over the wrong axis (features, not batch)."""
    affine = REGISTRY["affine"].layer

    def bwd(res, g):
        dx, dW, db = affine.bwd(res, g)
        return dx, dW, db * 0.5

    return make_layer("wrong_affine", lambda x, W, b: affine.fun(x, W, b), affine.fwd, bwd)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_checker_catches_sigmoid_without_the_one_minus_y_factor(dtype):
    wrong = _sigmoid_without_one_minus_y()
    for case in REGISTRY["sigmoid"].cases:
        result = check.check_layer("wrong_sigmoid", wrong, case, dtype)
        assert not result.passed
        assert result.autodiff_rel > 0.1 and result.numerical_rel > 0.1


def test_checker_catches_a_wrong_bias_gradient():
    wrong = _affine_with_transposed_db_sum()
    results = [check.check_layer("wrong_affine", wrong, c) for c in REGISTRY["affine"].cases]
    assert not any(r.passed for r in results)


def test_checker_passes_the_real_sigmoid():
    result = check.check_layer("sigmoid", REGISTRY["sigmoid"].layer, REGISTRY["sigmoid"].cases[0])
    assert result.passed


def test_cli_prints_one_row_per_layer_case_and_dtype_and_exits_zero(capsys):
    from funcnet.layers import RegisteredLayer

    # Two cheap layers keep the test fast (test_layers.py checks every registered case);
    # one under a long name: the columns stay aligned whatever the names' lengths.
    long_name = "a_layer_with_a_name_much_longer_than_eighteen_characters"
    subset = {
        long_name: RegisteredLayer(long_name, REGISTRY["mul"].layer, REGISTRY["mul"].cases),
        "relu": REGISTRY["relu"],
    }
    assert check.main([], registry=subset) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    rows = [line for line in lines if line.endswith(("PASS", "FAIL"))]
    assert len(rows) == 2 * sum(len(e.cases) for e in subset.values())
    assert all(line.endswith("PASS") for line in rows)
    assert "float32" in out and "float64" in out
    assert "0 failed" in out
    header, rows = lines[0], [line for line in lines if line.startswith(long_name)]
    assert len(rows) == 2 * len(REGISTRY["mul"].cases)
    for column in ("case", "dtype", "autodiff abs", "numeric rel", "result"):
        start = header.index(column)
        # Every row has its entry under the header's column (right-aligned numbers end
        # where the header ends, left-aligned text starts where it starts).
        for row in rows:
            if column in ("autodiff abs", "numeric rel"):
                end = start + len(column)
                assert row[end - 1] != " " and row[end] == " ", (header, row)
            else:
                assert row[start] != " " and row[start - 1] == " ", (header, row)


def test_cli_exits_one_when_a_rule_is_wrong(capsys):
    from funcnet.layers import RegisteredLayer

    broken = {
        "relu": REGISTRY["relu"],
        "sigmoid": RegisteredLayer(
            "sigmoid", _sigmoid_without_one_minus_y(), REGISTRY["sigmoid"].cases
        ),
    }
    assert check.main(["--dtype", "float64"], registry=broken) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "relu" in out


def test_a_nan_gradient_in_one_argument_fails_the_registry_check():
    """NaN in one argument's gradient is NaN in the row (never max(0.0, nan) == 0.0)."""
    affine = REGISTRY["affine"].layer

    def bwd(res, g):
        dx, dW, db = affine.bwd(res, g)
        return dx, dW, db * jnp.nan

    wrong = make_layer("nan_db", lambda x, W, b: affine.fun(x, W, b), affine.fwd, bwd)
    result = check.check_layer("nan_db", wrong, REGISTRY["affine"].cases[0])
    assert not result.passed
    assert result.autodiff_rel != result.autodiff_rel  # NaN
