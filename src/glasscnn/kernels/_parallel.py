"""A small shared thread pool for the fast kernels: batch chunks on two Python threads.

Technique: the chunks of a conv layer (im2col copy, GEMM, layout copies) run on the calling
thread and one worker thread at once, while OpenBLAS is held at one thread, so that copies
as well as GEMMs use both cores and no BLAS thread ever spins waiting for a busy core.
NumPy releases the GIL inside copies, ufuncs and BLAS calls, so the two threads overlap.

Never oversubscribed: the pool is used only when NumPy's bundled OpenBLAS is found and its
thread count can be set (``openblas_set_num_threads`` through ``ctypes``); during a
parallel section OpenBLAS runs one thread per caller, and its previous thread count is
restored afterwards. One parallel section runs at a time; a call made while another is
running (from another user thread, or nested) runs its chunks serially.

Switch: the environment variable ``GLASSCNN_THREADS`` (read at import) sets the number of
threads, default ``min(2, os.cpu_count())``; ``GLASSCNN_THREADS=1`` turns the pool off and
leaves every BLAS call at OpenBLAS's own threading. :func:`set_threads` changes it at run
time (tests and benchmarks).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

ENV = "GLASSCNN_THREADS"
_SYMBOLS = (  # (set, get) in NumPy's scipy-openblas wheels, then plain OpenBLAS builds
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)
_CORENAME = ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename")


class _Blas:
    """Get and set the thread count of the OpenBLAS that NumPy loaded, if it can be found."""

    def __init__(self) -> None:
        self.set_fn: Any = None
        self.get_fn: Any = None
        self.core = ""
        for path in _openblas_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for name in _CORENAME:
                if hasattr(lib, name):
                    corename = getattr(lib, name)
                    corename.argtypes, corename.restype = [], ctypes.c_char_p
                    self.core = (corename() or b"").decode("ascii", "replace")
                    break
            for set_name, get_name in _SYMBOLS:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    self.set_fn, self.get_fn = getattr(lib, set_name), getattr(lib, get_name)
                    self.set_fn.argtypes, self.set_fn.restype = [ctypes.c_int], None
                    self.get_fn.argtypes, self.get_fn.restype = [], ctypes.c_int
                    return

    @property
    def found(self) -> bool:
        """Whether the thread count can be read and set."""
        return self.set_fn is not None

    def get(self) -> int:
        """OpenBLAS's current thread count."""
        return int(self.get_fn())

    def set(self, n: int) -> None:
        """Set OpenBLAS's thread count (process-wide)."""
        self.set_fn(int(n))


def _openblas_paths() -> list[str]:
    """Candidate paths of the OpenBLAS shared library bundled with NumPy (wheel layouts)."""
    here = os.path.dirname(os.path.abspath(np.__file__))
    dirs = (os.path.join(os.path.dirname(here), "numpy.libs"), os.path.join(here, ".dylibs"))
    return [p for d in dirs for p in sorted(glob.glob(os.path.join(d, "*openblas*")))]


