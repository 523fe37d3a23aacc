"""Small helpers shared by the experiments: flags, output folder, data, figures.

Figures are drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg
canvas (no pyplot, no GUI backend, no global figure state).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments import _interrupt
from funcnet import datasets
from funcnet._atomic import atomic_file

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: output folders are not locked
    fcntl = None

if typing.TYPE_CHECKING:  # matplotlib is imported where a figure is drawn, so that the
    # experiments that draw none (the benchmarks) run where it is not installed
    from matplotlib.figure import Figure

DPI = 110


# --------------------------------------------------------------------------------------
# Command-line plumbing: validated flag types, and one clear line instead of a traceback


def _number(kind: type, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (no nan, no inf)."""
    value = _number(float, text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text!r}")
    return value


def int_in_range(minimum: int, maximum: int, why: str = "") -> Callable[[str], int]:
    """argparse type factory: an integer in ``[minimum, maximum]``.

    ``why`` (e.g. "the numerical gradient's time grows with it") is added to the error
    for a value above ``maximum``, so that the user learns why there is a maximum.
    """
    if minimum > maximum:
        raise ValueError(f"int_in_range: minimum {minimum} > maximum {maximum}")

    def parse(text: str) -> int:
        value = _number(int, text)
        if not minimum <= value <= maximum:
            reason = f" ({why})" if why and value > maximum else ""
            raise argparse.ArgumentTypeError(
                f"must be an integer from {minimum:,} to {maximum:,}{reason}, got {value}"
            )
        return value

    parse.__name__ = f"integer in [{minimum}, {maximum}]"
    return parse


MAX_BATCH_SIZE = 100_000

batch_size = int_in_range(
    1, MAX_BATCH_SIZE, "a minibatch is held in memory at once; 100,000 MNIST images are 314 MB"
)
"""argparse type: a training minibatch size, 1 to 100,000 (a huge one used to abort the
process when memory ran out; batches are drawn with replacement, as the book's)."""


MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """argparse type: a ``jax.random.key`` seed, an integer in [0, 2**32 - 1].

    Larger seeds are refused: without x64, ``jax.random.key`` keeps only their low 32
    bits, so ``key(2**32)`` is silently ``key(0)``.
    """
    value = _number(int, text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to 2**32 - 1 = {MAX_SEED:,} (jax.random.key keeps "
            f"32 bits), got {value}"
        )
    return value


def out_folder(text: str) -> Path:
    """argparse type of ``--out``: a folder path; ``''`` is refused (it would write into
    the current folder). Whether it is a folder is checked by :func:`out_dir`."""
    if not text:
        raise argparse.ArgumentTypeError(
            "is empty; pass a folder (--out . writes into the current folder)"
        )
    return Path(text)


def data_folder(text: str) -> Path:
    """argparse type of ``--data-dir``: an existing folder (given explicitly, a path that
    is empty, missing or a file is a mistake; without the flag the default search of
    :func:`funcnet.datasets.load` applies)."""
    if not text:
        raise argparse.ArgumentTypeError("is empty; pass the folder holding the IDX files")
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is not a folder (pass the folder holding the IDX files)"
        )
    return path


def checkpoint_file(text: str) -> Path:
    """argparse type of ``--checkpoint``: a file that can be written (its folder exists and
    is writable, it is not a folder), checked before any work as ``fit`` checks it
    (:func:`funcnet._checks.output_file_problem`)."""
    from funcnet._checks import output_file_problem

    problem = output_file_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return Path(text)


