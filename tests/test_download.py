"""Verified downloads from a local HTTP server on 127.0.0.1 serving generated IDX files:
success with progress, checksum mismatch and truncated transfers leave nothing behind,
a server that is down fails fast with instructions, mirrors are tried in turn, and the
``python -m funcnet.datasets download`` command.
"""

import fcntl
import gzip
import hashlib
import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from funcnet import datasets
from funcnet.datasets import __main__ as cli
from funcnet.datasets import specs
from funcnet.datasets.download import (
    DownloadError,
    DownloadProgress,
    download_file,
    fetch,
    sweep_stale_parts,
)
from funcnet.datasets.specs import IdxFile, IdxSpec

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FUNCNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FUNCNET_OFFLINE", raising=False)
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # 127.0.0.1 is reached directly
    return tmp_path


def idx_bytes(array: np.ndarray) -> bytes:
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return (0x0800 | array.ndim).to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


@pytest.fixture
def payloads():
    """The decompressed bytes of four small generated IDX files."""
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, SHAPES[0]),
        np.arange(40) % 10,
        rng.integers(0, 256, SHAPES[2]),
        np.arange(10) % 10,
    )
    return {name: idx_bytes(a) for name, a in zip(FILES, arrays, strict=True)}


SHAPES = ((40, 28, 28), (40,), (10, 28, 28), (10,))


def spec_for(payloads, mirrors, name="gen"):
    """A spec whose MD5s match ``payloads``, fetched from ``mirrors``."""
    idx = [
        IdxFile(f, hashlib.md5(payloads[f]).hexdigest(), shape)
        for f, shape in zip(FILES, SHAPES, strict=True)
    ]
    return IdxSpec(
        name=name,
        title="Generated",
        train_images=idx[0],
        train_labels=idx[1],
        test_images=idx[2],
        test_labels=idx[3],
        class_names=tuple("0123456789"),
        mirrors=tuple(mirrors),
    )


class Server:
    """A local HTTP server: ``routes`` maps a path to bytes, or to ("truncate", bytes)
    (announce the full length, send half, close) or ("stall", bytes) (announce the full
    length, send half, then wait until ``release`` is set). Unknown paths give 404."""

    def __init__(self):
        self.routes, self.requests = {}, []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                truncate = isinstance(body, tuple)
                data = body[1] if truncate else body
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if truncate else data)
                if truncate and body[0] == "stall":
                    self.wfile.flush()
                    server.release.wait(120)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def serve(self, prefix, payloads, compress=True):
        for name, data in payloads.items():
            self.routes[f"{prefix}{name}"] = gzip.compress(data) if compress else data
        return f"{self.url}{prefix}"


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.release.set()
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/"


def all_files(directory):
    return sorted(p.name for p in directory.rglob("*")) if directory.exists() else []


def test_fetch_downloads_verified_files_and_reports_progress(server, payloads, isolated):
    spec = spec_for(payloads, [server.serve("/m/", payloads)])
    events: list[DownloadProgress] = []
    paths = fetch(spec, isolated / "dl", progress=events.append)
    assert [p.name for p in paths] == list(FILES)
    for path in paths:
        assert path.parent == isolated / "dl"
        assert gzip.decompress(path.read_bytes()) == payloads[path.name]
    assert all_files(isolated / "dl") == sorted(FILES)  # no temporary files left
    for name in FILES:
        mine = [e for e in events if e.filename == name]
        assert mine and mine[-1].done == mine[-1].total == len(server.routes[f"/m/{name}"])
        assert [e.done for e in mine] == sorted(e.done for e in mine)
    (x, t), (xt, tt) = datasets.load_idx_uint8(spec, isolated / "dl", download=False)
    assert x.shape == (40, 28, 28) and tt.tolist() == list(range(10))


def test_a_checksum_mismatch_leaves_nothing_behind(server, payloads, isolated):
    bad = dict(payloads)
    data = bytearray(bad[FILES[0]])
    data[500] ^= 0xFF
    bad[FILES[0]] = bytes(data)
    spec = spec_for(payloads, [server.serve("/bad/", bad)])
    with pytest.raises(datasets.DatasetNotFoundError, match="checksum mismatch"):
        datasets.load_idx_uint8(spec, isolated / "dl")
    assert all_files(isolated / "dl") == []  # not even a temporary file
    assert all_files(isolated / "cache") == []


def test_an_interrupted_transfer_leaves_nothing_behind(server, payloads, isolated):
    server.serve("/ok/", payloads)
    server.routes["/ok/" + FILES[1]] = ("truncate", gzip.compress(payloads[FILES[1]]))
    spec = spec_for(payloads, [server.url + "/ok/"])
    with pytest.raises(datasets.DatasetNotFoundError, match="incomplete transfer") as info:
        fetch(spec, isolated / "dl")
    assert FILES[1] in str(info.value)
    assert all_files(isolated / "dl") == [FILES[0]]  # the verified first file only


