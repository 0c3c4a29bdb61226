"""Winograd F(2×2, r×r), r = 3 or 5: a stride-1 convolution and its gradients with fewer
multiplications.

Technique (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015): each
2×2 block of output pixels is computed from the (r+1)×(r+1) input tile under it as

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A

per channel pair; summed over input channels, the (r+1)² elementwise products of a tile
become (r+1)² GEMMs (T, C_in) @ (C_in, C_out) over the T tiles of a batch chunk: 16
multiplications per 4 outputs instead of 36 for 3×3 filters (2.25× fewer), 36 instead of
100 for 5×5 (2.8×). The backward runs the same algorithm transposed (:func:`backward`).
The transforms are small GEMMs with Kronecker products of Bᵀ, G and Aᵀ, and the tiles
are gathered from the padded channels-last input by one copy of a strided view, as
im2col is. Each chunk of images goes through every step on one thread, so that its
buffers stay in cache and are reused from chunk to chunk. Float32 results differ from
im2col's by ~1e-6 relative (3×3) and ~2e-6 (5×5). The naive conv loop nest is its
reference (tests).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import sum_parts


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
# (measured: 16 channels at 16×16 and 32×32 slower than the GEMM paths; 32 channels
# faster or equal at 8×8 and 16×16 in the forward, faster at 8×8 only in the backward)
MIN_CHANNELS = 32
# fewer tiles in the batch than this: the filter transform, made on every call, costs more
# than it saves (batch-1 inference stays on the K-major im2col path)
MIN_TILES = 256
# a batch chunk: about this many bytes of transformed tiles (measured 1-4 MiB: 2 best)
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
# "auto": timed calls of each kernel per layer key before the faster one is kept
TRIALS = 2
# "auto": per layer key, the seconds of each timed call, ([Winograd], [GEMM path])
_trials: dict[Any, tuple[list[float], list[float]]] = {}


def select(key: Any, winograd: Callable[[], Any], gemm: Callable[[], Any]) -> Any:
    """A layer's output (or gradients) by Winograd or by the conv's GEMM path, as ``mode``
    says.

    "on" calls ``winograd``, "off" ``gemm``. "auto" (the default): the first
    ``2 * TRIALS`` calls for a ``key`` alternate between the two, Winograd first, each
    timed; from then on the one with the best time runs. Timing real calls in turn costs
    no extra work and sees the network's own cache and heap state (the first call of a
    layer also pays for fresh pages, hence more than one trial). Which is faster depends
    on the machine: on a Zen 5 with OpenBLAS's AVX2 kernels Winograd is 1.3-1.8× faster
    on AlexNet's and VGG's deep layers; on a Xeon with AVX-512 kernels and slow memory it
    was 2× slower on VGG's (before it ran in chunks: its input transform memory-bound).

    Args:
        key: hashable description of the call (direction, shapes, padding, dtype, bias,
            ReLU, threads).
        winograd: computes the result by :func:`conv` or :func:`backward`.
        gemm: computes it by the GEMM kernels (im2col, or kernel rows where
            ``conv._rows_apply`` admits the layer).

    Returns:
        The result of the kernel that ran.
    """
    if mode == "on":
        return winograd()
    if mode == "off":
        return gemm()
    times = _trials.setdefault(key, ([], []))
    if len(times[1]) >= TRIALS:
        return winograd() if min(times[0]) < min(times[1]) else gemm()
    i = 0 if len(times[0]) <= len(times[1]) else 1
    start = time.perf_counter()
    out = (winograd, gemm)[i]()
    times[i].append(time.perf_counter() - start)
    return out


def timings() -> dict[Any, tuple[float, float]]:
    """What "auto" measured so far: layer key → (Winograd, GEMM path) best seconds, for
    the keys with at least one timed call of each."""
    return {key: (min(w), min(g)) for key, (w, g) in _trials.items() if w and g}


def applies(weight_shape: tuple[int, ...], stride: tuple[int, int],
            dilation: tuple[int, int], n: int, out_hw: tuple[int, int]) -> bool:
    """Whether the fast conv forward and backward consider Winograd for this layer.

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


