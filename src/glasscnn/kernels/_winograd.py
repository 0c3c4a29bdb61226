"""Winograd F(2×2, r×r), r = 3 or 5: a stride-1 convolution with fewer multiplications.

Technique (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015): each
2×2 block of output pixels is computed from the (r+1)×(r+1) input tile under it as

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A

per channel pair; summed over input channels, the (r+1)² elementwise products of a tile
become (r+1)² GEMMs (T, C_in) @ (C_in, C_out) over all T tiles of the batch: 16
multiplications per 4 outputs instead of 36 for 3×3 filters (2.25× fewer), 36 instead of
100 for 5×5 (2.8×). The transforms are small GEMMs with Kronecker products of Bᵀ, G and
Aᵀ, and the tiles are gathered from the padded channels-last input by one copy of a
strided view, as im2col is. Float32 results differ from im2col's by ~1e-6 relative
(3×3) and ~2e-6 (5×5). The naive conv loop nest is its reference (tests).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from glasscnn.kernels import _parallel


def transforms(r: int, points: tuple[float, ...]) -> tuple[Any, Any, Any]:
    """The matrices (Aᵀ, G, Bᵀ) of F(2, r) from its r finite interpolation points and ∞.

    Toom-Cook (Lavin & Gray, 2015): ``Aᵀ[i, j] = p_j**i`` and ``G[j, k] = p_j**k`` evaluate
    at the points (∞ taking the leading coefficient), and Bᵀ is the solution of
    ``Σ_j Aᵀ[i, j] G[j, k] Bᵀ[j, l] = [l == i + k]``, i.e. ``y = Aᵀ[(G g) ⊙ (Bᵀ d)]`` is the
    correlation ``y_i = Σ_k g_k d_{i+k}`` for every tile d (r + 1 values) and filter g.

    Returns:
        ``(Aᵀ (2, r+1), G (r+1, r), Bᵀ (r+1, r+1))`` in float64.
    """
    a = r + 1
    p = np.asarray(points, dtype=np.float64)
    at = np.zeros((2, a))
    at[:, :r] = p[None, :] ** np.arange(2)[:, None]
    at[1, r] = 1.0
    g = np.zeros((a, r))
    g[:r] = p[:, None] ** np.arange(r)[None, :]
    g[r, r - 1] = 1.0
    eqs = np.einsum("ij,jk->ikj", at, g).reshape(2 * r, a)  # rows (i, k), columns j
    bt = np.empty((a, a))
    for col in range(a):
        rhs = np.array([float(col == i + k) for i in range(2) for k in range(r)])
        bt[:, col] = np.linalg.lstsq(eqs, rhs, rcond=None)[0]
    return at, g, bt


def _kron_2d(r: int, points: tuple[float, ...]) -> tuple[Any, Any, Any]:
    """The 2-D transforms as matrices on row-major flattened tiles, vec(M X Mᵀ) = (M ⊗ M)
    vec(X): input ((r+1)², (r+1)²), filter ((r+1)², r²) and output (4, (r+1)²)."""
    at, g, bt = transforms(r, points)
    return np.kron(bt, bt), np.kron(g, g), np.kron(at, at)


# F(2×2, 3×3) and F(2×2, 5×5): finite interpolation points 0, ±1 (and ±2) as in Lavin & Gray
POINTS = {3: (0, 1, -1), 5: (0, 1, -1, 2, -2)}
KRON = {r: _kron_2d(r, points) for r, points in POINTS.items()}
# fewer input or output channels than this: the products' GEMMs are too thin to gain
# (measured: 16 and 32 channels at 16×16 and 32×32 as fast or slower than im2col)
MIN_CHANNELS = 64
# fewer tiles in the batch than this: the filter transform, made on every call, costs more
# than it saves (batch-1 inference stays on the K-major im2col path)
MIN_TILES = 256
# a batch chunk of the input and output transforms: about this many bytes of tiles
CHUNK_BYTES = 2 * 2**20
# whether a layer that ``applies`` admits runs by Winograd: "auto" (measured per layer,
# :func:`select`), "on" or "off"; from the environment variable at import
MODE_ENV = "GLASSCNN_WINOGRAD"
MODES = ("auto", "on", "off")


def _mode_from_env() -> str:
    value = os.environ.get(MODE_ENV, "").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"glasscnn: {MODE_ENV} must be one of {MODES}, got {value!r}")
    return value


mode = _mode_from_env()
# "auto": per layer key, the best of two timed runs, (Winograd, GEMM path) in seconds
_timings: dict[Any, tuple[float, float]] = {}


def select(key: Any, winograd: Callable[[], Any], gemm: Callable[[], Any]) -> Any:
    """A layer's output by Winograd or by the conv's GEMM path, as ``mode`` says.

    "on" calls ``winograd``, "off" ``gemm``. "auto" (the default): the first call for a
    ``key`` runs both twice, alternately, keeps each one's best time and returns the
    faster one's output; later calls with that key run the faster one only. Which is
    faster depends on the machine: on a Zen 5 with OpenBLAS's AVX2 kernels Winograd was
    1.4× faster on AlexNet's deep layers, on a Xeon with AVX-512 kernels and slow memory
    2× slower on VGG's (its input transform is memory-bound).

    Args:
        key: hashable description of the call (shapes, padding, dtype, bias, ReLU, threads).
        winograd: computes the output by :func:`conv`.
        gemm: computes it by the GEMM kernel (im2col, or kernel rows where
            ``conv._rows_apply`` admits the layer).

    Returns:
        The output of the chosen kernel.
    """
    if mode == "on":
        return winograd()
    if mode == "off":
        return gemm()
    timing = _timings.get(key)
    if timing is not None:
        return winograd() if timing[0] < timing[1] else gemm()
    best = [math.inf, math.inf]
    outs: list[Any] = [None, None]
    for _ in range(2):
        for i, fn in enumerate((winograd, gemm)):
            start = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    _timings[key] = (best[0], best[1])
    return outs[0] if best[0] < best[1] else outs[1]


def timings() -> dict[Any, tuple[float, float]]:
    """What "auto" measured so far: layer key → (Winograd, GEMM path) best seconds."""
    return dict(_timings)


def applies(weight_shape: tuple[int, ...], stride: tuple[int, int],
            dilation: tuple[int, int], n: int, out_hw: tuple[int, int]) -> bool:
    """Whether the fast conv forward takes the Winograd path for this layer.

    Args:
        weight_shape: (C_out, C_in, kH, kW).
        stride, dilation: pairs.
        n: batch size.
        out_hw: (H_out, W_out).

    Returns:
        True for a square 3×3 or 5×5 kernel, stride 1, no dilation, at least
        ``MIN_CHANNELS`` input and output channels and at least ``MIN_TILES`` 2×2 output
        tiles in the batch.
    """
    c_out, c_in, kh, kw = weight_shape
    tiles = n * (-(-out_hw[0] // 2)) * (-(-out_hw[1] // 2))
    return (kh == kw and kh in KRON and stride == (1, 1) and dilation == (1, 1)
            and min(c_in, c_out) >= MIN_CHANNELS and tiles >= MIN_TILES)


def conv(x: Any, weight: Any, bias: Any, padding: tuple[int, int],
         out_hw: tuple[int, int], relu: bool = False) -> Any:
    """r×r stride-1 convolution (r = 3 or 5) by Winograd F(2×2, r×r) on the thread pool.

    Four parallel sections: the filter transform by blocks of output channels; tile
    gathering and input transform by batch chunks; the (r+1)² products, each one GEMM over
    all tiles of the batch (every row kept), spread over the threads; output transform,
    bias and ReLU by batch chunks.

    Args:
        x: input (N, C_in, H, W), any memory layout.
        weight: (C_out, C_in, r, r), r in ``KRON``.
        bias: ``None`` or (C_out,).
        padding: (P_h, P_w).
        out_hw: (H_out, W_out) = (H + 2P_h - r + 1, W + 2P_w - r + 1).
        relu: rectify each chunk's output in place.

    Returns:
        out (N, C_out, H_out, W_out), stored channels-last (a transposed NHWC buffer).
    """
    n, c_in, h, w = x.shape
    c_out, _, r, _ = weight.shape
    a2 = (r + 1) ** 2  # values per tile
    ho, wo = out_hw
    th, tw = -(-ho // 2), -(-wo // 2)  # tiles per column and per row of an image
    per = th * tw  # tiles per image
    dtype = x.dtype
    slots = _parallel.threads()
    size = max(1, min(-(-n // slots), CHUNK_BYTES // (a2 * per * max(c_in, c_out) * x.itemsize)))
    chunks = [slice(s, min(n, s + size)) for s in range(0, n, size)]
    in_t, w_t, out_t = (t.astype(dtype) for t in KRON[r])
    u = np.empty((a2, c_out, c_in), dtype)  # U = G g Gᵀ per filter pair, used as U[k]ᵀ
    v = np.empty((a2, n * per, c_in), dtype)  # V = Bᵀ d B per tile and channel
    m = np.empty((a2, n * per, c_out), dtype)  # M[k] = V[k] @ U[k]ᵀ
    out_nhwc = np.empty((n, ho, wo, c_out), dtype)
    x_nhwc = x.transpose(0, 2, 3, 1)
    # each thread's padded input (size, 2*th + r - 1, 2*tw + r - 1, C_in), zero border once
    pads = [np.zeros((size, 2 * th + r - 1, 2 * tw + r - 1, c_in), dtype) for _ in range(slots)]
    d_bufs = [np.empty(a2 * size * per * c_in, dtype) for _ in range(slots)]
    y_bufs = [np.empty(4 * size * per * c_out, dtype) for _ in range(slots)]
    (ph, pw), even = padding, ho % 2 == 0 and wo % 2 == 0
    w_blocks = [slice(s, min(c_out, s + -(-c_out // slots))) for s in
                range(0, c_out, -(-c_out // slots))]

    def transform_filters(i: int, slot: int) -> None:
        b = w_blocks[i]
        rows = weight[b].reshape(-1, r * r)  # (block*C_in, r²)
        np.matmul(w_t, rows.T, out=u[:, b].reshape(a2, -1))  # ((r+1)², r²) @ (r², block*C_in)

    def transform_input(i: int, slot: int) -> None:
        ch = chunks[i]
        nb = ch.stop - ch.start
        t0, t1 = ch.start * per, ch.stop * per
        pad = pads[slot][:nb]
        np.copyto(pad[:, ph:ph + h, pw:pw + w], x_nhwc[ch])
        s_n, s_h, s_w, s_c = pad.strides
        tiles = np.lib.stride_tricks.as_strided(  # (r+1, r+1, nb, th, tw, C_in) tile view
            pad, shape=(r + 1, r + 1, nb, th, tw, c_in),
            strides=(s_h, s_w, s_n, 2 * s_h, 2 * s_w, s_c))
        d = d_bufs[slot][:a2 * nb * per * c_in]
        np.copyto(d.reshape(tiles.shape), tiles)
        np.matmul(in_t, d.reshape(a2, -1), out=v[:, t0:t1].reshape(a2, -1))  # Bᵀ d B

    def products(k: int, slot: int) -> None:
        np.matmul(v[k], u[k].T, out=m[k])  # (N*tiles, C_in) @ (C_in, C_out)

    def transform_output(i: int, slot: int) -> None:
        ch = chunks[i]
        nb = ch.stop - ch.start
        y = y_bufs[slot][:4 * nb * per * c_out].reshape(4, -1)
        np.matmul(out_t, m[:, ch.start * per:ch.stop * per].reshape(a2, -1), out=y)  # Aᵀ m A
        y6 = y.reshape(2, 2, nb, th, tw, c_out).transpose(2, 3, 0, 4, 1, 5)
        dst = out_nhwc[ch]
        if even:  # each tile's 2×2 outputs straight to their places
            np.copyto(dst.reshape(nb, th, 2, tw, 2, c_out), y6)
        else:
            np.copyto(dst, y6.reshape(nb, 2 * th, 2 * tw, c_out)[:, :ho, :wo])
        if bias is not None:
            np.add(dst, bias, out=dst)
        if relu:
            np.maximum(dst, 0, out=dst)

    _parallel.run_chunks(transform_filters, len(w_blocks), slots)
    _parallel.run_chunks(transform_input, len(chunks), slots)
    _parallel.run_chunks(products, a2, slots)
    _parallel.run_chunks(transform_output, len(chunks), slots)
    return out_nhwc.transpose(0, 3, 1, 2)
