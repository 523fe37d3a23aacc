"""Several processes with JAX's own distributed runtime: real processes on 127.0.0.1,
started with funcnet.launch (or directly, where the launcher's own stopping would hide
what is tested), each bounded by a timeout.

The worker (tests/_distributed_worker.py) trains a tiny net with ``fit`` (the whole data
in every process, or each process's rows) and 4 runs with ``fit_many``, and writes what
it got in every process.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from funcnet import distributed, launch

ROOT = Path(__file__).resolve().parents[1]
WORKER = [sys.executable, str(ROOT / "tests" / "_distributed_worker.py")]
TIMEOUT = 420  # seconds for one run of processes (JAX imports and compiles on a busy CPU)
# explicit timeouts: a lost process is found within seconds; a finished one waits for the
# others at exit (a busy machine may keep them a while)
FAST = {"FUNCNET_HEARTBEAT_TIMEOUT": "5", "FUNCNET_SHUTDOWN_TIMEOUT": "120"}


_CACHE: dict[str, str] = {}  # the module's compilation cache folder (fixture below)


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    """The workers of this module's runs share the programs they compile (a persistent
    compilation cache, one folder per process count: see the worker), so that
    a later run of the same task reads them instead of compiling them again."""
    _CACHE["FUNCNET_TEST_COMPILATION_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
    _CACHE.clear()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.pop("XLA_FLAGS", None)
    env.update(PYTHONPATH=str(ROOT), FUNCNET_INIT_TIMEOUT="60", **FAST, **_CACHE)
    env.update(extra)
    return env


def _reset_signals() -> None:  # as a fresh terminal has them (xdist may ignore SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _launch(args: list[str], n: int = 2, timeout: float = TIMEOUT, **env: str) -> tuple[int, str]:
    """funcnet.launch in this process (its children are real processes); returns the
    exit status and the prefixed output."""
    out = io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_env(**env))
    try:
        status = launch.launch([*WORKER, *args], n, timeout=timeout, grace=2.0, stdout=out)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return status, out.getvalue()


def _start(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*WORKER, *args],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_reset_signals,
    )


def _finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{out[-3000:]}")
    return out


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return dict(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Every task on 2 processes, the last one (fit_ckpt) stopped by every process after
    iteration 12's checkpoint; at the same time the references in one process (one
    device, and a mesh of two devices in that process)."""
    d = tmp_path_factory.mktemp("distributed")
    one = _start(["fit", "fit_1dev", "fit_many", "--devices", "2", "--out", str(d / "one")])
    tasks = ["fit", "fit_shard", "fit_many", "fit_ckpt"]
    ckpt = ["--checkpoint", str(d / "ckpt" / "run.npz"), "--stop-at", "12"]
    (d / "ckpt").mkdir()
    status, out = _launch([*tasks, *ckpt, "--out", str(d / "proc2")])
    outputs = _finish(one)
    assert one.returncode == 0, outputs[-4000:]
    assert status == 3, out[-4000:]  # fit_ckpt: every process exits 3 after iteration 12
    assert "[launch] process 0 exited with status 3" in out or "process 1 exited" in out
    return d


