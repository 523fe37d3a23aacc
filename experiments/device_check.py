"""The device check: funcnet's verification, device tests and benchmarks on whatever
accelerator JAX finds, with one JSON summary.

Made for a borrowed GPU machine that runs one command of a few minutes with no package
index (``.ci/device-check`` installs funcnet and runs this; docs/device-check.md). Each
step is a separate Python process with its own time limit, so that a step that fails,
hangs or runs out of device memory does not stop the next one, and JAX's memory
preallocation in one step cannot starve another:

    environment     versions (Python, JAX, jaxlib, PyTorch, optax, chex), JAX's backend and
                    devices, PyTorch's CUDA device
    check           python -m funcnet.check (every custom rule three ways)
    tests           pytest on the tests that exercise devices (parallel/mesh, layers, conv)
    ch5             python -m experiments.benchmark (ch5 protocol: fit, plain JAX, PyTorch)
    simple-convnet  python -m experiments.benchmark --model simple-convnet
    deep-convnet    python -m experiments.benchmark --model deep-convnet (skipped, with a
                    note, where the benchmark does not offer that model)

The summary (``summary.json`` in ``$OUT`` if that is set, else in ``--out``, default
``runs/device_check``) holds the versions, the device and, for each step, its status
(``ok``, ``failed``, ``timeout`` or ``skipped``), wall time, exit code, the figures it
measured and the tail of its output. It is rewritten (atomically) after every step, so
whatever stops the run leaves the steps done so far. Exit status 0 when no step failed.

Run: ``python -m experiments.device_check`` (about 7 minutes on one GPU), or
``--quick`` (tiny settings: tests/test_device_check.py runs it on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from experiments import _common

NAME = "device_check"
OUT_ENV = "OUT"  # the device machine's output folder: what is written there comes back
OUTPUT_TAIL = 4000  # characters of each step's output kept in the summary

# The tests that exercise devices: the data-parallel mesh, every layer rule (custom_vjp
# under jit/vmap, float32 and float64) and the convolution rules against XLA's.
DEVICE_TESTS = ("tests/test_parallel.py", "tests/test_layers.py", "tests/test_conv.py")
# --quick: one mesh test, enough to see the wiring.
QUICK_TESTS = ("tests/test_parallel.py::test_a_one_device_mesh_changes_nothing",)

# (step, seconds) time limits: about 7 minutes in all, the GPU machine's one call being 8.
TIMEOUTS = {
    "environment": 45,
    "check": 100,
    "tests": 120,
    "ch5": 60,
    "simple-convnet": 45,
    "deep-convnet": 60,
}
QUICK_TIMEOUTS = dict.fromkeys(TIMEOUTS, 180)
STEPS = tuple(TIMEOUTS)

_ENVIRONMENT = r"""
import importlib, json, platform, sys
out = {"python": sys.version.split()[0], "platform": platform.platform()}
for name in ("jax", "jaxlib", "numpy", "optax", "chex", "torch", "funcnet"):
    try:
        module = importlib.import_module(name)
        out[name] = getattr(module, "__version__", "?")
    except Exception as e:
        out[name] = None
        out[name + "_error"] = f"{type(e).__name__}: {e}"
