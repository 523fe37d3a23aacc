"""experiments.benchmark: the peers run the same protocol, the table and JSON have their
structure, a missing torch gives a clean "skipped" row; ``--model simple-convnet`` runs the
ch07 SimpleConvNet measurement, and each model's flags are errors with the other. Tiny
sizes; nothing about time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import _numgrad, _peers, benchmark, ch07_benchmark_convnet
from funcnet import datasets, nets

PEER_IDS = ["fit", "step", "jax", "jax1", "numpy", "torch"]


@pytest.fixture(scope="module")
def subset():
    return datasets.load("mnist-5k")


def _small(subset, n_train=300, n_test=100):
    (x, t), (xt, tt) = subset.train, subset.test
    return (x[:n_train], t[:n_train]), (xt[:n_test], tt[:n_test])


def test_numpy_book_gradient_matches_funcnet_backprop(subset):
    train, _ = _small(subset)
    x, t = train[0][:20], train[1][:20]
    params = _peers.init_params(_peers.Protocol(), 784, 10)
    params = {k: v + 0.05 * np.float32(i + 1) for i, (k, v) in enumerate(params.items())}
    loss, grads = _peers.np_gradient(params, x, t)
    expected_loss, expected = jax.jit(jax.value_and_grad(nets.two_layer_net_loss))(params, x, t)
    assert loss == pytest.approx(float(expected_loss), abs=1e-5)  # the book's 1e-7 in the log
    for k in params:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def seven_iterations(subset):
    """fit's and plain JAX's runs of 7 iterations on the small set, shared by the tests
    that compare them with each other and with the profiled parts."""
    train, test = _small(subset)
    protocol = _peers.Protocol(iters=7)
    params = _peers.init_params(protocol, 784, 10)
    fit = _peers.run_fit(train, test, params, protocol)
    plain = _peers.run_plain_jax(train, test, params, protocol)
    return train, test, protocol, params, fit, plain


def test_plain_jax_peer_follows_fits_minibatches(seven_iterations):
    # Same initial weights and the same draws (fold_in(key, i)): the ceiling runs the very
    # same protocol as fit, so the params agree up to float32 rounding.
    _, _, _, params, a, b = seven_iterations
    assert a.losses.shape == b.losses.shape == (7,)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)
    for k in params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_book_numerical_gradient_loop_matches_backprop_and_restores_params(x64):
    rng = np.random.default_rng(0)
    x = rng.random((3, 6))
    t = np.array([0, 2, 1])
    params = {
        "W1": 0.5 * rng.standard_normal((6, 4)),
        "b1": 0.1 * rng.standard_normal(4),
        "W2": 0.5 * rng.standard_normal((4, 3)),
        "b2": 0.1 * rng.standard_normal(3),
    }
    before = {k: v.copy() for k, v in params.items()}
    grads, done = _numgrad.book_two_layer_gradient(params, x, t)
    assert done == 6 * 4 + 4 + 4 * 3 + 3
    # one compiled program, not op by op (x and t checked while tracing)
    backprop = jax.jit(lambda p: nets.two_layer_net_gradient(p, x, t))(
        {k: jnp.asarray(v) for k, v in params.items()}
    )
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
        np.testing.assert_allclose(grads[k], backprop[k], atol=1e-8, err_msg=k)
    partial, done = _numgrad.book_two_layer_gradient(params, x, t, limit=5)
    assert done == 5
    assert np.count_nonzero(partial["W1"].ravel()[5:]) == 0
    np.testing.assert_array_equal(partial["W1"].ravel()[:5], grads["W1"].ravel()[:5])


def test_denormal_census_counts_subnormal_weights():
    params = {
        "W1": np.full((4, 3), 0.5, np.float32),
        "b1": np.array([1e-40, 0.0, 2.0], np.float32),
        "W2": np.full((3, 2), 0.25, np.float32),
        "b2": np.zeros(2, np.float32),
    }
    x = np.ones((5, 4), np.float32)
    census = _peers.denormal_census(params, x, np.array([0, 1, 0, 1, 0]))
    assert census["weights"] == (1, 12 + 3 + 6 + 2)
    assert set(census) == {"weights", "activations", "gradients"}


def _run_main(tmp_path, *extra):
    argv = ["--dataset", "mnist-5k", "--repeats", "1", "--out", str(tmp_path), *extra]
    record = benchmark.main(argv)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(
        json.dumps(record, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )
    return record


def test_main_prints_table_and_writes_json(tmp_path, capsys):
    record = _run_main(
        tmp_path,
        "--iters",
        "81",
        "--numgrad-hidden",
        "3",
        "--numgrad-book-elements",
        "1000",
    )
    out = capsys.readouterr().out
    assert "seconds" in out and "x fit" in out and "where the time goes" in out
    # A user's tool reports measurements and comparisons, not the project's targets.
    assert "target" not in out.lower() and "MISSED" not in out and "met" not in out.split()
    rows = {r["id"]: r for r in record["peers"]}
    assert [r["id"] for r in record["peers"]] == PEER_IDS
    for pid in PEER_IDS:
        row = rows[pid]
        assert row["name"] in out
        if row["status"] == "skipped":  # torch absent
            assert pid == "torch" and row["reason"].startswith("skipped (torch not installed")
            continue
        assert row["seconds"] > 0 and row["compile_seconds"] >= 0
        assert row["steps_per_s"] == pytest.approx(81 / row["seconds"])
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["test_acc"] <= 1
        # Same protocol, same initial weights: every peer starts at ln(10) and learns alike.
        assert row["loss_first"] == pytest.approx(np.log(10), abs=0.05)
        assert row["test_acc"] == pytest.approx(rows["fit"]["test_acc"], abs=0.1), pid
        assert row["train_acc"] > 0.4, pid  # chance is 0.1
    assert rows["fit"]["ratio_to_fit"] == 1.0
    # fit and its unfused mode make the same updates.
    assert rows["step"]["train_acc"] == rows["fit"]["train_acc"]
    assert rows["jax"]["train_acc"] == pytest.approx(rows["fit"]["train_acc"], abs=0.01)

    ng = record["numerical_gradient"]
    assert ng["num_params"] == 784 * 3 + 3 + 3 * 10 + 10
    assert ng["book_extrapolated"] and ng["book_elements_timed"] == 1000
    assert ng["max_abs_diff_funcnet"] <= 1e-9
    assert ng["max_abs_diff_book"] <= 1e-8
    assert ng["peak_rss_bytes"] > 0 and ng["speedup"] > 0

    profile = record["profile"]["peers"]
    assert set(profile) == {"funcnet fit", "plain JAX", "NumPy (book)"}
    for name, p in profile.items():
        # The parts are complete runs of their own; rest is what the whole run has besides.
        assert p["steps_s"] > 0 and p["evals_s"] > 0, name
        assert p["rest_s"] == pytest.approx(p["whole_s"] - p["steps_s"] - p["evals_s"])
        assert (
            p["whole_s"]
            == rows[{"funcnet fit": "fit", "plain JAX": "jax"}.get(name, "numpy")]["seconds"]
        )
        assert len(p["steps_s_all"]) == len(p["evals_s_all"]) == 1  # one per repeat
    assert record["profile"]["evaluations"] == 3  # after iterations 0, 40, 80 (the last)

    compared = {c["peer"]: c for c in record["comparisons"]}
    assert set(compared) == {rows[p]["name"] for p in PEER_IDS[1:] if rows[p]["status"] == "ok"}
    jax_row = rows["jax"]
    assert compared["plain JAX"]["fit_over_peer"] == pytest.approx(
        rows["fit"]["seconds"] / jax_row["seconds"]
    )
    assert "targets" not in record
    assert record["dataset"]["used"] == "mnist-5k"
    assert record["denormals"]["found"] >= 0


def test_torch_row_is_skipped_cleanly_without_torch(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    record = _run_main(
        tmp_path, "--iters", "3", "--peers", "numpy,torch", "--no-numgrad", "--no-profile"
    )
    out = capsys.readouterr().out
    numpy_row, torch_row = record["peers"]
    assert numpy_row["status"] == "ok"
    assert torch_row == {
        "id": "torch",
        "name": "PyTorch eager",
        "status": "skipped",
        "reason": f"skipped (torch not installed: pip install torch=={_peers.TORCH_VERSION})",
    }
    assert "PyTorch eager  skipped (torch not installed: pip install torch==2.13.0)" in out
    assert record["numerical_gradient"] is None and record["profile"] is None


def test_torch_peer_flushes_denormals_only_while_it_runs(subset):
    torch = pytest.importorskip("torch")
    train, test = _small(subset)
    protocol = _peers.Protocol(iters=5)
    result = _peers.run_torch(train, test, _peers.init_params(protocol, 784, 10), protocol)
    assert result.status == "ok" and result.reason is None
    assert result.losses.shape == (5,)
    # Flushing is process-wide: afterwards a subnormal float32 survives again.
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert float((tiny * 1.0)[0]) != 0.0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--peers", "fit,nope"], "--peers: unknown nope"),
        (["--peers", ","], "--peers: unknown none given"),
        (["--peers", "fit,jax,fit"], "--peers: fit named more than once"),
        (["--repeats", "0"], "--repeats: must be a positive integer"),
        (["--iters", "-5"], "--iters: must be a positive integer"),
        (["--iters", "1e3"], "--iters: expected an integer"),
        (["--seed", "-1"], "--seed: must be an integer from 0 to 2**32 - 1"),
        (["--numgrad-chunk", "0"], "--numgrad-chunk: must be a positive integer"),
        (["--numgrad-book-elements", "-1"], "--numgrad-book-elements: must be a positive"),
        (["--numgrad-hidden", "0"], "--numgrad-hidden: must be a positive integer"),
    ],
)
def test_bad_flags_are_argparse_errors_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.parse_args(flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_quick_shortens_the_run_and_explicit_flags_win():
    args = benchmark.parse_args(["--quick"])
    assert (args.iters, args.repeats, args.numgrad_book_elements) == (1000, 1, 2000)
    args = benchmark.parse_args(["--quick", "--iters", "300"])
    assert (args.iters, args.repeats) == (300, 1)
    args = benchmark.parse_args([])
    assert (args.iters, args.repeats, args.numgrad_book_elements) == (10000, 3, None)


def test_profiled_parts_are_the_peers_own_loops_without_evaluation(seven_iterations):
    # "steps alone" must be the very loop of the whole run, minus the evaluations: the
    # same updates, so the same final params; "evaluations alone" one per evaluation point.
    train, test, protocol, params, fit, plain = seven_iterations
    parts = _peers.profile_parts(train, test, params, protocol, ("fit", "jax", "numpy"))
    assert _peers.evaluation_points(7, 3) == [0, 3, 6]
    evals = len(_peers.evaluation_points(7, _peers.epoch_length(300, protocol)))
    fit_state = parts["fit"]["steps"]()
    plain_params = parts["jax"]["steps"]()
    numpy_params = parts["numpy"]["steps"]()
    numpy_run = _peers.run_numpy(train, test, params, protocol)
    for k in params:
        np.testing.assert_array_equal(fit_state.params[k], fit.params[k], err_msg=k)
        np.testing.assert_allclose(plain_params[k], plain.params[k], rtol=1e-6, err_msg=k)
        np.testing.assert_array_equal(numpy_params[k], numpy_run.params[k], err_msg=k)
    for pid in ("fit", "jax", "numpy"):
        assert len(parts[pid]["evals"]()) == evals, pid


def test_every_peer_reports_the_final_params_accuracy(subset):
    # fit reports the accuracy of the params after the last step; so must its peers.
    train, test = _small(subset)
    protocol = _peers.Protocol(iters=5)  # epoch of 3 iterations: evaluations after 0, 3, 4
    params = _peers.init_params(protocol, 784, 10)
    for run in (_peers.run_plain_jax, _peers.run_plain_jax_program, _peers.run_numpy):
        r = run(train, test, params, protocol)
        expected = _peers.np_accuracy({k: np.asarray(v) for k, v in r.params.items()}, *test)
        assert r.test_acc == pytest.approx(expected, abs=1e-6), r.name


# --------------------------------------------------------------------------------------
# --model simple-convnet: the measurement of experiments.ch07_benchmark_convnet


def test_simple_convnet_model_times_every_requested_peer(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ch07_benchmark_convnet, "PAUSE_S", 0.0)
    # the ratios' references; funcnet: test_experiments_ch07_ch08
    peers = ["plain-jax", "torch", "torch-nhwc"]
    record = benchmark.main(
        ["--model", "simple-convnet", "--steps", "2", "--rounds", "2", "--numpy-steps", "1",
         "--images", "200", "--peers", ",".join(peers), "--no-layers", "--out", str(tmp_path)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text()) == record
    assert record["experiment"] == "benchmark" and record["model"] == "simple-convnet"
    ms, rounds = record["ms_per_iteration"], record["ms_per_iteration_all"]
    assert list(ms) == peers
    if ms["torch"] is None:  # torch not importable: a skipped row, no ratios to it
        assert "torch not importable" in record["notes"]["torch"] and rounds["torch"] is None
        assert record["ratio_to_torch"] is None
    for name in (p for p in peers if ms[p] is not None):
        assert len(rounds[name]) == 2 and ms[name] == min(rounds[name]) > 0, name
        assert record["ratio_to_plain_jax"][name] == pytest.approx(ms[name] / ms["plain-jax"])
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f"{ms[name]:.2f}" in row and f"{ms[name] / ms['plain-jax']:.2f}x" in row, row
        for ref, key in (("torch", "ratio_to_torch"), ("torch-nhwc", "ratio_to_torch_nhwc")):
            if ms[ref] is not None:
                assert record[key][name] == pytest.approx(ms[name] / ms[ref])
                assert f"{ms[name] / ms[ref]:.2f}x" in row, row
    if ms["torch"] is not None:  # the layouts the two PyTorch peers ran
        assert record["notes"]["torch"].endswith("NCHW")
        assert record["notes"]["torch-nhwc"].endswith("channels_last")
    assert record["ratio_to_plain_jax"]["plain-jax"] == 1.0
    assert record["settings"] == {
        "batch_size": 100, "lr": 0.001, "steps": 2, "numpy_steps": 1, "rounds": 2,
        "images": 200, "seed": 0, "peers": peers,
    }  # fmt: skip
    assert "best of 2 interleaved round(s) of 2 iterations" in out


def test_simple_convnet_model_without_torch_or_references(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    monkeypatch.setattr(ch07_benchmark_convnet, "PAUSE_S", 0.0)
    record = benchmark.main(
        ["--model", "simple-convnet", "--steps", "1", "--rounds", "1", "--numpy-steps", "1",
         "--images", "150", "--peers", "numpy-book,torch", "--no-layers", "--out", str(tmp_path)]
    )  # fmt: skip
    assert record["ms_per_iteration"]["torch"] is None
    assert record["ms_per_iteration"]["numpy-book"] > 0
    # Neither reference measured: no ratios at all, rather than ratios to nothing.
    assert record["ratio_to_torch"] is None and record["ratio_to_plain_jax"] is None
    torch_row = next(line for line in capsys.readouterr().out.splitlines() if "skipped" in line)
    assert torch_row.startswith("torch") and "torch not importable" in torch_row


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "mnist"], "--dataset: only with --model two-layer, not --model simple"),
        (["--repeats", "2"], "--repeats: only with --model two-layer, not --model simple-convnet; "
         "use --rounds"),
        (["--iters", "9"], "--iters: only with --model two-layer, not --model simple-convnet; "
         "use --steps"),
        (["--no-numgrad"], "--no-numgrad: only with --model two-layer"),
        (["--numgrad-hidden", "50"], "--numgrad-hidden: only with --model two-layer"),
        (["--no-profile"], "--no-profile: only with --model two-layer"),
        (["--torch-keep-denormals"], "--torch-keep-denormals: only with --model two-layer"),
        (["--peers", "fit"], "--peers: unknown fit; choose from funcnet, funcnet-book, "
         "plain-jax, torch, torch-nhwc, numpy-book"),
        (["--peers", "torch,funcnet,torch"], "--peers: torch named more than once"),
        (["--steps", "0"], "--steps: must be a positive integer"),
        (["--rounds", "x"], "--rounds: expected an integer"),
        (["--seed", str(2**32)], "--seed: must be an integer from 0 to 2**32 - 1"),
    ],
)  # fmt: skip
def test_simple_convnet_bad_flags_are_argparse_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.parse_args(["--model", "simple-convnet", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--steps", "5"], "--steps: only with --model simple-convnet or deep-convnet, not "
         "--model two-layer; use --iters"),
        (["--rounds", "2"], "--rounds: only with --model simple-convnet or deep-convnet, not "
         "--model two-layer; use --repeats"),
        (["--no-layers"], "--no-layers: only with --model simple-convnet or deep-convnet"),
        (["--model", "deep-convnet", "--numpy-steps", "3"], "--numpy-steps: only with --model "
         "simple-convnet, not --model deep-convnet"),
        (["--model", "deep-convnet", "--peers", "numpy-book"], "--peers: unknown numpy-book; "
         "choose from funcnet, funcnet-book, plain-jax, torch, torch-nhwc"),
        (["--model", "two-layer", "--numpy-steps", "3"], "--numpy-steps: only with --model "
         "simple-convnet"),
        (["--images", "100"], "--images: only with --model simple-convnet"),
        (["--peers", "funcnet"], "--peers: unknown funcnet; choose from fit, step, jax"),
        (["--model", "cnn"], "--model: invalid choice: 'cnn'"),
    ],
)  # fmt: skip
def test_two_layer_rejects_simple_convnet_flags(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.parse_args(flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_deep_convnet_model_times_its_peers_and_each_layer(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ch07_benchmark_convnet, "PAUSE_S", 0.0)
    record = benchmark.main(
        ["--model", "deep-convnet", "--steps", "1", "--rounds", "1", "--images", "120",
         "--peers", "funcnet,torch-nhwc", "--out", str(tmp_path)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert record["model"] == "deep-convnet" and "DeepConvNet training iteration" in out
    ms = record["ms_per_iteration"]
    assert list(ms) == ["funcnet", "torch-nhwc"] and ms["funcnet"] > 0
    assert "numpy_steps" not in record["settings"]
    # Where the time goes: the 11 units (6 convs, 3 pools, 2 affines), each timed, torch's
    # beside them when torch imports, and the printed table ends with their sums.
    rows = record["layers"]
    assert [r["layer"].split()[0] for r in rows] == [
        "conv1", "conv2", "pool1", "conv3", "conv4", "pool2", "conv5", "conv6", "pool3",
        "affine7", "affine8",
    ]  # fmt: skip
    assert all(r["forward_ms"] > 0 and r["backward_ms"] >= 0 for r in rows)
    assert all(("torch_forward_ms" in r) == (ms["torch-nhwc"] is not None) for r in rows)
    if ms["torch-nhwc"] is not None:  # the per-layer peer is the one asked for, named
        assert all(r["torch_peer"] == "torch-nhwc" for r in rows)
        assert "x torch-nhwc" in out
    total = sum(r["forward_ms"] for r in rows)
    sum_row = next(line for line in out.splitlines() if line.startswith("sum "))
    assert f"{total:.2f}" in sum_row


def test_each_model_gets_its_defaults_and_quick_settings():
    args = benchmark.parse_args([])
    assert args.model == "two-layer" and args.out == Path("runs/benchmark")
    assert (args.dataset, args.numgrad_hidden, args.no_profile) == ("auto", 50, False)
    assert args.peer_ids == list(_peers.PEERS)
    args = benchmark.parse_args(["--model", "simple-convnet"])
    assert (args.steps, args.numpy_steps, args.rounds, args.images) == (50, 100, 3, 10000)
    assert args.out == Path("runs/benchmark/simple-convnet")
    assert args.peers == list(ch07_benchmark_convnet.PEERS)
    args = benchmark.parse_args(["--model", "simple-convnet", "--quick", "--rounds", "2"])
    assert (args.steps, args.numpy_steps, args.rounds, args.images) == (10, 10, 2, 10000)
    args = benchmark.parse_args(["--model", "simple-convnet", "--seed", "7", "--out", "x"])
    assert (args.seed, args.out) == (7, Path("x"))
    args = benchmark.parse_args(["--model", "deep-convnet"])
    assert (args.steps, args.rounds, args.images, args.no_layers) == (10, 3, 10000, False)
    assert args.out == Path("runs/benchmark/deep-convnet")
    assert args.peers == ["funcnet", "funcnet-book", "plain-jax", "torch", "torch-nhwc"]
    args = benchmark.parse_args(["--model", "deep-convnet", "--quick"])
    assert (args.steps, args.rounds) == (3, 1)


def test_one_program_peer_runs_fits_protocol_in_one_jitted_call(subset):
    # The peer fit's whole call is measured against: the same draws (fold_in(key, i)), the
    # same updates and the same evaluation points, all in one compiled program.
    train, test = _small(subset)
    protocol = _peers.Protocol(iters=7)  # evaluations after 0, 3, 6
    params = _peers.init_params(protocol, 784, 10)
    fit = _peers.run_fit(train, test, params, protocol)
    one = _peers.run_plain_jax_program(train, test, params, protocol)
    assert one.name == _peers.PEER_NAMES["jax1"] and one.compile_seconds > 0
    assert one.losses.shape == fit.losses.shape == (7,)
    np.testing.assert_allclose(one.losses, fit.losses, rtol=1e-5)
    for k in params:
        np.testing.assert_allclose(one.params[k], fit.params[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert (one.train_acc, one.test_acc) == pytest.approx((fit.train_acc, fit.test_acc), abs=0.02)


def test_torch_nhwc_peer_keeps_weights_and_activations_channels_last():
    torch = pytest.importorskip("torch")
    from experiments import _conv_peers as conv_peers
    from funcnet.nets import convnet

    params = convnet.init_deep_convnet(jax.random.key(0))
    x = torch.rand(2, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    for nhwc in (False, True):
        net = conv_peers.torch_net(torch, params, "deep-convnet", channels_last=nhwc)
        conv = next(m for m in net if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == nhwc
        h = net[:3](x if nhwc else x.contiguous())  # conv1, relu, conv2
        assert h.is_contiguous(memory_format=torch.channels_last) == nhwc
        # the same numbers either way (funcnet's weights, only the memory layout differs)
        want = conv_peers.torch_net(torch, params, "deep-convnet")[:3](x.contiguous())
        assert torch.allclose(h, want, atol=1e-5)


def test_numgrad_largest_difference_keeps_nan_whatever_the_order():
    # Python's max(worst, nan) returns worst: a NaN difference must not become a number.
    ones = {k: np.ones(3) for k in _numgrad.NP_PARAM_KEYS}
    for bad in _numgrad.NP_PARAM_KEYS:  # the NaN in the first, a middle or the last key
        other = {k: (np.array([1.0, np.nan, 1.0]) if k == bad else np.full(3, 0.5)) for k in ones}
        assert np.isnan(_numgrad._max_abs_diff(other, ones, None)), bad
    assert _numgrad._max_abs_diff({k: np.full(3, 0.5) for k in ones}, ones, None) == 0.5
