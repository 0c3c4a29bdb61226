"""The kernels' thread pool: threaded conv and max-pool chunks match one thread, BLAS control."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from glasscnn.kernels import (
    _parallel,
    conv2d_backward,
    conv2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from glasscnn.kernels import pool as pool_module
from glasscnn.kernels.conv import buffers as conv_buffers

# (x shape, weight shape, stride, padding, need_dx): channels-last and K-major (C_in < 8)
# layouts, kernel rows, transposed-conv and col2im input gradients, an odd batch (uneven
# chunks)
CONV_CONFIGS = [
    ((5, 3, 8, 8), (4, 3, 3, 3), 1, 1, True),  # K-major im2col, transposed-conv dx
    ((5, 3, 8, 8), (4, 3, 3, 3), 1, 1, False),  # first layer: no dx
    ((4, 8, 7, 6), (5, 8, 3, 3), 1, 1, True),  # channels-last, transposed-conv dx
    ((3, 9, 9, 9), (4, 9, 3, 2), 2, 1, True),  # channels-last, stride 2: col2im dx
    ((4, 2, 9, 9), (3, 2, 5, 5), 1, 0, True),  # K-major, col2im dx (few input channels)
    ((5, 8, 7, 6), (8, 8, 3, 3), 1, 1, True),  # kernel rows, forward and backward
]
IDS = [f"x{'x'.join(map(str, c[0]))}-w{'x'.join(map(str, c[1]))}-s{c[2]}-p{c[3]}-dx{c[4]}"
       for c in CONV_CONFIGS]


@pytest.fixture
def threaded(monkeypatch):
    """Every conv and pool goes to the pool (no size threshold), in chunks of one image."""
    monkeypatch.setattr(conv_buffers, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(conv_buffers, "CHUNK_BYTES", 1)
    monkeypatch.setattr(conv_buffers, "MIN_ROWS", 1)
    monkeypatch.setattr(pool_module, "_PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(pool_module, "_CHUNK_BYTES", 1)
    previous = _parallel.set_threads(2)
    yield
    _parallel.set_threads(previous)


def _conv_run(x, w, b, config, dout):
    _, _, stride, padding, need_dx = config
    out, cache = conv2d_forward(x, w, b, stride, padding)
    return out, conv2d_backward(dout, cache, need_dx=need_dx)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", CONV_CONFIGS, ids=IDS)
def test_threaded_conv_matches_one_thread_and_naive(config, dtype, threaded, rng):
    x_shape, w_shape, stride, padding, need_dx = config
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    out, _ = conv2d_forward(x, w, b, stride, padding)
    dout = rng.standard_normal(out.shape).astype(dtype)
    out_2, grads_2 = _conv_run(x, w, b, config, dout)
    _parallel.set_threads(1)
    out_1, grads_1 = _conv_run(x, w, b, config, dout)
    out_n, cache_n = conv2d_forward(x, w, b, stride, padding, impl="naive")
    grads_n = conv2d_backward(dout, cache_n, need_dx=need_dx)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_array_equal(out_2, out_1)  # same chunks, same GEMMs
    np.testing.assert_allclose(out_2, out_n, rtol=tol, atol=tol)
    for g2, g1, gn in zip(grads_2, grads_1, grads_n, strict=True):
        if gn is None:
            assert g2 is None and g1 is None
            continue
        assert g2.dtype == dtype and g2.shape == gn.shape
        np.testing.assert_array_equal(g2, g1)  # dW, db: parts summed in chunk order
        np.testing.assert_allclose(g2, gn, rtol=tol, atol=tol)


def test_threaded_training_is_bitwise_reproducible(threaded, rng):
    """Two threads take chunks in whatever order they free up; the weights after a few
    steps must not depend on it. With one thread (OpenBLAS's own threading then) they agree
    to rounding: some OpenBLAS kernels (Haswell's) round a GEMM differently on one and two
    BLAS threads."""
    from glasscnn import models, nn, optim

    x = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    results = []
    for n_threads in (2, 2, 1):
        _parallel.set_threads(n_threads)
        nn.init.manual_seed(0)
        model = models.vgg_cifar(input_size=16)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss = nn.CrossEntropyLoss()
        for _ in range(3):
            opt.zero_grad()
            loss(model(x), y)
            model.backward(loss.backward())
            opt.step()
        results.append([p.data.copy() for p in model.parameters()])
    for a, b, c in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_threaded_max_pool_matches_one_thread_and_naive(k, s, p, threaded, rng):
    x = rng.standard_normal((5, 3, 9, 8)).astype(np.float32)
    x[0, 0, :2, :2] = 1.0  # a tie: the first maximum wins in every variant
    out_2, cache_2 = max_pool2d_forward(x, k, s, p)
    dout = rng.standard_normal(out_2.shape).astype(np.float32)
    (dx_2,) = max_pool2d_backward(dout, cache_2)
    _parallel.set_threads(1)
    out_1, cache_1 = max_pool2d_forward(x, k, s, p)
    out_n, cache_n = max_pool2d_forward(x, k, s, p, impl="naive")
    np.testing.assert_array_equal(out_2, out_1)
    np.testing.assert_array_equal(out_2, out_n)
    np.testing.assert_array_equal(dx_2, max_pool2d_backward(dout, cache_1)[0])
    np.testing.assert_allclose(dx_2, max_pool2d_backward(dout, cache_n)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "m, k, n", [(37, 11, 5), (5, 11, 37), (64, 64, 64), (1, 7, 1), (0, 3, 4), (40, 9, 3)]
)
@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_matches_numpy(m, k, n, transposed, rng):
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T if transposed else rng.standard_normal((k, n))
    out = np.full((m, n), np.nan)
    result = _parallel.matmul(a, b, out=out, min_macs=0)
    assert result is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_parallel.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)


@pytest.fixture
def small_blocks(monkeypatch):
    """OpenBLAS's small-matrix kernels assumed present and tiny: every product is split."""
    monkeypatch.setattr(_parallel._blas, "core", "SkylakeX")
    monkeypatch.setattr(_parallel, "SMALL_GEMM_MACS", 60)
    monkeypatch.setattr(_parallel, "SMALL_GEMM_MIN_BLOCK", 1)


@pytest.mark.parametrize("m, k, n", [(37, 11, 5), (5, 11, 37), (16, 16, 16), (3, 40, 2)])
@pytest.mark.parametrize("transposed", [False, True])
def test_small_matmuls_match_numpy(m, k, n, transposed, small_blocks, rng):
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T if transposed else rng.standard_normal((k, n))
    for fn in (_parallel.matmul_small, _parallel.matmul_small_sum):
        out = np.full((m, n), np.nan)
        assert fn(a, b, out) is out
        np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)


def test_small_matmuls_split_only_for_small_kernel_cores(small_blocks, monkeypatch):
    calls = []
    real = np.matmul

    def counted(a, b, out=None):
        calls.append(a.shape)
        return real(a, b, out=out)

    monkeypatch.setattr(_parallel.np, "matmul", counted)
    a, b = np.ones((40, 3)), np.ones((3, 2))
    _parallel.matmul_small(a, b, np.empty((40, 2)))
    assert len(calls) == 4  # 60 multiply-adds per block: 10 rows of 6
    calls.clear()
    monkeypatch.setattr(_parallel._blas, "core", "Haswell")
    _parallel.matmul_small(a, b, np.empty((40, 2)))
    assert calls == [(40, 3)]


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=IDS)
def test_conv_with_small_products_matches_naive(config, small_blocks, rng):
    x_shape, w_shape, _, _, _ = config
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    out, cache = conv2d_forward(x, w, b, config[2], config[3])
    out_n, cache_n = conv2d_forward(x, w, b, config[2], config[3], impl="naive")
    np.testing.assert_allclose(out, out_n, rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(out.shape)
    for got, want in zip(conv2d_backward(dout, cache), conv2d_backward(dout, cache_n),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape, chunk_bytes, min_elements, slots", [
    ((128, 6, 784), 1 << 19, 1 << 18, 2),  # lenet bn1: 5 chunks of 512 KiB become 6
    ((50, 32, 1024), 1 << 19, 1 << 18, 2),  # 13 become 14
    ((7, 1000), 1, 0, 2),  # one image per slice, an odd count
    ((128, 16, 100), 1 << 19, 1 << 18, 1),  # small: the calling thread only
    ((1, 10), 1, 0, 2),
])
def test_batch_parts_cover_the_batch_in_balanced_slices(shape, chunk_bytes, min_elements,
                                                        slots):
    previous = _parallel.set_threads(2)
    try:
        parts, got_slots = _parallel.batch_parts(np, np.empty(shape, np.float32), chunk_bytes,
                                                 min_elements)
    finally:
        _parallel.set_threads(previous)
    assert got_slots == (slots if _parallel.blas_found() else 1)
    assert [i for p in parts for i in range(shape[0])[p]] == list(range(shape[0]))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1
    if got_slots > 1 and len(parts) < shape[0]:
        assert len(parts) % got_slots == 0


