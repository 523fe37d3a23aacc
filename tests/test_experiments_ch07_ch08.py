"""The chapter 7-8 experiments, reduced to seconds: training, filters, DeepConvNet
inference with generated book-style pickles, half precision, the benchmark and its peers."""

import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import (
    _conv_peers,
    ch07_apply_filter,
    ch07_benchmark_convnet,
    ch07_train_convnet,
    ch07_visualize_filter,
    ch08_deep_convnet,
    ch08_half_float_network,
)
from funcnet import io as fio
from funcnet.nets import convnet
from funcnet.train.checkpoint import CheckpointMismatch


def png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ch07_train")
    metrics = ch07_train_convnet.main(
        [
            "--dataset", "mnist-5k", "--epochs", "2", "--train-size", "1000",
            "--test-size", "200", "--eval-sample", "100", "--out", str(out),
        ]
    )  # fmt: skip
    return out, metrics


def test_train_convnet_records_the_books_protocol(trained):
    out, metrics = trained
    assert metrics["dataset"] == "mnist-5k"
    assert metrics["final_iteration"] == 20  # 2 epochs of 1000 / 100
    assert len(metrics["epoch_test_acc"]) == 2  # after iterations 0 and 10
    assert metrics["final_test_acc"] > 0.3  # 20 Adam steps beat chance (0.1) by far
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["settings"]["lr"] == 0.001 and saved["settings"]["batch_size"] == 100
    params = fio.load_params(out / "params.npz")
    assert params["W1"].shape == (30, 1, 5, 5) and params["W2"].shape == (4320, 100)
    init = fio.load_params(out / "params_init.npz")
    assert not np.allclose(init["W1"], params["W1"])
    png(out / "accuracy.png")
    png(out / "loss.png")


def test_train_convnet_labels_each_accuracy_with_its_images(tmp_path, capsys):
    # 100 train images per epoch's sample, the whole 50 test images: not "100 each"
    ch07_train_convnet.main(
        [
            "--dataset", "mnist-5k", "--epochs", "1", "--train-size", "300",
            "--test-size", "50", "--eval-sample", "100", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "epoch 0 | train acc" in printed and "(100 and 50)" in printed, printed
    assert "images each" not in printed, printed


def test_visualize_filter_draws_before_and_after(trained, tmp_path, capsys):
    out, _ = trained
    result = ch07_visualize_filter.main(
        ["--params", str(out / "params.npz"), "--out", str(tmp_path)]
    )
    png(tmp_path / "filters.png")
    assert "30 filters 5×5" in capsys.readouterr().out
    assert result["before_std"] == pytest.approx(0.01, rel=0.15)  # weight_init_std 0.01


def test_apply_filter_filters_a_test_image(trained, tmp_path):
    out, _ = trained
    result = ch07_apply_filter.main(
        ["--params", str(out / "params.npz"), "--dataset", "mnist-5k", "--filters", "0,3",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert result["filters"] == [0, 3] and result["output_shape"] == [2, 24, 24]
    png(tmp_path / "apply_filter.png")
    with pytest.raises(ValueError, match=r"--filters: indices must lie in \[0, 30\)"):
        ch07_apply_filter.main(
            ["--params", str(out / "params.npz"), "--dataset", "mnist-5k", "--filters", "30"]
        )


@pytest.fixture(scope="module")
def deep_pickle(tmp_path_factory):
    """A pickle like the book's deep_convnet_params.pkl: float64 arrays, the book's keys."""
    # One compiled program, not ~25 op-by-op ones (init itself: tests/test_convnet.py).
    params = jax.jit(convnet.init_deep_convnet)(jax.random.key(0))
    path = tmp_path_factory.mktemp("deep") / "deep_convnet_params.pkl"
    with open(path, "wb") as f:
        pickle.dump({k: np.asarray(v, np.float64) for k, v in params.items()}, f)
    return path, params


def test_deep_convnet_inference_with_a_book_pickle(deep_pickle, tmp_path, capsys):
    path, params = deep_pickle
    metrics = ch08_deep_convnet.main(
        ["--params", str(path), "--dataset", "mnist-5k", "--test-size", "60", "--batch", "25",
         "--out", str(tmp_path)]
    )  # fmt: skip
    from funcnet import datasets

    x, t = datasets.load("mnist-5k", flatten=False).test
    scores = jax.jit(convnet.deep_convnet_predict)(params, x[:60])  # one program, not op by op
    expected = np.asarray(jnp.argmax(scores, axis=1))
    assert metrics["misclassified"] == int(np.sum(expected != t[:60]))
    assert metrics["test_accuracy"] == pytest.approx(float(np.mean(expected == t[:60])))
    assert metrics["images_per_second"] > 0
    png(tmp_path / "misclassified.png")
    assert "test accuracy" in capsys.readouterr().out


def test_deep_convnet_trains_reduced_saves_params_and_resumes_to_the_same_weights(tmp_path, capsys):
    args = ["--train", "--epochs", "2", "--train-size", "200", "--test-size", "50",
            "--dataset", "mnist-5k", "--checkpoint", str(tmp_path / "ck.npz")]  # fmt: skip
    first = ch08_deep_convnet.main([*args, "--out", str(tmp_path / "a")])
    assert first["training"]["train_iterations"] == 4  # 2 epochs of 200 / 100
    # each figure names the images it was measured on (it said 1,000 whatever the sizes)
    printed = capsys.readouterr().out
    assert "after iteration 2: train acc" in printed and "(200 and 50)" in printed, printed
    acc = first["training"]
    assert (
        f"final train acc {acc['final_train_acc']:.4f}, test acc {acc['final_test_acc']:.4f} "
        "(all 200 and 50 images)"
    ) in printed, printed
    assert set(fio.load_params(tmp_path / "a" / "params.npz")) == set(convnet.DEEP_CONVNET_KEYS)
    assert (tmp_path / "ck.npz").exists()
    # the same run resumes (here at its end, so nothing is rerun) to the same weights
    again = ch08_deep_convnet.main([*args, "--out", str(tmp_path / "b")])
    a, b = (fio.load_params(tmp_path / d / "params.npz") for d in "ab")
    for k in convnet.DEEP_CONVNET_KEYS:
        np.testing.assert_array_equal(a[k], b[k])
    assert again["training"]["train_iterations"] == first["training"]["train_iterations"] == 4
    # another seed's run is refused (it used to resume and save seed 0's weights as seed 1's)
    with pytest.raises(CheckpointMismatch, match=r"seed \(checkpoint 0, this run 1\)"):
        ch08_deep_convnet.main([*args, "--seed", "1", "--out", str(tmp_path / "c")])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "mnist-5k"], "pass --params PATH"),
        (["--train", "--params", "w.pkl"], "--params: not with --train"),
        (["--params", "w.pkl", "--checkpoint", "ck.npz"], "--checkpoint: only with --train"),
    ],
)
def test_deep_convnet_rejects_inconsistent_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        ch08_deep_convnet.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_half_float_network_reports_each_precision(deep_pickle, tmp_path, capsys):
    path, _ = deep_pickle
    metrics = ch08_half_float_network.main(
        ["--params", str(path), "--dataset", "mnist-5k", "--test-size", "40", "--out",
         str(tmp_path)]
    )  # fmt: skip
    results = metrics["results"]
    assert list(results) == ["float32", "float16", "bfloat16"]
    assert results["float32"]["predictions_changed"] == 0
    assert results["float32"]["max_abs_score_diff"] == 0.0
    assert 0 < results["float16"]["max_abs_score_diff"] < 0.1
    assert all(r["finite"] for r in results.values())
    assert "bfloat16" in capsys.readouterr().out


