"""Several processes or machines: JAX's own distributed runtime, nothing home-made.

Every process runs the same program. :func:`initialize` connects it to the others
(``jax.distributed.initialize``: a coordinator at process 0, heartbeats, and on CPU the
gloo collectives); after that ``jax.devices()`` lists every process's devices and
:func:`global_mesh` is a 1-D mesh over all of them. :func:`funcnet.train.fit` and
:func:`funcnet.train.fit_many` then use it by default: ``fit`` splits each minibatch
over every device of every process (XLA inserts the all-reduce of the gradients),
``fit_many`` splits its runs. Both gather their results, so every process returns the
same params and history as ordinary local arrays; only process 0 writes checkpoints.

The helpers below are what ``fit`` and ``fit_many`` use to place host data on a mesh
that spans processes (:func:`put`, :func:`put_process_rows`), to read global arrays back
(:func:`to_host`, :func:`localize`), to read process 0's checkpoint in every process
(:func:`broadcast_bytes`) and to turn a failed collective into an error that names the
processes that stopped (:func:`naming_lost_processes`).

Timeouts (seconds) are explicit, from the arguments of :func:`initialize` or the
environment: ``FUNCNET_INIT_TIMEOUT`` (default 60: how long to wait for every process to
connect), ``FUNCNET_HEARTBEAT_TIMEOUT`` (10: a process silent this long is dead and the
others stop) and ``FUNCNET_SHUTDOWN_TIMEOUT`` (600: how long a finished process waits at
exit for the others to finish, e.g. for process 0 to write its outputs; a process that
died is found by the heartbeats instead, so a long wait here never hides one).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from funcnet import launch, parallel

INIT_TIMEOUT_ENV = "FUNCNET_INIT_TIMEOUT"
HEARTBEAT_TIMEOUT_ENV = "FUNCNET_HEARTBEAT_TIMEOUT"
SHUTDOWN_TIMEOUT_ENV = "FUNCNET_SHUTDOWN_TIMEOUT"
DEFAULT_INIT_TIMEOUT = 60
DEFAULT_HEARTBEAT_TIMEOUT = 10
DEFAULT_SHUTDOWN_TIMEOUT = 600

PROCESS_DATA = ("whole", "shard")
"""What each process passes to ``fit``: the whole data set, or only its own rows."""

_settings: dict[str, Any] = {}


class DistributedError(RuntimeError):
    """Starting or running several processes failed (the message says what to check)."""


class ProcessLost(DistributedError):
    """A collective operation failed because another process stopped.

    Attributes:
        lost: the indices of the processes that stopped answering the coordinator
            (``None`` when the coordinator itself, process 0, could not be reached).
    """

    def __init__(self, message: str, lost: list[int] | None):
        super().__init__(message)
        self.lost = lost


def _timeout(value: int | None, env: str, default: int) -> int:
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            message = f"{env} must be a whole number of seconds, got {text!r}"
            raise DistributedError(message) from None
        where = env
    else:
        where = "the timeout"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DistributedError(f"{where} must be a whole number of seconds >= 1, got {value!r}")
    return value


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    init_timeout: int | None = None,
    heartbeat_timeout: int | None = None,
    shutdown_timeout: int | None = None,
) -> None:
    """Join the other processes: ``jax.distributed.initialize`` with explicit timeouts.

    Call it first, before anything runs on a device. Without arguments JAX finds the
    settings itself (SLURM, Open MPI, Kubernetes, Cloud TPU) or reads
    ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``; ``python -m funcnet.launch`` sets those for local processes. On
    CPU the collectives run over gloo (TCP).

    Args:
        coordinator_address: ``host:port`` of process 0, as for
            ``jax.distributed.initialize`` (default: detected, see above).
        num_processes: as for ``jax.distributed.initialize`` (default: detected).
        process_id: as for ``jax.distributed.initialize`` (default: detected).
        init_timeout: seconds to wait until every process has connected (default
            ``$FUNCNET_INIT_TIMEOUT`` or 60); a wrong process count or an unreachable
            coordinator is an error after that long.
        heartbeat_timeout: seconds after which a silent process counts as dead and every
            other process stops (default ``$FUNCNET_HEARTBEAT_TIMEOUT`` or 10).
        shutdown_timeout: seconds a finished process waits at exit for the others to
            finish (default ``$FUNCNET_SHUTDOWN_TIMEOUT`` or 600); past it JAX ends the
            process with an error.

    Raises:
        DistributedError: called twice, called after JAX already ran something, or the
            processes could not connect within ``init_timeout`` (the message names the
            coordinator, the process count and this process's id).
    """
    init = _timeout(init_timeout, INIT_TIMEOUT_ENV, DEFAULT_INIT_TIMEOUT)
    heartbeat = _timeout(heartbeat_timeout, HEARTBEAT_TIMEOUT_ENV, DEFAULT_HEARTBEAT_TIMEOUT)
    shutdown = _timeout(shutdown_timeout, SHUTDOWN_TIMEOUT_ENV, DEFAULT_SHUTDOWN_TIMEOUT)
    if _settings:
        raise DistributedError("funcnet.distributed.initialize: called twice in one process")
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    count = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    _check_settings(address, count)
    where = (
        f"coordinator {address or '(detected)'}, {count or '(detected)'} processes, "
        f"this process {pid if pid is not None else '(detected)'}"
    )
    if pid == 0 and _loopback_port_in_use(address):
        raise DistributedError(
            f"could not start the distributed run ({where}): the coordinator's port is in "
            "use on this machine (another program, or a run still going); pick another port"
        )
    if count is not None and pid is not None and not 0 <= pid < count:
        raise DistributedError(
            f"could not start the distributed run ({where}): the process id must be in "
            f"0 .. {count - 1}; check JAX_NUM_PROCESSES and JAX_PROCESS_ID"
        )
    if address and pid not in (None, 0):
        _wait_for_coordinator(address, init, where)
    # JAX ends the process itself (no Python exception) when the others do not all
    # connect in time: say why just before.
    watchdog = threading.Timer(max(init - 0.5, 0.5), _explain_timeout, (where, init))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            address,
            count,
            pid,
            initialization_timeout=init,
            heartbeat_timeout_seconds=heartbeat,
            shutdown_timeout_seconds=shutdown,
        )
    except Exception as e:  # noqa: BLE001 - every failure gets the same context
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.rstrip(". ")
        if address is None and count is None:
            hint = (
                "No coordinator was found: set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES "
                "and JAX_PROCESS_ID, or start the processes with python -m funcnet.launch"
            )
        else:
            hint = (
                "Check that every process was started with the same coordinator address and "
                "process count, that the process ids are 0 .. count-1, and that process 0 "
                "is running and reachable on that port"
            )
        raise DistributedError(
            f"could not start the distributed run ({where}) within {init} s: {first}. {hint}"
        ) from e
    finally:
        watchdog.cancel()
    _settings.update(init=init, heartbeat=heartbeat, shutdown=shutdown)
    # One collective now, while the processes are together: gloo connects its peers on
    # the first one (waiting a bounded time for the slowest), and a failure shows here.
    from jax.experimental import multihost_utils

    with naming_lost_processes("connecting the collectives"):
        multihost_utils.sync_global_devices("funcnet.distributed.initialize")


def _wait_for_coordinator(address: str, timeout: int, where: str) -> None:
    """Wait until something listens at ``address`` (``host:port``), at most ``timeout`` s."""
    host, _, port = address.rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        raise DistributedError(
            f"the coordinator address must be host:port, got {address!r}"
        ) from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), port_number), timeout=1.0):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"could not start the distributed run ({where}): nothing answers at "
                    f"{address} after {timeout} s ({e.strerror or e}). Is process 0 running, "
                    "with this address and port, and reachable from here?"
                ) from None
            time.sleep(0.2)


def _explain_timeout(where: str, timeout: int) -> None:
    print(
        f"funcnet.distributed: error: the processes did not all connect within {timeout} s "
        f"({where}); JAX stops this process now. Check JAX_NUM_PROCESSES (every process "
        "must be started, with ids 0 .. count-1) and the coordinator address.",
        file=sys.stderr,
        flush=True,
    )


def _check_settings(address: str | None, count: int | None) -> None:
    """Refuse a coordinator address that is set but not ``host:port`` (port 1..65535) and
    a process count below 1, before JAX reads them (its messages name neither)."""
    if address is not None:
        host, sep, port = address.rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            raise DistributedError(
                "the coordinator address (JAX_COORDINATOR_ADDRESS) must be host:port with a "
                f"port in 1..65535, got {address!r}"
            )
    if count is not None and count < 1:
        raise DistributedError(f"the process count (JAX_NUM_PROCESSES) must be >= 1, got {count}")


def _loopback_port_in_use(address: str | None) -> bool:
    """Whether ``address`` is this machine's loopback and its port cannot be bound."""
    if address is None:
        return False
    host, _, port = address.rpartition(":")
    return host in ("127.0.0.1", "localhost") and launch.port_in_use(int(port))


def _env_int(name: str) -> int | None:
    """A whole number from the environment (JAX reads JAX_COORDINATOR_ADDRESS itself, but
    not the process count and id); None when unset."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise DistributedError(f"{name} must be a whole number, got {text!r}") from None
    if value < 0:
        raise DistributedError(f"{name} must be >= 0, got {value}")
    return value


def heartbeat_timeout() -> int:
    """The heartbeat timeout in force, in seconds (the default before :func:`initialize`)."""
    return int(_settings.get("heartbeat", DEFAULT_HEARTBEAT_TIMEOUT))


def is_main() -> bool:
    """True in process 0 (the one that writes files), and in a run of one process."""
    return jax.process_index() == 0


def global_mesh() -> Mesh:
    """A 1-D ``"batch"`` mesh over every device of every process, in process order."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return parallel.make_mesh(devices)


def spans_processes(mesh: Mesh | None) -> bool:
    """True when ``mesh`` holds devices of other processes than this one."""
    if not isinstance(mesh, Mesh):  # None, or not a mesh (refused by the caller's check)
        return False
    me = jax.process_index()
    return any(d.process_index != me for d in mesh.devices.flat)


def default_mesh(mesh: Mesh | None) -> Mesh | None:
    """``mesh``, or :func:`global_mesh` when it is None and there are several processes."""
    if mesh is None and jax.process_count() > 1:
        return global_mesh()
    return mesh


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Place host values that are the same in every process on a global ``sharding``.

    Each process keeps its devices' part; typed PRNG keys go through their key data.
    """

    def one(leaf):
        if _is_key(leaf):
            # key data has one more (trailing) axis; the spec names the leading ones only
            data = jax.device_put(np.asarray(jax.random.key_data(leaf)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(np.asarray(leaf), sharding)

    return jax.tree_util.tree_map(one, tree)


def process_rows(n_local: int, what: str) -> int:
    """The global row count when every process holds ``n_local`` rows of a data set
    (``process_data="shard"``); every process must hold as many.

    Raises:
        ValueError: the processes hold different numbers of rows.
    """
    from jax.experimental import multihost_utils

    counts = np.asarray(multihost_utils.process_allgather(np.asarray([n_local], np.int64)))
    counts = counts.reshape(-1)
    if np.any(counts != counts[0]):
        raise ValueError(
            f"process_data='shard': every process must pass as many {what} rows; the "
            f"processes pass {counts.tolist()} (process 0 first)"
        )
    return int(counts.sum())


def put_process_rows(tree: Any, mesh: Mesh) -> Any:
    """Global arrays split along the mesh's batch axis, each process giving its own rows
    (the global array is the processes' rows one after another, in process order)."""
    sharding = parallel.batch_sharded(mesh)
    local = sum(1 for d in mesh.devices.flat if d.process_index == jax.process_index())

    def one(leaf):
        leaf = np.asarray(leaf)
        if leaf.shape[0] % local:
            raise ValueError(
                f"process_data='shard': this process's {leaf.shape[0]} rows do not split "
                f"evenly over its {local} devices"
            )
        rows = leaf.shape[0] * jax.process_count()
        return jax.make_array_from_process_local_data(sharding, leaf, (rows, *leaf.shape[1:]))

    return jax.tree_util.tree_map(one, tree)


def to_host(tree: Any) -> Any:
    """NumPy copies of every leaf, each the whole global array in every process
    (gathered over the processes where it is split; typed keys stay keys)."""
    from jax.experimental import multihost_utils

    def one(leaf):
        if not isinstance(leaf, jax.Array):
            return leaf
        if _is_key(leaf):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(one(jax.random.key_data(leaf)), impl=impl)
        if leaf.is_fully_addressable:
            return np.asarray(jax.device_get(leaf))
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

    return jax.tree_util.tree_map(one, tree)


def localize(tree: Any) -> Any:
    """``tree`` as ordinary arrays on this process's default device (global arrays are
    gathered); a tree with no global array is returned as it is."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves):
        return tree
    return jax.device_put(to_host(tree))


def broadcast_bytes(data: bytes | None) -> bytes | None:
    """Process 0's ``data`` (bytes, or None) in every process; the others pass anything."""
    from jax.experimental import multihost_utils

    mine = -1 if data is None or not is_main() else len(data)
    size = int(multihost_utils.broadcast_one_to_all(np.asarray(mine, np.int64)))
    if size < 0:
        return None
    buffer = np.frombuffer(data, np.uint8) if is_main() else np.zeros(size, np.uint8)
    return np.asarray(multihost_utils.broadcast_one_to_all(buffer)).tobytes()


def tree_digest(tree: Any) -> bytes:
    """SHA-256 of a pytree's structure and of every leaf's shape, dtype and values."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        a = np.ascontiguousarray(to_host(leaf))
        h.update(f"{a.shape}:{a.dtype}".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.digest()


def check_same_call(where: str, description: str, tree: Any = None) -> None:
    """Raise ``ValueError`` in every process unless every process passed the same
    ``description`` (settings, shapes) and ``tree`` (e.g. the initial params and key,
    compared by value): processes that run different calls would otherwise wait for each
    other's collectives forever, or train different models."""
    from jax.experimental import multihost_utils

    text = description.encode() + tree_digest(tree)
    digest = np.frombuffer(hashlib.sha256(text).digest()[:8], np.int64)
    every = np.asarray(multihost_utils.process_allgather(digest)).reshape(-1)
    differ = [int(i) for i in np.nonzero(every != every[0])[0]]
    if differ:
        raise ValueError(
            f"{where}: every process must make the same call (settings, shapes, programs and "
            f"their hyperparameters, params and key); process(es) {differ} differ from "
            "process 0"
        )


def main_file(path: str | os.PathLike) -> str:
    """Where this process reads process 0's file ``path``: ``path`` itself in process 0,
    elsewhere a private copy of its bytes (sent over the collectives, so the processes
    need no shared file system) or, when process 0 has no such file, a path that does
    not exist. The copies are removed when the process exits."""
    path = str(path)
    data = Path(path).read_bytes() if is_main() and Path(path).exists() else None
    data = broadcast_bytes(data)
    if is_main():
        return path
    folder = tempfile.mkdtemp(prefix="funcnet-main-file-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = Path(folder) / Path(path).name
    if data is not None:
        copy.write_bytes(data)
    return str(copy)


def process_hashes(named: dict[str, Any], hash_fn: Any) -> dict[str, np.ndarray]:
    """``{name: hash_fn(value)}`` of every process, gathered: each entry becomes the
    array of all processes' hashes (process 0 first), the same in every process."""
    from jax.experimental import multihost_utils

    out = {}
    for name, value in named.items():
        mine = np.frombuffer(str(hash_fn(value)).encode().ljust(64)[:64], np.uint8)
        out[name] = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 64)
    return out


@contextlib.contextmanager
def localizing_diverged() -> Iterator[None]:
    """Re-raise ``TrainingDiverged`` with its params as local arrays (see :func:`localize`)."""
    from funcnet.train.fit import TrainingDiverged

    try:
        yield
    except TrainingDiverged as e:
        e.params = localize(e.params)
        raise


def lost_processes() -> list[int] | None:
    """The processes the coordinator no longer hears from (waits up to the heartbeat
    timeout for it to notice); None if the coordinator itself cannot be reached."""
    from jax._src import distributed as jax_distributed  # get_live_nodes: not public API

    client = jax_distributed.global_state.client
    everyone = list(range(jax.process_count()))
    if client is None:
        return None
    try:
        alive = client.get_live_nodes(everyone)
    except Exception:  # noqa: BLE001 - the coordinator is gone: say so
        return None
    return [p for p in everyone if p not in alive]


@contextlib.contextmanager
def naming_lost_processes(where: str) -> Iterator[None]:
    """In a run of several processes, turn an error raised while the processes work
    together into :class:`ProcessLost` naming the processes that stopped (the error is
    re-raised unchanged when every process is still alive).

    A process that dies makes the next collective of the others fail at once (its
    connections close) or, on a lost machine, the coordinator notice the missing
    heartbeats; JAX then ends every other process within the heartbeat timeout, with
    or without this error, so no process waits forever.
    """
    if jax.process_count() == 1:
        yield
        return
    try:
        yield
    except Exception as e:
        if not _from_the_runtime(e):  # the caller's own error (a divergence, a callback)
            raise
        me = jax.process_index()
        print(
            f"funcnet.distributed: process {me}: {where} failed ({_first_line(e)}); asking "
            f"the coordinator which processes stopped (up to {heartbeat_timeout()} s)",
            file=sys.stderr,
            flush=True,
        )
        t0 = time.monotonic()
        lost = lost_processes()
        if lost == []:
            raise
        waited = time.monotonic() - t0
        who = (
            "the coordinator (process 0) cannot be reached"
            if lost is None
            else f"process(es) {lost} of {jax.process_count()} stopped"
        )
        raise ProcessLost(
            f"{where}: {who}; process {me} stops too (found after {waited:.1f} s). "
            f"The collective reported: {_first_line(e)}",
            lost,
        ) from e


def _from_the_runtime(e: BaseException) -> bool:
    """True for an error of XLA's runtime or its collectives (not a Python-level error of
    the training loop or of the caller's callback)."""
    if isinstance(e, ProcessLost):
        return False
    text = str(e)
    return isinstance(e, jax.errors.JaxRuntimeError) or any(
        word in text for word in ("Gloo", "gloo", "coordination service", "UNAVAILABLE")
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


__all__ = [
    "PROCESS_DATA",
    "DistributedError",
    "ProcessLost",
    "broadcast_bytes",
    "check_same_call",
    "default_mesh",
    "global_mesh",
    "heartbeat_timeout",
    "initialize",
    "is_main",
    "localize",
    "localizing_diverged",
    "lost_processes",
    "main_file",
    "naming_lost_processes",
    "process_hashes",
    "process_rows",
    "put",
    "put_process_rows",
    "spans_processes",
    "to_host",
    "tree_digest",
]