def test_run_chunks_covers_every_index_once_with_valid_slots():
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def fn(i, slot):
        with lock:
            seen.append((i, slot))

    _parallel.run_chunks(fn, 50)
    assert sorted(i for i, _ in seen) == list(range(50))
    assert {slot for _, slot in seen} <= set(range(_parallel.threads()))


def test_run_chunks_nested_call_runs_serially():
    inner_slots: list[int] = []

    def outer(i, slot):
        _parallel.run_chunks(lambda j, s: inner_slots.append(s), 3)

    _parallel.run_chunks(outer, 2)
    assert inner_slots == [0] * 6


@pytest.mark.skipif(not _parallel.blas_found(), reason="NumPy's OpenBLAS not found")
def test_blas_runs_one_thread_inside_and_is_restored(threaded):
    before = _parallel._blas.get()
    inside: list[int] = []
    _parallel.run_chunks(lambda i, s: inside.append(_parallel._blas.get()), 4)
    assert inside == [1] * 4
    assert _parallel._blas.get() == before


@pytest.mark.skipif(not _parallel.blas_found(), reason="NumPy's OpenBLAS not found")
@pytest.mark.parametrize("slots", [1, None])
def test_chunks_without_blas_on_one_slot_leave_blas_alone(threaded, slots):
    before = _parallel._blas.get()
    inside: list[tuple[int, int]] = []
    lock = threading.Lock()

    def fn(i, slot):
        with lock:
            inside.append((_parallel._blas.get(), slot))

    _parallel.run_chunks(fn, 3, slots, blas=False)
    if slots == 1:  # the calling thread, OpenBLAS's thread count untouched
        assert inside == [(before, 0)] * 3
    else:  # the pool, with OpenBLAS held at one thread as for any section
        assert [b for b, _ in inside] == [1] * 3
    assert _parallel._blas.get() == before


