"""fit(checkpoint_path=...): a run killed mid-way and resumed ends exactly where an
uninterrupted run ends."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import io, nets, optimizers, train
from funcnet.train.checkpoint import CheckpointMismatch

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import jax, numpy as np, optax
    from funcnet import io, nets, train

    path, out, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reference = sys.argv[4] if len(sys.argv) > 4 else None
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 12)).astype(np.float32)
    t = (x[:, :4].sum(axis=1) > 0).astype(np.int32)
    net = nets.two_layer_net("relu")
    params = nets.init_two_layer_net(jax.random.key(1), 12, 16, 2, weight_init_std=0.3)


    def run(checkpoint_path, out, kill_after):
        seen = []

        def on_progress(p):
            seen.append(p.iteration)
            if len(seen) == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no last words

        trained, history = train.fit(
            params, (x[:240], t[:240]), (x[240:], t[240:]), key=jax.random.key(2),
            loss_fn=net.loss, predict_fn=net.predict, iters=130, batch_size=20,
            optimizer=optax.adam(0.01), callback=on_progress, checkpoint_path=checkpoint_path,
        )
        io.save_params(out, {"params": trained, "loss": history.loss,
                             "test_acc": history.test_acc,
                             "first_iteration_run_here": np.asarray(seen[0])})


    if reference is not None:  # the uninterrupted run (no checkpoint) first
        run(None, reference, 0)
    run(path, out, kill_after)
    """
)