import jax
out["jax_backend"] = jax.default_backend()
out["jax_devices"] = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
out["device"] = jax.devices()[0].device_kind
try:
    import torch
    out["torch_cuda"] = torch.cuda.is_available()
    out["torch_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
except Exception as e:
    out["torch_cuda"] = None
    out["torch_error"] = f"{type(e).__name__}: {e}"
print("DEVICE_CHECK_JSON " + json.dumps(out))
"""


class Step(NamedTuple):
    """One step: a command with a time limit, and how to read its figures.

    ``figures(output, folder)`` gets the step's output (stdout and stderr) and its own
    folder (where a benchmark wrote ``results.json``) and returns the figures to keep.
    """

    name: str
    argv: tuple[str, ...]
    timeout_s: float
    figures: Callable[[str, Path], dict[str, Any]]


# --------------------------------------------------------------------------------------
# Figures of each kind of step


def environment_figures(output: str, folder: Path) -> dict[str, Any]:
    """The JSON line the environment step printed."""
    for line in output.splitlines():
        if line.startswith("DEVICE_CHECK_JSON "):
            return json.loads(line.split(" ", 1)[1])
    return {}


def check_figures(output: str, folder: Path) -> dict[str, Any]:
    """``funcnet.check``'s closing counts (``108 passed, 0 failed (...)``) and the rows
    that failed."""
    figures: dict[str, Any] = {}
    closing = re.findall(r"^(\d+) passed, (\d+) failed.*$", output, re.M)
    if closing:
        figures["passed"], figures["failed"] = (int(n) for n in closing[-1])
    figures["failed_rows"] = [ln for ln in output.splitlines() if ln.rstrip().endswith(" FAIL")]
    return figures


def pytest_figures(output: str, folder: Path) -> dict[str, Any]:
    """pytest's closing counts (``passed``, ``failed``, ``skipped``, ``errors``)."""
    counts: dict[str, Any] = {}
    lines = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    if lines:
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", lines[-1])
        for n, what in found:
            counts["errors" if what.startswith("error") else what] = int(n)
        counts["summary"] = lines[-1].strip("= ")
    return counts


def _results(folder: Path) -> dict[str, Any]:
    path = folder / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def ch5_figures(output: str, folder: Path) -> dict[str, Any]:
    """Each peer's seconds (with and without compilation) and accuracies; fit's ratios."""
    record = _results(folder)
    keep = ("status", "reason", "seconds", "compile_seconds", "with_compile_seconds")
    keep += ("steps_per_s", "train_acc", "test_acc", "ratio_to_fit")
    peers = {r["id"]: {k: r.get(k) for k in keep if k in r} for r in record.get("peers", [])}
    return {
        "iters": record.get("protocol", {}).get("iters"),
        "repeats": record.get("repeats"),
        "dataset": record.get("dataset", {}).get("used"),
        "peers": peers,
        "comparisons": record.get("comparisons"),
        "device": record.get("machine", {}).get("device"),
    }


def convnet_figures(output: str, folder: Path) -> dict[str, Any]:
    """Milliseconds per training iteration of each peer and their ratios."""
    record = _results(folder)
    keep = ("ms_per_iteration", "ratio_to_torch", "ratio_to_torch_nhwc", "ratio_to_plain_jax")
    keep += ("notes", "settings")
    return {k: record[k] for k in keep if k in record}


# --------------------------------------------------------------------------------------
# The plan


def plan(args: argparse.Namespace, folder: Path) -> list[Step]:
    """The steps ``args`` asks for, their output folders under ``folder``."""
    py = sys.executable
    timeouts = QUICK_TIMEOUTS if args.quick else TIMEOUTS
    bench = (py, "-m", "experiments.benchmark")
    if args.quick:
        ch5 = ("--iters", "50", "--repeats", "1", "--peers", "fit,jax,torch")
        conv = ("--steps", "1", "--rounds", "1", "--images", "200", "--peers", "funcnet,torch")
        tests = QUICK_TESTS
    else:
        ch5 = ("--iters", str(args.ch5_iters), "--repeats", "3", "--peers", "fit,jax,torch")
        conv = ("--steps", str(args.conv_steps), "--rounds", "3")
        conv += ("--peers", "funcnet,funcnet-book,plain-jax,torch,torch-nhwc")
        tests = DEVICE_TESTS
    commands = {
        "environment": (py, "-c", _ENVIRONMENT),
        "check": (py, "-m", "funcnet.check"),
        "tests": (py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests),
        "ch5": (*bench, *ch5, "--no-numgrad", "--no-profile", "--out", str(folder / "ch5")),
        "simple-convnet": (*bench, "--model", "simple-convnet", *conv),
        "deep-convnet": (*bench, "--model", "deep-convnet", *conv),
    }
    for model in ("simple-convnet", "deep-convnet"):  # --no-layers: no per-layer profile
        commands[model] += ("--no-layers", "--out", str(folder / model))
    figures = {
        "environment": environment_figures,
        "check": check_figures,
        "tests": pytest_figures,
        "ch5": ch5_figures,
        "simple-convnet": convnet_figures,
        "deep-convnet": convnet_figures,
    }
    return [Step(s, commands[s], timeouts[s], figures[s]) for s in args.steps]


def _missing_model(output: str) -> str | None:
    """A note when the benchmark refused ``--model`` (an older benchmark), else None."""
    m = re.search(r"argument --model: invalid choice: '([^']+)'", output)
    return f"this benchmark has no --model {m.group(1)}: skipped" if m else None


def run_step(step: Step, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one step in its own process, bounded by its time limit; never raises for what
    the step does (a failure, a time-out, a crash are its status)."""
    print(f"\n== {step.name} (at most {step.timeout_s:.0f} s)", flush=True)
    t0 = time.perf_counter()
    record: dict[str, Any] = {"name": step.name}
    record["command"] = [a if len(a) < 200 else a[:40] + "..." for a in step.argv]
    with subprocess.Popen(
        step.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,  # its own process group: a time-out ends its children too
    ) as proc:
        try:
            output, _ = proc.communicate(timeout=step.timeout_s)
            code = proc.returncode
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            code, status = None, "timeout"
    record.update(status=status, returncode=code, seconds=time.perf_counter() - t0)
    record["timeout_s"] = step.timeout_s
    note = _missing_model(output) if status == "failed" else None
    if note is not None:
        record.update(status="skipped", note=note)
    try:
        record["figures"] = step.figures(output, folder / step.name)
    except (OSError, ValueError, KeyError, TypeError) as e:
        record["figures"] = {}
        record["figures_error"] = f"{type(e).__name__}: {e}"
    record["output_tail"] = output[-OUTPUT_TAIL:]
    print(output[-1500:], end="" if output.endswith("\n") else "\n")
    print(f"== {step.name}: {record['status']} in {record['seconds']:.1f} s", flush=True)
    return record


def child_env() -> dict[str, str]:
    """The steps' environment: ours, without a persistent compilation cache (compile times
    are measured), JAX not preallocating most of the GPU (a benchmark's PyTorch peer
    shares the device with its JAX peers), and unbuffered output (a time-out keeps what a
    step printed)."""
    env = dict(os.environ)
    env.pop(_common.COMPILATION_CACHE_ENV, None)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------------------
# Command line


def _steps(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STEPS]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct steps from {', '.join(STEPS)}, got {text!r}"
        )
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = _common.parser(NAME, __doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny settings (a few iterations, one mesh test): checks the wiring, on a CPU too",
    )
    p.add_argument(
        "--steps",
        type=_steps,
        default=list(STEPS),
        help=f"comma-separated steps to run, in order (default: {','.join(STEPS)})",
    )
    p.add_argument(
        "--ch5-iters",
        type=_common.positive_int,
        default=10000,
        help="iterations of the ch5 protocol (default: %(default)s, the book's)",
    )
    p.add_argument(
        "--conv-steps",
        type=_common.positive_int,
        default=20,
        help="iterations per timing of the convnet benchmarks (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=_common.out_folder,
        default=None,
        help=f"output folder (default: ${OUT_ENV} if set, else runs/{NAME})",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the steps; returns the summary written to ``summary.json``."""
    args = parse_args(argv)
    folder = args.out or Path(os.environ.get(OUT_ENV) or Path("runs") / NAME)
    folder = _common.out_dir(folder)
    summary: dict[str, Any] = {
        "experiment": NAME,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "install": os.environ.get("DEVICE_CHECK_INSTALL", "as found"),
        "settings": {
            "quick": args.quick,
            "steps": args.steps,
            "ch5_iters": args.ch5_iters,
            "conv_steps": args.conv_steps,
        },
        "environment": {},
        "steps": [],
    }
    env = child_env()
    path = folder / "summary.json"
    for step in plan(args, folder):
        record = run_step(step, folder, env)
        summary["steps"].append(record)
        if step.name == "environment":
            summary["environment"] = record["figures"]
        summary["ok"] = all(s["status"] in ("ok", "skipped") for s in summary["steps"])
        summary["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        _common.write_json(path, summary)
    print(f"\nwrote {path}")
    for s in summary["steps"]:
        note = f"  ({s['note']})" if s.get("note") else ""
        print(f"  {s['name']:<15} {s['status']:<8} {s['seconds']:7.1f} s{note}")
    return summary


if __name__ == "__main__":
    result: dict[str, Any] = {}

    def _main(argv: list[str]) -> None:
        result.update(main(argv))

    _common.run(_main)
    sys.exit(0 if result.get("ok") else 1)