def weights_file(text: str) -> Path:
    """argparse type of a weights file (``--weights``, ``--params``, ``--init``): not
    empty, and if it exists a regular file (a folder, a device such as /dev/zero, a FIFO
    are refused: they would be read forever or fail with an unrelated message). A missing
    file is reported when it is read (naming it), so that a command line can be checked
    before its weights exist; what a file holds is checked by :func:`load_net_weights`."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("is empty; pass a weights file (.npz or .pkl)")
    if not path.exists():
        return path
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a weights file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(
            f"{text} is not a regular file (a device, FIFO or socket), not a weights file"
        )
    return path


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr (exit 2):
    ``prog: error: argument --batch: must be ... (see --help)``, not the usage block; and
    no abbreviated flags (``allow_abbrev=False``)."""

    def __init__(self, *args: Any, allow_abbrev: bool = False, **kwargs: Any) -> None:
        # no abbreviations: ``--iter 200`` must not silently mean ``--iters 200``
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(name: str, description: str | None) -> ArgumentParser:
    """The command line of experiment ``name``: ``prog`` is ``python -m experiments.NAME``,
    errors are one line (:class:`ArgumentParser`); ``description`` is its first paragraph."""
    first = description.strip().split("\n\n")[0] if description else None
    return ArgumentParser(prog=f"python -m experiments.{name}", description=first)


