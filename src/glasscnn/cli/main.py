"""Entry point of the ``glasscnn`` command: collects the sub-commands and dispatches."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from glasscnn.cli import commands


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every sub-command of ``glasscnn.cli.commands``."""
    parser = argparse.ArgumentParser(
        prog="glasscnn",
        description="CNNs in NumPy with nothing hidden: operators, training, analysis.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``glasscnn`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"glasscnn {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
