"""Runs the documentation's code blocks for tests/test_docs.py: one fresh process per
page, forked from this server after it imported what the pages import.

A page's blocks must run in a fresh interpreter (nothing left over from another page).
Starting Python and importing JAX, funcnet and Matplotlib costs about 1.7 CPU-seconds,
as much as many pages' own work. This server imports them once, without starting a JAX
backend (so no thread is running and forking is safe), then forks a child per page: the
child is a new process whose modules are imported but whose ``__main__`` namespace, JAX
backend, devices and compiled programs are new, exactly as a fresh ``python page.py``
has them. The pages share one persistent compilation cache (set up by the test through
``JAX_COMPILATION_CACHE_DIR``), so a program another page compiled is read, not
compiled again.

Protocol (one JSON object a line): the test writes ``{"script", "cwd", "log"}``; the
server answers ``{"pid": child}`` at once, then ``{"returncode": code}`` when the child
ends (negative: killed by that signal). The child runs the script as ``__main__`` in
``cwd`` (``sys.path[0]`` its folder, as ``python script`` has it) with stdout and stderr
going to ``log``, in its own process group (the test kills the group on a time-out).
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import traceback

# What the pages import (the server's own imports are thereby done for every child).
# Matplotlib's backend is the test's MPLBACKEND (Agg), as for a fresh interpreter.
import jax  # noqa: F401
import matplotlib.pyplot  # noqa: F401
import numpy  # noqa: F401
from jax._src import xla_bridge

import funcnet  # noqa: F401
import funcnet.check  # noqa: F401
import funcnet.conv  # noqa: F401
import funcnet.datasets  # noqa: F401
import funcnet.distributed  # noqa: F401
import funcnet.gradient  # noqa: F401
import funcnet.graph  # noqa: F401
import funcnet.nets  # noqa: F401
import funcnet.optimizers  # noqa: F401
import funcnet.perceptron  # noqa: F401
import funcnet.train  # noqa: F401

# Forking is safe only while no backend (and so no thread of XLA's) exists.
assert not xla_bridge._backends, "a JAX backend started while importing: cannot fork"


def _child(script: str, cwd: str, log: str) -> int:
    """Run ``script`` as a fresh ``python script`` would; returns the exit status."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.chdir(cwd)
    sys.argv = [script]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # as the interpreter does at exit
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request["script"], request["cwd"], request["log"])
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
