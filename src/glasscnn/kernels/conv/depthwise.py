"""Depthwise convolution (groups = C_in, as in MobileNet): a multiply-accumulate per kernel
tap over channels-last windows, no im2col.

Technique: with one input channel per group there is no channel sum to hand to a GEMM, so
each kernel tap (p, q) is one vectorised multiply of a strided window view of the padded
channels-last input by the tap's weights (one per channel, broadcast along the channel
axis) and one add into the output: ``out[n, i, j, c·m + k] += x_pad[n, i*S + p*D_h,
j*S + q*D_w, c] * w[c·m + k, 0, p, q]`` for a channel multiplier m = C_out / C_in. The
output is written in blocks of rows small enough to stay in cache while every tap adds
into them; the batch chunks run on the kernels' thread pool. The backward runs the same
taps: ``dx_pad[window] += dout * w`` and ``dW[tap] = Σ dout * window`` (a GEMV with ones
per block).
"""

from __future__ import annotations

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import get_xp, sum_parts
from glasscnn.kernels.conv.buffers import (
    batch_chunks,
    empty_4d,
    flipped_padding,
    pad_buffers,
    pad_nhwc,
    relu_masked,
    thread_slots,
)

# output rows per block: about this many bytes of one block of the output (and of its
# product scratch), so that both stay in cache while every tap adds into them. MobileNetV2's
# 144-channel 56x56 layer, forward + backward, batch 16, interleaved in one process:
# 32-64 KiB blocks 1.3-1.8x slower (more NumPy calls), 256 KiB-2 MiB within noise
BLOCK_BYTES = 2**19


def applies(x_shape, weight_shape, groups):
    """Whether a grouped layer is depthwise: one input channel per group, more than one
    group."""
    return groups > 1 and weight_shape[1] == 1 and x_shape[1] == groups


def forward(x, weight, bias, stride, padding, dilation, out_hw, relu=False):
    """Depthwise forward, channels-last output seen as (N, C_out, H_out, W_out)."""
    xp = get_xp(x)
    n, c_out = x.shape[0], weight.shape[0]
    plan = _Plan(xp, x.shape, weight, stride, padding, dilation, out_hw)
    out = empty_4d(xp, (n, c_out, *out_hw), x.dtype, True)
    x_pads = pad_buffers(xp, x, padding, plan.nb_max, plan.slots, nchw=False)
    tmps = plan.scratch(x.dtype)

    def finish(o):  # each block of the output while it is in cache
        if bias is not None:
            xp.add(o, bias, out=o)
        if relu:
            xp.maximum(o, 0, out=o)

    def chunk(i, slot):
        ch = plan.chunks[i]
        nb = ch.stop - ch.start
        x_pad = pad_nhwc(x[ch].transpose(0, 2, 3, 1), *padding, x_pads[slot][:nb])
        plan.accumulate(x_pad, out[ch].transpose(0, 2, 3, 1), tmps[slot], finish)

    _parallel.run_chunks(chunk, len(plan.chunks), plan.slots)
    return out


