"""The chapter-6 batch-norm and dropout experiments (Figs. 6-17, 6-18, 6-23 and the
batch-norm gradient check), run reduced."""

import json
import shutil

import jax
import numpy as np
import pytest

from experiments import ch06_batch_norm_gradient_check as gc
from experiments import ch06_batch_norm_test, ch06_overfit_dropout
from funcnet.batch_norm import batch_norm
from funcnet.graph import trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def _strict_json(path):
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


# --------------------------------------------------------------------------------------
# Fig. 6-18


def test_batch_norm_test_learns_where_the_plain_net_does_not(tmp_path, capsys):
    metrics = ch06_batch_norm_test.main(
        ["--epochs", "5", "--scales", "4", "--dataset", "mnist-5k", "--out", str(tmp_path)]
    )
    settings = metrics["settings"]
    assert settings["iters"] == 41 and settings["iters_per_epoch"] == 10
    np.testing.assert_allclose(
        settings["weight_init_stds"], [1, 10 ** (-4 / 3), 10 ** (-8 / 3), 1e-4]
    )
    rows = metrics["scales"]
    assert len(rows) == 4
    for row in rows:
        for kind in ("batch_norm", "plain"):
            assert len(row[kind]["train_acc"]) == 5
    # w = 1e-4: the plain net's signal dies out in five ReLU layers (chance level); batch
    # norm rescales every layer and learns.
    tiny = rows[-1]
    assert not tiny["plain"]["diverged"] and tiny["plain"]["final_train_acc"] < 0.2
    assert tiny["batch_norm"]["final_train_acc"] > tiny["plain"]["final_train_acc"] + 0.15
    assert not any(row["batch_norm"]["diverged"] for row in rows)
    assert _is_png(tmp_path / "batch_norm_test.png")
    saved = _strict_json(tmp_path / "metrics.json")
    assert saved["dataset"]["train_size"] == 1000 and len(saved["scales"]) == 4
    out = capsys.readouterr().out
    assert "4 runs in one fit_many call" in out and "with BN" in out


def test_batch_norm_test_scale_labels_read_like_the_books():
    assert [ch06_batch_norm_test.scale_label(w) for w in (1.0, 0.5411695, 1e-4)] == [
        "1.0",
        "0.541",
        "0.0001",
    ]
    np.testing.assert_array_equal(
        ch06_batch_norm_test.weight_scales(16), np.logspace(0, -4, num=16)
    )


def test_batch_norm_test_rejects_more_images_than_the_set_has(tmp_path):
    with pytest.raises(ValueError, match=r"--train-size 9000 exceeds the 4,000 training images"):
        ch06_batch_norm_test.main(
            ["--train-size", "9000", "--dataset", "mnist-5k", "--out", str(tmp_path)]
        )


# --------------------------------------------------------------------------------------
# Fig. 6-23


def test_overfit_dropout_runs_reduced_and_is_reproducible(tmp_path, capsys):
    argv = ["--epochs", "4", "--dataset", "mnist-5k", "--out", str(tmp_path)]
    metrics = ch06_overfit_dropout.main(argv)
    assert metrics["settings"]["iters"] == 12 and metrics["settings"]["iters_per_epoch"] == 3
    runs = metrics["runs"]
    assert list(runs) == ["without dropout", "with dropout (ratio 0.2)"]
    for run in runs.values():
        assert run["iterations"] == 12 and not run["diverged"]
        assert len(run["train_acc"]) == 4 and len(run["test_acc"]) == 4
        assert 0 <= run["final_train_acc"] <= 1 and 0 <= run["final_test_acc"] <= 1
    # Same weights and minibatches; the masks change what is learnt.
    assert not np.array_equal(
        runs["without dropout"]["train_acc"], runs["with dropout (ratio 0.2)"]["train_acc"]
    )
    # The masks come from the run's key: the same seed gives the same run.
    again = ch06_overfit_dropout.main(argv)["runs"]["with dropout (ratio 0.2)"]
    np.testing.assert_array_equal(again["train_acc"], runs["with dropout (ratio 0.2)"]["train_acc"])
    assert _is_png(tmp_path / "accuracy.png")
    assert _strict_json(tmp_path / "metrics.json")["settings"]["dropout_ratio"] == 0.2
    assert "final train acc" in capsys.readouterr().out


@pytest.mark.parametrize("ratio", ["1", "-0.1", "nan"])
def test_overfit_dropout_rejects_a_ratio_outside_0_1(tmp_path, ratio, capsys):
    with pytest.raises(SystemExit):
        ch06_overfit_dropout.main(["--dropout-ratio", ratio, "--out", str(tmp_path)])
    assert "--dropout-ratio" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Gradient check and the batch-norm graph