def _assert_equal(a: dict, b: dict, exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=2e-6, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("task", ["fit", "fit_shard", "fit_many"])
def test_every_process_gets_the_same_result(runs, task):
    _assert_equal(_load(runs / f"proc2.{task}.0.npz"), _load(runs / f"proc2.{task}.1.npz"))


@pytest.mark.parametrize("task", ["fit", "fit_shard"])
def test_fit_on_two_processes_equals_one(runs, task):
    two = _load(runs / f"proc2.{task}.0.npz")
    # bitwise like one process with the same two devices (the same reduction order) ...
    _assert_equal(two, _load(runs / "one.fit.0.npz"))
    # ... and like one device up to float32 rounding (the gradient summed in two halves)
    one = _load(runs / "one.fit_1dev.0.npz")
    _assert_equal(two, one, exact=False)
    assert not np.array_equal(two["params_W1"], np.zeros_like(two["params_W1"]))
    assert two["loss"].shape == (24,) and two["train_acc"].shape == (6,)


def test_fit_many_split_over_two_processes_equals_one(runs):
    two = _load(runs / "proc2.fit_many.0.npz")
    _assert_equal(two, _load(runs / "one.fit_many.0.npz"))
    assert two["loss"].shape == (4, 24)
    assert len({float(v) for v in two["loss"][:, -1]}) == 4  # four different runs


def test_checkpoint_and_resume_on_two_processes(runs, tmp_path):
    ckpt = runs / "ckpt" / "run.npz"
    # written by process 0 alone, whole: one file, no temporary file left
    assert [p.name for p in ckpt.parent.iterdir()] == ["run.npz"]
    from funcnet import io as fio

    assert fio.load_params(ckpt)["losses"].shape == (13,)  # iterations 0..12 recorded
    status, text = _launch(["fit_ckpt", "--checkpoint", str(ckpt), "--out", str(tmp_path / "r")])
    assert status == 0, text[-4000:]
    uninterrupted = _load(runs / "one.fit.0.npz")  # the same two devices in one process
    for process in (0, 1):
        _assert_equal(_load(tmp_path / f"r.fit_ckpt.{process}.npz"), uninterrupted)
    assert [p.name for p in ckpt.parent.iterdir()] == ["run.npz"]


def test_a_killed_process_stops_the_others_with_an_error_naming_it(tmp_path):
    port = launch.free_port()
    env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2"}
    args = ["fit", "--die-at", "8", "--out", str(tmp_path / "x")]
    survivor = _start(args, JAX_PROCESS_ID="0", **env)
    victim = _start(args, JAX_PROCESS_ID="1", **env)
    victim_out = _finish(victim)
    t_dead = time.monotonic()
    out = _finish(survivor, timeout=60)
    waited = time.monotonic() - t_dead
    assert victim.returncode == -signal.SIGKILL, victim_out[-2000:]
    assert survivor.returncode != 0, out[-4000:]
    # funcnet's error, or JAX's own report of the process that stopped heartbeating
    assert "process(es) [1] of 2 stopped" in out or "stopped sending heartbeats):\n1" in out, out[
        -4000:
    ]
    assert waited < 60
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("differ", ["params", "lr"])
def test_processes_that_make_different_calls_stop_with_an_error(differ):
    # a learning rate that differs lives only inside the optimizer (SGD has no state)
    status, out = _launch(["fit", "--differ", differ, "--out", "/nonexistent/x"], timeout=TIMEOUT)
    assert status == 1, out[-4000:]
    assert "fit: every process must make the same call" in out, out[-4000:]
    assert "process(es) [1] differ from process 0" in out


def test_the_launcher_stops_the_others_when_one_fails():
    out = io.StringIO()
    code = (
        "import os, signal, time\n"
        "if os.environ['JAX_PROCESS_ID'] == '1': os.kill(os.getpid(), signal.SIGKILL)\n"
        "time.sleep(60)\n"
    )
    t0 = time.monotonic()
    status = launch.launch([sys.executable, "-c", code], 3, timeout=30, grace=2, stdout=out)
    assert status == 128 + signal.SIGKILL
    assert "process 1 was killed by SIGKILL; stopping process(es) [0, 2]" in out.getvalue()
    assert time.monotonic() - t0 < 25


def test_the_launcher_stops_a_worker_that_catches_sigterm_at_once():
    # as jax.distributed.initialize's preemption notifier does: SIGTERM did not stop such a
    # worker, which trained on until the SIGKILL after the grace period
    out = io.StringIO()
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('SIGTERM caught', flush=True))\n"
        "if os.environ['JAX_PROCESS_ID'] == '1': sys.exit(3)\n"
        "try:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    print('interrupted', flush=True); sys.exit(130)\n"
    )
    t0 = time.monotonic()
    status = launch.launch([sys.executable, "-c", code], 2, timeout=50, grace=30, stdout=out)
    assert status == 3, out.getvalue()
    assert "[0] interrupted" in out.getvalue(), out.getvalue()
    assert time.monotonic() - t0 < 20, out.getvalue()