def backward(dout, x, weight, stride, padding, dilation, need_dx=True, has_bias=False,
             relu_out=None, need_dw=True, x_shape=None):
    """Depthwise gradients ``(dx or None, dW or None, db or None)``, dx channels-last.

    At stride 1 with one output per input channel, dx gathers like the forward: dout
    padded by ``D*(K-1) - P``, convolved with the flipped kernel, block by block into dx;
    otherwise each tap scatters ``dout * w[tap]`` into a padded dx. ``need_dw=False``
    (``x`` may then be ``None``, its shape given by ``x_shape``) gives the input gradient
    alone, the transposed convolution's forward. With ``relu_out`` each chunk of dout is
    first multiplied by ``[y > 0]``.
    """
    xp = get_xp(dout)
    x_shape = x.shape if x_shape is None else tuple(x_shape)
    _, c_in, h, w = x_shape
    c_out = weight.shape[0]
    out_hw = dout.shape[2:]
    plan = _Plan(xp, x_shape, weight, stride, padding, dilation, out_hw)
    kh, kw = weight.shape[2:]
    dtype = dout.dtype
    d_bufs = [xp.empty((plan.nb_max, *out_hw, c_out), dtype) for _ in range(plan.slots)]
    masks = None
    if relu_out is not None:
        masks = [xp.empty((plan.nb_max, *out_hw, c_out), bool) for _ in range(plan.slots)]
    tmps = plan.scratch(dtype)
    x_pads = dw_parts = vecs = dx = None
    if need_dw:
        x_pads = pad_buffers(xp, x, padding, plan.nb_max, plan.slots, nchw=False)
        dw_parts = xp.zeros((len(plan.chunks), kh * kw, c_out), dtype)
        vecs = [xp.empty(c_out, dtype) for _ in range(plan.slots)]
    flipped = flipped_padding(weight, padding, dilation)
    gather = need_dx and stride == (1, 1) and plan.m == 1 and min(flipped) >= 0
    scatter = need_dx and not gather
    if need_dx:
        dx = empty_4d(xp, x_shape, dtype, True)
    if gather:  # a depthwise conv of dout, in this backward's batch chunks
        dx_plan = _Plan(xp, (x_shape[0], c_out, *out_hw), weight[:, :, ::-1, ::-1], (1, 1),
                        flipped, dilation, (h, w), chunks=(plan.slots, plan.chunks))
        d_pads = [xp.zeros((plan.nb_max, out_hw[0] + 2 * flipped[0],
                            out_hw[1] + 2 * flipped[1], c_out), dtype) for _ in range(plan.slots)]
        dx_tmps = dx_plan.scratch(dtype)
    if scatter:
        dx_pads = [xp.empty((plan.nb_max, h + 2 * padding[0], w + 2 * padding[1], c_in),
                            dtype) for _ in range(plan.slots)]
        sum_tmps = plan.scratch(dtype, c_in) if plan.m > 1 else None
    db_parts = xp.empty((len(plan.chunks), c_out), dtype) if has_bias else None
    ones = xp.ones(plan.nb_max * out_hw[0] * out_hw[1], dtype)

    def chunk(i, slot):
        ch = plan.chunks[i]
        nb = ch.stop - ch.start
        d = d_bufs[slot][:nb]
        if relu_out is None:
            xp.copyto(d, dout[ch].transpose(0, 2, 3, 1))
        else:
            relu_masked(dout[ch].transpose(0, 2, 3, 1), relu_out[ch].transpose(0, 2, 3, 1),
                        masks[slot][:nb], d)
        if has_bias:  # db[co] = Σ_{n,i,j} dout[n, co, i, j], as a GEMV
            xp.matmul(ones[:d.size // c_out], d.reshape(-1, c_out), out=db_parts[i])
        if need_dw:
            x_pad = pad_nhwc(x[ch].transpose(0, 2, 3, 1), *padding, x_pads[slot][:nb])
        if scatter:
            dx_pad = dx_pads[slot][:nb]
            dx_pad.fill(0)
        for rows in plan.blocks:
            d_blk = plan.split(d[:, rows])
            tmp = plan.split(plan.carve(tmps[slot], nb, rows))
            size = tmp.size // c_out
            for t, (p, q) in enumerate(plan.taps):
                if need_dw:  # dW[tap] += Σ_{n,i,j} dout * window
                    xp.multiply(d_blk, plan.spread(plan.window(x_pad, rows, p, q)), out=tmp)
                    xp.matmul(ones[:size], tmp.reshape(size, c_out), out=vecs[slot])
                    xp.add(dw_parts[i, t], vecs[slot], out=dw_parts[i, t])
                if scatter:  # dx_pad[window] += dout * w[tap] (summed over the multiplier)
                    xp.multiply(d_blk, plan.w_taps[t], out=tmp)
                    prod = tmp
                    if plan.m > 1:
                        prod = xp.sum(tmp, axis=-1, out=plan.carve(sum_tmps[slot], nb, rows,
                                                                   c_in))
                    dst = plan.window(dx_pad, rows, p, q)
                    xp.add(dst, prod, out=dst)
        if scatter:
            xp.copyto(dx[ch].transpose(0, 2, 3, 1),
                      dx_pad[:, padding[0]:padding[0] + h, padding[1]:padding[1] + w])
        if gather:
            d_pad = pad_nhwc(d, *flipped, d_pads[slot][:nb])
            dx_plan.accumulate(d_pad, dx[ch].transpose(0, 2, 3, 1), dx_tmps[slot])

    _parallel.run_chunks(chunk, len(plan.chunks), plan.slots)
    dw = None
    if need_dw:  # (kH*kW, C_out) → (C_out, 1, kH, kW)
        dw = xp.ascontiguousarray(sum_parts(xp, dw_parts).T.reshape(c_out, 1, kh, kw))
    db = sum_parts(xp, db_parts) if has_bias else None
    return dx, dw, db


class _Plan:
    """Threads, batch chunks, row blocks, taps and the per-tap weights of a depthwise layer."""

    def __init__(self, xp, x_shape, weight, stride, padding, dilation, out_hw, chunks=None):
        n, c_in, h, w = x_shape
        c_out, _, kh, kw = weight.shape
        self.xp, self.stride, self.dilation, self.out_hw = xp, stride, dilation, out_hw
        self.c_in, self.m = c_in, c_out // c_in
        itemsize = weight.dtype.itemsize
        if chunks is None:  # (threads, batch chunks), unless another plan's are shared
            per_image = (h + 2 * padding[0]) * (w + 2 * padding[1]) * c_in * itemsize
            slots = thread_slots(xp, n, out_hw[0] * out_hw[1], kh * kw * c_out)
            chunks = slots, batch_chunks(n, per_image, parts=slots)
        self.slots, self.chunks = chunks
        self.nb_max = self.chunks[0].stop - self.chunks[0].start
        row_bytes = self.nb_max * out_hw[1] * c_out * itemsize
        step = max(1, min(out_hw[0], BLOCK_BYTES // max(1, row_bytes)))
        self.blocks = [slice(r, min(r + step, out_hw[0])) for r in range(0, out_hw[0], step)]
        self.step = step
        self.taps = [(p, q) for p in range(kh) for q in range(kw)]
        # (kH*kW, C_in, m): the weights of one tap for every channel
        w_taps = weight.reshape(c_in, self.m, kh * kw).transpose(2, 0, 1)
        self.w_taps = xp.ascontiguousarray(w_taps if self.m > 1 else w_taps[..., 0])

    def scratch(self, dtype, channels=None):
        """One flat buffer per thread for a block of (nb_max, rows, W_out, channels), C_out
        channels by default (see :meth:`carve`)."""
        c = self.c_in * self.m if channels is None else channels
        return [self.xp.empty(self.nb_max * self.step * self.out_hw[1] * c, dtype)
                for _ in range(self.slots)]

    def carve(self, buf, nb, rows, channels=None):
        """The front of a flat scratch buffer as a contiguous (nb, rows, W_out, channels)."""
        c = self.c_in * self.m if channels is None else channels
        shape = (nb, rows.stop - rows.start, self.out_hw[1], c)
        return buf[:nb * shape[1] * shape[2] * c].reshape(shape)

    def accumulate(self, src_pad, o_all, buf, finish=None):
        """``o_all`` (nb, H_out, W_out, C_out) = Σ_taps window(``src_pad``) * w[tap], one
        block of rows at a time (``buf``: this thread's :meth:`scratch`); ``finish(block)``
        runs on each finished block while it is in cache."""
        xp, nb = self.xp, o_all.shape[0]
        for rows in self.blocks:
            o = self.split(o_all[:, rows])
            tmp = self.split(self.carve(buf, nb, rows))
            for t, (p, q) in enumerate(self.taps):
                xp.multiply(self.spread(self.window(src_pad, rows, p, q)), self.w_taps[t],
                            out=tmp if t else o)
                if t:
                    xp.add(o, tmp, out=o)
            if finish is not None:
                finish(o_all[:, rows])

    def split(self, a):
        """A channels-last block (..., C_out) as (..., C_in, m) when m > 1."""
        return a if self.m == 1 else a.reshape(*a.shape[:-1], self.c_in, self.m)

    def spread(self, window):
        """An input window (..., C_in) broadcastable against ``split`` blocks."""
        return window if self.m == 1 else window[..., None]

    def window(self, a_pad, rows, p, q):
        """The view of padded channels-last ``a_pad`` (nb, H_pad, W_pad, C_in) that kernel
        tap (p, q) multiplies for output rows ``rows``: (nb, rows, W_out, C_in)."""
        (sh, sw), (dh, dw) = self.stride, self.dilation
        r0 = rows.start * sh + p * dh
        c0 = q * dw
        return a_pad[:, r0:r0 + sh * (rows.stop - rows.start - 1) + 1:sh,
                     c0:c0 + sw * (self.out_hw[1] - 1) + 1:sw]
