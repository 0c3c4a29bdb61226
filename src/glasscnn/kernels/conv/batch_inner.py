"""Batch-innermost im2col and col2im for few input channels and narrow outputs: images laid
out (C, H, W, N), so that every copy and add runs over W_out * N floats."""

from __future__ import annotations

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import get_xp, sum_parts
from glasscnn.kernels.conv.buffers import gemm, relu_masked, thread_slots, train_chunks
from glasscnn.kernels.conv.im2col import im2col_k_major


def forward(x, weight, bias, stride, padding, dilation, out_hw, relu=False):
    """Batch-innermost im2col + one GEMM per chunk, for few input channels and narrow outputs.

    Technique: each chunk of images is laid out (C, H, W, nb), so that the im2col copy
    (:func:`im2col_k_major` with ``batch_inner``) moves runs of W_out * nb floats, not
    W_out; the GEMM (C_out, K) @ (K, H_out*W_out*nb) gives the chunk as (C_out, H_out,
    W_out, nb), which one copy (with the bias, and ReLU when ``relu``) puts into the NCHW
    output.
    """
    xp = get_xp(x)
    c_out = weight.shape[0]
    kernel = weight.shape[2:]
    positions = out_hw[0] * out_hw[1]
    slots, chunks, nb_max, x_pads = _plan(xp, x, weight, padding, out_hw)
    k = x.shape[1] * kernel[0] * kernel[1]
    bufs = [xp.empty(nb_max * positions * k, x.dtype) for _ in range(slots)]
    results = [xp.empty(c_out * nb_max * positions, x.dtype) for _ in range(slots)]
    out = xp.empty((x.shape[0], c_out, *out_hw), dtype=x.dtype)
    w_mat = weight.reshape(c_out, k)  # (C_out, K), K ordered (C_in, kH, kW)

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        x_pad = _pad_chwn(x[ch], *padding, x_pads[slot][..., :nb])
        cols = im2col_k_major(x_pad, kernel, stride, dilation, out_hw, bufs[slot], True)
        res = results[slot][:c_out * cols.shape[1]].reshape(c_out, cols.shape[1])
        gemm(xp, w_mat, cols, res)  # (C_out, H_out*W_out*nb)
        res = res.reshape(c_out, *out_hw, nb).transpose(3, 0, 1, 2)
        dst = out[ch]
        if bias is None:
            xp.copyto(dst, res)
        else:
            xp.add(res, bias[:, None, None], out=dst)
        if relu:
            xp.maximum(dst, 0, out=dst)

    _parallel.run_chunks(chunk, len(chunks), slots)
    return out


