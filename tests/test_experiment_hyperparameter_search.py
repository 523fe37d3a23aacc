"""ch06_hyperparameter_optimization, reduced: every trial trained at once."""

import json

import numpy as np
import pytest

from experiments import ch06_hyperparameter_optimization as search


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reduced_search_writes_its_figures_and_matches_the_loop(tmp_path, capsys):
    results = search.main(
        [
            "--trials",
            "4",
            "--epochs",
            "2",
            "--loop-trials",
            "2",
            "--dataset",
            "mnist-5k",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "Best-1(val acc:" in out and "Best-4(val acc:" in out
    assert "all 4 trials at once" in out
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["train_size"] == 400 and written["val_size"] == 100
    assert len(written["final_val_acc"]) == 4 and len(written["val_acc"][0]) == 2
    lr, lam = np.asarray(written["lr"]), np.asarray(written["weight_decay"])
    assert ((1e-6 <= lr) & (lr <= 1e-2)).all() and ((1e-8 <= lam) & (lam <= 1e-4)).all()
    assert results["loop_matches_vmapped"]  # the trials trained at once = one after another
    assert _is_png(tmp_path / "best_trials.png") and _is_png(tmp_path / "search_scatter.png")


def test_split_validation_holds_out_twenty_percent_and_refuses_too_few_images():
    import jax

    x = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    t = np.arange(50) % 10
    (xt, tt), (xv, tv) = search.split_validation(x, t, 50, jax.random.key(0))
    assert xt.shape == (40, 3) and xv.shape == (10, 3)
    assert sorted(np.concatenate([xt[:, 0], xv[:, 0]]).tolist()) == x[:, 0].tolist()
    with pytest.raises(ValueError, match="only 50 training images"):
        search.split_validation(x, t, 60, jax.random.key(0))