@pytest.mark.skipif(not _parallel.blas_found(), reason="NumPy's OpenBLAS not found")
def test_error_in_a_chunk_is_raised_and_blas_restored(threaded):
    before = _parallel._blas.get()

    def fn(i, slot):
        if i == 3:
            raise RuntimeError("chunk 3 failed")

    with pytest.raises(RuntimeError, match="chunk 3"):
        _parallel.run_chunks(fn, 8)
    assert _parallel._blas.get() == before
    _parallel.run_chunks(lambda i, s: None, 4)  # the pool still works


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pool_works_in_a_forked_child():
    _parallel.run_chunks(lambda i, s: None, 4)  # the parent's worker thread exists
    pid = os.fork()
    if pid == 0:  # child: must not wait on the parent's (absent) worker
        ok = False
        try:
            seen: list[int] = []
            _parallel.run_chunks(lambda i, s: seen.append(i), 6)
            ok = sorted(seen) == list(range(6))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_single_threaded_context_turns_pool_and_blas_off_and_restores():
    threads_before = _parallel.threads()
    blas_before = _parallel._blas.get() if _parallel.blas_found() else None
    with _parallel.single_threaded():
        assert _parallel.threads() == 1
        if blas_before is not None:
            assert _parallel._blas.get() == 1
    assert _parallel.threads() == threads_before
    if blas_before is not None:
        assert _parallel._blas.get() == blas_before


def test_one_thread_leaves_blas_alone(monkeypatch):
    previous = _parallel.set_threads(1)
    try:
        calls = []
        monkeypatch.setattr(_parallel._blas, "set", lambda n: calls.append(n))
        _parallel.run_chunks(lambda i, s: None, 4)
        _parallel.matmul(np.ones((64, 64)), np.ones((64, 64)), min_macs=0)
        assert calls == []
        assert _parallel.threads() == 1
    finally:
        _parallel.set_threads(previous)


@pytest.mark.parametrize("value, expected", [("1", 1), ("2", 2), (" 3 ", 3), ("", None)])
def test_threads_from_environment(value, expected, monkeypatch):
    monkeypatch.setenv(_parallel.ENV, value)
    default = max(1, min(2, os.cpu_count() or 1))
    assert _parallel._default_threads() == (default if expected is None else expected)


@pytest.mark.parametrize("value", ["two", "1.5"])
def test_bad_threads_environment_raises(value, monkeypatch):
    monkeypatch.setenv(_parallel.ENV, value)
    with pytest.raises(ValueError, match=f"GLASSCNN_THREADS.*{value}"):
        _parallel._default_threads()


@pytest.mark.parametrize("value", [0, -1, 1.5, "2"])
def test_set_threads_rejects_bad_values(value):
    with pytest.raises(ValueError, match="threads"):
        _parallel.set_threads(value)