def backward(dout, x, weight, stride, padding, dilation, need_dx, has_bias, relu_out):
    """The gradients of :func:`forward`'s layers, batch innermost, NCHW dx.

    Per chunk: dout is copied (masked by ``[y > 0]`` with ``relu_out``) to (C_out,
    H_out*W_out*nb); ``dWᵀ += cols @ doutᵀ`` on the chunk's batch-innermost im2col;
    ``dx`` by col2im: ``Wᵀ @ dout`` gives (K, H_out*W_out*nb), added back one kernel offset
    at a time into a zeroed (C_in, H + 2P, W + 2P, nb) buffer, each add running over
    W_out * nb floats. Returns ``(dx or None, dW, db or None)``.
    """
    xp = get_xp(dout)
    _, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out_hw = dout.shape[2:]
    positions = out_hw[0] * out_hw[1]
    slots, chunks, nb_max, x_pads = _plan(xp, x, weight, padding, out_hw)
    k = c_in * kh * kw
    bufs = [xp.empty(nb_max * positions * k, x.dtype) for _ in range(slots)]
    d_bufs = [xp.empty(c_out * nb_max * positions, x.dtype) for _ in range(slots)]
    if relu_out is not None:
        masks = [xp.empty(c_out * nb_max * positions, bool) for _ in range(slots)]
    dx_pads = [xp.empty_like(x_pads[0]) for _ in range(slots)] if need_dx else None
    db_parts = xp.empty((len(chunks), c_out), x.dtype) if has_bias else None
    ones = xp.ones(nb_max * positions, x.dtype) if has_bias else None
    dw_parts = xp.empty((len(chunks), k, c_out), dtype=x.dtype)  # dWᵀ per chunk
    dx = xp.empty(x.shape, x.dtype) if need_dx else None
    w_mat = weight.reshape(c_out, k)
    (sh, sw), (dh, dw_) = stride, dilation
    oh, ow = out_hw
    rows = [slice(p * dh, p * dh + sh * (oh - 1) + 1, sh) for p in range(kh)]
    cols_at = [slice(q * dw_, q * dw_ + sw * (ow - 1) + 1, sw) for q in range(kw)]

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        x_pad = _pad_chwn(x[ch], *padding, x_pads[slot][..., :nb])
        cols = im2col_k_major(x_pad, (kh, kw), stride, dilation, out_hw, bufs[slot], True)
        size = c_out * cols.shape[1]
        d = d_bufs[slot][:size].reshape(c_out, oh, ow, nb)
        if relu_out is None:
            xp.copyto(d, dout[ch].transpose(1, 2, 3, 0))
        else:
            relu_masked(dout[ch].transpose(1, 2, 3, 0), relu_out[ch].transpose(1, 2, 3, 0),
                        masks[slot][:size].reshape(d.shape), d)
        d_mat = d.reshape(c_out, cols.shape[1])  # (C_out, H_out*W_out*nb)
        if has_bias:  # db[co] = Σ dout[., co, ., .], as a GEMV
            xp.matmul(ones[:cols.shape[1]], d_mat.T, out=db_parts[i])
        gemm(xp, cols, d_mat.T, dw_parts[i], inner=True)  # dWᵀ part, (K, C_out)
        if not need_dx:
            return
        dcols = gemm(xp, w_mat.T, d_mat, cols)  # (K, H_out*W_out*nb), over cols
        dcols = dcols.reshape(c_in, kh, kw, oh, ow, nb)
        dx_pad = dx_pads[slot][..., :nb]
        dx_pad.fill(0)
        for p in range(kh):  # dx_pad[c, i*S + p*D, j*S + q*D, n] += dcols[c, p, q, i, j, n]
            for q in range(kw):
                dx_pad[:, rows[p], cols_at[q]] += dcols[:, p, q]
        xp.copyto(dx[ch], dx_pad[:, padding[0]:padding[0] + h,
                                 padding[1]:padding[1] + w].transpose(3, 0, 1, 2))

    _parallel.run_chunks(chunk, len(chunks), slots)
    dw = sum_parts(xp, dw_parts).T.reshape(c_out, c_in, kh, kw)
    db = sum_parts(xp, db_parts) if has_bias else None
    return dx, xp.ascontiguousarray(dw), db


def _pad_chwn(x, pad_h, pad_w, out):
    """Copy NCHW ``x`` (nb, C, H, W) into the interior of ``out`` (C, H + 2*pad_h,
    W + 2*pad_w, nb), batch innermost, whose border the caller has zeroed. Returns ``out``."""
    h, w = x.shape[2:]
    get_xp(out).copyto(out[:, pad_h:pad_h + h, pad_w:pad_w + w], x.transpose(1, 2, 3, 0))
    return out


def _plan(xp, x, weight, padding, out_hw):
    """Threads, batch chunks and per-thread zeroed (C, H + 2P, W + 2P, nb) input buffers
    of the batch-innermost path."""
    n, c_in, h, w = x.shape
    positions = out_hw[0] * out_hw[1]
    k = c_in * weight.shape[2] * weight.shape[3]
    slots = thread_slots(xp, n, positions, k)
    chunks = train_chunks(n, positions, positions * k * x.itemsize, slots)
    nb_max = chunks[0].stop - chunks[0].start
    pad_hw = (h + 2 * padding[0], w + 2 * padding[1])
    x_pads = [xp.zeros((c_in, *pad_hw, nb_max), x.dtype) for _ in range(slots)]
    return slots, chunks, nb_max, x_pads
