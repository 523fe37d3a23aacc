"""Ctrl-C, a closed pipe or an error ends a command without the interpreter's teardown.

After a Ctrl-C during training, teardown crashed the process (SIGSEGV in jaxlib's
``nb_module_free`` as its module was freed) in about half of the tries, so the exit status
was -11, not 130. ``experiments._common.run`` now flushes the standard streams and exits
at once. That crash needs a real training run interrupted at the right moment (seconds
to minutes each, and not every time), so this test checks the mechanism in a small
process: the status, what was printed before, and that no exit handler ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import atexit, sys
from experiments import _common
atexit.register(lambda: print("teardown ran", flush=True))
def main(argv):
    print("working", end="")  # unflushed: must still come out
    raise {exc}
_common.run(main, [])
"""


@pytest.mark.parametrize(
    "exc, status, last_err",
    [
        ("KeyboardInterrupt", 130, "interrupted"),
        ("ValueError('bad value')", 1, "FUNCNET_TRACEBACK=1 shows where]"),
    ],
)
def test_a_command_exits_without_teardown(exc, status, last_err):
    child = subprocess.run(
        [sys.executable, "-c", CHILD.format(exc=exc)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == status, child.stderr
    assert child.stdout == "working", child.stdout  # flushed, and no exit handler ran
    assert child.stderr.rstrip().endswith(last_err), child.stderr
