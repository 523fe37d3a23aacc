"""The ch3-ch5 network and training experiments, run as a user would, small and full size."""

import json
import pickle
import re

import jax
import numpy as np
import optax
import pytest

from experiments import (
    ch03_neuralnet_mnist,
    ch04_gradient_descent,
    ch04_simple_net,
    ch04_train_neuralnet,
    ch05_gradient_check,
    ch05_train_neuralnet,
)
from funcnet import datasets, functions, io, nets, train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def _fashion_available():
    try:
        return all(s.path is not None for s in datasets.locate(datasets.SPECS["fashion-mnist"]))
    except Exception:  # noqa: BLE001 - any failure to look means "not available"
        return False


# --------------------------------------------------------------------------------------
# ch4


def test_gradient_descent_prints_the_books_three_runs(tmp_path, capsys):
    result = ch04_gradient_descent.main(["--out", str(tmp_path)])
    # ch4.4.1: lr=0.1 reaches the minimum, lr=1e-10 hardly moves, lr=10 diverges.
    np.testing.assert_allclose(result["lr=0.1"], [-6.11110793e-10, 8.14814391e-10], rtol=1e-6)
    np.testing.assert_allclose(result["lr=1e-10"], [-2.99999994, 3.99999992], rtol=1e-8)
    assert np.linalg.norm(result["lr=10"]) > 1e12
    trajectory = result["trajectory"]
    assert trajectory.shape == (20, 2) and tuple(trajectory[0]) == (-3.0, 4.0)
    np.testing.assert_allclose(trajectory[1], [-2.4, 3.2], rtol=1e-6)  # x - 0.1 * 2x
    for name in ("gradient_descent.png", "learning_rates.png", "gradient_field.png"):
        assert _is_png(tmp_path / name)
    assert "lr=0.1" in capsys.readouterr().out


def test_simple_net_prints_the_books_figures(capsys):
    result = ch04_simple_net.main([])
    book = result["book"]
    np.testing.assert_allclose(book["predict"], [1.05414809, 0.63071653, 1.1328074], rtol=1e-7)
    assert book["argmax"] == 2
    assert book["loss"] == pytest.approx(0.92806829, rel=1e-7)
    np.testing.assert_allclose(
        book["dW"], [[0.21924757, 0.14356243, -0.36281], [0.32887136, 0.21534364, -0.544215]],
        atol=1e-7,
    )  # fmt: skip
    assert "0.9280682857" in capsys.readouterr().out


def test_ch4_numerical_training_matches_backprop_and_is_slower(tmp_path, capsys):
    metrics = ch04_train_neuralnet.main(
        ["--iters", "4", "--hidden", "3", "--batch-size", "20", "--out", str(tmp_path)]
    )
    assert metrics["max_loss_difference"] < 1e-8
    assert metrics["slowdown_numerical_vs_backprop"] > 1
    assert len(metrics["numerical"]["losses"]) == 4
    assert _is_png(tmp_path / "loss.png")
    assert json.loads((tmp_path / "metrics.json").read_text())["dataset"] == "mnist-5k"
    assert "slower" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# ch5 gradient check


def test_gradient_check_experiment_stays_below_1e_9(capsys):
    results = ch05_gradient_check.main(
        ["--hidden", "6", "--activation", "sigmoid", "--dataset", "mnist-5k"]
    )
    assert set(results) == {
        "backprop vs numerical",
        "backprop vs autodiff",
        "backprop vs book ch4 gradient",
    }
    assert max(results["backprop vs numerical"].values()) <= 1e-9
    assert max(results["backprop vs autodiff"].values()) <= 1e-15
    assert max(results["backprop vs book ch4 gradient"].values()) <= 1e-15
    out = capsys.readouterr().out
    assert "W1:" in out and "b2:" in out


# --------------------------------------------------------------------------------------
# ch3 inference