def _chunking(n: int, per: int, bytes_per_tile: int, slots: int) -> list[slice]:
    """Batch chunks of about ``CHUNK_BYTES`` of transformed tiles, as many as a multiple
    of ``slots`` where the batch allows and sizes differing by one at most (no thread
    idles at the end); the first is the longest."""
    size = max(1, CHUNK_BYTES // (per * bytes_per_tile))
    count = -(-n // size)
    count = min(n, -(-count // slots) * slots)
    base, extra = divmod(n, count)
    starts = [i * base + min(i, extra) for i in range(count + 1)]
    return [slice(starts[i], starts[i + 1]) for i in range(count)]


def _per_slot(slots: int, shape: tuple[int, ...], dtype: Any, zero: bool = False) -> list[Any]:
    """One buffer per thread of the pool, zeroed when ``zero`` (a padded input's border)."""
    return [(np.zeros if zero else np.empty)(shape, dtype) for _ in range(slots)]


def _filter_transform(w_t: Any, weight: Any) -> Any:
    """U = G g Gᵀ of every filter pair as ((r+1)², C_out, C_in): one GEMM with the
    Kronecker product ``w_t`` ((r+1)², r²) over the (C_out*C_in, r²) filters."""
    c_out, c_in, r, _ = weight.shape
    return np.matmul(w_t, weight.reshape(-1, r * r).T).reshape(-1, c_out, c_in)


def _input_tiles(x_nhwc: Any, pad: Any, padding: tuple[int, int], r: int, th: int, tw: int,
                 in_t: Any, tile_buf: Any, v: Any) -> None:
    """V = Bᵀ d B of a chunk's tiles into ``v`` ((r+1)², nb*th*tw, C_in): ``x_nhwc`` (nb, H,
    W, C_in) copied into the zero-bordered ``pad``, its (r+1)×(r+1) tiles at stride 2
    gathered into ``tile_buf`` ((r+1)², ≥ nb*th*tw*C_in) by one copy of a strided view,
    then one small GEMM with the Kronecker product ``in_t``."""
    nb, h, w, c_in = x_nhwc.shape
    ph, pw = padding
    np.copyto(pad[:, ph:ph + h, pw:pw + w], x_nhwc)
    s_n, s_h, s_w, s_c = pad.strides
    tiles = np.lib.stride_tricks.as_strided(  # (r+1, r+1, nb, th, tw, C_in) tile view
        pad, shape=(r + 1, r + 1, nb, th, tw, c_in),
        strides=(s_h, s_w, s_n, 2 * s_h, 2 * s_w, s_c))
    d = tile_buf[:, :nb * th * tw * c_in]
    np.copyto(d.reshape(tiles.shape), tiles)
    np.matmul(in_t, d, out=v.reshape(v.shape[0], -1))  # Bᵀ d B


def _products(a: Any, b: Any, out: Any) -> Any:
    """The (r+1)² products of a chunk as one batched GEMM, ``out[k] = a[k] @ b[k]`` (the
    profile's "GEMM"; the transforms are small GEMMs too, counted apart)."""
    return np.matmul(a, b, out=out)


def conv(x: Any, weight: Any, bias: Any, padding: tuple[int, int],
         out_hw: tuple[int, int], relu: bool = False) -> Any:
    """r×r stride-1 convolution (r = 3 or 5) by Winograd F(2×2, r×r), in batch chunks on
    the thread pool.

    The filters are transformed once (U = G g Gᵀ); then each chunk of images runs every
    step on one thread, its buffers reused from chunk to chunk: tile gathering and input
    transform, the (r+1)² products (one batched GEMM, (tiles, C_in) @ (C_in, C_out) each),
    output transform, bias and ReLU.

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
    n, c_in = x.shape[:2]
    c_out, _, r, _ = weight.shape
    a2 = (r + 1) ** 2  # values per tile
    ho, wo = out_hw
    th, tw = -(-ho // 2), -(-wo // 2)  # tiles per column and per row of an image
    per = th * tw  # tiles per image
    dtype = x.dtype
    slots = _parallel.threads()
    chunks = _chunking(n, per, a2 * max(c_in, c_out) * x.itemsize, slots)
    size = chunks[0].stop - chunks[0].start
    in_t, w_t, out_t = (t.astype(dtype) for t in KRON[r])
    u_t = _filter_transform(w_t, weight).transpose(0, 2, 1)  # U[k]ᵀ, (a², C_in, C_out)
    out_nhwc = np.empty((n, ho, wo, c_out), dtype)
    x_nhwc = x.transpose(0, 2, 3, 1)
    pads = _per_slot(slots, (size, 2 * th + r - 1, 2 * tw + r - 1, c_in), dtype, zero=True)
    tile_bufs = _per_slot(slots, (a2, size * per * c_in), dtype)
    v_bufs = _per_slot(slots, (a2, size * per, c_in), dtype)
    m_bufs = _per_slot(slots, (a2, size * per, c_out), dtype)
    y_bufs = _per_slot(slots, (4, size * per * c_out), dtype)
    even = ho % 2 == 0 and wo % 2 == 0

    def chunk(i: int, slot: int) -> None:
        ch = chunks[i]
        nb = ch.stop - ch.start
        v, m = v_bufs[slot][:, :nb * per], m_bufs[slot][:, :nb * per]
        _input_tiles(x_nhwc[ch], pads[slot][:nb], padding, r, th, tw, in_t, tile_bufs[slot], v)
        _products(v, u_t, m)  # M[k] = V[k] @ U[k]ᵀ, (tiles, C_in) @ (C_in, C_out)
        y = y_bufs[slot][:, :nb * per * c_out]
        np.matmul(out_t, m.reshape(a2, -1), out=y)  # Aᵀ m A
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

    _parallel.run_chunks(chunk, len(chunks), slots)
    return out_nhwc.transpose(0, 3, 1, 2)


def backward(dout: Any, x: Any, weight: Any, padding: tuple[int, int], need_dx: bool = True,
             has_bias: bool = False, relu_out: Any = None) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv` by the same transforms, transposed, in batch chunks.

    Technique: with ``M[k] = V[k] @ U[k]ᵀ`` and ``Y = Aᵀ M A`` per tile, the upstream
    gradient δ of each tile's 2×2 outputs goes back through the output transform as
    ``Δ = A δ Aᵀ`` ((r+1)² values; output tiles do not overlap, so nothing is gathered);
    then per transformed position k two GEMMs, ``dU[k] = Δ[k]ᵀ @ V[k]`` (C_out, C_in),
    summed over the tiles, and ``dV[k] = Δ[k] @ U[k]`` (tiles, C_in); ``dW = Gᵀ dU G`` and
    each tile's ``dd = B dV Bᵀ``, added into the padded input gradient where tiles overlap
    (2×2 blocks at stride 2). 2.25× (3×3) or 2.8× (5×5) fewer multiplications than the
    im2col products of dW and dx. Each chunk of images runs every step on one thread of the
    pool, its buffers reused from chunk to chunk (in cache, no fresh pages); each chunk's
    dU and db are summed in chunk order at the end (reproducible).

    Args:
        dout: upstream gradient (N, C_out, H_out, W_out), any memory layout.
        x: the forward's input (N, C_in, H, W).
        weight: (C_out, C_in, r, r), r in ``KRON``.
        padding: (P_h, P_w).
        need_dx: compute dx; ``False`` returns ``None`` for it and skips its products.
        has_bias: compute db.
        relu_out: the forward's rectified output (fused conv + ReLU): dout is first
            multiplied by ``[relu_out > 0]``; ``None`` for a plain convolution.

    Returns:
        ``(dx or None, dW, db or None)``; dx (N, C_in, H, W) stored channels-last.
    """
    n, c_in, h, w = x.shape
    c_out, _, r, _ = weight.shape
    a, blocks = r + 1, (r + 1) // 2  # tile side; 2×2 blocks per tile side
    a2 = a * a
    ho, wo = dout.shape[2:]
    th, tw = -(-ho // 2), -(-wo // 2)
    per = th * tw
    dtype = x.dtype
    slots = _parallel.threads()
    chunks = _chunking(n, per, a2 * max(c_in, c_out) * x.itemsize, slots)
    size = chunks[0].stop - chunks[0].start
    in_t, w_t, out_t = (t.astype(dtype) for t in KRON[r])
    du_parts = np.empty((len(chunks), a2, c_out, c_in), dtype)
    db_parts = np.empty((len(chunks), c_out), dtype) if has_bias else None
    ones = np.ones(4 * size * per, dtype) if has_bias else None
    x_nhwc, d_nhwc = x.transpose(0, 2, 3, 1), dout.transpose(0, 2, 3, 1)
    y_nhwc = None if relu_out is None else relu_out.transpose(0, 2, 3, 1)
    even = ho % 2 == 0 and wo % 2 == 0
    ph, pw = padding
    pads = _per_slot(slots, (size, 2 * th + r - 1, 2 * tw + r - 1, c_in), dtype, zero=True)
    tile_bufs = _per_slot(slots, (a2, size * per * c_in), dtype)  # tiles, then B dV Bᵀ
    v_bufs = _per_slot(slots, (a2, size * per, c_in), dtype)  # V = Bᵀ d B, then dV
    delta_bufs = _per_slot(slots, (a2, size * per, c_out), dtype)  # Δ = A δ Aᵀ
    e_bufs = _per_slot(slots, (2, 2, size, th, tw, c_out), dtype)  # δ by tile position
    masked_bufs = masks = None
    if relu_out is not None:  # the masked dout of a chunk, and the mask, as NHWC
        masked_bufs = _per_slot(slots, (size, ho, wo, c_out), dtype)
        masks = _per_slot(slots, (size, ho, wo, c_out), bool)
    d_pads = None if even else _per_slot(slots, (size, 2 * th, 2 * tw, c_out), dtype, zero=True)
    dx_nhwc = np.empty((n, h, w, c_in), dtype) if need_dx else None
    u = _filter_transform(w_t, weight) if need_dx else None  # U, (a², C_out, C_in)

    def output_tiles(a_nhwc: Any, slot: int, nb: int) -> Any:
        """(2, 2, nb, th, tw, C_out) view of a chunk's (nb, H_out, W_out, C_out) array, an
        odd border padded with zeros (those outputs were cut off in the forward)."""
        if not even:
            d_pad = d_pads[slot][:nb]
            np.copyto(d_pad[:, :ho, :wo], a_nhwc)
            a_nhwc = d_pad
        return a_nhwc.reshape(nb, th, 2, tw, 2, c_out).transpose(2, 4, 0, 1, 3, 5)

    def chunk(i: int, slot: int) -> None:
        ch = chunks[i]
        nb = ch.stop - ch.start
        rows = nb * per  # tiles of the chunk
        pad, v = pads[slot][:nb], v_bufs[slot][:, :rows]
        _input_tiles(x_nhwc[ch], pad, padding, r, th, tw, in_t, tile_bufs[slot], v)
        e = e_bufs[slot][:, :, :nb]  # δ by position in the tile
        if relu_out is None:
            np.copyto(e, output_tiles(d_nhwc[ch], slot, nb))
        else:  # δ = dout · [y > 0], in dout's layout (long runs), then by tile position
            masked = masked_bufs[slot][:nb]
            np.greater(y_nhwc[ch], 0, out=masks[slot][:nb])
            np.multiply(d_nhwc[ch], masks[slot][:nb], out=masked)
            np.copyto(e, output_tiles(masked, slot, nb))
        if has_bias:  # db[co] = Σ δ[..., co], as a GEMV
            np.matmul(ones[:4 * rows], e.reshape(-1, c_out), out=db_parts[i])
        delta = delta_bufs[slot][:, :rows]
        np.matmul(out_t.T, e.reshape(4, -1), out=delta.reshape(a2, -1))  # A δ Aᵀ
        _products(delta.transpose(0, 2, 1), v, du_parts[i])  # dU[k] = Δ[k]ᵀ @ V[k]
        if not need_dx:
            return
        _products(delta, u, v)  # dV[k] = Δ[k] @ U[k], over V
        dd = tile_bufs[slot][:, :rows * c_in]
        np.matmul(in_t.T, v.reshape(a2, -1), out=dd)  # B dV Bᵀ
        dd = dd.reshape(blocks, 2, blocks, 2, nb, th, tw, c_in)
        tiled = pad[:, :2 * (th + blocks - 1), :2 * (tw + blocks - 1)].reshape(
            nb, th + blocks - 1, 2, tw + blocks - 1, 2, c_in)  # 2×2 blocks of the padded dx
        tiled[:, th:] = 0
        tiled[:, :th, :, tw:] = 0
        for bi in range(blocks):
            for bj in range(blocks):  # tile block (bi, bj) lands on block (i + bi, j + bj)
                src = dd[bi, :, bj].transpose(2, 3, 0, 4, 1, 5)  # (nb, th, 2, tw, 2, C_in)
                dst = tiled[:, bi:bi + th, :, bj:bj + tw]
                if bi or bj:
                    np.add(dst, src, out=dst)
                else:
                    np.copyto(dst, src)
        np.copyto(dx_nhwc[ch], pad[:, ph:ph + h, pw:pw + w])
        pad[:, :ph] = 0  # the border zero again for the chunk's next input
        pad[:, ph + h:] = 0
        pad[:, :, :pw] = 0
        pad[:, :, pw + w:] = 0

    _parallel.run_chunks(chunk, len(chunks), slots)
    dw = np.matmul(w_t.T, sum_parts(np, du_parts).reshape(a2, -1))  # Gᵀ dU G, (r², C_out*C_in)
    dw = np.ascontiguousarray(dw.reshape(r, r, c_out, c_in).transpose(2, 3, 0, 1))
    db = sum_parts(np, db_parts) if has_bias else None
    return (None if dx_nhwc is None else dx_nhwc.transpose(0, 3, 1, 2)), dw, db
