"""The experiments' command lines can be trusted (issue 23): one seed validator, no
abbreviated flags, results never silently replaced by a run with other settings, figures
written atomically, accuracies through the library's checked path, clear errors for flags
that contradict each other or would exhaust memory, and a first use that says what to do."""

import importlib
import pkgutil
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from matplotlib.figure import Figure

import experiments
from experiments import (
    _common,
    ch03_neuralnet_mnist,
    ch04_gradient_1d,
    ch06_hyperparameter_optimization,
    ch06_weight_init_activation_histogram,
    ch07_train_convnet,
    ch07_visualize_filter,
    ch08_deep_convnet,
    ch08_half_float_network,
)
from funcnet import io as fio
from funcnet import nets
from funcnet.nets import convnet
from funcnet.train.checkpoint import CheckpointMismatch

EXPERIMENTS = sorted(
    m.name for m in pkgutil.iter_modules(experiments.__path__) if not m.name.startswith("_")
)


def _source(name: str) -> str:
    return (Path(experiments.__path__[0]) / f"{name}.py").read_text()


WITH_SEED = [n for n in EXPERIMENTS if '"--seed"' in _source(n) or "loss_curve_args" in _source(n)]
WITH_DATA = [n for n in EXPERIMENTS if "load_dataset(" in _source(n)]


def test_the_lists_of_experiments_are_not_empty():
    assert len(WITH_SEED) >= 15 and len(WITH_DATA) >= 15 and "ch06_overfit_dropout" in WITH_SEED


@pytest.mark.parametrize("name", WITH_SEED)
@pytest.mark.parametrize("seed", ["4294967296", str(2**63), "-1"])
def test_every_seed_flag_refuses_seeds_jax_would_wrap(name, seed, capsys):
    # 4294967296 used to repeat --seed 0 silently; 2**63 raised OverflowError
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as e:
        module.main(["--seed", seed])
    assert e.value.code == 2
    assert "--seed: must be an integer from 0 to 2**32 - 1" in capsys.readouterr().err


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_no_experiment_accepts_an_abbreviated_flag(name, capsys):
    # ``--hel`` would be ``--help`` (exit 0) with argparse's allow_abbrev
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as e:
        module.main(["--hel"])
    captured = capsys.readouterr()
    assert e.value.code == 2 and "usage:" not in captured.out  # an error, not the help
    assert "unrecognized arguments: --hel" in captured.err or "required" in captured.err


@pytest.mark.parametrize("name", WITH_DATA)
def test_every_experiment_that_loads_data_takes_data_dir(name, capsys):
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    assert "--data-dir" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# Output folders


def test_a_run_with_other_settings_does_not_replace_the_results(tmp_path, capsys):
    out = str(tmp_path)
    ch04_gradient_1d.main(["--out", out])
    before = (tmp_path / "gradient_1d.png").read_bytes()
    with pytest.raises(_common.OtherSettings) as e:
        ch04_gradient_1d.main(["--out", out, "--at", "3", "7"])
    assert re.search(r"--at \[5(\.0)?, 10(\.0)?\] there, \[3\.0, 7\.0\] here", str(e.value))
    assert "--out DIR" in str(e.value) and "--overwrite" in str(e.value)
    assert (tmp_path / "gradient_1d.png").read_bytes() == before  # untouched
    ch04_gradient_1d.main(["--out", out])  # the same settings: rerun freely
    ch04_gradient_1d.main(["--out", out, "--at", "3", "7", "--overwrite"])
    assert (tmp_path / "gradient_1d.png").read_bytes() != before
    with pytest.raises(_common.OtherSettings, match="experiment ch04_gradient_1d there"):
        ch06_hyperparameter_optimization.main(["--out", out, "--trials", "2", "--epochs", "1",
                                               "--images", "50", "--loop-trials", "0",
                                               "--dataset", "mnist-5k"])  # fmt: skip


def test_a_run_that_fails_before_writing_leaves_the_folder_unclaimed(tmp_path):
    params = convnet.init_simple_convnet(jax.random.key(0))  # not a three-layer net
    fio.save_params(tmp_path / "w.npz", params)
    with pytest.raises(ValueError):
        ch03_neuralnet_mnist.main(["--weights", str(tmp_path / "w.npz"), "--out",
                                   str(tmp_path / "o"), "--dataset", "mnist-5k"])  # fmt: skip
    assert not (tmp_path / "o" / _common.SETTINGS_FILE).exists()