def _prog() -> str:
    """How the running command was called: ``python -m experiments.X`` (or the script)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "experiment"


def _raised_by_us(e: BaseException) -> bool:
    """True when ``e`` was raised in funcnet's or the experiments' own code (its message
    was written for a user), False when it comes from deeper (JAX, NumPy, the stdlib)."""
    if type(e).__module__.split(".")[0] in ("funcnet", "experiments"):
        return True  # funcnet's own exception types
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = Path(tb.tb_frame.f_code.co_filename).resolve()
    return any(where.is_relative_to(root) for root in _OWN_CODE)


_OWN_CODE = (Path(datasets.__file__).resolve().parents[1], Path(__file__).resolve().parent)


def error_message(e: BaseException) -> str:
    """The text of ``e`` for a command line.

    The message, with the exception's type where the message alone says too little
    (``KeyError: 'W3'``, an empty message, an error raised outside funcnet, which also
    gets a pointer to ``FUNCNET_TRACEBACK=1``); a message of several lines (a missing data
    set's instructions) keeps its further lines, indented.
    """
    text = str(e).strip()
    ours = _raised_by_us(e)
    if not text or not ours or isinstance(e, (LookupError, AssertionError)):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    first, *rest = text.splitlines()
    if not ours:
        first += " [FUNCNET_TRACEBACK=1 shows where]"
    return "\n".join([first, *(f"  {line.strip()}" for line in rest if line.strip())])


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no real file descriptor (tests)
        pass


COMPILATION_CACHE_ENV = "FUNCNET_COMPILATION_CACHE"


def use_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Opt in to JAX's persistent compilation cache: compiled programs are kept in
    ``path`` (default: ``$FUNCNET_COMPILATION_CACHE`` if set, else nothing happens), so a
    second run of the same experiment skips XLA's compilation (every program, however
    short its compile time). Returns the folder used, or None."""
    path = path if path is not None else os.environ.get(COMPILATION_CACHE_ENV) or None
    if path is None:
        return None
    import jax

    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> None:
    """Run an experiment's ``main`` as a command.

    An error becomes ``python -m experiments.X: error: message`` on stderr (one line; a
    message of several lines, like a missing data set's instructions, keeps them, indented
    under it) and exit status 1; ``FUNCNET_TRACEBACK=1`` shows the full traceback instead.
    Ctrl-C exits with status 130; a closed output pipe (``... | head``) exits quietly with
    141. These exits skip the interpreter's teardown (:func:`_exit_now`). Tests call
    ``main(argv)`` directly and see the exceptions.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = _prog()
    use_compilation_cache()
    _interrupt.raise_on_ctrl_c()  # from here Ctrl-C unwinds: temporary files are removed
    try:
        try:
            main(argv)
        finally:
            release_claims()  # the output folders are free for other runs from here
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        _exit_now(130)
    except BrokenPipeError:  # the reader went away (``... | head``): stop quietly
        _silence_stdout()
        _exit_now(141)  # 128 + SIGPIPE, as a shell reports it
    except Exception as e:  # noqa: BLE001 - a command line reports, it does not trace
        if os.environ.get("FUNCNET_TRACEBACK", "") not in ("", "0"):
            traceback.print_exc()
        else:
            print(f"{prog}: error: {error_message(e)}", file=sys.stderr)
        _exit_now(1)


_exit_now = _interrupt.exit_now  # a module global: tests replace it


def add_dataset_flag(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--dataset {auto,mnist,mnist-5k,fashion-mnist}`` and ``--data-dir DIR`` (read by
    :func:`load_dataset` given the parsed ``args``)."""
    parser.add_argument(
        "--dataset",
        choices=datasets.DATASET_CHOICES,
        default=default,
        help="data set: auto (full MNIST if downloaded, else the embedded 5k subset), "
        "mnist, mnist-5k or fashion-mnist (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        type=data_folder,
        default=None,
        help="folder holding the data set's four IDX files, searched first (default: "
        "$FUNCNET_DATA_DIR/NAME, then the cache)",
    )


def add_overwrite_flag(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: what :func:`claim`'s refusal tells the user to pass; every command
    that claims its output folder has it."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results in the output folder even when they were written with "
        "other settings (default: refuse, naming the settings that differ)",
    )


def add_out_flag(parser: argparse.ArgumentParser, name: str, per_dataset: bool = False) -> None:
    """``--out DIR``, default ``runs/NAME``; with ``per_dataset``, ``runs/NAME/<data set>``
    (the data set actually used, see :func:`run_dir`), so runs on different data sets do
    not overwrite each other. Also ``--overwrite`` (:func:`add_overwrite_flag`)."""
    add_overwrite_flag(parser)
    if per_dataset:
        parser.add_argument(
            "--out",
            type=out_folder,
            default=None,
            help=f"output folder (default: runs/{name}/<data set used>, e.g. runs/{name}/mnist-5k)",
        )
    else:
        parser.add_argument(
            "--out",
            type=out_folder,
            default=Path("runs") / name,
            help="output folder (default: %(default)s)",
        )


def run_dir(
    out: str | Path | None, name: str, dataset: str, args: argparse.Namespace | None = None
) -> Path:
    """The output folder of a run: ``out`` if given, else ``runs/NAME/DATASET``; created
    by :func:`out_dir`, and with ``args`` checked by :func:`claim`."""
    path = out_dir(Path("runs") / name / dataset if out is None else out)
    return path if args is None else claim(path, name, args, dataset)


def out_dir(path: str | Path) -> Path:
    """Create the output folder (and parents) and return it as a Path.

    Raises:
        NotADirectoryError: ``path`` (or a parent) exists and is not a folder.
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(f"--out {path}: {p} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------
# Output folders: a run never silently replaces results written with other settings

SETTINGS_FILE = "settings.json"
"""Written into each output folder: the experiment and the settings of the results there."""

NOT_SETTINGS = frozenset({"out", "overwrite", "checkpoint", "data_dir"})
"""Flags that do not change a run's results (where they go, where data is read from)."""

_CLAIMED: dict[Path, dict[str, Any]] = {}  # folder -> its settings record, written lazily
_LOCKS: dict[Path, int] = {}  # folder -> the descriptor holding its lock (this process)


class OtherSettings(RuntimeError):
    """The output folder holds results written with other settings."""


class FolderInUse(RuntimeError):
    """Another run, still running, has claimed the output folder."""


def _lock(folder: Path) -> bool:
    """Lock ``folder`` for this process (``flock`` on the folder itself, exclusive, not
    waiting); True if this call took the lock, False if this process already held it or
    the file system has no locks (then nothing is locked).

    The lock is the kernel's: it goes when the process ends however it ends (SIGKILL
    too), so no stale lock is ever left, and the folder gets no file of its own.

    Raises:
        FolderInUse: another process holds it.
    """
    if fcntl is None or folder in _LOCKS:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a folder we may write but not read: not lockable, go on unlocked
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderInUse(
            f"{folder} is being written by another run that is still running (it claimed "
            "the folder first); wait for it to end, or pass --out DIR to write this run "
            "elsewhere"
        ) from None
    except OSError:  # no flock on this file system
        os.close(fd)
        return False
    _LOCKS[folder] = fd
    return True


def release_claims() -> None:
    """Give up this process's claims on output folders (their locks, and the settings
    records not yet written): another run may write there from now on. Called when an
    experiment's ``main`` returns or fails (:func:`run`); a process that ends, however
    it ends, releases them too."""
    _CLAIMED.clear()
    while _LOCKS:
        _, fd = _LOCKS.popitem()
        os.close(fd)  # closing the last descriptor releases the flock


def settings_of(
    args: argparse.Namespace, dataset: str | None = None, ignore: Sequence[str] = ()
) -> dict[str, Any]:
    """The flags of ``args`` that decide a run's results, as plain JSON values (not
    :data:`NOT_SETTINGS` nor ``ignore``); ``dataset``, if given, replaces ``--dataset``
    (``auto`` resolved to the set used)."""
    settings = {
        k: to_json_value(v)
        for k, v in sorted(vars(args).items())
        if k not in NOT_SETTINGS and k not in ignore
    }
    if dataset is not None:
        settings["dataset"] = dataset
    return settings


def claim(
    out: str | Path,
    name: str,
    args: argparse.Namespace,
    dataset: str | None = None,
    ignore: Sequence[str] = (),
) -> Path:
    """The output folder ``out`` (created), claimed by this run and checked against the
    settings of the results already in it.

    Claiming is atomic: the folder is locked (``flock``, exclusive) for as long as this
    run lasts, so a second run started while the first still runs is refused at once,
    whatever its settings, instead of both writing there (each having checked
    ``settings.json`` before the other wrote it). The lock is released when ``main``
    returns or fails (:func:`release_claims`, called by :func:`run`) or the process ends,
    even by SIGKILL; it leaves no file behind. The same process may claim a folder again.

    The folder's ``settings.json`` records the experiment ``name`` and the settings
    (:func:`settings_of`) of the run that wrote its results; it is written with this run's
    first output (:func:`save`, :func:`write_json`, :func:`save_params`), so a run that
    fails before writing anything changes nothing.

    Raises:
        FolderInUse: another run, still running, claimed the folder (``--overwrite``
            does not override this).
        OtherSettings: the folder holds results of another experiment or other settings
            and ``args.overwrite`` is not set; the message names what differs.
        NotADirectoryError: ``out`` (or a parent) exists and is not a folder.
    """
    out = out_dir(out)
    record = {"experiment": name, "settings": settings_of(args, dataset, ignore)}
    locked_here = _lock(out.resolve())
    try:
        _check_settings_file(out, record, getattr(args, "overwrite", False))
    except BaseException:
        if locked_here:  # refused: the folder is left to others again
            os.close(_LOCKS.pop(out.resolve()))
        raise
    _CLAIMED[out.resolve()] = record
    return out


def _check_settings_file(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Refuse ``out`` when its ``settings.json`` records another experiment or other
    settings than ``record`` (unless ``overwrite``)."""
    marker = out / SETTINGS_FILE
    if marker.exists() and not overwrite:
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError):
            old = {}
        if not isinstance(old, dict):
            old = {}
        differences = _differences(old, record)
        if differences:
            raise OtherSettings(
                f"{out} holds the results of a run with other settings ({differences}); "
                "pass --out DIR to write this run elsewhere, or --overwrite to replace them"
            )


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("experiment") != new["experiment"]:
        return f"experiment {old.get('experiment')} there, {new['experiment']} here"
    a, b = old.get("settings") or {}, new["settings"]
    out = []
    for k in list(a) + [k for k in b if k not in a]:
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            flag = "--" + k.replace("_", "-")
            out.append(f"{flag} {a.get(k, '<absent>')} there, {b.get(k, '<absent>')} here")
    return "; ".join(out)


def mark_written(folder: str | Path) -> None:
    """Record the claimed settings of ``folder`` now: for an experiment that writes its
    outputs by other means than :func:`save`, :func:`write_json` and :func:`save_params`
    (e.g. ``Graph.render``), called before it writes them."""
    _mark(Path(folder) / SETTINGS_FILE)


def _mark(path: Path) -> None:
    """Write the settings record of ``path``'s folder, if it was claimed (once)."""
    folder = Path(path).parent.resolve()
    record = _CLAIMED.pop(folder, None)
    if record is not None:
        write_json(folder / SETTINGS_FILE, record)


def save_params(path: str | Path, params: Any) -> Path:
    """:func:`funcnet.io.save_params` (atomic) into a claimed folder (see :func:`claim`)."""
    from funcnet import io as fio

    _mark(Path(path))
    fio.save_params(path, params)
    return Path(path)


def load_dataset(name: str, **options: Any) -> datasets.Dataset:
    """``funcnet.datasets.load(name)``, printing which set was used and any notice.

    The notice of a fallback to the subset (``"auto"`` without full MNIST) is printed as
    ``note: ...`` on stdout, in place of the library's :class:`SubsetWarning` (the same
    text), so the program's output says which data it used: in full the first time for
    this cache (:func:`funcnet.datasets.first_time`), afterwards in one line.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", datasets.SubsetWarning)
        data = datasets.load(name, **options)
    if data.notice:
        if datasets.first_time(data.notice):
            print(f"note: {data.notice}")
        else:
            print(
                "note: full MNIST is not present, so the embedded subset mnist-5k is used "
                "(`python -m funcnet.datasets download mnist` gets the full set; "
                "--dataset mnist-5k asks for the subset without this note)"
            )
    print(f"data set: {data.name} ({len(data.train[0]):,} train / {len(data.test[0]):,} test)")
    return data


def params_or_latest(params: Path | None, producer: str, command: str) -> Path:
    """``params`` if given, else the newest ``runs/PRODUCER/*/params.npz`` (printing which
    file is used), for the experiments whose ``--params`` another experiment makes.

    Raises:
        FileNotFoundError: no ``--params`` and no such file; the message gives ``command``,
            the exact command that makes one.
    """
    if params is not None:
        return params
    found = sorted((Path("runs") / producer).glob("*/params.npz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"no --params given and no trained weights in runs/{producer}/*/params.npz; "
            f"make them with `{command}` (or pass --params FILE)"
        )
    print(f"--params not given: using {found[-1]} (the latest {producer} run's)")
    return found[-1]


def load_net_weights(
    path: str | Path, flag: str, net: str, keys: Sequence[str], hint: str = ""
) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the weights file ``path`` (``.npz`` or the book's ``.pkl``,
    :func:`funcnet.io.load_weights`), each checked to be a floating-point array: what
    every experiment that reads a net's weights (``--weights``, ``--params``, ``--init``)
    uses, so that each says the same about a file it cannot use.

    Args:
        path: the file. flag: the option that named it (``"--params"``), for messages.
        net: the net's name for messages (``"DeepConvNet"``). keys: the arrays needed.
        hint: appended to the message about missing keys (e.g. how to make such weights).

    Raises:
        ValueError: naming the flag, the file, what it holds and what was expected: a
            training checkpoint (``fit(checkpoint_path=...)``) rather than weights, not a
            dict of arrays, keys missing (and those it has), an entry that is not an
            array, or not floating-point.
        funcnet.io.ParamsFileError: the file is not a weights file (empty, truncated,
            text, another format: the message says which).
        OSError: it cannot be read.
    """
    import jax.numpy as jnp

    from funcnet import io as fio
    from funcnet.train.checkpoint import is_checkpoint

    loaded = fio.load_weights(path)
    wanted = " ".join(keys)
    if is_checkpoint(loaded):
        raise ValueError(
            f"{flag} {path} is a training checkpoint (written by fit(checkpoint_path=...): "
            f"the whole training state, its arrays unnamed), not weights of the {net} "
            f"({wanted}); "
            "pass the params.npz the training run wrote into its output folder"
        )
    if not isinstance(loaded, dict):
        raise ValueError(
            f"{flag} {path} holds a {type(loaded).__name__}, not a dict of arrays named {wanted}"
        )
    missing = [k for k in keys if k not in loaded]
    if missing:
        has = " ".join(sorted(map(str, loaded))) or "no arrays"
        raise ValueError(
            f"{flag} {path} lacks {', '.join(missing)}: the {net} needs {wanted}, the file "
            f"has {has}{hint}"
        )
    out = {}
    for k in keys:
        value = loaded[k]
        if not isinstance(value, (np.ndarray, np.generic)) and not hasattr(value, "__array__"):
            raise ValueError(
                f"{flag} {path}: {k} is a {type(value).__name__}, not an array (the {net} "
                f"needs one array per name: {wanted})"
            )
        value = np.asarray(value)
        if not jnp.issubdtype(value.dtype, jnp.floating):  # bfloat16 too (NumPy: kind V)
            raise ValueError(f"{flag} {path}: {k} must be floating-point, got {value.dtype}")
        out[k] = value
    return out


def accuracy_of_scores(scores: Any, t: Any) -> float:
    """The accuracy of ``scores (N, C)`` against labels ``t (N,)`` through the library's
    checked path (:func:`funcnet.nets.accuracy`): NaN when any row of scores is not
    finite (NaN weights, an overflow), never a number made from NaN's argmax."""
    import jax

    from funcnet import nets

    def of(s, labels):
        return nets.accuracy(lambda _, x: x, {}, s, labels)

    return float(jax.jit(of)(np.asarray(scores), np.asarray(t)))


def first_examples(
    data: datasets.Dataset, train_size: int | None, test_size: int | None
) -> datasets.Dataset:
    """``data`` with only the first ``train_size`` training and ``test_size`` test examples
    (``None``: all of that set), for the experiments' ``--train-size``/``--test-size``."""
    (x_train, t_train), (x_test, t_test) = data.train, data.test
    return data._replace(
        train=(x_train[:train_size], t_train[:train_size]),
        test=(x_test[:test_size], t_test[:test_size]),
    )


def sample_label(n_train: int, n_test: int) -> str:
    """How a per-epoch accuracy line names the images it was measured on."""
    return f"{n_train:,} images each" if n_train == n_test else f"{n_train:,} and {n_test:,}"


def progress_enabled() -> bool:
    """Show progress bars only on an interactive terminal, never in CI logs."""
    return not os.environ.get("CI") and sys.stdout.isatty() and sys.stderr.isatty()


def figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A new Agg-rendered figure (``Figure(figsize=(width, height))``)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig: Figure, path: str | Path) -> Path:
    """Write the figure as PNG (or by extension) atomically and return the path.

    Written through :func:`funcnet._atomic.atomic_file`: an error, Ctrl-C or SIGTERM
    while it is written leaves the previous file whole and no temporary file behind.
    """
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    _mark(path)
    with atomic_file(path) as f:
        fig.savefig(f, dpi=DPI, format=fmt)
    return path


