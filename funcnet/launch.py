"""Start N processes of one command on this machine, as a distributed run would.

::

    python -m funcnet.launch -n 2 -- python -m experiments.ch05_train_neuralnet --distributed

Each process gets ``JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT`` (a free port),
``JAX_NUM_PROCESSES=N`` and ``JAX_PROCESS_ID=i``, which ``jax.distributed.initialize``
(and so ``--distributed``) reads. Their output is streamed line by line with a ``[i]``
prefix. When a process fails (non-zero exit status, or killed by a signal) the launcher
says which, stops the others (SIGINT, then SIGKILL after ``--grace`` seconds) and exits
with that process's status (128 + signal number for a signal). ``--timeout`` bounds the
whole run (exit status 124). Ctrl-C or SIGTERM to the launcher stops every process.

This is for trying a distributed run on one machine; on a cluster the scheduler starts
the processes (``srun``, ``mpirun``) and JAX reads its settings from there.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

PROG = "python -m funcnet.launch"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP port on ``host`` cannot be bound now (something listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed run's port is free
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _reset_signals() -> None:
    # A fresh terminal's behaviour in the child: the launcher's parent may have SIGINT or
    # SIGTERM ignored (e.g. a test runner's worker), which children would inherit.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stream(pipe: IO[bytes], prefix: str, out: IO[str], lock: threading.Lock) -> None:
    for raw in iter(pipe.readline, b""):
        line = raw.decode(errors="replace").rstrip("\r\n")
        with lock:
            out.write(f"{prefix}{line}\n")
            out.flush()
    pipe.close()


def _describe(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Start N local processes of a command for jax.distributed (127.0.0.1).",
    )
    p.add_argument("-n", "--num-processes", type=int, required=True, help="processes to start")
    p.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop every process after this many seconds (exit status 124)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds between SIGINT and SIGKILL when stopping processes (default: 5)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = p.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        p.error("no command given: put it after --, e.g. -- python -m experiments.X --distributed")
    if args.num_processes < 1:
        p.error(f"-n must be at least 1, got {args.num_processes}")
    if args.port is not None and not 0 < args.port < 65536:
        p.error(f"--port must be in 1..65535, got {args.port}")
    if args.port is not None and port_in_use(args.port):
        p.error(
            f"--port {args.port}: 127.0.0.1:{args.port} is in use (another program, or a run "
            "still going); pick another, or leave --port out for a free one"
        )
    return args


def _stop(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGINT every running process (Ctrl-C: a Python program unwinds, removing its
    temporary files), then SIGKILL those still running after ``grace`` s. Not SIGTERM:
    ``jax.distributed.initialize`` installs a preemption notifier that catches it, so a
    worker went on training until the SIGKILL."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(
    command: Sequence[str],
    num_processes: int,
    *,
    port: int | None = None,
    timeout: float | None = None,
    grace: float = 5.0,
    stdout: IO[str] | None = None,
) -> int:
    """Run ``command`` as ``num_processes`` local processes; returns the exit status
    (0 when every process succeeded). See the module's description."""
    out = stdout if stdout is not None else sys.stdout
    port = free_port() if port is None else port
    lock = threading.Lock()

    def say(message: str) -> None:
        with lock:
            out.write(f"[launch] {message}\n")
            out.flush()

    say(f"{num_processes} processes, coordinator 127.0.0.1:{port}: {' '.join(command)}")
    procs: list[subprocess.Popen] = []
    threads = []
    stopping = {"signal": None}

    def on_signal(signum, frame):
        stopping["signal"] = signum

    previous = {
        s: signal.signal(s, on_signal)
        for s in (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is threading.main_thread()
    }
    try:
        for i in range(num_processes):
            env = dict(os.environ)
            env.update(
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES=str(num_processes),
                JAX_PROCESS_ID=str(i),
                PYTHONUNBUFFERED="1",
            )
            p = subprocess.Popen(
                list(command),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=_reset_signals,
            )
            procs.append(p)
            t = threading.Thread(target=_stream, args=(p.stdout, f"[{i}] ", out, lock))
            t.daemon = True
            t.start()
            threads.append(t)
        deadline = None if timeout is None else time.monotonic() + timeout
        status = 0
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                running = [j for j, c in enumerate(codes) if c is None]
                say(
                    f"process {i} {_describe(code)}; "
                    + (f"stopping process(es) {running}" if running else "no other is running")
                )
                status = _exit_status(code)
                break
            if all(c == 0 for c in codes):
                break
            if stopping["signal"] is not None:
                name = signal.Signals(stopping["signal"]).name
                say(f"{name} received: stopping every process")
                status = 128 + stopping["signal"]
                break
            if deadline is not None and time.monotonic() > deadline:
                say(f"timed out after {timeout:g} s: stopping every process")
                status = 124
                break
            time.sleep(0.05)
        _stop(procs, grace)
        for t in threads:
            t.join(timeout=grace)
        if status == 0:
            say(f"all {num_processes} processes finished")
        return status
    finally:
        _stop(procs, grace)
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return launch(
            args.command, args.num_processes, port=args.port, timeout=args.timeout, grace=args.grace
        )
    except OSError as e:  # the command could not be started
        print(f"{PROG}: error: cannot start {args.command[0]!r}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    raise SystemExit(main())