@pytest.fixture(scope="module")
def ch3_weights():
    """ch3 weights (784-50-100-10) trained briefly with fit() and Adam on the subset."""
    data = datasets.load("mnist-5k")

    def loss(params, x, t):
        return functions.cross_entropy_error(nets.three_layer_net_predict(params, x), t)

    params = nets.init_three_layer_net(jax.random.key(0), weight_init_std=0.1)
    params, _ = train.fit(
        params,
        data.train,
        data.test,
        key=jax.random.key(1),
        loss_fn=loss,
        predict_fn=nets.three_layer_net_predict,
        iters=80,
        optimizer=optax.adam(0.01),
    )
    return {k: np.asarray(v) for k, v in params.items()}


def _book_accuracy(params, x, t):
    """The book's neuralnet_mnist_batch.py in NumPy (float64), as a reference."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    a = x.astype(np.float64)
    for i in (1, 2):
        a = 1 / (1 + np.exp(-(a @ p[f"W{i}"] + p[f"b{i}"])))
    y = a @ p["W3"] + p["b3"]
    return np.mean(np.argmax(y, axis=1) == t)


@pytest.mark.parametrize("suffix", [".pkl", ".npz"])
def test_ch3_inference_with_book_pickle_or_npz_weights(suffix, ch3_weights, tmp_path, capsys):
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps(ch3_weights))  # the book's format: a dict of arrays
    else:
        io.save_params(path, ch3_weights)
    out = tmp_path / "out"
    result = ch03_neuralnet_mnist.main(
        ["--weights", str(path), "--dataset", "mnist-5k", "--batch-size", "64", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    match = re.search(r"^Accuracy:([0-9.]+)$", printed, re.MULTILINE)
    assert match, printed
    x, t = datasets.load("mnist-5k").test
    expected = _book_accuracy(ch3_weights, x, t)
    assert 0.5 < expected < 0.99  # the check means something: neither chance nor perfect
    assert float(match.group(1)) == result["accuracy"]
    assert result["accuracy"] == pytest.approx(expected, abs=2e-3)  # float32 vs float64 ties
    assert "images/s" in printed
    assert _is_png(out / "predictions.png")


def test_ch3_inference_refuses_a_missing_weights_file(tmp_path):
    with pytest.raises(SystemExit):
        ch03_neuralnet_mnist.main(["--weights", str(tmp_path / "missing.pkl")])


# --------------------------------------------------------------------------------------
# ch5 main job


def test_main_job_small_run_writes_every_output(tmp_path, capsys):
    metrics = ch05_train_neuralnet.main(
        ["--iters", "250", "--hidden", "20", "--dataset", "mnist-5k", "--out", str(tmp_path)]
    )
    captured = capsys.readouterr()
    lines = re.findall(r"^train acc, test acc \| ([0-9.]+), ([0-9.]+)$", captured.out, re.M)
    assert len(lines) == 7  # after iterations 0, 40, ..., 240 (4,000 / 100 per epoch)
    final = re.findall(
        r"^final \(iteration 250\) train acc, test acc \| ([0-9.]+), ([0-9.]+)$",
        captured.out,
        re.M,
    )
    assert len(final) == 1
    assert "it/s" not in captured.err  # no progress bar when output is not a terminal
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["status"] == "ok" and written["iterations_run"] == 250
    assert written["params_iteration"] == 250
    assert written["settings"]["hidden"] == 20 and written["dataset"]["used"] == "mnist-5k"
    assert written["eval_iteration"] == list(range(0, 250, 40))
    assert written["final_test_acc"] == pytest.approx(float(final[0][1]), abs=1e-4)
    assert written["final_test_acc"] > 0.75
    assert written["loss_last_epoch_mean"] < 0.5 * written["loss_first_iteration"]
    assert written["steps_per_s"] > 0 and written["job_time_s"] > written["fit_time_s"] > 0
    assert metrics["final_train_acc"] == written["final_train_acc"]
    for name in ("loss.png", "accuracy.png", "predictions.png", "confusion.png"):
        assert _is_png(tmp_path / name), name
    # params.npz holds the trained net (10 iterations after the last per-epoch evaluation),
    # and the reported final accuracies are exactly its own
    params = io.load_params(tmp_path / "params.npz")
    data = datasets.load("mnist-5k")
    net = nets.two_layer_net("relu")
    assert float(net.accuracy(params, *data.test)) == pytest.approx(written["final_test_acc"])
    assert float(net.accuracy(params, *data.train)) == pytest.approx(written["final_train_acc"])


def test_main_job_divergence_still_writes_outputs_and_fails(tmp_path, capsys):
    # With the exact loss, lr=1000 keeps every loss finite on this net (the ReLUs die and
    # the loss stalls near 1e3); lr=1e8 overflows float32 within a few iterations.
    with pytest.raises(SystemExit, match="not finite at iteration") as info:
        ch05_train_neuralnet.main(
            ["--iters", "200", "--lr", "1e8", "--dataset", "mnist-5k", "--out", str(tmp_path)]
        )
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["status"] == "diverged"
    assert written["iterations_run"] < 200
    params = io.load_params(tmp_path / "params.npz")
    assert all(np.isfinite(v).all() for v in params.values())
    # what metrics.json calls final is the saved params' accuracy, after the iteration it names
    assert written["params_iteration"] < written["iterations_run"]
    data = datasets.load("mnist-5k")
    net = nets.two_layer_net("relu")
    assert float(net.accuracy(params, *data.test)) == pytest.approx(written["final_test_acc"])
    assert "saved: the params after iteration" in str(info.value)
    assert _is_png(tmp_path / "loss.png") and _is_png(tmp_path / "accuracy.png")


@pytest.mark.skipif(
    not _fashion_available(),
    reason="needs Fashion-MNIST: install Debian's dataset-fashion-mnist package "
    "(apt-get install dataset-fashion-mnist) or run `python -m funcnet.datasets download "
    "fashion-mnist`",
)
def test_main_job_at_full_size_on_fashion_mnist(tmp_path, capsys):
    """The book's protocol on 60,000 images: 10,000 iterations, evaluation every 600."""
    metrics = ch05_train_neuralnet.main(["--dataset", "fashion-mnist", "--out", str(tmp_path)])
    assert metrics["dataset"]["used"] == "fashion-mnist"
    assert metrics["dataset"]["train_size"] == 60000 and metrics["dataset"]["test_size"] == 10000
    assert metrics["iters_per_epoch"] == 600 and len(metrics["test_acc"]) == 17
    assert metrics["final_test_acc"] >= 0.85
    assert metrics["loss_last_epoch_mean"] < 0.5 * metrics["loss_first_iteration"]
    for name in ("loss.png", "accuracy.png", "predictions.png", "confusion.png"):
        assert _is_png(tmp_path / name), name
    assert "train acc, test acc |" in capsys.readouterr().out


