"""verify vs jax.test_util.check_grads on the rules of tests/_verify_rules.py: verdicts
of both on the right and the wrong version of each rule, and the time of each on the
right version, float32 and float64.

    .venv/bin/python tests/_bench_verify.py [--rounds 3] [--json runs/verify_bench.json]

check_grads is called as a user would: ``check_grads(f, args, order=1, modes=["rev"])``
once with float32 inputs (x64 off) and once with float64 inputs (x64 on); verify with its
defaults (float64 and float32 rows). Each timing runs in a fresh process (JAX imported and
warmed up on an unrelated op before the clock starts), so neither tool profits from
programs the other, or an earlier round, compiled; the processes of the two tools are
interleaved and the best of ``--rounds`` is kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _verify_rules import CASES, plain_check_grads_target  # noqa: E402

from funcnet.check import verify  # noqa: E402


def run_check_grads(case, wrong: bool) -> str:
    """check_grads' verdict in float32 and in float64 ("pass/FAIL", ...)."""
    verdicts = []
    for x64, dtype in ((False, np.float32), (True, np.float64)):
        with jax.enable_x64(x64):
            f = plain_check_grads_target(case, wrong)
            args = jax.tree_util.tree_map(
                lambda a, d=dtype: jnp.asarray(np.asarray(a, d)), case.args
            )
            try:
                check_grads(f, args, order=1, modes=["rev"])
                verdicts.append("pass")
            except AssertionError:
                verdicts.append("FAIL")
            except Exception as e:  # noqa: BLE001
                verdicts.append(f"raises {type(e).__name__}")
    return "/".join(verdicts)


def run_verify(case, wrong: bool) -> str:
    """verify's verdict in float32 and in float64."""
    report = verify(case.make(wrong), *case.args, **case.options)
    labels = []
    for d in ("float32", "float64"):
        s = [r.status for r in report.rows if r.dtype == d]
        labels.append(
            "pass" if s and all(x == "PASS" for x in s) else ("ERROR" if "ERROR" in s else "FAIL")
        )
    return "/".join(labels)


TOOLS = {"verify": run_verify, "check_grads": run_check_grads}


def _timed(tool: str, name: str) -> float:
    """One cold call of ``tool`` on case ``name`` (right version), in a fresh process."""
    code = (
        "import sys, time; sys.path.insert(0, 'tests'); import jax.numpy as jnp; "
        "jnp.ones(3).sum().block_until_ready(); import _bench_verify as b; "
        f"case = b.CASES[{name!r}]; t = time.perf_counter(); b.TOOLS[{tool!r}](case, False); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    names = args.only or list(CASES)
    results = {}
    for name in names:
        case = CASES[name]
        row = {}
        for wrong in (False, True):
            tag = "wrong" if wrong else "right"
            row[f"verify {tag}"] = run_verify(case, wrong)
            row[f"check_grads {tag}"] = run_check_grads(case, wrong)
        times = {tool: [] for tool in TOOLS}
        for _ in range(args.rounds):  # interleaved: verify, check_grads, verify, ...
            for tool in TOOLS:
                times[tool].append(_timed(tool, name))
        row["verify s"] = min(times["verify"])
        row["check_grads s"] = min(times["check_grads"])
        row["ratio"] = row["verify s"] / row["check_grads s"]
        results[name] = row
        print(
            f"{name:28} "
            + "  ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            flush=True,
        )
    total_v = sum(r["verify s"] for r in results.values())
    total_c = sum(r["check_grads s"] for r in results.values())
    print(
        f"total: verify {total_v:.1f} s, check_grads {total_c:.1f} s, ratio {total_v / total_c:.2f}"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