def _default_threads() -> int:
    """Thread count from ``GLASSCNN_THREADS``, else ``min(2, os.cpu_count())``."""
    value = os.environ.get(ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError as err:
            raise ValueError(f"glasscnn: {ENV} must be a positive integer, got {value!r}") from err
    return max(1, min(2, os.cpu_count() or 1))


_blas = _Blas()
_lock = threading.Lock()
_state: dict[str, Any] = {"threads": _default_threads(), "pool": None}


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's worker threads: start afresh."""
    global _lock
    _lock = threading.Lock()
    _state["pool"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def blas_found() -> bool:
    """Whether NumPy's OpenBLAS was found, so that its thread count can be controlled."""
    return _blas.found


def blas_core() -> str:
    """The kernel set NumPy's OpenBLAS chose when it loaded (``"SkylakeX"``, ``"Haswell"``,
    ...; ``OPENBLAS_CORETYPE`` overrides its choice), or ``""`` when it is not known."""
    return _blas.core


def threads() -> int:
    """How many threads a parallel section uses now: 1 when the pool is off or unusable."""
    return _state["threads"] if _blas.found else 1


def set_threads(n: int) -> int:
    """Set the number of threads of later parallel sections; return the previous setting.

    Args:
        n: threads, >= 1; 1 runs every chunk on the calling thread.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"glasscnn: threads must be a positive int, got {n!r}")
    with _lock:
        previous = _state["threads"]
        if n != previous and _state["pool"] is not None:
            _state["pool"].shutdown(wait=True)
            _state["pool"] = None
        _state["threads"] = n
    return previous


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Context: everything on the calling thread, the pool off and OpenBLAS at one thread.

    For profilers that see one thread only (cProfile), and for single-core timings; the
    previous settings come back on exit.
    """
    previous = set_threads(1)
    blas_before = _blas.get() if _blas.found else None
    if blas_before is not None:
        _blas.set(1)
    try:
        yield
    finally:
        if blas_before is not None:
            _blas.set(blas_before)
        set_threads(previous)


def run_chunks(fn: Callable[[int, int], Any], count: int, slots: int | None = None,
               blas: bool = True) -> None:
    """Call ``fn(i, slot)`` for ``i`` in ``range(count)``, spread over the pool's threads.

    Each thread takes the next index as soon as it is free; ``slot`` (0 ≤ slot < the number
    of threads used) names the thread, so that ``fn`` can use per-thread buffers. ``fn``'s
    results are discarded: it writes into arrays it owns. The first exception is raised
    after every thread has stopped. While the pool is on, OpenBLAS runs at one thread for
    the whole call, ``slots=1`` included (small products then avoid 2-thread OpenBLAS too);
    with the pool off (:func:`threads` is 1) nothing about BLAS is changed.

    Args:
        fn: the chunk body; it must write only disjoint outputs or per-slot accumulators.
        count: number of chunks.
        slots: threads to use, capped by :func:`threads` and ``count``; default all.
        blas: whether ``fn`` makes BLAS calls; with ``False`` and one thread the chunks run
            on the calling thread with OpenBLAS left alone (a small elementwise pass then
            costs no lock and no two thread-count changes: alexnet's batch-1 ReLUs).
    """
    n_threads = max(1, min(threads() if slots is None else slots, threads(), count))
    if threads() <= 1 or (n_threads == 1 and not blas) or not _lock.acquire(blocking=False):
        for i in range(count):
            fn(i, 0)
        return
    try:
        _run_locked(fn, count, n_threads)
    finally:
        _lock.release()


def _run_locked(fn: Callable[[int, int], Any], count: int, n_threads: int) -> None:
    """The parallel section, with OpenBLAS at one thread; called with ``_lock`` held."""
    pool = _state["pool"]
    if pool is None:
        pool = ThreadPoolExecutor(max_workers=_state["threads"] - 1,
                                  thread_name_prefix="glasscnn")
        _state["pool"] = pool
    counter = iter(range(count))
    next_lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        while not errors:
            with next_lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                fn(i, slot)
            except BaseException as err:  # re-raised in the caller
                errors.append(err)
                return

    blas_before = _blas.get()
    _blas.set(1)
    try:
        futures = [pool.submit(worker, slot) for slot in range(1, n_threads)]
        worker(0)
        for f in futures:
            f.result()
    finally:
        _blas.set(blas_before)
    if errors:
        raise errors[0]


def batch_parts(xp: Any, a: Any, chunk_bytes: int, min_elements: int) -> tuple[list[slice], int]:
    """Slices of ``a``'s first axis of about ``chunk_bytes`` each, and the threads for them.

    Technique: an elementwise or reduction op makes its several passes over one slice
    while the slice is in cache, and the slices go to the pool's threads when ``a`` is a
    NumPy array of at least ``min_elements`` elements (then, where the batch allows, a
    multiple of the thread count of slices, sizes differing by one at most, so that no
    thread idles); otherwise the slices run on the calling thread (slots 1).

    Args:
        xp: ``a``'s array namespace.
        a: an array of at least one dimension.
        chunk_bytes: the target size of a slice.
        min_elements: the smallest ``a.size`` that goes to the thread pool.

    Returns:
        ``(slices, slots)``: slices covering ``range(a.shape[0])`` in order, and the
        ``slots`` to pass to :func:`run_chunks`.
    """
    n = max(1, a.shape[0])
    count = -(-n // max(1, chunk_bytes // max(1, a[:1].nbytes)))
    slots = 1
    if xp is np and a.size >= min_elements:
        slots = threads()
        count = min(n, -(-count // slots) * slots)  # a multiple of the threads: none idle
    return [slice(n * i // count, n * (i + 1) // count) for i in range(count)], slots


MATVEC_MAX = 4  # products with at most this many rows or columns: NumPy's matmul


def matmul(a: Any, b: Any, out: Any = None, min_macs: int = 2**21) -> Any:
    """``a @ b`` for 2-D NumPy arrays, on the pool's threads with one BLAS thread each.

    Technique: the longer side of the product (rows of ``a`` or columns of ``b``) is split
    in one block per thread; products under ``min_macs`` multiply-accumulates run on the
    calling thread alone. On a loaded 2-core machine 2-thread OpenBLAS stalls for
    milliseconds per synchronisation on small or skinny products (50×8192 @ 8192×500:
    150 ms against 5 ms on one thread), which this avoids. Matrix-vector-like products
    (at most ``MATVEC_MAX`` rows or columns) go to NumPy's own matmul: they are bound by
    reading the matrix, and OpenBLAS threads them faster (1×2304 @ 2304×1024 with a cold
    weight: 0.21 ms against 0.33 ms split) without stalling under load (0.60 against 0.62).

    Args:
        a: (M, K); b: (K, N); any strides (transposed views need no copy).
        out: optional (M, N) array with unit column stride to write into.
        min_macs: below M·K·N, one thread.

    Returns:
        ``out``, or a new (M, N) array, in ``np.result_type(a, b)``.
    """
    m, n = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if min(m, n, a.shape[1]) == 0 or min(m, n) <= MATVEC_MAX:
        return np.matmul(a, b, out=out)
    parts = threads() if m * a.shape[1] * n >= min_macs else 1
    along_rows = m >= n
    length = m if along_rows else n
    parts = max(1, min(parts, length))
    step = -(-length // parts)

    def block(i: int, slot: int) -> None:
        part = slice(i * step, min(length, (i + 1) * step))
        if along_rows:
            np.matmul(a[part], b, out=out[part])
        else:
            np.matmul(a, b[:, part], out=out[:, part])

    run_chunks(block, -(-length // step), parts)
    return out


# OpenBLAS's small-matrix kernels (in its SkylakeX, Cooperlake and SapphireRapids kernel
# sets) compute a product of at most this many multiply-adds without packing its operands:
# measured 1.5-2.7× faster per column than just above it for (6, 75) and (16, 27) weights
SMALL_GEMM_MACS = 10**6
SMALL_GEMM_CORES = ("SkylakeX", "Cooperlake", "SapphireRapids")
# ... where that leaves blocks of at least this many rows or columns: with fewer (VGG's
# 16- and 32-channel layers, 434 rows of K = 144) the split was measured 10-25% slower
SMALL_GEMM_MIN_BLOCK = 1024


def _small_block(macs_per_line: int, length: int) -> int:
    """Lines (rows, columns or inner indices) per block of a product split for OpenBLAS's
    small-matrix kernels, or 0 where it should not be split."""
    if _blas.core not in SMALL_GEMM_CORES or macs_per_line * length <= SMALL_GEMM_MACS:
        return 0
    block = SMALL_GEMM_MACS // max(1, macs_per_line)
    return block if block >= SMALL_GEMM_MIN_BLOCK else 0


def matmul_small(a: Any, b: Any, out: Any) -> Any:
    """``a @ b`` into ``out``, in blocks of the longer side that OpenBLAS's small-matrix
    kernels take (at most ``SMALL_GEMM_MACS`` multiply-adds each) where it has them.

    Technique: products with a small weight (few output channels, short K) and a long
    side are bound by OpenBLAS packing the long operand; its small-matrix kernels skip the
    packing. Elsewhere one ``np.matmul``.

    Args:
        a: (M, K); b: (K, N); out: (M, N). 2-D NumPy arrays, any strides BLAS accepts.

    Returns:
        ``out``.
    """
    m, k = a.shape
    n = b.shape[1]
    along_rows = m >= n
    block = _small_block(k * (n if along_rows else m), m if along_rows else n)
    if not block:
        return np.matmul(a, b, out=out)
    for s in range(0, m if along_rows else n, block):
        part = slice(s, s + block)
        if along_rows:
            np.matmul(a[part], b, out=out[part])
        else:
            np.matmul(a, b[:, part], out=out[:, part])
    return out


def matmul_small_sum(a: Any, b: Any, out: Any) -> Any:
    """``a @ b`` into ``out`` for a long inner dimension K, as a sum over blocks of K that
    OpenBLAS's small-matrix kernels take, where it has them (see :func:`matmul_small`).

    The blocks are added in order (a fixed order, reproducible); the sum rounds differently
    from one product, within float rounding.

    Args:
        a: (M, K); b: (K, N); out: (M, N). 2-D NumPy arrays.

    Returns:
        ``out``.
    """
    m, k = a.shape
    n = b.shape[1]
    block = _small_block(m * n, k)
    if not block:
        return np.matmul(a, b, out=out)
    np.matmul(a[:, :block], b[:block], out=out)
    part_sum = np.empty_like(out)
    for s in range(block, k, block):
        np.matmul(a[:, s:s + block], b[s:s + block], out=part_sum)
        out += part_sum
    return out