def test_gradient_check_passes_and_explains_the_one_image_case(tmp_path, capsys):
    result = gc.main(
        ["--hidden", "8", "6", "--batch-sizes", "1", "4", "--dataset", "mnist-5k"]
        + ["--out", str(tmp_path)]
    )
    assert result["failures"] == []
    one, four = result["checks"]
    assert (one["batch"], four["batch"]) == (1, 4)
    # One image: xc = 0 in every batch norm, so nothing before the last one matters.
    dead = [k for k, r in one["params"].items() if r["only_decay"]]
    assert dead == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2"]
    assert not any(r["only_decay"] for r in four["params"].values())
    for check in (one, four):
        for r in check["params"].values():
            assert r["numerical"] < 1e-9 and r["autodiff"] < 1e-12
    # With four images every W and gamma has a real gradient to check.
    assert all(four["params"][k]["mean_abs_backprop"] > 1e-3 for k in ("W1", "gamma1", "W3"))
    gaps = result["graph"]["max_abs_differences"]
    assert len(gaps) == 11 and max(gaps.values()) <= 1e-12
    if shutil.which("dot"):
        assert _is_png(tmp_path / "batch_norm_graph.png")
    saved = _strict_json(tmp_path / "gradient_check.json")
    assert saved["settings"]["architecture"] == "784-8-6-10"
    out = capsys.readouterr().out
    assert "degenerate for W1 b1 gamma1 beta1 W2 b2 gamma2" in out
    assert "all differences within the tolerance" in out


def test_gradient_check_exits_1_above_the_tolerance_and_keeps_lambda_w(tmp_path, capsys):
    argv = ["--hidden", "5", "4", "--batch-sizes", "1", "--weight-decay", "0.1"]
    argv += ["--tolerance", "1e-30", "--dataset", "mnist-5k", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"FAILED: batch 1 W1 vs numerical \d\.\d\de-1\d"):
        gc.main(argv)
    # Everything was printed and written before the exit.
    saved = _strict_json(tmp_path / "gradient_check.json")
    assert saved["failures"] and saved["settings"]["tolerance"] == 1e-30
    rows = saved["checks"][0]["params"]
    # One image and decay λ: the first layers' gradient is λ·W exactly, nothing else.
    assert rows["W1"]["only_decay"] and rows["W2"]["only_decay"]
    assert rows["W1"]["mean_abs_backprop"] > 0 and rows["W1"]["numerical"] < 1e-9
    assert "λ·W (the decay term alone)" in capsys.readouterr().out


def test_books_initial_beta_puts_one_image_on_the_relu_kink(tmp_path, capsys):
    # beta = 0 and one image: the last hidden ReLU gets exactly 0, where backprop says 0
    # and central differences 1/2: the book's own check fails on beta2 for that reason.
    # The net and image of the first test's one-image check: the same compiled programs.
    argv = ["--hidden", "8", "6", "--batch-sizes", "1", "--book-init"]
    with pytest.raises(SystemExit, match="batch 1 beta2 vs numerical"):
        gc.main(argv + ["--dataset", "mnist-5k", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "degenerate for W1 b1 gamma1 beta1 W2 b2 gamma2." in out  # not beta2: the kink
    assert "also exactly 0: beta2 W3" in out and "0 are negative" in out
    assert "6 are exactly 0, ReLU's kink" in out  # all of beta2


def test_graph_checks_catch_a_wrong_backward():
    x, gamma, beta, dout = gc.graph_example()
    with jax.enable_x64(True):
        graph = trace(batch_norm, x, gamma, beta, cotangent=dout, expand=True)
        assert max(gc.graph_checks(graph, x, gamma, beta, dout).values()) <= 1e-12
        # The same graph checked against the book's rule for another dout: every edge off.
        wrong = gc.graph_checks(graph, x, gamma, beta, 2 * dout)
    assert min(wrong.values()) > 1e-3


def test_book_backward_is_the_layers_rule():
    rng = np.random.default_rng(0)
    x, gamma, dout = rng.normal(size=(6, 3)), rng.normal(size=3), rng.normal(size=(6, 3))
    with jax.enable_x64(True):
        _, vjp = jax.vjp(batch_norm, x, gamma, np.zeros(3))
        dx, dgamma, dbeta = vjp(dout)
    book = gc.book_backward(x, gamma, dout)
    np.testing.assert_allclose(book["dx"], dx, atol=1e-14)
    np.testing.assert_allclose(book["dgamma"], dgamma, atol=1e-14)
    np.testing.assert_allclose(book["dbeta"], dbeta, atol=1e-14)
