"""funcnet._atomic: temporary files beside their target, renamed into place when complete;
removed on errors, Ctrl-C and SIGTERM; left-overs of killed processes swept, never the
file of a running writer."""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from funcnet import _atomic
from funcnet._atomic import atomic_file, is_stale, sweep_stale

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_file_appears_whole_when_the_block_ends(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_file(target) as f:
        f.write(b"new contents")
        assert target.read_bytes() == b"old"  # readers still see the old file
    assert target.read_bytes() == b"new contents"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_an_error_in_the_block_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file(target) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


SELF_TERMINATE = """
import os, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a fresh shell: SIG_IGN is inherited
from funcnet._atomic import atomic_file
with atomic_file(sys.argv[1]) as f:
    f.write(b"half")
    os.kill(os.getpid(), signal.SIGTERM)
    f.write(b"never")
"""


def test_sigterm_inside_the_block_removes_the_temporary_and_still_terminates(tmp_path):
    target = tmp_path / "out.bin"
    proc = run_python(SELF_TERMINATE, target)
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert list(tmp_path.iterdir()) == []


OWN_HANDLER = """
import os, signal, sys
from funcnet._atomic import atomic_file
seen = []
signal.signal(signal.SIGTERM, lambda *a: seen.append(1))
with atomic_file(sys.argv[1]) as f:
    os.kill(os.getpid(), signal.SIGTERM)
    f.write(b"written")
assert seen == [1] and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
print("handled")
"""


def test_a_programs_own_sigterm_handler_is_left_alone(tmp_path):
    target = tmp_path / "out.bin"
    proc = run_python(OWN_HANDLER, target)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "handled"
    assert target.read_bytes() == b"written"


@pytest.fixture
def default_sigterm():
    """SIGTERM's default action for the test (the runner may have passed SIG_IGN down)."""
    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, old)


def test_the_default_sigterm_action_is_restored_after_the_block(tmp_path, default_sigterm):
    with atomic_file(tmp_path / "x") as f:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        f.write(b"x")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_blocks_nest(tmp_path, default_sigterm):
    with _atomic.terminate_cleanly():
        with atomic_file(tmp_path / "x") as f:
            f.write(b"x")
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # the outer one's
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def old_file(path: Path, age: float = 3600) -> Path:
    path.write_bytes(b"left over")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_left_over_temporaries_are_swept_by_the_next_write(tmp_path):
    target = tmp_path / "out.bin"
    left = old_file(tmp_path / ".out.bin.k1ll3d.tmp")  # from a process killed with -9
    other = old_file(tmp_path / ".other.bin.k1ll3d.tmp")  # another target's
    with atomic_file(target) as f:
        f.write(b"new")
    assert not left.exists() and other.exists()


def test_a_locked_or_young_temporary_is_not_stale(tmp_path):
    held = old_file(tmp_path / ".a.tmp")
    young = old_file(tmp_path / ".b.tmp", age=0)
    fd = os.open(held, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running writer holds
        assert not is_stale(held) and not is_stale(young)
        assert sweep_stale(tmp_path, [".*.tmp"]) == []
    finally:
        os.close(fd)
    assert is_stale(held)
    assert sweep_stale(tmp_path, [".*.tmp"]) == [held]
    assert young.exists()


def test_a_missing_folder_is_an_oserror_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_file(tmp_path / "no" / "x") as f:
            f.write(b"x")
    assert list(tmp_path.iterdir()) == []
