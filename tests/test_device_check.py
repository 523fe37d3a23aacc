"""The device check (experiments/device_check.py, .ci/device-check): steps bounded and
independent, figures read from each step's output, the benchmark commands accepted by the
benchmark's own parser, a quick end-to-end run on the CPU, and the install step from the
wheel folder alone (no index) in a fresh virtual environment."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from experiments import benchmark, device_check

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _step(name, code, timeout_s=30.0, figures=device_check.pytest_figures):
    return device_check.Step(name, (PY, "-c", code), timeout_s, figures)


def test_a_failing_or_hanging_step_is_recorded_and_the_next_one_still_runs(tmp_path):
    env = device_check.child_env()
    steps = [
        _step("fails", "import sys; print('3 passed, 1 failed in 0.1s'); sys.exit(1)"),
        _step("hangs", "import time; print('started', flush=True); time.sleep(60)", 1.0),
        _step("runs", "print('5 passed, 2 skipped in 0.3s')"),
    ]
    records = [device_check.run_step(s, tmp_path, env) for s in steps]
    assert [r["status"] for r in records] == ["failed", "timeout", "ok"]
    assert [r["returncode"] for r in records] == [1, None, 0]
    assert records[0]["figures"] == {
        "passed": 3,
        "failed": 1,
        "summary": "3 passed, 1 failed in 0.1s",
    }
    assert records[1]["seconds"] < 30 and "started" in records[1]["output_tail"]
    assert records[2]["figures"]["passed"] == 5 and records[2]["figures"]["skipped"] == 2


def test_a_model_the_benchmark_does_not_offer_is_skipped_with_a_note(tmp_path):
    message = (
        "python -m experiments.benchmark: error: argument --model: invalid choice: "
        "'deep-convnet' (choose from 'two-layer', 'simple-convnet')"
    )
    code = f"import sys; print({message!r}, file=sys.stderr); sys.exit(2)"
    step = _step("deep-convnet", code, figures=device_check.convnet_figures)
    record = device_check.run_step(step, tmp_path, device_check.child_env())
    assert record["status"] == "skipped" and record["returncode"] == 2
    assert record["note"] == "this benchmark has no --model deep-convnet: skipped"


def test_figures_are_read_from_the_check_table_and_the_benchmark_results(tmp_path):
    table = "mul  scalars  float64  0.0  0.0  1e-14  1e-13  PASS\n"
    table += "relu batch1   float32  0.1  0.1  0.1    0.1    FAIL\n"
    table += "\n107 passed, 1 failed (relative tolerances: ...)\n"
    figures = device_check.check_figures(table, tmp_path)
    assert figures["passed"] == 107 and figures["failed"] == 1
    assert figures["failed_rows"] == ["relu batch1   float32  0.1  0.1  0.1    0.1    FAIL"]
    (tmp_path / "results.json").write_text(
        json.dumps({"ms_per_iteration": {"funcnet": 2.0, "torch": 4.0}, "other": 1})
    )
    conv = device_check.convnet_figures("", tmp_path)
    assert conv == {"ms_per_iteration": {"funcnet": 2.0, "torch": 4.0}}


def test_the_benchmark_commands_are_accepted_by_the_benchmarks_parser(tmp_path):
    for quick in ([], ["--quick"]):
        args = device_check.parse_args([*quick, "--out", str(tmp_path)])
        steps = {s.name: s for s in device_check.plan(args, tmp_path)}
        assert list(steps) == list(device_check.STEPS)
        for name in ("ch5", "simple-convnet", "deep-convnet"):
            argv = list(steps[name].argv[3:])  # after python -m experiments.benchmark
            model = argv[argv.index("--model") + 1] if "--model" in argv else "two-layer"
            if model not in benchmark.MODELS:
                continue  # run_step records it as skipped (the test above)
            parsed = benchmark.parse_args(argv)
            assert parsed.model == model and parsed.out == tmp_path / name


def test_bad_steps_are_argparse_errors(capsys):
    for bad in ("nope", "check,check", ""):
        with pytest.raises(SystemExit):
            device_check.parse_args(["--steps", bad])
        assert "expected distinct steps" in capsys.readouterr().err


def test_quick_run_on_the_cpu_writes_one_summary_to_out(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("OUT", str(tmp_path))
    summary = device_check.main(["--quick", "--steps", "environment,ch5"])
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert [s["status"] for s in written["steps"]] == ["ok", "ok"], written["steps"]
    assert written["ok"] is True
    env = written["environment"]
    assert env["jax_backend"] == "cpu" and env["jax"] and env["funcnet"]
    peers = written["steps"][1]["figures"]["peers"]
    assert peers["fit"]["status"] == "ok" and peers["fit"]["with_compile_seconds"] > 0
    assert peers["jax"]["train_acc"] == pytest.approx(peers["fit"]["train_acc"], abs=0.02)


def _prepared_wheels() -> Path:
    wheels = ROOT / ".whl"
    if not list(wheels.glob("*.whl")):
        pytest.skip("no prepared wheels: run .ci/device-check --prepare (needs the index)")
    return wheels


def test_install_step_needs_only_the_wheel_folder(tmp_path):
    """A fresh environment that sees only this interpreter's jax and numpy (as the GPU
    machine has its own): the install step adds funcnet and the missing wheels with
    --no-index, and funcnet then imports and loads the embedded MNIST digits."""
    wheels = _prepared_wheels()
    env_dir = tmp_path / "venv"
    # no pip of its own (ensurepip costs about 4 CPU-seconds): the machine's pip, below
    venv.create(env_dir, system_site_packages=False, with_pip=False)
    python = env_dir / "bin" / "python"
    # the machine's own JAX stack: expose just jax, jaxlib, numpy and their dependencies,
    # and pip (it installs into the environment that runs it, as a venv's own pip does)
    import jax
    import jaxlib
    import ml_dtypes
    import numpy
    import opt_einsum
    import pip
    import scipy

    site = tmp_path / "machine-site"
    site.mkdir()
    for module in (jax, jaxlib, numpy, ml_dtypes, opt_einsum, scipy, pip):
        src = Path(module.__file__).parent
        (site / src.name).symlink_to(src)
        for info in src.parent.glob(f"{src.name.replace('-', '_')}-*.dist-info"):
            (site / info.name).symlink_to(info)
    pth = next((env_dir / "lib").glob("python3*/site-packages"))
    (pth / "machine.pth").write_text(f"{site}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PYTHON=str(python), PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull)
    env["DEVICE_CHECK_WHEELS"] = str(wheels)
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "device-check"), "--install-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "+ install mode: pip" in done.stdout and "funcnet from" in done.stdout
    load = (
        "from funcnet.datasets import mnist5k; (x, t), _ = mnist5k.load_uint8(); "
        "import sys; print(x.shape, sorted(set(t.tolist())) == list(range(10)), "
        "'scipy.sparse' in sys.modules or 'pandas' in sys.modules or 'sklearn' in sys.modules)"
    )
    loaded = subprocess.run(
        [str(python), "-c", load], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert loaded.stdout.split() == ["(4000,", "28,", "28)", "True", "False"], loaded.stderr