def test_main_job_writes_one_folder_per_data_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ch05_train_neuralnet.main(["--iters", "3", "--dataset", "mnist-5k"])
    assert (tmp_path / "runs" / "ch05_train_neuralnet" / "mnist-5k" / "params.npz").is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--iters", "0"], "--iters: must be a positive integer"),
        (["--batch-size", "-3"], "--batch-size: must be an integer from 1 to 100,000"),
        (["--hidden", "0"], "--hidden: must be a positive integer"),
        (["--lr", "nan"], "--lr: must be a finite number"),
        (["--lr", "0"], "--lr: must be a number > 0"),
    ],
)
def test_main_job_rejects_bad_flags_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as info:
        ch05_train_neuralnet.main(flags)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_compilation_cache_is_opt_in_and_fills_its_folder(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from experiments import _common

    # Opt-in: without the variable nothing is configured (checked in this process: the
    # command calls this very function before main).
    monkeypatch.delenv("FUNCNET_COMPILATION_CACHE", raising=False)
    folder = jax.config.jax_compilation_cache_dir
    assert _common.use_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir == folder
    # With it, a real run of the command fills the folder.
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "experiments.ch05_train_neuralnet", "--iters", "3"]
    command += ["--dataset", "mnist-5k", "--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "FUNCNET_COMPILATION_CACHE"}
    env["FUNCNET_COMPILATION_CACHE"] = str(cache)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert any(cache.iterdir())  # the compiled programs, for the next run
