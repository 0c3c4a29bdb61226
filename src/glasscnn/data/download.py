"""Checked, atomic downloads: a file appears under its name only once it is whole and verified."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from glasscnn.io.atomic import create_temp_file, create_temp_folder

Progress = Callable[[str, int, "int | None"], None]
_CHUNK = 1 << 20


def file_md5(path: str | os.PathLike[str]) -> str:
    """MD5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_url(source: str) -> str:
    """A URL for ``source``: URLs pass through; a local folder or file becomes ``file://``."""
    if "://" in source:
        return source
    return Path(source).expanduser().resolve().as_uri()


def download(
    url: str,
    dest: str | os.PathLike[str],
    md5: str | None = None,
    *,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its MD5 when one is given.

    The bytes go to a hidden ``.NAME.*.part`` file in ``dest``'s folder, which is renamed to
    ``dest`` only when the download is complete and its checksum matches; on any failure
    the partial file is removed (and the folder, if this call created it and it is empty),
    so ``dest`` is either absent (or its old self) or whole. The file gets the permissions
    the umask gives; a partial file that a killed download left is removed by the next
    download of ``dest`` on this host.

    Args:
        url: http(s):// or file:// address.
        dest: the final path; its folder is created if needed.
        md5: expected hex digest, or None to skip the check.
        timeout: seconds to wait for the server on each read.
        progress: called as ``progress(name, bytes_done, bytes_total_or_None)``.

    Returns:
        ``dest`` as a Path.

    Raises:
        ValueError: checksum mismatch or a download shorter than announced.
        ConnectionError: the server could not be reached or answered with an error.
    """
    dest = Path(dest)
    new_folder = not dest.parent.exists()
    dest.parent.mkdir(parents=True, exist_ok=True)
    out, tmp = create_temp_file(dest, ".part")
    try:
        with out:
            digest, done, total = _copy(url, out, timeout, dest.name, progress)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done != total:
            raise ValueError(f"download: {url}: truncated: got {done} of {total} bytes")
        if md5 is not None and digest != md5.lower():
            raise ValueError(
                f"download: {url}: checksum mismatch: MD5 {digest}, expected {md5}"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if new_folder:
            with contextlib.suppress(OSError):
                dest.parent.rmdir()
        raise
    return dest


def _copy(
    url: str, out: IO[bytes], timeout: float, name: str, progress: Progress | None
) -> tuple[str, int, int | None]:
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(name, done, total)
    except http.client.IncompleteRead as err:
        raise ValueError(
            f"download: {url}: truncated: connection closed after {done + len(err.partial)} "
            "bytes"
        ) from None
    except urllib.error.URLError as err:
        raise ConnectionError(f"download: cannot fetch {url}: {err.reason}") from None
    except TimeoutError:
        raise ConnectionError(f"download: {url}: timed out after {timeout} s") from None
    return digest.hexdigest(), done, total


@contextlib.contextmanager
def atomic_folder(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder under a hidden temporary name; move it to ``dest`` only on success.

    Yields the temporary folder to fill (made with the permissions the umask gives). On an
    exception it is removed and ``dest`` is left as it was; on success an existing ``dest``
    is replaced.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp_folder(dest, ".part")
    try:
        yield tmp
        if dest.exists():
            old = create_temp_folder(dest, ".old")
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
