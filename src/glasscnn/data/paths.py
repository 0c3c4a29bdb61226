"""Where data sets live: an explicit root, ``$GLASSCNN_DATA``, or the platform cache folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "GLASSCNN_DATA"


def cache_dir() -> Path:
    """The platform cache folder for glasscnn data.

    Linux and other Unix: ``$XDG_CACHE_HOME/glasscnn`` (default ``~/.cache/glasscnn``);
    macOS: ``~/Library/Caches/glasscnn``; Windows: ``%LOCALAPPDATA%\\glasscnn\\Cache``.

    Returns:
        The folder's path (not created here).
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "glasscnn" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "glasscnn"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "glasscnn"


def data_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data folder: ``root`` if given, else ``$GLASSCNN_DATA``, else ``cache_dir()``.

    Args:
        root: an explicit folder; ``~`` is expanded.

    Returns:
        The folder's path (not created here; ``fetch`` creates it when it downloads).
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return cache_dir()