def test_a_server_that_is_down_fails_fast_saying_what_to_do(payloads, isolated, closed_port_url):
    spec = spec_for(payloads, [closed_port_url])
    with pytest.raises(datasets.DatasetNotFoundError) as info:
        datasets.load_idx_uint8(spec, isolated / "dl", timeout=5)
    message = str(info.value)
    assert "missing train-images-idx3-ubyte.gz" in message
    assert "Connection refused" in message or "ConnectionRefusedError" in message
    assert f"Looked in: {isolated / 'dl'}" in message
    assert "by hand" in message and f"{closed_port_url}t10k-labels-idx1-ubyte.gz" in message
    assert all_files(isolated / "dl") == []
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one error


def test_mirrors_are_tried_in_turn(server, payloads, isolated, closed_port_url):
    good = server.serve("/good/", payloads)
    spec = spec_for(payloads, [closed_port_url, server.url + "/missing/", good])
    events = []
    fetch(spec, isolated / "dl", progress=events.append)
    assert all_files(isolated / "dl") == sorted(FILES)
    assert "/missing/" + FILES[0] in server.requests  # the 404 mirror was asked first
    assert {e.url.rsplit("/", 2)[1] for e in events} == {"good"}


def test_download_file_lists_every_failure(server, payloads, isolated, closed_port_url):
    spec = spec_for(payloads, [])
    urls = [closed_port_url + "x.gz", server.url + "/nothing/x.gz"]
    with pytest.raises(DownloadError, match="every mirror failed") as info:
        download_file(urls, isolated / "dl", spec.train_images, timeout=5)
    assert "HTTP Error 404" in str(info.value) or "Not Found" in str(info.value)
    assert closed_port_url in str(info.value)


def test_an_uncompressed_file_is_saved_without_gz(server, payloads, isolated):
    spec = spec_for(payloads, [server.serve("/raw/", payloads, compress=False)])
    paths = fetch(spec, isolated / "dl")
    assert [p.name for p in paths] == [f.removesuffix(".gz") for f in FILES]
    (x, _), _ = datasets.load_idx_uint8(spec, isolated / "dl", download=False)
    assert x.shape == (40, 28, 28)


def test_only_missing_files_are_downloaded(server, payloads, isolated):
    spec = spec_for(payloads, [server.serve("/m/", payloads)])
    (isolated / "dl").mkdir()
    (isolated / "dl" / FILES[0]).write_bytes(gzip.compress(payloads[FILES[0]]))
    fetch(spec, isolated / "dl")
    assert server.requests == ["/m/" + f for f in FILES[1:]]


def test_offline_mode_does_not_connect(server, payloads, isolated, monkeypatch):
    monkeypatch.setenv("FUNCNET_OFFLINE", "1")
    spec = spec_for(payloads, [server.serve("/m/", payloads)])
    with pytest.raises(datasets.DatasetNotFoundError, match="FUNCNET_OFFLINE"):
        datasets.load_idx_uint8(spec, isolated / "dl")
    assert server.requests == []


def test_load_downloads_missing_files_into_the_data_dir(server, payloads, isolated, monkeypatch):
    spec = spec_for(payloads, [server.serve("/m/", payloads)], name="mnist")
    monkeypatch.setattr(specs, "SPECS", MappingProxyType({**specs.SPECS, "mnist": spec}))
    events = []
    (x, t), (xt, tt) = datasets.load_mnist(source="mnist", progress=events.append)
    assert x.shape == (40, 784) and x.dtype == np.float32 and tt.shape == (10,)
    assert all_files(isolated / "data" / "mnist") == sorted(FILES)
    assert events
    assert datasets.load().name == "mnist"  # "auto" now finds the full set


def test_download_command_fetches_and_verifies(server, payloads, isolated, monkeypatch):
    spec = spec_for(payloads, [server.serve("/m/", payloads)], name="fashion-mnist")
    monkeypatch.setattr(specs, "SPECS", MappingProxyType({**specs.SPECS, spec.name: spec}))
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["download", "fashion-mnist", "--data-dir", str(isolated / "d")], out, err)
    assert status == 0
    assert "Generated: ready" in out.getvalue()
    assert out.getvalue().count("checksum OK") == 4
    assert "100%" in err.getvalue()
    assert all_files(isolated / "d") == sorted(FILES)


def test_download_command_reports_failure(payloads, isolated, monkeypatch, closed_port_url):
    spec = spec_for(payloads, [closed_port_url], name="mnist")
    monkeypatch.setattr(specs, "SPECS", MappingProxyType({**specs.SPECS, "mnist": spec}))
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["download", "mnist", "--timeout", "5"], out, err) == 1
    assert "error: Generated: missing" in err.getvalue()


