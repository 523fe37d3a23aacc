"""The README's quoted figures come from the current code."""

import re
from pathlib import Path

import pytest

from experiments import ch05_train_neuralnet

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_main_jobs_quoted_result_is_what_the_main_job_prints(tmp_path, capsys):
    quoted = re.search(
        r"<!-- quoted-main-job -->train ([0-9.]+), test ([0-9.]+)", README.read_text()
    )
    assert quoted, "README: the main job's quoted result lost its marker"
    metrics = ch05_train_neuralnet.main(["--dataset", "mnist-5k", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert len(re.findall(r"^train acc, test acc \|", out, re.M)) == 250
    assert "final (iteration 10000)" in out
    assert metrics["final_train_acc"] == pytest.approx(float(quoted[1]), abs=5e-4)
    assert metrics["final_test_acc"] == pytest.approx(float(quoted[2]), abs=5e-4)
    assert "250 per-epoch accuracy lines" in README.read_text()