def test_half_float_runs_of_the_two_nets_write_separate_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = convnet.init_simple_convnet(jax.random.key(0))
    (tmp_path / "runs" / "ch07_train_convnet" / "mnist-5k").mkdir(parents=True)
    fio.save_params(tmp_path / "runs/ch07_train_convnet/mnist-5k/params.npz", params)
    ch08_half_float_network.main(["--net", "simple", "--dataset", "mnist-5k",
                                  "--test-size", "20"])  # fmt: skip
    assert (tmp_path / "runs/ch08_half_float_network/mnist-5k/simple/metrics.json").exists()


# --------------------------------------------------------------------------------------
# Atomic figures


def test_an_interrupted_figure_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "figure.png"
    fig = _common.figure()
    fig.add_subplot().plot([0, 1])
    _common.save(fig, path)
    whole = path.read_bytes()

    def interrupted(self, f, **kwargs):
        f.write(b"\x89PNG half")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _common.save(fig, path)
    assert path.read_bytes() == whole
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]  # no temporary file left


def test_json_and_text_are_written_atomically(tmp_path, monkeypatch):
    _common.write_json(tmp_path / "m.json", {"a": 1})
    monkeypatch.setattr(_common.json, "dumps", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        _common.write_json(tmp_path / "m.json", {"a": 2})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


# --------------------------------------------------------------------------------------
# Accuracies through the library's checked path


def test_accuracy_of_scores_is_nan_when_a_score_is_not_finite():
    t = np.asarray([0, 1, 0])
    scores = np.asarray([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]], np.float32)
    assert _common.accuracy_of_scores(scores, t) == 1.0
    scores[2] = np.nan  # argmax of NaN scores is 0, the label: it used to count
    assert np.isnan(_common.accuracy_of_scores(scores, t))


@pytest.fixture(scope="module")
def nan_deep_params(tmp_path_factory):
    params = dict(convnet.init_deep_convnet(jax.random.key(0)))
    params["W1"] = params["W1"].at[0, 0, 0, 0].set(np.nan)
    path = tmp_path_factory.mktemp("nan") / "deep.npz"
    fio.save_params(path, params)
    return path


def test_deep_convnet_with_nan_weights_prints_no_accuracy(nan_deep_params, tmp_path, capsys):
    # it used to print "test accuracy 0.2000" (NaN's argmax 0, the share of label 0)
    with pytest.raises(ValueError, match="not finite.*not usable; no accuracy"):
        ch08_deep_convnet.main(
            ["--params", str(nan_deep_params), "--dataset", "mnist-5k", "--test-size", "20",
             "--batch", "20", "--out", str(tmp_path)]
        )  # fmt: skip
    assert "test accuracy" not in capsys.readouterr().out


def test_three_layer_net_with_nan_weights_prints_no_accuracy(tmp_path, capsys):
    params = nets.init_three_layer_net(jax.random.key(0))
    params = {**params, "b3": params["b3"].at[0].set(np.nan)}
    fio.save_params(tmp_path / "w.npz", params)
    with pytest.raises(ValueError, match="not finite"):
        ch03_neuralnet_mnist.main(["--weights", str(tmp_path / "w.npz"), "--dataset",
                                   "mnist-5k", "--out", str(tmp_path)])  # fmt: skip
    assert "Accuracy:" not in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# Flags that contradict each other, or would exhaust memory


