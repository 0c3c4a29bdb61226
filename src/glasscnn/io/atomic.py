"""Atomic writes: a hidden temporary next to the target, renamed over it when complete.

A temporary is named ``.<target name>.<host>.<pid>.<random><suffix>`` and created with
the permissions the umask gives (as ``open`` would create the file), not the owner-only
permissions of ``tempfile.mkstemp``. Before creating one, the temporaries that an earlier
process on the same host left for the same target (killed while writing) are removed once
that process is gone, so an interrupted write leaves nothing behind for long.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

LEGACY_AGE_S = 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _stale(entry: Path, prefix: str, suffix: str, host: str) -> bool:
    middle = entry.name[len(prefix):-len(suffix)]
    parts = middle.rsplit(".", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0] == host and int(parts[1]) != os.getpid() and not _alive(int(parts[1]))
    if len(parts) == 1 and len(middle) == 8:
        with contextlib.suppress(OSError):
            return time.time() - entry.lstat().st_mtime > LEGACY_AGE_S
    return False


def remove_stale(target: str | os.PathLike, suffix: str) -> list[Path]:
    """Remove the temporaries of ``target`` whose writer has died; return what was removed.

    A temporary counts as stale when its name says it was made on this host by a process
    that no longer exists, or when it has the random 8-character name of older glasscnn
    versions and is more than an hour old.
    """
    target = Path(target)
    prefix, host = f".{target.name}.", socket.gethostname()
    removed = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            name = entry.name
            if name.startswith(prefix) and name.endswith(suffix) and \
                    len(name) > len(prefix) + len(suffix) and \
                    _stale(entry, prefix, suffix, host):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
                removed.append(entry)
    return removed


def temp_path(target: str | os.PathLike, suffix: str) -> Path:
    """A fresh temporary name next to ``target`` (after removing stale ones; see module)."""
    target = Path(target)
    remove_stale(target, suffix)
    token = secrets.token_hex(4)
    return target.parent / f".{target.name}.{socket.gethostname()}.{os.getpid()}.{token}{suffix}"


def create_temp_file(target: str | os.PathLike, suffix: str) -> tuple[BinaryIO, Path]:
    """Create and open a temporary file next to ``target`` with the umask's permissions."""
    while True:
        tmp = temp_path(target, suffix)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        return os.fdopen(fd, "wb"), tmp


def create_temp_folder(target: str | os.PathLike, suffix: str) -> Path:
    """Create a temporary folder next to ``target`` with the umask's permissions."""
    while True:
        tmp = temp_path(target, suffix)
        try:
            tmp.mkdir(0o777)
        except FileExistsError:
            continue
        return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, fsync, then rename.

    The file gets the permissions the umask gives (usually 0644). If the process is
    killed before the rename, ``path`` keeps its old content, and the temporary is
    removed by the next write to ``path`` on this host.

    Args:
        path: the final file name; its folder is created if needed.
        write: a callable receiving a binary file object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh, tmp = create_temp_file(path, ".tmp")
    try:
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
