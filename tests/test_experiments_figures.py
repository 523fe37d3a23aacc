"""The book's chapter-3 and chapter-4 figures: the experiments that draw them, their
printed numbers and their flags."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from experiments import (
    ch03_activation_functions,
    ch04_gradient_1d,
    ch04_gradient_2d,
    ch04_gradient_descent,
)


def _png_size(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_activation_functions_draw_figs_3_6_to_3_9_and_print_the_books_values(tmp_path, capsys):
    result = ch03_activation_functions.main(["--out", str(tmp_path)])
    # ch3.2.4: sigmoid(np.array([-1.0, 1.0, 2.0])) = [0.26894142, 0.73105858, 0.88079708]
    np.testing.assert_allclose(
        result["book_sigmoid"], [0.26894142, 0.73105858, 0.88079708], atol=5e-9
    )
    np.testing.assert_array_equal(result["book_step"], [0, 1, 1])
    x = result["x"]
    assert len(x) == 100 and x[0] == -5.0 and x[-1] == pytest.approx(4.9)  # arange(-5, 5, 0.1)
    np.testing.assert_array_equal(result["step_function"], (x > 0).astype(float))
    np.testing.assert_array_equal(result["relu"], np.maximum(x, 0))
    np.testing.assert_allclose(result["sigmoid"], 1 / (1 + np.exp(-x)), rtol=1e-12)
    for name in ("step_function", "sigmoid", "sig_step_compare", "relu"):
        _png_size(tmp_path / f"{name}.png")
    out = capsys.readouterr().out
    assert "sigmoid(x) = [0.26894142 0.73105858 0.88079708]" in out
    assert "step_function(x) = [0 1 1]" in out


def test_gradient_1d_prints_the_books_derivatives_and_draws_the_tangents(tmp_path, capsys):
    result = ch04_gradient_1d.main(["--out", str(tmp_path)])
    # ch4.3.2 (gradient_1d.py) prints these exact float64 values.
    assert result == {"x=5": 0.1999999999990898, "x=10": 0.2999999999986347}
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["0.1999999999990898", "0.2999999999986347"]
    _png_size(tmp_path / "function_1.png")
    width, _ = _png_size(tmp_path / "gradient_1d.png")
    assert width > 800  # two panels side by side


def test_tangent_line_touches_the_function_with_the_numerical_slope():
    slope, line = ch04_gradient_1d.tangent_line(5.0)
    assert slope == pytest.approx(0.2, abs=1e-11)
    assert line(5.0) == pytest.approx(0.01 * 25 + 0.5, abs=1e-12)
    assert line(6.0) - line(5.0) == pytest.approx(slope)


def test_gradient_2d_prints_the_books_gradients_and_draws_figs_4_8_and_4_9(tmp_path, capsys):
    result = ch04_gradient_2d.main(["--out", str(tmp_path), "--grid-step", "0.5"])
    # ch4.4: numerical_gradient(function_2, ...) prints [6. 8.], [0. 4.], [6. 0.]
    for point, grad in [((3.0, 4.0), [6, 8]), ((0.0, 2.0), [0, 4]), ((3.0, 0.0), [6, 0])]:
        np.testing.assert_allclose(result[str(point)], grad, atol=1e-9)
    assert result["points"].shape == (81, 2)  # arange(-2, 2.5, 0.5): 9 × 9
    np.testing.assert_allclose(result["grads"], 2 * result["points"], atol=1e-9)
    out = capsys.readouterr().out
    assert "numerical_gradient(function_2, [3.0, 4.0]) = [6. 8.]" in out
    assert "81 arrows on a grid of step 0.5" in out
    for name in ("function_2.png", "gradient_2d.png"):
        _png_size(tmp_path / name)


def test_gradient_descent_says_why_lr_10_flattens(tmp_path, capsys):
    result = ch04_gradient_descent.main(["--out", str(tmp_path), "--steps", "30"])
    assert int(result["stall lr=10"]) == 10
    out = capsys.readouterr().out
    assert "lr=10 stops moving at step 10" in out and "not convergence" in out
    assert "numerical gradient is [0.0, 0.0]" in out
    assert "stall lr=0.1" not in result and "stall lr=1e-10" not in result


def test_find_stall_is_none_for_runs_that_move_or_reach_the_minimum():
    assert ch04_gradient_descent.find_stall(np.array([[3.0, 4.0], [2.0, 3.0], [1.0, 2.0]])) is None
    assert ch04_gradient_descent.find_stall(np.array([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])) is None
    stall = ch04_gradient_descent.find_stall(np.array([[3.0, 4.0], [3e13, 0.0], [3e13, 0.0]]))
    assert stall.step == 1 and stall.numerical.tolist() == [0.0, 0.0]
    assert stall.true.tolist() == [6e13, 0.0]


@pytest.mark.parametrize(
    "module, flags, message",
    [
        (ch04_gradient_descent, ["--steps", "-3"], "--steps: must be a positive integer"),
        (ch04_gradient_descent, ["--steps", "0"], "--steps: must be a positive integer"),
        (ch04_gradient_descent, ["--steps", "2.5"], "--steps: expected an integer"),
        (ch03_activation_functions, ["--step", "0"], "--step: must be a number > 0"),
        (ch03_activation_functions, ["--step", "nan"], "--step: must be a finite number"),
        (ch03_activation_functions, ["--step", "6"], "--step: must be at most 5"),
        (ch04_gradient_1d, ["--at", "inf"], "--at: must be a finite number"),
        (ch04_gradient_1d, ["--at", "-1"], "--at: points must lie in [0, 20)"),
        (ch04_gradient_1d, ["--at", "1", "2", "3", "4", "5"], "--at: at most 4 points"),
        (ch04_gradient_2d, ["--grid-step", "-0.25"], "--grid-step: must be a number > 0"),
        (ch04_gradient_2d, ["--grid-step", "3"], "--grid-step: must be at most 2"),
    ],
)
def test_bad_flags_are_argparse_errors(module, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_out_naming_a_file_is_one_line_and_exit_status_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = subprocess.run(
        [sys.executable, "-m", "experiments.ch04_gradient_1d", "--out", str(blocker)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    assert "ch04_gradient_1d" in line
    assert line.endswith(f"error: --out {blocker}: {blocker} exists and is not a folder")
