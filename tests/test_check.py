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


def test_cli_prints_one_row_per_layer_case_and_dtype_and_exits_zero(monkeypatch, capsys):
    # Two layers keep the test fast; test_layers.py checks every registered case.
    subset = {name: REGISTRY[name] for name in ("mul", "softmax_with_loss")}
    monkeypatch.setattr(check, "REGISTRY", subset)
    assert check.main([]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.endswith(("PASS", "FAIL"))]
    assert len(rows) == 2 * sum(len(e.cases) for e in subset.values())
    assert all(line.endswith("PASS") for line in rows)
    assert "float32" in out and "float64" in out
    assert "0 failed" in out


def test_cli_exits_one_when_a_rule_is_wrong(monkeypatch, capsys):
    from funcnet.layers import RegisteredLayer

    broken = {
        "mul": REGISTRY["mul"],
        "sigmoid": RegisteredLayer(
            "sigmoid", _sigmoid_without_one_minus_y(), REGISTRY["sigmoid"].cases
        ),
    }
    monkeypatch.setattr(check, "REGISTRY", broken)
    assert check.main(["--dtype", "float64"]) == 1
    assert "FAIL" in capsys.readouterr().out
