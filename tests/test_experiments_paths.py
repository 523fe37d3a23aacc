"""The experiments' paths: an output folder is claimed by one run at a time, path flags
(``--out``, ``--data-dir``, ``--checkpoint``, weights files) are checked before any work,
and a weights file that cannot be used says what it is."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import experiments
from experiments import _common, ch03_neuralnet_mnist, ch04_gradient_1d, ch05_train_neuralnet
from funcnet import io as fio
from funcnet import nets, train

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(
    m.name for m in pkgutil.iter_modules(experiments.__path__) if not m.name.startswith("_")
)


def _source(name: str) -> str:
    return (Path(experiments.__path__[0]) / f"{name}.py").read_text()


WITH_OUT = [n for n in EXPERIMENTS if "add_out_flag(" in _source(n) or '"--out"' in _source(n)]
WITH_DATA = [n for n in EXPERIMENTS if "load_dataset(" in _source(n)]
WITH_CHECKPOINT = [n for n in EXPERIMENTS if '"--checkpoint"' in _source(n)]
WITH_WEIGHTS = {  # experiment -> its flags naming a weights file
    "ch03_neuralnet_mnist": ["--weights"],
    "ch07_apply_filter": ["--params"],
    "ch07_visualize_filter": ["--params", "--init"],
    "ch08_deep_convnet": ["--params"],
    "ch08_half_float_network": ["--params"],
}


def _env() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "FUNCNET_TRACEBACK"}
    return environ | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}


def _usage_error(module_name: str, argv: list[str], capsys) -> str:
    """The one-line usage error (exit status 2) of ``main(argv)``."""
    module = importlib.import_module(f"experiments.{module_name}")
    with pytest.raises(SystemExit) as e:
        module.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_the_lists_of_flags_are_not_empty():
    assert len(WITH_OUT) >= 25 and len(WITH_DATA) >= 15
    assert WITH_CHECKPOINT == ["ch07_train_convnet", "ch08_deep_convnet"]
    assert set(WITH_WEIGHTS) == {n for n in EXPERIMENTS if "load_net_weights(" in _source(n)}


# --------------------------------------------------------------------------------------
# One run at a time per output folder

HOLDER = """
import argparse, sys
from experiments import _common
_common.claim(sys.argv[1], "holder", argparse.Namespace(n=1, overwrite=True))
print("claimed", flush=True)
sys.stdin.read()  # hold the folder until the test closes stdin (or kills this process)
"""


class _Holder:
    """A process that claims ``folder`` and holds it while the block runs."""

    def __init__(self, folder: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder)],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> subprocess.Popen:
        line = self.process.stdout.readline()  # bounded: the process exits on any error
        assert line == "claimed\n", self.process.stderr.read()
        return self.process

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
        self.process.wait(timeout=60)
        self.process.stdout.close()
        self.process.stderr.close()


def test_a_second_run_while_the_first_still_runs_is_refused_whatever_its_settings(tmp_path):
    # two runs started 0.5 s apart both checked settings.json before either wrote it,
    # both exited 0, and the later one's results replaced the other's
    args = argparse.Namespace(n=1, overwrite=True)
    with _Holder(tmp_path):
        with pytest.raises(_common.FolderInUse, match=r"being written by another run"):
            _common.claim(tmp_path, "holder", args)  # same settings, even --overwrite
    assert _common.claim(tmp_path, "holder", args) == tmp_path  # free once it has ended
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the lock leaves no file


def test_a_run_killed_outright_leaves_no_stale_claim(tmp_path):
    with _Holder(tmp_path) as holder:
        holder.kill()  # SIGKILL: no cleanup code runs
        holder.wait(timeout=60)
        assert holder.returncode == -signal.SIGKILL
    _common.claim(tmp_path, "holder", argparse.Namespace(n=1))


def test_a_refused_run_leaves_the_folder_to_others(tmp_path):
    ch04_gradient_1d.main(["--out", str(tmp_path)])
    _common.release_claims()
    with pytest.raises(_common.OtherSettings):
        ch04_gradient_1d.main(["--out", str(tmp_path), "--at", "3", "7"])
    # this process no longer holds the folder: another one may claim it
    with _Holder(tmp_path):
        pass


def test_a_command_line_run_into_a_folder_in_use_exits_with_one_line(tmp_path):
    with _Holder(tmp_path):
        done = subprocess.run(
            [sys.executable, "-m", "experiments.ch04_gradient_1d", "--out", str(tmp_path)],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("python -m experiments.ch04_gradient_1d: error: ")
    assert "is being written by another run" in done.stderr and "--out DIR" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "gradient_1d.png").exists()


def test_the_same_process_may_claim_its_folder_again(tmp_path):
    args = argparse.Namespace(n=1)
    _common.claim(tmp_path, "again", args)
    _common.claim(tmp_path, "again", args)
    _common.release_claims()
    with _Holder(tmp_path):  # released: another process may claim it
        pass


def test_the_training_lists_only_the_files_it_wrote(tmp_path, capsys):
    # a temporary file of another run (or anything else in the folder) is not "wrote"
    (tmp_path / ".params.npz.abcd1234.tmp").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("mine")
    ch05_train_neuralnet.main(
        ["--iters", "20", "--hidden", "5", "--dataset", "mnist-5k", "--out", str(tmp_path)]
    )
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote")]
    assert wrote == [
        f"wrote accuracy.png, confusion.png, loss.png, metrics.json, params.npz, "
        f"predictions.png to {tmp_path}"
    ]


# --------------------------------------------------------------------------------------
# Path flags: usage errors before any work


@pytest.mark.parametrize("name", WITH_OUT)
def test_an_empty_out_is_a_usage_error_not_the_current_folder(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _usage_error(name, ["--out", ""], capsys)
    assert "argument --out: is empty" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", WITH_DATA)
@pytest.mark.parametrize(
    "given, message",
    [
        ("", "is empty"),
        ("missing", "no such folder: {tmp}/missing"),
        ("a_file", "{tmp}/a_file is not a folder"),
    ],
)
def test_an_explicit_data_dir_that_is_no_folder_is_a_usage_error(
    name, given, message, capsys, tmp_path
):
    (tmp_path / "a_file").write_text("x")
    value = str(tmp_path / given) if given else ""
    err = _usage_error(name, ["--data-dir", value], capsys)
    assert f"argument --data-dir: {message.format(tmp=tmp_path)}" in err


@pytest.mark.parametrize("name", WITH_CHECKPOINT)
@pytest.mark.parametrize(
    "given, message",
    [
        ("missing/c.npz", "{tmp}/missing/c.npz: the folder {tmp}/missing does not exist"),
        ("a_file/c.npz", "{tmp}/a_file/c.npz: {tmp}/a_file is not a folder"),
        ("folder", "{tmp}/folder is a folder; pass a file path"),
        ("", "is empty"),
    ],
)
def test_a_checkpoint_that_cannot_be_written_is_a_usage_error(
    name, given, message, capsys, tmp_path
):
    # fit found it only when it first saved, after compiling and training an epoch
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "folder").mkdir()
    value = str(tmp_path / given) if given else ""
    train_flag = ["--train"] if name == "ch08_deep_convnet" else []
    err = _usage_error(name, [*train_flag, "--checkpoint", value], capsys)
    assert f"argument --checkpoint: {message.format(tmp=tmp_path)}" in err


@pytest.mark.parametrize("name, flag", [(n, f) for n, flags in WITH_WEIGHTS.items() for f in flags])
@pytest.mark.parametrize(
    "given, message",
    [
        ("/dev/zero", "/dev/zero is not a regular file (a device, FIFO or socket)"),
        ("{tmp}", "{tmp} is a folder, not a weights file"),
        ("", "is empty"),
    ],
)
def test_a_weights_flag_naming_no_regular_file_is_a_usage_error(
    name, flag, given, message, capsys, tmp_path
):
    # ch03 --weights /dev/zero said "no such file"; a .pkl named so was read forever
    err = _usage_error(name, [flag, given.format(tmp=tmp_path)], capsys)
    assert f"argument {flag}: {message.format(tmp=tmp_path)}" in err


# --------------------------------------------------------------------------------------
# Weights files: what they hold, said the same way by every experiment


@pytest.fixture(scope="module")
def fit_checkpoint(tmp_path_factory):
    """A checkpoint written by fit: the whole training state, not a params file."""
    folder = tmp_path_factory.mktemp("fit")
    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    t = (x[:, 0] > 0).astype(np.int32)
    net = nets.two_layer_net("relu")
    train.fit(
        nets.init_two_layer_net(jax.random.key(0), 4, 3, 2),
        (x, t),
        (x, t),
        key=jax.random.key(1),
        loss_fn=net.loss,
        predict_fn=net.predict,
        optimizer=optax.sgd(0.1),
        iters=4,
        batch_size=10,
        checkpoint_path=folder / "c.npz",
    )
    return folder / "c.npz"


@pytest.mark.parametrize(
    "name, flag", [(n, f) for n, flags in WITH_WEIGHTS.items() for f in flags if f != "--init"]
)
def test_a_fit_checkpoint_given_as_weights_is_named_as_such(name, flag, fit_checkpoint, tmp_path):
    # ch03 said "setting an array element with a sequence. ... inhomogeneous shape"
    module = importlib.import_module(f"experiments.{name}")
    argv = [flag, str(fit_checkpoint), "--out", str(tmp_path)]
    argv += ["--dataset", "mnist-5k"] if name in WITH_DATA else []
    with pytest.raises(ValueError) as e:
        module.main(argv)
    assert re.match(
        rf"{flag} {re.escape(str(fit_checkpoint))} is a training checkpoint", str(e.value)
    )
    assert "pass the params.npz" in str(e.value)


@pytest.mark.parametrize(
    "weights, message",
    [
        ([np.zeros(3, np.float32)], "holds a list, not a dict of arrays named W1 b1"),
        ({"W1": np.zeros((784, 5), np.int32)}, "lacks b1, W2, b2, W3, b3: the ch3 network"),
        ({"net": {"W1": np.zeros(3, np.float32)}}, "lacks W1, b1, .* the file has net"),
    ],
)
def test_ch3_weights_that_do_not_fit_are_named(weights, message, tmp_path):
    fio.save_params(tmp_path / "w.npz", weights)
    with pytest.raises(ValueError, match=rf"^--weights {re.escape(str(tmp_path))}/w.npz {message}"):
        ch03_neuralnet_mnist.load_weights(tmp_path / "w.npz")


def test_ch3_weights_of_integers_or_nested_entries_are_named(tmp_path):
    keys = ("W1", "b1", "W2", "b2", "W3", "b3")
    fio.save_params(tmp_path / "i.npz", {k: np.zeros(2, np.int32) for k in keys})
    with pytest.raises(ValueError, match=r"W1 must be floating-point, got int32"):
        ch03_neuralnet_mnist.load_weights(tmp_path / "i.npz")
    nested = {k: np.zeros(2, np.float32) for k in keys} | {"W2": {"a": np.zeros(2, np.float32)}}
    fio.save_params(tmp_path / "n.npz", nested)
    with pytest.raises(ValueError, match=r"W2 is a dict, not an array"):
        ch03_neuralnet_mnist.load_weights(tmp_path / "n.npz")
