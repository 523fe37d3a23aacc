"""The chapter-6 experiments (optimizers, initialisation, weight decay), run reduced."""

import json
import math

import numpy as np
import pytest

from experiments import (
    _ch06,
    ch06_optimizer_compare_mnist,
    ch06_optimizer_compare_naive,
    ch06_overfit_weight_decay,
    ch06_weight_init_activation_histogram,
    ch06_weight_init_compare,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def _strict_json(path):
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


# --------------------------------------------------------------------------------------
# Fig. 6-8


def test_optimizer_compare_naive_gives_the_books_final_points(tmp_path, capsys):
    result = ch06_optimizer_compare_naive.main(["--out", str(tmp_path)])
    final = result["final"]
    # SGD on x²/20 + y² with lr 0.95: x ← 0.905·x, y ← −0.9·y, 30 times from (−7, 2).
    np.testing.assert_allclose(final["SGD (lr=0.95)"], [-7 * 0.905**30, 2 * 0.9**30], rtol=1e-12)
    # The book's common/optimizer.py classes run in NumPy float64 on the same problem.
    np.testing.assert_allclose(
        final["Momentum (lr=0.1)"], [0.896413858493733, 0.08808560171506971], rtol=1e-10
    )
    np.testing.assert_allclose(
        final["AdaGrad (lr=1.5)"], [-0.12016232231416045, 2.486389893984459e-17], rtol=1e-10
    )
    np.testing.assert_allclose(
        final["Adam (lr=0.3)"], [0.13600685239498186, 0.31824537553721943], rtol=1e-10
    )
    assert all(points.shape == (31, 2) for points in result["paths"].values())
    assert _is_png(tmp_path / "optimizer_compare_naive.png")
    saved = _strict_json(tmp_path / "trajectories.json")
    assert saved["paths"]["SGD (lr=0.95)"][0] == [-7.0, 2.0]
    assert "final point" in capsys.readouterr().out


def test_optimizer_compare_naive_rejects_zero_steps(tmp_path):
    with pytest.raises(SystemExit):
        ch06_optimizer_compare_naive.main(["--steps", "0", "--out", str(tmp_path)])


# --------------------------------------------------------------------------------------
# Figs. 6-10 ... 6-14


def test_weight_init_histograms_show_the_books_shapes(tmp_path):
    stats = ch06_weight_init_activation_histogram.main(["--samples", "300", "--out", str(tmp_path)])
    assert len(stats) == 6 and all(len(layers) == 5 for layers in stats.values())
    for layer in stats["sigmoid, std 1"]:  # piled up at 0 and 1
        assert layer["share_first_bin"] + layer["share_last_bin"] > 0.4
    for layer in stats["sigmoid, std 0.01"]:  # all near 0.5
        assert abs(layer["mean"] - 0.5) < 0.02 and layer["std"] < 0.05
    for layer in stats["sigmoid, Xavier"]:  # spread, nothing at the ends
        assert 0.05 < layer["std"] < 0.3 and layer["share_first_bin"] < 0.01
    assert stats["ReLU, std 0.01"][-1]["std"] < 1e-3  # the signal dies out
    xavier = [layer["std"] for layer in stats["ReLU, Xavier"]]
    assert xavier[-1] < 0.5 * xavier[0]  # shrinks with depth
    he = [layer["std"] for layer in stats["ReLU, He"]]
    assert max(he) < 1.6 * min(he)  # the same spread in every layer
    assert all(sum(layer["counts"]) <= 300 * 100 for layer in stats["ReLU, He"])
    assert _is_png(tmp_path / "weight_init_activation_histogram.png")
    assert _strict_json(tmp_path / "stats.json")["stats"].keys() == stats.keys()


# --------------------------------------------------------------------------------------
# Figs. 6-9 and 6-15, reduced


def test_optimizer_compare_mnist_runs_reduced(tmp_path, capsys):
    metrics = ch06_optimizer_compare_mnist.main(
        ["--iters", "40", "--dataset", "mnist-5k", "--out", str(tmp_path)]
    )
    runs = metrics["runs"]
    assert list(runs) == ["SGD", "Momentum", "AdaGrad", "Adam"]
    first = {label: run["loss"][0] for label, run in runs.items()}
    # Same weights and same first minibatch: the same loss before the first update.
    assert len(set(first.values())) == 1 and first["SGD"] == pytest.approx(math.log(10), abs=0.3)
    for run in runs.values():
        assert run["iterations"] == 40 and np.all(np.isfinite(run["loss"]))
    # Even in 40 steps the adaptive rules are ahead of plain SGD at lr 0.01.
    assert runs["Adam"]["mean_loss_last_100"] < runs["SGD"]["mean_loss_last_100"]
    assert _is_png(tmp_path / "loss.png")
    saved = _strict_json(tmp_path / "metrics.json")
    assert saved["dataset"]["used"] == "mnist-5k" and saved["settings"]["iters"] == 40
    out = capsys.readouterr().out
    assert "data set: mnist-5k" in out and "final loss" in out


def test_weight_init_compare_runs_reduced(tmp_path):
    metrics = ch06_weight_init_compare.main(
        ["--iters", "40", "--dataset", "mnist-5k", "--out", str(tmp_path)]
    )
    runs = metrics["runs"]
    assert list(runs) == ["std=0.01", "Xavier", "He"]
    # std 0.01 through four ReLU layers: the scores are ~0, the loss stays at ln 10.
    assert runs["std=0.01"]["mean_loss_last_100"] == pytest.approx(math.log(10), abs=1e-3)
    assert runs["He"]["mean_loss_last_100"] < runs["std=0.01"]["mean_loss_last_100"] - 0.05
    assert _is_png(tmp_path / "loss.png")
    assert _strict_json(tmp_path / "metrics.json")["settings"]["optimizer"] == "sgd(lr=0.01)"


# --------------------------------------------------------------------------------------
# Figs. 6-20/6-21, reduced


def test_overfit_weight_decay_runs_reduced(tmp_path, capsys):
    metrics = ch06_overfit_weight_decay.main(
        ["--epochs", "5", "--dataset", "mnist-5k", "--out", str(tmp_path)]
    )
    assert metrics["settings"]["iters"] == 13 and metrics["settings"]["iters_per_epoch"] == 3
    runs = metrics["runs"]
    assert list(runs) == ["lambda=0", "lambda=0.1"]
    for run in runs.values():
        assert len(run["train_acc"]) == 5 and len(run["test_acc"]) == 5
        assert 0 <= run["final_train_acc"] <= 1 and 0 <= run["final_test_acc"] <= 1
    # Same weights before any update: the same accuracy at epoch 0.
    assert runs["lambda=0"]["train_acc"][0] == runs["lambda=0.1"]["train_acc"][0]
    assert _is_png(tmp_path / "accuracy.png")
    assert _strict_json(tmp_path / "metrics.json")["dataset"]["train_size"] == 300
    assert "final train acc" in capsys.readouterr().out


def test_overfit_weight_decay_rejects_more_images_than_the_set_has(tmp_path):
    with pytest.raises(ValueError, match=r"--train-size 9000 exceeds the 4,000 training images"):
        ch06_overfit_weight_decay.main(
            ["--train-size", "9000", "--dataset", "mnist-5k", "--out", str(tmp_path)]
        )


# --------------------------------------------------------------------------------------
# The book's smooth_curve


def _book_smooth_curve(x):
    """common/util.py, verbatim (it needs at least 11 values)."""
    window_len = 11
    s = np.r_[x[window_len - 1 : 0 : -1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5 : len(y) - 5]


def test_smooth_curve_is_the_books_and_keeps_short_curves_whole():
    x = np.random.default_rng(0).normal(size=57)
    np.testing.assert_allclose(_ch06.smooth_curve(x), _book_smooth_curve(x), rtol=1e-14)
    for n in (1, 2, 3, 6, 10):
        short = np.arange(n, dtype=float) ** 2
        smoothed = _ch06.smooth_curve(short)
        assert smoothed.shape == (n,)
    np.testing.assert_array_equal(_ch06.smooth_curve(np.ones(7)), np.ones(7))
