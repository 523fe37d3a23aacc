"""Command line: ``python -m funcnet.datasets {download NAME [--data-dir D] | info}``.

``download`` fetches the missing files of an IDX data set (MNIST, Fashion-MNIST) and
verifies all four; ``info`` shows, for every data set, which files are present, where,
and whether their payload checksums pass, plus the embedded subset and the cache.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from funcnet import datasets
from funcnet.datasets import _cache, files, mnist5k, specs
from funcnet.datasets.download import DEFAULT_TIMEOUT, DownloadProgress


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
            files.load_verified(status.path, status.file, spec)
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
    if missing:
        print(f"{spec.title}: downloading {', '.join(missing)} into {target}", file=out)
    else:
        print(f"{spec.title}: all four files are present; checking them", file=out)
    try:
        datasets.fetch(spec, args.data_dir, timeout=args.timeout, progress=_progress_printer(err))
    except files.DatasetNotFoundError as e:
        print(f"error: {e}", file=err)
        return 1
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


def main(argv: list[str] | None = None, out=None, err=None) -> int:
    """Run the command line; returns the exit status (0 on success)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    parser = argparse.ArgumentParser(
        prog="python -m funcnet.datasets", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help="fetch an IDX data set and verify its checksums")
    dl.add_argument("name", choices=sorted(specs.SPECS))
    dl.add_argument("--data-dir", type=Path, default=None, help="directory for the files")
    dl.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds")
    info = sub.add_parser("info", help="show which data sets are present and verified")
    info.add_argument("--data-dir", type=Path, default=None, help="also look here first")
    args = parser.parse_args(argv)
    command = cmd_download if args.command == "download" else cmd_info
    return command(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