@pytest.mark.parametrize(
    "module, argv, message",
    [
        (ch06_hyperparameter_optimization, ["--trials", "3", "--loop-trials", "5"],
         "--loop-trials: at most --trials (3)"),
        (ch06_hyperparameter_optimization, ["--trials", "10000000"],
         "every trial's params are held in memory"),
        (ch06_weight_init_activation_histogram, ["--samples", "100000000000"],
         "activations are held in memory"),
        (ch06_weight_init_activation_histogram, ["--samples", "100000", "--nodes", "4096"],
         "more than 50,000,000"),
    ],
)  # fmt: skip
def test_contradicting_or_memory_exhausting_flags_are_usage_errors(module, argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        module.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


TRAINING = [
    n for n in EXPERIMENTS if "_common.batch_size" in _source(n) or "loss_curve_args" in _source(n)
]


@pytest.mark.parametrize("name", TRAINING)
def test_a_huge_minibatch_is_a_usage_error_not_an_abort(name, capsys):
    assert len(TRAINING) >= 7
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as e:
        module.main(["--batch-size", str(10**10)])
    assert e.value.code == 2 and "a minibatch is held in memory" in capsys.readouterr().err


def test_initial_filters_of_another_net_are_refused(tmp_path):
    fio.save_params(tmp_path / "p.npz", convnet.init_simple_convnet(jax.random.key(0)))
    other = convnet.init_simple_convnet(jax.random.key(0), filter_num=8)
    fio.save_params(tmp_path / "i.npz", other)
    with pytest.raises(ValueError, match="--init .* 8 filters .* 30 of 5x5.*another net"):
        ch07_visualize_filter.main(["--params", str(tmp_path / "p.npz"), "--init",
                                    str(tmp_path / "i.npz"), "--out", str(tmp_path)])  # fmt: skip


def test_deep_convnet_weights_of_another_shape_are_refused(tmp_path):
    params = dict(convnet.init_deep_convnet(jax.random.key(0)))
    params["W7"] = np.zeros((1000, 50), np.float32)
    fio.save_params(tmp_path / "d.npz", params)
    with pytest.raises(ValueError, match=r"W7 \(1000, 50\) \(expected \(1024, 50\)\)"):
        ch08_deep_convnet.load_params(tmp_path / "d.npz")


# --------------------------------------------------------------------------------------
# Checkpoints of another run, first use


def test_train_convnet_refuses_another_seeds_checkpoint_naming_it(tmp_path):
    argv = ["--dataset", "mnist-5k", "--epochs", "1", "--train-size", "100", "--test-size",
            "20", "--eval-sample", "20", "--batch-size", "50", "--checkpoint",
            str(tmp_path / "c.npz")]  # fmt: skip
    ch07_train_convnet.main([*argv, "--out", str(tmp_path / "a")])
    # it used to resume, saving seed 0's params while metrics.json said seed 1, lr 0.01
    with pytest.raises(CheckpointMismatch) as e:
        ch07_train_convnet.main([*argv, "--seed", "1", "--lr", "0.01", "--out", str(tmp_path)])
    assert "lr (checkpoint 0.001, this run 0.01)" in str(e.value)
    assert "seed (checkpoint 0, this run 1)" in str(e.value)
    assert "key" in str(e.value) and "initial params" in str(e.value)


def test_filters_default_to_the_latest_trained_params(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="`python -m experiments.ch07_train_convnet`"):
        ch07_visualize_filter.main([])
    folder = tmp_path / "runs" / "ch07_train_convnet" / "mnist-5k"
    folder.mkdir(parents=True)
    fio.save_params(folder / "params.npz", convnet.init_simple_convnet(jax.random.key(3)))
    ch07_visualize_filter.main([])
    out = capsys.readouterr().out
    assert "using runs/ch07_train_convnet/mnist-5k/params.npz" in out
    assert (tmp_path / "runs" / "ch07_visualize_filter" / "filters.png").exists()


def test_a_missing_weights_file_says_where_the_books_comes_from(capsys):
    with pytest.raises(SystemExit) as e:
        ch03_neuralnet_mnist.main(["--weights", "sample_weight.pkl"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "ch03/sample_weight.pkl in the book's code repository" in err
    assert "python -m experiments.ch03_train_three_layer_net" in err


def test_the_subset_note_is_printed_in_full_once_per_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUNCNET_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    first = _common.load_dataset("auto", data_dir=empty)
    if first.notice is None:
        pytest.skip("full MNIST is installed system-wide: auto needs no note")
    long_note = capsys.readouterr().out
    _common.load_dataset("auto", data_dir=empty)
    short_note = capsys.readouterr().out
    assert len(re.findall("note:", long_note)) == len(re.findall("note:", short_note)) == 1
    assert "looked in" in long_note and "looked in" not in short_note
    assert short_note.count("\n") == 2  # the one-line note and the data set line
