"""``glasscnn data``: list the data sets found on this machine, fetch the missing ones."""

from __future__ import annotations

import argparse
import sys
import time

from glasscnn.data import datasets
from glasscnn.data.paths import ENV_VAR, data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data list`` and ``data fetch NAME`` to the ``glasscnn`` parser."""
    parser = subparsers.add_parser(
        "data", help="list and fetch data sets (CIFAR-10, MNIST, Fashion-MNIST)",
        description="Data sets live in --root, else $GLASSCNN_DATA, else the cache folder "
                    "(~/.cache/glasscnn); see docs/data.md.",
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    listing = actions.add_parser("list", help="what is present, where, how many images, "
                                              "checksums OK or not")
    listing.add_argument("--root", help="data folder to look in (default: $GLASSCNN_DATA, "
                                        "the cache folder and system locations)")
    fetch = actions.add_parser("fetch", help="download a data set (MD5-checked, atomic)")
    fetch.add_argument("name", choices=[*datasets.SPECS, "all"], help="data set to fetch")
    fetch.add_argument("--root", help="data folder to download into")
    fetch.add_argument("--mirror", help="base URL or local folder holding the official files, "
                                        "used instead of the official source")
    fetch.add_argument("--force", action="store_true",
                       help="download even if a copy is already found")
    parser.set_defaults(func=run, data_parser=parser)


def _progress(name: str, done: int, total: int | None) -> None:
    size = f"{done / 1e6:.1f} / {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    print(f"\r  {name}: {size}", end="", file=sys.stderr, flush=True)


def _list(args: argparse.Namespace) -> int:
    print(f"data folder: {data_dir(args.root)}"
          + ("" if args.root else f" (--root or ${ENV_VAR} to change)"))
    header = f"{'NAME':<14} {'STATUS':<8} {'TRAIN':>7} {'TEST':>7}  {'CHECKSUM':<10} WHERE"
    print(header)
    failed = False
    for name in datasets.SPECS:
        st = datasets.status(name, args.root)
        if not st.present:
            print(f"{name:<14} {'absent':<8} {'-':>7} {'-':>7}  {'-':<10} "
                  f"get it with: {datasets.fetch_hint(name)}")
            continue
        if st.problem:
            failed = True
            print(f"{name:<14} {'broken':<8} {'-':>7} {'-':>7}  {'-':<10} {st.problem}")
            continue
        failed |= not st.checksum.startswith(("ok", "unverified"))
        print(f"{name:<14} {'present':<8} {st.counts['train']:>7,} {st.counts['test']:>7,}  "
              f"{st.checksum:<10} {st.location} ({st.kind})")
    return 1 if failed else 0


def _fetch(args: argparse.Namespace) -> int:
    names = list(datasets.SPECS) if args.name == "all" else [args.name]
    for name in names:
        if not args.force:
            try:
                found = datasets.locate(name, args.root)
            except FileNotFoundError:
                pass
            else:
                print(f"{name}: already present at {found.path} (--force downloads anyway)")
                continue
        print(f"{name}: fetching into {data_dir(args.root) / datasets.get_spec(name).folder}",
              file=sys.stderr)
        start = time.perf_counter()
        try:
            path = datasets.fetch(name, args.root, mirror=args.mirror, force=True,
                                  progress=_progress)
        except OSError as err:
            print(f"\nglasscnn data fetch: error: {err}", file=sys.stderr)
            return 1
        print(file=sys.stderr)
        print(f"{name}: ready at {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch ``data list`` / ``data fetch``; returns the exit code."""
    if args.data_action == "list":
        return _list(args)
    if args.data_action == "fetch":
        return _fetch(args)
    args.data_parser.print_help()
    return 2
