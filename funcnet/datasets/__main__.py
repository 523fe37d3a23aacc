"""Command line: ``python -m funcnet.datasets {download NAME [--data-dir D] | info}``.

``download`` fetches the missing files of an IDX data set (MNIST, Fashion-MNIST) and
verifies all four; ``info`` shows, for every data set, which files are present, where,
and whether their payload checksums pass (reading every byte: no stamp of an earlier
load is trusted), plus the embedded subset and the cache. Errors are one message on
stderr and exit status 1, never a traceback. The ``--help`` text is plain text.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from funcnet import datasets
from funcnet.datasets import _cache, files, mnist5k, specs
from funcnet.datasets.download import (
    DEFAULT_TIMEOUT,
    DownloadError,
    DownloadProgress,
    check_timeout,
)

_DESCRIPTION = "Download and verify the data sets that funcnet loads (MNIST, Fashion-MNIST)."

_EPILOG = f"""\
where files are looked for, in order (file by file, the first folder that has it wins):
  1. --data-dir DIR if given; else ${_cache.DATA_ENV}/NAME (if set), then NAME/ in the
     cache folder (${_cache.CACHE_ENV}, default ~/.cache/funcnet); downloads go to the
     first of these
  2. an OS package's folder (Fashion-MNIST: /usr/share/datasets/fashion-mnist)

environment:
  {_cache.DATA_ENV}=DIR    look for (and download into) DIR/NAME
  {_cache.CACHE_ENV}=DIR   the cache folder (default ~/.cache/funcnet)
  {_cache.OFFLINE_ENV}=1       never download

examples:
  python -m funcnet.datasets download mnist
  python -m funcnet.datasets info
"""


def _progress_printer(stream):
    """A progress callback writing one updating line per file to ``stream``."""
    last = {}

    def report(p: DownloadProgress) -> None:
        pct = None if not p.total else int(100 * p.done / p.total)
        key = (p.url, pct if pct is not None else p.done >> 20)
        if last.get("key") == key:
            return
        last["key"] = key
        size = f"{p.done / 1e6:.1f}" + (f" / {p.total / 1e6:.1f} MB" if p.total else " MB")
        end = "\n" if p.total and p.done >= p.total else ""
        pct_text = f" ({pct}%)" if pct is not None else ""
        print(f"\r  {p.url}: {size}{pct_text}", end=end, file=stream, flush=True)

    return report


def _verify_all(spec, data_dir) -> list[tuple[files.FileStatus, str, bool]]:
    """(status, text, ok) for each file: where it is and whether its checksum passes."""
    rows = []
    for status in files.locate(spec, data_dir):
        if status.path is None:
            rows.append((status, "missing", False))
            continue
        try:
            files.verify_file(status.path, status.file, spec)
            rows.append((status, f"checksum OK (MD5 {status.file.md5})", True))
        except (ValueError, OSError) as e:
            rows.append((status, f"FAILED: {e}", False))
    return rows


def _print_rows(rows, out) -> None:
    for status, text, _ in rows:
        where = status.path if status.path is not None else ""
        print(f"  {status.file.filename:28s} {text}", file=out)
        if where:
            print(f"  {'':28s} at {where}", file=out)


def cmd_download(args, out, err) -> int:
    spec = specs.SPECS[args.name]
    target = files.download_dir(spec, args.data_dir)
    missing = [s.file.filename for s in files.locate(spec, args.data_dir) if s.path is None]
    if missing and _cache.offline():
        print(
            f"error: {spec.title}: not downloading {', '.join(missing)}: downloads are "
            f"disabled ({_cache.OFFLINE_ENV} is set); unset it, or put the files in {target}",
            file=err,
        )
        return 1
    if missing:
        print(f"{spec.title}: downloading {', '.join(missing)} into {target}", file=out)
    else:
        print(f"{spec.title}: all four files are present; checking them", file=out)
    datasets.fetch(spec, args.data_dir, timeout=args.timeout, progress=_progress_printer(err))
    rows = _verify_all(spec, args.data_dir)
    _print_rows(rows, out)
    ok = all(r[2] for r in rows)
    print(f"{spec.title}: {'ready' if ok else 'NOT usable (see above)'}", file=out)
    return 0 if ok else 1


def cmd_info(args, out, err) -> int:
    ok = True
    print(f"cache dir: {_cache.cache_dir()}   (${_cache.CACHE_ENV})", file=out)
    env = os.environ.get(_cache.DATA_ENV)
    print(f"data dir:  {env or '(not set)'}   (${_cache.DATA_ENV})", file=out)
    for spec in specs.SPECS.values():
        dirs = files.search_dirs(spec, args.data_dir)
        rows = _verify_all(spec, args.data_dir)
        n_ok = sum(r[2] for r in rows)
        state = "complete, checksums OK" if n_ok == len(rows) else f"{n_ok}/4 files usable"
        print(f"\n{spec.name} ({spec.title}): {state}", file=out)
        print(f"  looked in: {', '.join(str(d) for d in dirs)}", file=out)
        _print_rows(rows, out)
        present = [r for r in rows if r[0].path is not None]
        ok &= all(r[2] for r in present)
        if n_ok < len(rows):
            hint = f"  get it: python -m funcnet.datasets download {spec.name}"
            if spec.system_package:
                hint += f"  (or install the {spec.system_package})"
            print(hint, file=out)
    print("\nmnist-5k (embedded MNIST subset, 4,000 train / 1,000 test):", file=out)
    try:
        src = mnist5k.source()
        print(f"  source: {src}", file=out)
        mnist5k.load_uint8()
        print("  parsed and cached: OK", file=out)
    except (ModuleNotFoundError, ValueError, OSError) as e:
        print(f"  unavailable: {e}", file=out)
        ok = False
    full = all(s.path is not None for s in files.locate(specs.SPECS["mnist"], args.data_dir))
    print(f"\n'auto' loads: {'mnist (full)' if full else 'mnist-5k'}", file=out)
    return 0 if ok else 1


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        return check_timeout(float(text), "--timeout")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds > 0, got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m funcnet.datasets",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{download,info}")
    dl = sub.add_parser(
        "download",
        help="fetch a data set's missing files and verify all four",
        description="Fetch the missing files of a data set from its mirrors (each checked "
        "against its published MD5 before it gets its name), then verify all four.",
    )
    dl.add_argument("name", choices=sorted(specs.SPECS), help="the data set")
    dl.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"folder for the files (default: ${_cache.DATA_ENV}/NAME, else the cache folder)",
    )
    dl.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for a connection or the next block of data (default: %(default)s)",
    )
    info = sub.add_parser(
        "info",
        help="show which data sets are present and verify them",
        description="Show, for each data set, where its files are, and verify each file "
        "by reading all of it (a stamp from an earlier load is not trusted).",
    )
    info.add_argument("--data-dir", type=Path, default=None, help="also look in this folder first")
    return parser


def main(argv: list[str] | None = None, out=None, err=None) -> int:
    """Run the command line; returns the exit status (0 on success, 1 on an error, which
    is reported in one message without a traceback; 130 on Ctrl-C)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = _parser().parse_args(argv)
    command = cmd_download if args.command == "download" else cmd_info
    try:
        return command(args, out, err)
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
    except (files.DatasetNotFoundError, DownloadError, ValueError, OSError) as e:
        print(f"error: {e}", file=err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
