"""The experiments as command lines: every numeric flag validated, errors as one line with
no traceback, outputs that say what was used, and ch3 inference offline end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import (
    _common,
    ch02_perceptron,
    ch03_mnist_show,
    ch03_neuralnet_mnist,
    ch03_train_three_layer_net,
    ch04_simple_net,
    ch04_train_neuralnet,
    ch05_buy_apple_orange,
    ch05_gradient_check,
)
from funcnet import datasets, io, nets

ROOT = Path(__file__).resolve().parents[1]


def _cli(module: str, *args: str, env: dict[str, str] | None = None):
    """``python -m experiments.MODULE ARGS`` in a fresh process: (status, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if k != "FUNCNET_TRACEBACK"}
    environ |= {"JAX_PLATFORMS": "cpu", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr


def _one_error_line(err: str, module: str) -> str:
    """The single line of ``err``, checked to be ``python -m experiments.M: error: ...``."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m experiments.{module}: error: "), err
    return lines[0]


@pytest.fixture
def two_layer_npz(tmp_path):
    """A chapter-5 params.npz: W1 b1 W2 b2 only."""
    path = tmp_path / "two_layer.npz"
    io.save_params(path, nets.init_two_layer_net(jax.random.key(0), 784, 5, 10))
    return path


# --------------------------------------------------------------------------------------
# Flags: argparse refuses bad numbers in one line naming the flag (exit status 2)

BAD_FLAGS = [
    # non-positive integers
    (ch05_gradient_check, ["--batch", "0"], "--batch"),
    (ch05_gradient_check, ["--batch", "-3"], "--batch"),
    (ch05_gradient_check, ["--hidden", "0"], "--hidden"),
    (ch04_train_neuralnet, ["--iters", "0"], "--iters"),
    (ch03_neuralnet_mnist, ["--batch-size", "0", "--weights", "w.npz"], "--batch-size"),
    (ch03_train_three_layer_net, ["--iters", "-3"], "--iters"),
    (ch03_train_three_layer_net, ["--hidden", "50", "0"], "--hidden"),
    # above a documented maximum: refused at once, not minutes of numerical gradients
    (ch05_gradient_check, ["--batch", "100000"], "--batch"),
    (ch04_train_neuralnet, ["--batch-size", "100000"], "--batch-size"),
    (ch04_train_neuralnet, ["--hidden", "101"], "--hidden"),
    # non-finite and non-positive floats
    (ch04_train_neuralnet, ["--lr", "nan"], "--lr"),
    (ch04_train_neuralnet, ["--lr", "inf"], "--lr"),
    (ch03_train_three_layer_net, ["--lr", "nan"], "--lr"),
    (ch03_train_three_layer_net, ["--lr", "0"], "--lr"),
    (ch03_train_three_layer_net, ["--weight-init-std", "-1"], "--weight-init-std"),
    # seeds: negative, or beyond 32 bits (without x64, key(2**32) is key(0))
    (ch04_simple_net, ["--seed", "-1"], "--seed"),
    (ch05_gradient_check, ["--seed", str(2**32)], "--seed"),
    # not a number at all
    (ch03_mnist_show, ["--index", "1.5"], "--index"),
    (ch03_train_three_layer_net, ["--batch-size", "ten"], "--batch-size"),
]


def _name(module) -> str:
    return module.__name__.split(".")[-1]


@pytest.mark.parametrize(
    "module, argv, flag", BAD_FLAGS, ids=[f"{_name(m)} {' '.join(a)}" for m, a, _ in BAD_FLAGS]
)
def test_bad_flag_is_one_line_naming_the_flag(module, argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    line = _one_error_line(capsys.readouterr().err, _name(module))
    assert f"argument {flag}" in line


def test_experiments_without_flags_refuse_unknown_ones_in_one_line(capsys):
    for module in (ch02_perceptron, ch05_buy_apple_orange):
        with pytest.raises(SystemExit):
            module.main(["--bogus"])
        line = _one_error_line(capsys.readouterr().err, _name(module))
        assert "--bogus" in line


@pytest.mark.parametrize(
    "module",
    [
        ch03_mnist_show,
        ch03_neuralnet_mnist,
        ch03_train_three_layer_net,
        ch04_simple_net,
        ch04_train_neuralnet,
        ch05_gradient_check,
    ],
)
def test_every_flag_has_help(module):
    for action in _parser_of(module)._actions:
        assert action.help, f"{_name(module)}: {action.option_strings} has no help"


def _parser_of(module):
    """The parser ``module.main`` builds, caught at ``parse_args``."""
    caught = []
    original = _common.ArgumentParser.parse_args

    def spy(self, *args, **kwargs):
        caught.append(self)
        raise SystemExit(0)

    _common.ArgumentParser.parse_args = spy
    try:
        with pytest.raises(SystemExit):
            module.main([])
    finally:
        _common.ArgumentParser.parse_args = original
    return caught[0]


def test_gradient_check_activation_help_says_what_each_does(capsys):
    with pytest.raises(SystemExit):
        ch05_gradient_check.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--activation {relu,sigmoid}" in text
    assert "relu (the book's ch5" in text and "sigmoid (the ch4 net" in text


# --------------------------------------------------------------------------------------
# What was used is said; impossible requests are refused before any work


def test_gradient_check_says_which_images_it_used(capsys):
    ch05_gradient_check.main(["--batch", "2", "--hidden", "2", "--dataset", "mnist-5k"])
    out = capsys.readouterr().out
    assert "784-2-10 relu net" in out
    assert "the first 2 of mnist-5k's 4,000 training images" in out


def test_gradient_check_refuses_more_images_than_the_training_set(monkeypatch):
    monkeypatch.setattr(ch05_gradient_check, "MAX_BATCH", 10**6)
    with pytest.raises(ValueError, match=r"--batch 5000: the mnist-5k training set has only 4,000"):
        ch05_gradient_check.main(["--batch", "5000", "--dataset", "mnist-5k"])


def test_training_refuses_a_minibatch_larger_than_the_training_set(tmp_path):
    with pytest.raises(ValueError, match=r"--batch-size 5000: the mnist-5k training set"):
        ch03_train_three_layer_net.main(
            ["--batch-size", "5000", "--dataset", "mnist-5k", "--out", str(tmp_path)]
        )


def test_default_output_folder_is_per_data_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _common.run_dir(None, "x", "mnist-5k") == Path("runs/x/mnist-5k")
    assert (tmp_path / "runs/x/mnist-5k").is_dir()
    assert _common.run_dir(tmp_path / "mine", "x", "mnist-5k") == tmp_path / "mine"


def test_metrics_json_is_strict_json_with_null_for_nan(tmp_path):
    path = _common.write_json(
        tmp_path / "m.json", {"lr": float("nan"), "acc": [np.float32(np.inf), 0.5]}
    )

    def refuse(name):
        raise AssertionError(f"bare {name} in strict JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {"lr": None, "acc": [None, 0.5]}


def test_ch3_weights_of_the_wrong_shape_name_the_pair(tmp_path):
    params = nets.init_three_layer_net(jax.random.key(0))
    params["W2"] = np.zeros((60, 100), np.float32)
    path = tmp_path / "w.npz"
    io.save_params(path, params)
    with pytest.raises(
        ValueError, match=r"W2 \(60, 100\) and b2 \(100,\) do not fit; expected W2 \(50, 100\)"
    ):
        ch03_neuralnet_mnist.main(["--weights", str(path), "--dataset", "mnist-5k"])


# --------------------------------------------------------------------------------------
# _common.run: an error is one line and exit status 1


def _run(main, capsys, monkeypatch, traceback: str = "") -> tuple[int, str]:
    monkeypatch.setenv("FUNCNET_TRACEBACK", traceback)

    def exit_now(status):  # the real one ends the process without teardown
        raise SystemExit(status)

    monkeypatch.setattr(_common, "_exit_now", exit_now)
    with pytest.raises(SystemExit) as exit_:
        _common.run(main, [])
    return exit_.value.code, capsys.readouterr().err


def test_run_prints_our_error_as_one_line(tmp_path, capsys, monkeypatch):
    file = tmp_path / "f"
    file.write_text("")
    code, err = _run(lambda argv: _common.out_dir(file), capsys, monkeypatch)
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f": error: --out {file}: {file} exists and is not a folder" in err


def test_run_names_the_type_and_points_to_the_traceback_for_foreign_errors(capsys, monkeypatch):
    code, err = _run(lambda argv: int("x"), capsys, monkeypatch)
    assert code == 1 and err.count("\n") == 1
    assert "error: ValueError: invalid literal" in err and "FUNCNET_TRACEBACK=1" in err


def test_run_keeps_a_multi_line_message_indented(capsys, monkeypatch):
    def main(argv):
        raise _common.datasets.DatasetNotFoundError("MNIST: missing x.\nLooked in: /a\n  url\n")

    code, err = _run(main, capsys, monkeypatch)
    assert code == 1
    assert err.splitlines()[0].endswith("error: MNIST: missing x.")
    assert err.splitlines()[1:] == ["  Looked in: /a", "  url"]


def test_run_exits_130_on_ctrl_c_and_shows_the_traceback_when_asked(capsys, monkeypatch):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert _run(interrupted, capsys, monkeypatch)[0] == 130

    def reader_gone(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert _run(reader_gone, capsys, monkeypatch) == (141, "")  # quiet, like `| head`
    code, err = _run(lambda argv: int("x"), capsys, monkeypatch, traceback="1")
    assert code == 1 and "Traceback" in err


# --------------------------------------------------------------------------------------
# Whole commands in a fresh process: status, one line on stderr, no traceback


def test_cli_nan_learning_rate_is_refused_by_argparse():
    code, out, err = _cli("ch04_train_neuralnet", "--lr", "nan")
    assert code == 2 and out == ""
    assert "argument --lr: must be a finite number, got 'nan'" in _one_error_line(
        err, "ch04_train_neuralnet"
    )


def test_cli_out_naming_a_file_is_one_line(tmp_path):
    file = tmp_path / "results.txt"
    file.write_text("keep me")
    code, _, err = _cli("ch03_train_three_layer_net", "--out", str(file))
    assert code == 1
    assert "is not a folder" in _one_error_line(err, "ch03_train_three_layer_net")
    assert file.read_text() == "keep me"


def test_cli_truncated_weights_is_one_line(tmp_path):
    good = tmp_path / "good.npz"
    io.save_params(good, nets.init_three_layer_net(jax.random.key(0)))
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code, _, err = _cli("ch03_neuralnet_mnist", "--weights", str(bad), "--out", str(tmp_path))
    assert code == 1
    line = _one_error_line(err, "ch03_neuralnet_mnist")
    assert str(bad) in line and "truncated" in line


def test_cli_chapter_5_weights_name_the_missing_keys(two_layer_npz, tmp_path):
    code, _, err = _cli(
        "ch03_neuralnet_mnist", "--weights", str(two_layer_npz), "--out", str(tmp_path)
    )
    assert code == 1
    line = _one_error_line(err, "ch03_neuralnet_mnist")
    assert f"--weights {two_layer_npz} lacks W3, b3" in line
    assert "ch03_train_three_layer_net" in line


@pytest.mark.parametrize(
    "module, argv",
    [("ch05_gradient_check", []), ("ch03_train_three_layer_net", ["--out", "OUT"])],
)
def test_cli_offline_full_mnist_is_a_clear_message_not_a_traceback(module, argv, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        "FUNCNET_OFFLINE": "1",
        "FUNCNET_DATA_DIR": str(empty),
        "FUNCNET_CACHE_DIR": str(empty),
    }
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in argv]
    code, out, err = _cli(module, "--dataset", "mnist", *argv, env=env)
    assert code == 1
    assert "Traceback" not in err and "Downloading" not in out + err
    first, *rest = err.splitlines()
    assert first.startswith(f"python -m experiments.{module}: error: MNIST: missing "), err
    assert rest and all(line.startswith("  ") for line in rest), err  # its instructions
    assert "FUNCNET_OFFLINE" in err


# --------------------------------------------------------------------------------------
# Chapter 3 offline, end to end: train the ch3 net here, then run the book's inference


def test_ch3_trained_weights_run_end_to_end_and_report_what_was_saved(tmp_path, capsys):
    train_out, infer_out = tmp_path / "train", tmp_path / "infer"
    metrics = ch03_train_three_layer_net.main(
        # weights of std 0.1 learn within 100 iterations (std 0.01 needs ~1,000)
        ["--iters", "100", "--weight-init-std", "0.1", "--dataset", "mnist-5k"]
        + ["--out", str(train_out)]
    )
    params = io.load_params(train_out / "params.npz")
    assert sorted(params) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    assert params["W1"].shape == (784, 50) and params["W3"].shape == (100, 10)
    assert metrics["saved_params_iteration"] == 100 and metrics["status"] == "ok"
    saved = json.loads((train_out / "metrics.json").read_text())
    assert saved["final_test_acc"] == metrics["final_test_acc"]
    assert (train_out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    result = ch03_neuralnet_mnist.main(
        [
            "--weights",
            str(train_out / "params.npz"),
            "--dataset",
            "mnist-5k",
            "--batch-size",
            "5000",
            "--out",
            str(infer_out),
        ]
    )
    printed = capsys.readouterr().out
    assert "--batch-size 5000 cut to the test set's size" in printed
    assert result["batch_size"] == 1000
    assert 0.5 < result["accuracy"]  # it learned (chance is 0.1; this run gives about 0.76)
    # The inference of the saved weights is the accuracy the training reported for them
    # (up to one image whose two top scores tie within float32 rounding).
    assert abs(result["accuracy"] - metrics["final_test_acc"]) <= 1e-3
    assert (infer_out / "predictions.png").is_file()


def test_ch3_training_that_diverges_saves_and_describes_the_last_finite_params(tmp_path):
    with pytest.raises(RuntimeError, match=r"diverged.*params.npz holds the last finite params"):
        ch03_train_three_layer_net.main(
            ["--iters", "50", "--lr", "1e38", "--dataset", "mnist-5k", "--out", str(tmp_path)]
        )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    params = io.load_params(tmp_path / "params.npz")
    assert all(np.isfinite(v).all() for v in params.values())
    x, t = datasets.load("mnist-5k").test
    acc = float(nets.accuracy(nets.three_layer_net_predict, params, x, t))
    assert metrics["saved_params_iteration"] < metrics["iterations_run"]
    assert acc == pytest.approx(metrics["final_test_acc"], abs=1e-3)  # what is saved


def _modules_that_claim_their_output_folder():
    """Every experiments module whose source claims its output folder (_common.claim),
    whose refusal tells the user to pass --overwrite."""
    import importlib
    import pathlib

    folder = pathlib.Path(_common.__file__).parent
    sources = {p.stem: p.read_text() for p in folder.glob("[!_]*.py")}
    names = sorted(name for name, text in sources.items() if "_common.claim(" in text)
    return [importlib.import_module(f"experiments.{n}") for n in names]


@pytest.mark.parametrize("module", _modules_that_claim_their_output_folder(), ids=_name)
def test_every_command_that_may_refuse_its_output_folder_accepts_overwrite(module, capsys):
    """The refusal says "pass --out DIR ..., or --overwrite to replace them": a command
    without the flag would answer that advice with an unknown-argument error."""
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    assert "--overwrite" in capsys.readouterr().out, _name(module)