def test_the_launcher_streams_with_prefixes_and_reports_a_failure_status():
    out = io.StringIO()
    code = (
        "import os, sys; i = os.environ['JAX_PROCESS_ID']; print('hello', i); sys.exit(int(i) * 5)"
    )
    status = launch.launch([sys.executable, "-c", code], 2, timeout=30, grace=2, stdout=out)
    text = out.getvalue()
    assert status == 5 and "[0] hello 0" in text and "[1] hello 1" in text
    assert "process 1 exited with status 5" in text


def test_an_unreachable_coordinator_fails_within_the_timeout():
    port = launch.free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(distributed.DistributedError, match=rf"nothing answers at 127.0.0.1:{port}"):
        distributed.initialize(f"127.0.0.1:{port}", 2, 1, init_timeout=2)
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("pid", [2, -1])
def test_a_process_id_outside_the_count_is_refused(pid):
    with pytest.raises(distributed.DistributedError, match=r"process id must be in 0 \.\. 1"):
        distributed.initialize("127.0.0.1:1", 2, pid, init_timeout=2)


@pytest.mark.parametrize(
    "address, count, message",
    [
        ("", 2, r"must be host:port with a port in 1\.\.65535, got ''"),
        ("127.0.0.1:99999", 2, r"port in 1\.\.65535, got '127\.0\.0\.1:99999'"),
        ("127.0.0.1", 2, r"must be host:port"),
        ("127.0.0.1:1", 0, r"process count \(JAX_NUM_PROCESSES\) must be >= 1, got 0"),
    ],
)
def test_malformed_settings_are_named_before_jax_reads_them(address, count, message, monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", address)
    with pytest.raises(distributed.DistributedError, match=message):
        distributed.initialize(num_processes=count, process_id=0, init_timeout=2)


def test_a_coordinator_port_in_use_is_named_in_process_0():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(distributed.DistributedError, match="the coordinator's port is in use"):
            distributed.initialize(f"127.0.0.1:{port}", 2, 0, init_timeout=2)
        assert launch.port_in_use(port)
    assert not launch.port_in_use(port)


def test_the_launcher_refuses_a_port_in_use(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            launch.main(["-n", "2", "--port", str(port), "--", sys.executable, "-c", "pass"])
    assert info.value.code == 2
    assert f"--port {port}: 127.0.0.1:{port} is in use" in capsys.readouterr().err


def test_a_wrong_process_count_fails_with_a_clear_error():
    # one process started, told there are two: it waits for the other, then says why
    env = {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{launch.free_port()}",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "0",
        "FUNCNET_INIT_TIMEOUT": "3",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "from funcnet import distributed; distributed.initialize()"],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_reset_signals,
    )
    out = _finish(proc, timeout=120)
    assert proc.returncode != 0
    assert "did not all connect within 3 s" in out, out[-3000:]
    assert "Check JAX_NUM_PROCESSES" in out


def test_process_data_must_be_whole_or_shard():
    import jax

    from funcnet import nets
    from funcnet.train import fit

    net = nets.two_layer_net("relu")
    params = nets.init_two_layer_net(jax.random.key(0), 4, 3, 2)
    x, t = np.ones((8, 4), np.float32), np.zeros(8, np.int32)
    with pytest.raises(ValueError, match=r"process_data must be one of \('whole', 'shard'\)"):
        fit(params, (x, t), (x, t), key=jax.random.key(1), loss_fn=net.loss,
            predict_fn=net.predict, iters=1, batch_size=4, process_data="rows")  # fmt: skip
