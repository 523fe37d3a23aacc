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


SWALLOWED = """
import gc, time
from experiments import _common, _interrupt
{install}
def main(argv):
    def callback(phase, info):  # a Ctrl-C landing in a gc callback, as in JAX's
        gc.callbacks.remove(callback)
        raise KeyboardInterrupt
    gc.callbacks.append(callback)
    gc.collect()
    for _ in range(100):
        time.sleep(0.01)
    print("finished")
_common.run(main, [])
"""


def test_a_ctrl_c_swallowed_by_a_gc_callback_still_stops_the_run():
    def run(install: str):
        child = subprocess.run(
            [sys.executable, "-c", SWALLOWED.format(install=install)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        return child.returncode, child.stdout

    assert run("") == (0, "finished\n")  # Python's own behaviour: lost
    assert run("_interrupt.deliver_swallowed_interrupts()") == (130, "")


STARTING = """
import os, signal, time
from experiments import _interrupt
_interrupt.exit_on_ctrl_c_while_starting()
os.kill(os.getpid(), signal.SIGINT)  # while the experiment's imports run
time.sleep(30)
print("still running")
"""


def test_ctrl_c_while_a_command_starts_exits_130_without_a_traceback():
    child = subprocess.run(
        [sys.executable, "-c", STARTING], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 130 and child.stdout == "", child
    assert child.stderr.strip().endswith("interrupted") and "Traceback" not in child.stderr
