"""Entry point of the ``glasscnn`` command: collects the sub-commands and dispatches.

Whatever goes wrong inside a sub-command ends as one line on stderr and a non-zero exit
status, never a traceback: bad input (``ValueError``, ``KeyError``, a missing file) and
operating-system errors (permissions, a folder where a file was expected, a full disk) exit
with 1, Ctrl-C with 130, a closed pipe (``glasscnn … | head``) quietly with 1. Any other
(unexpected) error is one line too when ``glasscnn`` runs as a program; set
``GLASSCNN_DEBUG=1`` to see its traceback. Called from Python with an explicit ``argv``,
``main`` lets an unexpected error propagate, so that the caller sees it.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys

from glasscnn import __version__
from glasscnn.cli import commands
from glasscnn.io import CheckpointMismatchError

DEBUG_VAR = "GLASSCNN_DEBUG"
EXPECTED = (ValueError, KeyError, OSError, MemoryError, ImportError, RecursionError)
"""Errors a user can cause (bad input, damaged files, the system): one line, exit 1."""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every sub-command of ``glasscnn.cli.commands``."""
    parser = argparse.ArgumentParser(
        prog="glasscnn",
        description="CNNs in NumPy with nothing hidden: operators, training, analysis.",
    )
    parser.add_argument("--version", action="version", version=f"glasscnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) if len(lines) <= 3 else "; ".join(lines[:3]) + " …"


def error_message(err: BaseException) -> str:
    """The one-line text ``glasscnn`` prints for ``err`` (after ``glasscnn COMMAND: error:``).

    An ``OSError`` names its file and the system's reason (``runs/x: Permission denied``;
    a full disk says so); weights that do not fit a model keep their key-by-key listing
    below the line; a ``MemoryError`` says how much was asked for when NumPy says;
    any other unexpected error gives its type and message.
    """
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) and err.strerror:
        where = f"{err.filename}: " if err.filename is not None else ""
        reason = err.strerror
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            reason += " (the disk is full: free some space or choose another folder)"
        return _one_line(where + reason)
    if isinstance(err, MemoryError):
        return _one_line(f"out of memory {err}".rstrip() + "; try a smaller batch or input")
    if isinstance(err, CheckpointMismatchError):
        return str(err)
    if isinstance(err, ValueError | KeyError | FileNotFoundError | ImportError):
        return _one_line(err.args[0] if isinstance(err, KeyError) and err.args else err)
    return _one_line(f"{type(err).__name__}: {err} (set {DEBUG_VAR}=1 for the traceback)")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Run ``glasscnn`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Errors in ``EXPECTED``, Ctrl-C and a closed pipe end as one line and an exit code; any
    other exception does too when ``argv`` is None (the program), and propagates otherwise.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        print(f"\nglasscnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED as err:
        if os.environ.get(DEBUG_VAR):
            raise
        print(f"glasscnn {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if argv is not None or os.environ.get(DEBUG_VAR):
            raise
        print(f"glasscnn {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
