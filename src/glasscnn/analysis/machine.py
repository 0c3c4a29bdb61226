"""This machine's limits for the roofline: sgemm GFLOP/s and copy bandwidth, measured once.

The result is cached as JSON in ``$XDG_CACHE_HOME/glasscnn/machine.json`` (default
``~/.cache/glasscnn/machine.json``) and measured again when the machine's fingerprint (host,
CPU count, NumPy version, thread settings) changes or when asked to.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/glasscnn/machine.json``, or ``~/.cache/glasscnn/machine.json``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "glasscnn" / "machine.json"


def fingerprint() -> dict[str, Any]:
    """What must match for a cached measurement to be reused."""
    return {
        "host": platform.node(), "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "threads": {v: os.environ.get(v, "") for v in THREAD_VARS},
    }


def best_seconds(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    """The fastest of ``repeat`` timed calls of ``fn`` (after ``warmup`` untimed ones).

    Args:
        fn: the work, called with no arguments.
        repeat: timed calls (at least 1).
        warmup: untimed calls first.

    Returns:
        Seconds of the fastest timed call.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_machine(gemm_size: int = 2048, copy_bytes: int = 256 * 2**20,
                    repeat: int = 10) -> dict[str, Any]:
    """Measure float32 GEMM throughput and large-copy bandwidth (best of ``repeat``).

    Args:
        gemm_size: n of the n×n×n sgemm (2·n³ FLOPs per product).
        copy_bytes: size of the copied array; the bandwidth counts the bytes read plus the
            bytes written (2 × ``copy_bytes``), STREAM's convention.
        repeat: timed runs after one untimed run.

    Returns:
        ``{"sgemm_gflops", "copy_gbs", "gemm_size", "copy_bytes", "measured_at",
        "fingerprint"}``.
    """
    if gemm_size <= 0 or copy_bytes <= 0 or repeat <= 0:
        raise ValueError(f"measure_machine: sizes and repeat must be positive, got gemm_size="
                         f"{gemm_size}, copy_bytes={copy_bytes}, repeat={repeat}")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((gemm_size, gemm_size), dtype=np.float32)
    b = rng.standard_normal((gemm_size, gemm_size), dtype=np.float32)
    c = np.empty_like(a)
    gemm_s = best_seconds(lambda: np.matmul(a, b, out=c), repeat)
    src = np.ones(max(1, copy_bytes // 4), dtype=np.float32)
    dst = np.zeros_like(src)
    copy_s = best_seconds(lambda: np.copyto(dst, src), repeat)
    return {
        "sgemm_gflops": 2 * gemm_size**3 / gemm_s / 1e9,
        "copy_gbs": 2 * src.nbytes / copy_s / 1e9,
        "gemm_size": gemm_size, "copy_bytes": int(src.nbytes),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint(),
    }


def machine_info(refresh: bool = False, path: str | os.PathLike | None = None,
                 **measure_kwargs: Any) -> dict[str, Any]:
    """The cached measurement of this machine, measuring (and caching) it when needed.

    Args:
        refresh: measure again even if a matching cache exists.
        path: cache file (default ``cache_path()``).
        **measure_kwargs: passed to ``measure_machine``.

    Returns:
        ``measure_machine``'s dict plus ``"cached"`` (whether it came from the file) and
        ``"path"``.
    """
    path = Path(path) if path is not None else cache_path()
    if not refresh and path.is_file():
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = None
        if (isinstance(info, dict) and info.get("fingerprint") == fingerprint()
                and isinstance(info.get("sgemm_gflops"), float)
                and isinstance(info.get("copy_gbs"), float)):
            return {**info, "cached": True, "path": str(path)}
    info = measure_machine(**measure_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, path)
    return {**info, "cached": False, "path": str(path)}


def ridge_point(info: dict[str, Any]) -> float:
    """FLOPs per byte where the roofline bends: peak GFLOP/s ÷ bandwidth GB/s."""
    return info["sgemm_gflops"] / info["copy_gbs"]