def test_numpy_peer_computes_funcnets_gradient():
    params = convnet.init_simple_convnet(jax.random.key(0))
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 28, 28), dtype=np.float32)
    t = np.array([1, 5, 7, 9])
    ours = jax.jit(convnet.simple_convnet_gradient)(params, x, t)  # one program, not op by op
    book = _conv_peers.BookSimpleConvNet(params).gradient(x.copy(), t)
    for k in ours:
        np.testing.assert_allclose(book[k], ours[k], rtol=2e-3, atol=1e-6)


def test_benchmark_times_every_requested_peer(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ch07_benchmark_convnet, "PAUSE_S", 0.0)
    result = ch07_benchmark_convnet.main(
        ["--steps", "2", "--numpy-steps", "1", "--rounds", "1", "--images", "200",
         "--peers", "funcnet,plain-jax,numpy-book", "--out", str(tmp_path)]
    )  # fmt: skip
    ms = result["ms_per_iteration"]
    assert list(ms) == ["funcnet", "plain-jax", "numpy-book"]
    assert all(v > 0 for v in ms.values())
    text = capsys.readouterr().out
    assert "vs plain-jax" in text and "1.00x" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == result and saved["settings"]["batch_size"] == 100
    assert saved["experiment"] == "ch07_benchmark_convnet" and saved["ratio_to_torch"] is None
    for name, v in ms.items():
        assert saved["ratio_to_plain_jax"][name] == pytest.approx(v / ms["plain-jax"]), name
        assert saved["ms_per_iteration_all"][name] == [v], name


def test_benchmark_rounds_are_interleaved_and_rotated(monkeypatch):
    clock, calls = [0.0], []
    # A fake clock: each timed call "takes" its next per-iteration seconds times its steps.
    monkeypatch.setattr(ch07_benchmark_convnet.time, "perf_counter", lambda: clock[0])
    # The collection before each timing, counted instead of run (a full collection of the
    # test process's heap costs about a second under load).
    monkeypatch.setattr(ch07_benchmark_convnet.gc, "collect", lambda: calls.append(("gc", 0)))

    def runner(name, seconds):
        def run(steps):
            calls.append((name, steps))
            if len(calls) > 6:  # after the warm-ups (two calls per active peer)
                clock[0] += seconds.pop(0) * steps

        return run

    runners = {
        "a": (runner("a", [0.004, 0.002, 0.003]), 2, ""),
        "skip": (None, 0, "not importable"),
        "b": (runner("b", [0.003, 0.003, 0.001]), 1, ""),
        "c": (runner("c", [0.002, 0.005, 0.004]), 1, ""),
    }
    times = ch07_benchmark_convnet.measure(runners, rounds=3, pause_s=0)
    # Warm-up twice each, then the rounds a b c / b c a / c a b, each timing after a
    # garbage collection.
    assert [n for n, _ in calls[:6]] == ["a", "a", "b", "b", "c", "c"]
    assert [n for n, _ in calls[6::2]] == ["gc"] * 9
    calls = [c for c in calls if c[0] != "gc"]
    assert "".join(n for n, _ in calls[6:]) == "abcbcacab"
    assert all(steps == {"a": 2, "b": 1, "c": 1}[n] for n, steps in calls)
    assert times["skip"] is None
    assert times["a"] == pytest.approx([4.0, 2.0, 3.0])
    assert times["b"] == pytest.approx([3.0, 3.0, 1.0])
    assert times["c"] == pytest.approx([2.0, 5.0, 4.0])


def test_benchmark_rejects_an_unknown_peer(capsys):
    with pytest.raises(SystemExit):
        ch07_benchmark_convnet.main(["--peers", "tensorflow"])
    assert "--peers: unknown tensorflow; choose from funcnet," in capsys.readouterr().err
