"""The README's quoted figures come from the current code.

The README is short (the documentation site under ``docs/`` holds the rest); every number
it quotes about the main job is checked here: the final accuracies (by running the main
job), the number of per-epoch lines, the subset's size and the iterations per epoch.
Its Python code blocks run in ``tests/test_docs.py`` with the site's pages.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _xla_flags import user_environment

from experiments import ch05_train_neuralnet
from funcnet import datasets, train

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_main_jobs_quoted_result_is_what_the_main_job_prints(tmp_path):
    quoted = re.search(
        r"<!-- quoted-main-job -->train ([0-9.]+), test ([0-9.]+)", README.read_text()
    )
    assert quoted, "README: the main job's quoted result lost its marker"
    # As a user runs it: a process of its own, with XLA's default compilation (the test
    # run's cheaper one, tests/_xla_flags.py, changes the last bits of a result).
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.ch05_train_neuralnet", "--dataset", "mnist-5k"]
        + ["--out", str(tmp_path)],
        cwd=ROOT, env=user_environment(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(re.findall(r"^train acc, test acc \|", out, re.M)) == 250
    assert "final (iteration 10000)" in out
    assert metrics["final_train_acc"] == pytest.approx(float(quoted[1]), abs=5e-4)
    assert metrics["final_test_acc"] == pytest.approx(float(quoted[2]), abs=5e-4)
    assert "250 per-epoch accuracy lines" in README.read_text()


def test_the_readmes_subset_size_and_epoch_length_are_the_codes():
    text = " ".join(README.read_text().split())
    m = re.search(r"embedded ([0-9,]+)-image subset an epoch is ([0-9,]+) iterations", text)
    assert m, "README: the sentence quoting the subset's size and epoch length changed"
    size, per_epoch = (int(g.replace(",", "")) for g in m.groups())
    n_train = len(datasets.load("mnist-5k").train[1])
    assert size == n_train
    assert per_epoch == train.iters_per_epoch(n_train, 100)
    assert "10,000 SGD steps" in text  # the main job's default --iters
    assert ch05_train_neuralnet.parse_args([]).iters == 10_000


def test_the_readme_is_short_and_keeps_the_commands_ci_reads():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        assert re.search(rf"{marker}\n```bash\n.+\n```", text), marker