def _run(tmp_path, checkpoint, out, kill_after=0, reference=None):
    """The script in a fresh process; the processes of one test share a persistent
    compilation cache (the resumed run reads the programs the first process compiled)."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    extra = [] if reference is None else [str(reference)]
    return subprocess.run(
        [sys.executable, str(script), str(checkpoint), str(out), str(kill_after), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_a_run_killed_with_sigkill_resumes_to_exactly_the_uninterrupted_params(tmp_path):
    # one process runs uninterrupted, then again with a checkpoint and is killed; a fresh
    # process resumes from the checkpoint alone
    ckpt = tmp_path / "run.ckpt.npz"
    whole = tmp_path / "whole.npz"
    killed = _run(tmp_path, ckpt, tmp_path / "never.npz", kill_after=5, reference=whole)
    assert killed.returncode == -9, killed.stderr
    assert whole.exists() and ckpt.exists() and not (tmp_path / "never.npz").exists()
    resumed = _run(tmp_path, ckpt, tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr
    a, b = io.load_params(whole), io.load_params(tmp_path / "resumed.npz")
    # 240 / 20 = 12 per epoch: segments end after 1, 13, 25, 37, 49; the kill came after 49
    assert int(b["first_iteration_run_here"]) == 61
    for k in a["params"]:
        np.testing.assert_array_equal(a["params"][k], b["params"][k])
    np.testing.assert_array_equal(a["loss"], b["loss"])  # the history survived too
    np.testing.assert_array_equal(a["test_acc"], b["test_acc"])


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    t = (x[:, 0] > 0).astype(np.int32)
    net = nets.two_layer_net("relu")
    params = nets.init_two_layer_net(jax.random.key(1), 5, 4, 2)
    common = dict(
        key=jax.random.key(0),
        loss_fn=net.loss,
        predict_fn=net.predict,
        iters=12,
        batch_size=10,
        checkpoint_path=tmp_path / "c.npz",
    )
    train.fit(params, (x, t), (x, t), **common)
    with pytest.raises(CheckpointMismatch, match="written by another run"):
        train.fit(params, (x, t), (x, t), **{**common, "batch_size": 12})
    with pytest.raises(CheckpointMismatch):
        other = nets.init_two_layer_net(jax.random.key(1), 5, 7, 2)
        train.fit(other, (x, t), (x, t), **common)
    # an explicit optimizer hides its learning rate: fit cannot tell it equals the default's
    with pytest.raises(CheckpointMismatch, match=r"lr \(only in the checkpoint\)"):
        train.fit(params, (x, t), (x, t), **{**common, "optimizer": optax.sgd(0.1)})
    # that a finished run's checkpoint resumes to its end at once (same params, nothing
    # rerun): test_the_same_run_resumes_its_own_checkpoint_to_the_same_params


# --------------------------------------------------------------------------------------
# The fingerprint covers the key, the initial params, the data and the caller's settings


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A finished 12-iteration run's checkpoint, and the arguments that wrote it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    t = (x[:, 0] > 0).astype(np.int32)
    net = nets.two_layer_net("relu")
    path = tmp_path_factory.mktemp("ckpt") / "c.npz"
    args = dict(
        params=nets.init_two_layer_net(jax.random.key(1), 5, 4, 2),
        train=(x, t),
        test=(x[:20], t[:20]),
        key=jax.random.key(99),
        loss_fn=net.loss,
        predict_fn=net.predict,
        iters=12,
        batch_size=10,
        optimizer=optax.adam(0.01),
        checkpoint_settings={"lr": 0.01, "seed": 0},
    )
    p, _ = train.fit(**args, checkpoint_path=path)
    return path, args, p


def _change(args, what):
    x, t = args["train"]
    if what == "key":
        return {"key": jax.random.key(1)}
    if what == "initial params":
        return {"params": {**args["params"], "b1": args["params"]["b1"] + 1.0}}
    if what == "train data":  # same shapes and dtypes, one value changed
        x = x.copy()
        x[3, 2] = 7.0
        return {"train": (x, t)}
    if what == "test data":
        return {"test": (args["test"][0], 1 - args["test"][1])}
    if what == "lr":
        return {"checkpoint_settings": {"lr": 0.001, "seed": 0}}
    if what == "seed":
        return {"checkpoint_settings": {"lr": 0.01, "seed": 1}}
    if what == "optimizer lr":  # the learning rate inside the optimizer, not in the settings
        return {"optimizer": optax.adam(0.1)}
    if what == "optimizer beta1":
        return {"optimizer": optax.adam(0.01, b1=0.5)}
    if what == "optimizer rule":  # the book's Adam: its state differs from optax's too
        return {"optimizer": optimizers.adam(0.01)}
    if what == "loss_fn":
        net = nets.two_layer_net("relu")
        return {"loss_fn": lambda p, x, t: net.loss(p, x, t) + 0.01 * jnp.sum(p["W1"] ** 2)}
    if what == "predict_fn":
        net = nets.two_layer_net("sigmoid")
        return {"predict_fn": net.predict}
    raise AssertionError(what)


@pytest.mark.parametrize(
    "what, named",
    [
        ("key", "key"),
        ("initial params", "initial params"),
        ("train data", "train data"),
        ("test data", "test data"),
        ("lr", "lr (checkpoint 0.01, this run 0.001)"),
        ("seed", "seed (checkpoint 0, this run 1)"),
        ("optimizer lr", "optimizer (another rule or other hyperparameters"),
        ("optimizer beta1", "optimizer (another rule or other hyperparameters"),
        ("loss_fn", "loss_fn (another loss"),
        ("predict_fn", "predict_fn (another prediction"),
    ],
)
def test_a_checkpoint_of_a_run_with_other_values_is_refused_naming_them(written, what, named):
    path, args, _ = written
    with pytest.raises(CheckpointMismatch, match="written by another run") as e:
        train.fit(**{**args, **_change(args, what)}, checkpoint_path=path)
    assert named in str(e.value) and "; " not in str(e.value).split("differs in ")[1]


def test_a_checkpoint_of_a_run_with_another_optimizer_rule_is_refused(written):
    path, args, _ = written
    with pytest.raises(CheckpointMismatch, match="written by another run") as e:
        train.fit(**{**args, **_change(args, "optimizer rule")}, checkpoint_path=path)
    assert "optimizer (another rule or other hyperparameters" in str(e.value)


def test_the_same_run_resumes_its_own_checkpoint_to_the_same_params(written):
    path, args, p = written
    # a finished run's checkpoint resumes to its end at once: same params, nothing rerun
    again, history = train.fit(**args, checkpoint_path=path)
    assert history.iterations == 12 and history.final_iteration == 12
    for k in p:
        np.testing.assert_array_equal(p[k], again[k])


def test_checkpoint_settings_are_checked(written, tmp_path):
    _, args, _ = written
    with pytest.raises(ValueError, match="checkpoint_settings given without checkpoint_path"):
        train.fit(**args)
    with pytest.raises(ValueError, match="fills in itself"):
        train.fit(**{**args, "checkpoint_settings": {"key": 1}}, checkpoint_path=tmp_path / "c.npz")


def test_a_checkpoint_without_a_recorded_fingerprint_is_refused(written, tmp_path):
    path, args, _ = written
    saved = io.load_params(path)
    saved["fingerprint"] = np.frombuffer(b"0123456789abcdef", np.uint8)  # the old format
    io.save_params(tmp_path / "old.npz", saved)
    with pytest.raises(CheckpointMismatch, match="records no settings"):
        train.fit(**args, checkpoint_path=tmp_path / "old.npz")


def test_a_new_but_equal_loss_optimizer_and_net_resume_the_checkpoint(written):
    # the fingerprint hashes what the functions compute, not which Python objects they are
    path, args, p = written
    net = nets.two_layer_net("relu")
    again, history = train.fit(
        **{
            **args,
            "loss_fn": lambda params, x, t: net.loss(params, x, t),
            "predict_fn": net.predict,
            "optimizer": optax.adam(0.01),
        },
        checkpoint_path=path,
    )
    assert history.iterations == 12
    for k in p:
        np.testing.assert_array_equal(p[k], again[k])


def test_an_array_the_loss_closes_over_is_part_of_the_fingerprint(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    t = (x[:, 0] > 0).astype(np.int32)
    net = nets.two_layer_net("relu")

    def weighted_loss(class_weights):
        def loss(params, xb, tb):
            return net.loss(params, xb, tb) * class_weights[0] + 0 * jnp.sum(class_weights)

        return loss

    args = dict(
        params=nets.init_two_layer_net(jax.random.key(1), 5, 4, 2),
        train=(x, t),
        test=(x, t),
        key=jax.random.key(0),
        predict_fn=net.predict,
        iters=8,
        batch_size=10,
        checkpoint_path=tmp_path / "c.npz",
    )
    train.fit(**args, loss_fn=weighted_loss(jnp.asarray([1.0, 1.0])))
    train.fit(**args, loss_fn=weighted_loss(jnp.asarray([1.0, 1.0])))  # equal bytes: resumes
    with pytest.raises(CheckpointMismatch, match=r"differs in loss_fn \(another loss"):
        train.fit(**args, loss_fn=weighted_loss(jnp.asarray([1.0, 2.0])))


# --------------------------------------------------------------------------------------
# A checkpoint path that cannot be written fails at once, before anything is traced


def _never_called(*args):
    raise AssertionError("traced before the checkpoint path was checked")


def _fit_never_running(checkpoint_path):
    """fit with a loss and prediction that raise if ever traced: only the checkpoint
    path's check can stop it."""
    x = np.zeros((20, 3), np.float32)
    t = np.zeros(20, np.int32)
    return train.fit(
        {"W": jnp.zeros((3, 2))},
        (x, t),
        (x, t),
        key=jax.random.key(0),
        loss_fn=_never_called,
        predict_fn=_never_called,
        iters=2,
        checkpoint_path=checkpoint_path,
    )


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/c.npz", r"checkpoint_path .*missing/c.npz: the folder .*missing does not exist"),
        ("a_file/c.npz", r"checkpoint_path .*a_file/c.npz: .*a_file is not a folder"),
        ("a_folder", r"checkpoint_path .*a_folder is a folder; pass a file path"),
        ("", r"checkpoint_path is empty"),
    ],
)
def test_a_checkpoint_path_that_cannot_be_written_fails_before_anything_is_traced(
    tmp_path, where, message
):
    # fit(checkpoint_path="/missing_dir/z.npz") compiled and trained a whole segment first
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    path = str(tmp_path / where) if where else ""
    with pytest.raises(ValueError, match=rf"^fit: {message}"):
        _fit_never_running(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_checkpoint_in_a_read_only_folder_fails_before_anything_is_traced(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=r"the folder .*ro is not writable by this user"):
            _fit_never_running(folder / "c.npz")
    finally:
        folder.chmod(0o700)


def test_a_checkpoint_path_of_another_type_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"^fit: checkpoint_path must be a str or os.PathLike"):
        _fit_never_running(3)