def test_download_command_into_a_folder_that_cannot_be_made_says_so(payloads, isolated):
    blocker = isolated / "a-file"
    blocker.write_text("not a folder")
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["download", "mnist", "--data-dir", str(blocker / "sub")], out, err) == 1
    assert err.getvalue().startswith("error: MNIST: missing")
    assert f"cannot create {blocker / 'sub'}" in err.getvalue()


# --------------------------------------------------------------------------------------
# timeouts are checked before anything is fetched


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf")])
def test_bad_timeouts_are_rejected_before_any_request(server, payloads, isolated, timeout):
    spec = spec_for(payloads, [server.serve("/m/", payloads)])
    calls = {
        "fetch": lambda: fetch(spec, isolated / "dl", timeout=timeout),
        "download_file": lambda: download_file(
            [server.url + "/m/" + FILES[0]], isolated / "dl", spec.train_images, timeout=timeout
        ),
        "load_idx_uint8": lambda: datasets.load_idx_uint8(spec, isolated / "dl", timeout=timeout),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"{name}: timeout must be a finite number"):
            call()
    assert server.requests == []
    assert all_files(isolated / "dl") == []


@pytest.mark.parametrize("timeout", ["30", True, None])
def test_a_timeout_that_is_not_a_number_is_a_type_error(payloads, isolated, timeout):
    spec = spec_for(payloads, ["http://127.0.0.1:9/"])
    with pytest.raises(TypeError, match="fetch: timeout must be a number of seconds"):
        fetch(spec, isolated / "dl", timeout=timeout)


# --------------------------------------------------------------------------------------
# signals during a download; partial files of killed runs are swept

# The child starts with Python's own Ctrl-C and SIGTERM behaviour, as in a fresh terminal:
# an ignored signal (SIG_IGN) is inherited from the test process, and an xdist worker that
# had run tests/test_notebooks.py (Jupyter kernels) was seen with SIGINT ignored.
RESET_SIGNALS = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
)
DOWNLOAD_SCRIPT = (
    RESET_SIGNALS
    + """
import sys
from funcnet.datasets.download import download_file
from funcnet.datasets.specs import IdxFile
download_file([sys.argv[1]], sys.argv[2], IdxFile(sys.argv[3], "0" * 32, (1,)), timeout=120)
"""
)


def parts(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.part")) if directory.exists() else []


def start_stalled_download(server, payloads, dest: Path) -> subprocess.Popen:
    """A separate Python process downloading from a server that stalls half-way; returns
    once the partial file exists."""
    data = gzip.compress(payloads[FILES[0]])
    server.routes["/stall/" + FILES[0]] = ("stall", data)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", DOWNLOAD_SCRIPT, f"{server.url}/stall/{FILES[0]}", dest, FILES[0]],
        cwd=root,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not parts(dest):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the download did not start: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_download_leaves_no_partial_file(server, payloads, isolated, signum):
    dest = isolated / "dl"
    proc = start_stalled_download(server, payloads, dest)
    proc.send_signal(signum)
    proc.communicate(timeout=120)
    assert proc.returncode == -signum  # it still ends as the signal says
    assert parts(dest) == []
    assert all_files(dest) == []


def test_a_killed_download_leaves_a_part_that_the_next_run_sweeps(server, payloads, isolated):
    dest = isolated / "dl"
    proc = start_stalled_download(server, payloads, dest)
    proc.kill()  # SIGKILL: no process can clean up after that
    proc.communicate(timeout=120)
    (part,) = parts(dest)
    old = time.time() - 3600
    os.utime(part, (old, old))
    spec = spec_for(payloads, [server.serve("/m/", payloads)])
    fetch(spec, dest)
    assert all_files(dest) == sorted(FILES)  # the part is gone, the files are there


def make_part(directory: Path, name: str, age: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / f".{name}.abc123.part"
    part.write_bytes(b"partial")
    then = time.time() - age
    os.utime(part, (then, then))
    return part


def test_the_sweep_leaves_a_part_that_a_running_download_holds(isolated):
    part = make_part(isolated / "dl", FILES[0], age=3600)
    fd = os.open(part, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running download holds
        assert sweep_stale_parts(isolated / "dl", FILES) == []
        assert part.exists()
    finally:
        os.close(fd)
    assert sweep_stale_parts(isolated / "dl", FILES) == [part]
    assert not part.exists()


def test_the_sweep_leaves_fresh_parts_and_other_files(isolated):
    fresh = make_part(isolated / "dl", FILES[1], age=0)  # just created, not locked yet
    other = make_part(isolated / "dl", "unrelated.bin", age=3600)
    kept = isolated / "dl" / FILES[2]
    kept.write_bytes(b"x")
    assert sweep_stale_parts(isolated / "dl", FILES) == []
    assert fresh.exists() and other.exists() and kept.exists()