def to_json_value(obj: Any) -> Any:
    """``obj`` with NumPy values, Paths and tuples made plain, and every non-finite float
    (NaN, ±inf) made ``None``: strict JSON has no NaN, and a reader must not mistake a
    missing figure for a number."""
    if isinstance(obj, dict):
        return {str(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_value(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json_value(obj.tolist())
    if isinstance(obj, np.generic):
        return to_json_value(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict, indented JSON (see :func:`to_json_value`), atomically."""
    path = Path(path)
    text = json.dumps(to_json_value(obj), indent=2, allow_nan=False) + "\n"
    if path.name != SETTINGS_FILE:
        _mark(path)
    write_text(path, text)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`funcnet._atomic.atomic_file`)."""
    path = Path(path)
    with atomic_file(path) as f:
        f.write(text.encode())
    return path


def image_grid(
    images: np.ndarray,
    predicted: Sequence[int],
    true: Sequence[int],
    class_names: Sequence[str],
    path: str | Path,
    title: str,
    rows: int = 5,
    cols: int = 5,
) -> Path:
    """Save a rows×cols grid of 28×28 images titled "pred / true" (wrong ones in red).

    Args:
        images: ``(N, 784)`` or ``(N, 1, 28, 28)`` images, N >= rows·cols.
        predicted, true: label indices, one per image.
        class_names: the name of each label value.
    """
    k = rows * cols
    images = np.asarray(images)[:k].reshape(k, 28, 28)
    fig = figure(width=1.75 * cols, height=1.9 * rows + 0.4)
    fig.suptitle(title)
    axes = fig.subplots(rows, cols)
    for ax, image, p, t in zip(axes.flat, images, predicted, true, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=float(max(1.0, image.max())))
        ok = int(p) == int(t)
        ax.set_title(
            f"pred: {class_names[int(p)]}\ntrue: {class_names[int(t)]}",
            fontsize=8,
            color="black" if ok else "red",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)
