"""im2col + GEMM: every window copied into a matrix row (channels-last) or column
(K-major), one GEMM per batch chunk; the input gradient by col2im or, at stride 1, as a
convolution of dout with the flipped kernel."""

from __future__ import annotations

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import get_xp, sum_parts
from glasscnn.kernels.conv.buffers import (
    K_MAJOR_CHANNELS,
    add_bias_rows,
    batch_chunks,
    copy_windows,
    empty_4d,
    flipped_padding,
    gemm,
    im2col_nhwc,
    pad_buffers,
    pad_nchw,
    pad_nhwc,
    relu_masked,
    thread_slots,
    train_chunks,
)

# K-major im2col of stride-1 rows and outputs at most this wide: two copies with long runs
# (:func:`_k_major_two_copies`) instead of one with runs of W_out floats (alexnet's conv2
# and conv4 at batch 1: 1.25-1.35x faster; at 28-32 wide, 5-10% slower)
TWO_COPY_MAX_WIDTH = 16


def forward(x, weight, bias, stride, padding, dilation, out_hw, relu=False):
    """im2col + one GEMM per batch chunk (bounded buffer), in the layout that copies least.

    Channels-last im2col, or K-major (NCHW) with fewer than ``K_MAJOR_CHANNELS`` input
    channels. From ``K_MAJOR_CHANNELS`` output channels on, each chunk's GEMM writes its
    rows of a channels-last output in place, and the result is that buffer seen as
    (N, C_out, H_out, W_out) (see ``kernels.channels_last``); with fewer, the output is NCHW.
    The chunks run on the kernels' thread pool (``_parallel``) where :func:`thread_slots` says
    so, each thread with its own buffers, allocated once per call. ``relu``: rectify each
    chunk's output in place while it is in cache.
    """
    xp = get_xp(x)
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = weight.shape
    positions = out_hw[0] * out_hw[1]
    k = kh * kw * c_in
    nchw = c_in < K_MAJOR_CHANNELS
    slots = thread_slots(xp, n, positions, k)
    chunks = train_chunks(n, positions, positions * k * x.itemsize, slots)
    nb_max = chunks[0].stop - chunks[0].start
    x_pads = pad_buffers(xp, x, padding, nb_max, slots, nchw)
    bufs = [xp.empty(nb_max * positions * k, x.dtype) for _ in range(slots)]
    cl_out = c_out >= K_MAJOR_CHANNELS
    out = empty_4d(xp, (n, c_out, *out_hw), x.dtype, cl_out)
    results = None if cl_out else [xp.empty((c_out, nb_max * positions), x.dtype)
                                   for _ in range(slots)]
    if nchw:
        w_mat = weight.reshape(c_out, k)  # (C_out, K), K ordered (C_in, kH, kW)
    else:
        w_mat = weight.transpose(0, 2, 3, 1).reshape(c_out, k)  # K ordered (kH, kW, C_in)

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        rows = nb * positions
        if nchw:
            x_pad = pad_nchw(x[ch], *padding, x_pads[slot][:nb])
            cols = im2col_k_major(x_pad, (kh, kw), stride, dilation, out_hw, bufs[slot]).T
        else:
            # channels-last im2col: one copy of a strided window view, then one GEMM
            x_nhwc = pad_nhwc(x[ch].transpose(0, 2, 3, 1), *padding, x_pads[slot][:nb])
            cols = im2col_nhwc(x_nhwc, (kh, kw), stride, dilation, out_hw, bufs[slot])
        if cl_out:  # the GEMM writes the chunk's channels-last rows in place
            dst = out[ch].transpose(0, 2, 3, 1).reshape(rows, c_out)
            gemm(xp, cols, w_mat.T, dst)  # (nb*P, K) @ (K, C_out)
            if bias is not None:
                add_bias_rows(dst, bias)
        else:
            res = gemm(xp, w_mat, cols.T, results[slot][:, :rows])  # (C_out, nb*P)
            res = res.reshape(c_out, nb, positions).transpose(1, 0, 2)
            dst = out[ch].reshape(nb, c_out, positions)
            if bias is None:
                xp.copyto(dst, res)
            else:
                xp.add(res, bias[:, None], out=dst)
        if relu:
            xp.maximum(dst, 0, out=dst)

    _parallel.run_chunks(chunk, len(chunks), slots)
    return out


def forward_k_major(x, weight, bias, stride, padding, dilation, out_hw, relu=False):
    """K-major im2col (K, N*P) + one GEMM per chunk, threaded by OpenBLAS itself.

    For few output positions and many filters (small-batch inference): the OIHW weight is
    already the (C_out, K) matrix, and one image's output is written by the GEMM in place.
    On AlexNet's batch-1 shapes (256×2400 @ 2400×169, 384×2304 @ 2304×36, ...) 2-thread
    OpenBLAS was 12-27% faster than splitting the product over the kernel thread pool, and
    it did not stall with the other core busy (measured both ways).
    """
    xp = get_xp(x)
    c_out, c_in, kh, kw = weight.shape
    positions = out_hw[0] * out_hw[1]
    k = kh * kw * c_in
    chunks = batch_chunks(x.shape[0], positions * k * x.itemsize)
    buf = xp.empty((chunks[0].stop - chunks[0].start) * positions * k, x.dtype)
    out = xp.empty((x.shape[0], c_out, *out_hw), dtype=x.dtype)
    w_mat = weight.reshape(c_out, k)  # (C_out, K), K ordered (C_in, kH, kW)
    for ch in chunks:
        nb = ch.stop - ch.start
        dst = out[ch].reshape(nb, c_out, positions)
        x_pad = pad_nchw(x[ch], *padding)
        cols = im2col_k_major(x_pad, (kh, kw), stride, dilation, out_hw, buf)  # (K, nb*P)
        if nb == 1:  # one image: the GEMM writes the output in place
            xp.matmul(w_mat, cols, out=dst[0])  # (C_out, K) @ (K, P)
            if bias is not None:
                xp.add(dst, bias[:, None], out=dst)
        else:
            res = xp.matmul(w_mat, cols).reshape(c_out, nb, positions).transpose(1, 0, 2)
            if bias is None:
                xp.copyto(dst, res)
            else:
                xp.add(res, bias[:, None], out=dst)
        if relu:
            xp.maximum(dst, 0, out=dst)
    return out


def im2col_k_major(x_pad, kernel, stride, dilation, out_hw, buf, batch_inner=False):
    """Copy every window of padded NCHW ``x_pad`` into ``buf``; return (K, N*H_out*W_out).

    One ``copyto`` from an ``as_strided`` window view (C, kH, kW, N, H_out, W_out), so K is
    ordered (C, kH, kW) like a reshaped OIHW weight (two copies with longer runs for
    stride-1 rows at most ``TWO_COPY_MAX_WIDTH`` wide: :func:`_k_major_two_copies`).
    ``batch_inner``: ``x_pad`` is (C, H, W, N) instead, the view (C, kH, kW, H_out, W_out,
    N) and the columns ordered (H_out, W_out, N), so that each copied run is a window row
    of all the images.
    """
    if batch_inner:
        c, _, _, n = x_pad.shape
        s_c, s_h, s_w, s_n = x_pad.strides
    else:
        n, c, _, _ = x_pad.shape
        s_n, s_c, s_h, s_w = x_pad.strides
    taps = (s_c, dilation[0] * s_h, dilation[1] * s_w)  # strides of (C, kH, kW)
    outs = (stride[0] * s_h, stride[1] * s_w)  # strides of (H_out, W_out)
    if batch_inner:
        shape, strides = (c, *kernel, *out_hw, n), (*taps, *outs, s_n)
    elif stride[0] == 1 and kernel[0] > 1 and out_hw[1] <= TWO_COPY_MAX_WIDTH:
        return _k_major_two_copies(x_pad, kernel, stride[1], dilation, out_hw, buf)
    else:
        shape, strides = (c, *kernel, n, *out_hw), (*taps, s_n, *outs)
    cols = copy_windows(x_pad, shape, strides, buf)
    return cols.reshape(c * kernel[0] * kernel[1], n * out_hw[0] * out_hw[1])


def _k_major_two_copies(x_pad, kernel, stride_w, dilation, out_hw, buf):
    """K-major im2col of a stride-1 (in height) layer in two copies; same result as
    :func:`im2col_k_major`'s one copy, (K, N*H_out*W_out).

    Technique: the one-copy view moves runs of W_out floats (6 for alexnet's conv4, 31 k
    runs for its conv2 at batch 1). First the kernel-width windows of every padded row,
    S[c, q, n, r, j] = x_pad[n, c, r, q*D_w + j*S_w] (runs of W_out, but kH times fewer of
    them); kernel row p of window (i, j) is then row p*D_h + i of S, so each
    ``cols[(c, p, q), n]`` is one contiguous run of H_out*W_out floats of S.
    """
    xp = get_xp(x_pad)
    n, c, h_pad, _ = x_pad.shape
    kh, kw = kernel
    oh, ow = out_hw
    s_n, s_c, s_h, s_w = x_pad.strides
    shifted = copy_windows(x_pad, (c, kw, n, h_pad, ow),
                           (s_c, dilation[1] * s_w, s_n, s_h, stride_w * s_w),
                           xp.empty(c * kw * n * h_pad * ow, x_pad.dtype))
    t_c, t_q, t_n, t_h, t_w = shifted.strides
    cols = copy_windows(shifted, (c, kh, kw, n, oh * ow),
                        (t_c, dilation[0] * t_h, t_q, t_n, t_w), buf)
    return cols.reshape(c * kh * kw, n * oh * ow)


def backward(dout, x, weight, stride, padding, dilation, need_dx=True, has_bias=False,
             relu_out=None):
    """dW: im2col + GEMM; dx: conv of dout with the flipped kernel, or col2im; db: row sums.

    ``dout`` is read as (N*H_out*W_out, C_out) rows: a view when it is channels-last (as
    the fast kernels produce it), else one copy per chunk; with ``relu_out`` (the output of
    :func:`conv2d_relu_forward`) each chunk of dout is first multiplied by its mask
    ``[y > 0]``. ``dx`` is returned channels-last from 8 input channels on. The chunks run
    on the kernels' thread pool where :func:`thread_slots` says so; each thread has its own
    buffers (allocated once per call); each chunk's dW and db parts are summed in chunk
    order afterwards. Returns ``(dx or None, dW, db or None)``.
    """
    xp = get_xp(dout)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out_hw = dout.shape[2:]
    positions = out_hw[0] * out_hw[1]
    k = kh * kw * c_in
    # stride 1: convolving dout beats col2im unless its im2col is much the larger
    transposed = need_dx and stride == (1, 1) and h * w * c_out <= 2 * positions * c_in
    per_image = max(positions * k, h * w * kh * kw * c_out if transposed else positions * k)
    slots = thread_slots(xp, n, positions, k)
    nchw = c_in < K_MAJOR_CHANNELS
    chunks = train_chunks(n, positions, per_image * x.itemsize, slots)
    nb_max = chunks[0].stop - chunks[0].start
    x_pads = pad_buffers(xp, x, padding, nb_max, slots, nchw)
    bufs = [xp.empty(nb_max * per_image, x.dtype) for _ in range(slots)]
    dout_nhwc = dout.transpose(0, 2, 3, 1)
    d_bufs = None  # channels-last dout is read in place
    if relu_out is not None:  # NHWC scratch: the masked dout and the mask
        d_bufs = [xp.empty((nb_max, *out_hw, c_out), x.dtype) for _ in range(slots)]
        masks = [xp.empty((nb_max, *out_hw, c_out), bool) for _ in range(slots)]
        y_nhwc = relu_out.transpose(0, 2, 3, 1)
    elif not dout_nhwc.flags.c_contiguous:  # NCHW dout: copied to (C_out, nb*P) per chunk
        d_bufs = [xp.empty((c_out, nb_max, positions), x.dtype) for _ in range(slots)]
    # each chunk writes its own dWᵀ and db part, summed in chunk order at the end: the
    # result does not depend on which thread ran which chunk (bitwise reproducible)
    db_parts = xp.empty((len(chunks), c_out), x.dtype) if has_bias else None
    ones = xp.ones(nb_max * positions, x.dtype) if has_bias else None
    dw_parts = xp.empty((len(chunks), k, c_out), dtype=x.dtype)  # dWᵀ per chunk
    dx = empty_4d(xp, x.shape, x.dtype, c_in >= K_MAJOR_CHANNELS) if need_dx else None
    if transposed:
        dx_conv = _TransposedConv(xp, weight, padding, dilation, out_hw, (h, w), nb_max, slots)

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        if nchw:  # cols (K, nb*P), K ordered (C_in, kH, kW)
            x_pad = pad_nchw(x[ch], *padding, x_pads[slot][:nb])
            cols = im2col_k_major(x_pad, (kh, kw), stride, dilation, out_hw, bufs[slot])
        else:  # cols (nb*P, K), K ordered (kH, kW, C_in)
            x_nhwc = pad_nhwc(x[ch].transpose(0, 2, 3, 1), *padding, x_pads[slot][:nb])
            cols = im2col_nhwc(x_nhwc, (kh, kw), stride, dilation, out_hw, bufs[slot]).T
        if relu_out is not None:
            d_nhwc = relu_masked(dout_nhwc[ch], y_nhwc[ch], masks[slot][:nb], d_bufs[slot][:nb])
            d_rows = d_nhwc.reshape(nb * positions, c_out)
        elif d_bufs is None:  # channels-last dout: its rows are a view
            d_nhwc = dout_nhwc[ch]
            d_rows = d_nhwc.reshape(nb * positions, c_out)  # (nb*P, C_out)
        else:  # NCHW dout: one copy to (C_out, nb*P), runs of H_out*W_out
            d_t = d_bufs[slot][:, :nb]
            xp.copyto(d_t, dout[ch].reshape(nb, c_out, positions).transpose(1, 0, 2))
            d_rows = d_t.reshape(c_out, nb * positions).T
            d_nhwc = d_t.reshape(c_out, nb, *out_hw).transpose(1, 2, 3, 0)
        if has_bias:  # db[co] = Σ_{n,i,j} dout[n, co, i, j], as a GEMV (8× a column sum)
            xp.matmul(ones[:nb * positions], d_rows, out=db_parts[i])
        # dWᵀ = cols @ d_rows, (K, nb*P) @ (nb*P, C_out): with few output channels, the other
        # orientation (M = C_out, long inner dimension) makes 2-thread OpenBLAS synchronise
        # per K block and stall for seconds under load
        gemm(xp, cols, d_rows, dw_parts[i], inner=True)
        if not need_dx:
            return
        if transposed:
            dx_conv(d_nhwc, dx[ch], bufs[slot], slot)
        else:
            dx_pad = _dx_col2im(d_rows.T, weight, (nb, c_in, h, w), padding, stride, dilation,
                                out_hw)  # (nb, H + 2P, W + 2P, C_in)
            xp.copyto(dx[ch], dx_pad[:, padding[0]:padding[0] + h,
                                     padding[1]:padding[1] + w].transpose(0, 3, 1, 2))

    _parallel.run_chunks(chunk, len(chunks), slots)
    dw_mat = sum_parts(xp, dw_parts)
    if nchw:
        dw = dw_mat.T.reshape(c_out, c_in, kh, kw)
    else:
        dw = dw_mat.reshape(kh, kw, c_in, c_out).transpose(3, 2, 0, 1)
    db = sum_parts(xp, db_parts) if has_bias else None
    return dx, xp.ascontiguousarray(dw), db


class _TransposedConv:
    """Stride-1 input gradient: dout, padded by D*(K-1) - P, convolved with the flipped kernel.

    ``dx[n,ci,h,w] = sum_{co,p,q} w[co,ci,kH-1-p,kW-1-q] * dout_pad[n,co,h+p*D,w+q*D]``;
    where ``P > D*(K-1)`` the border of dout (windows wholly in the padding) is cropped
    instead. Holds per-thread buffers for chunks of up to ``nb_max`` images.
    """

    def __init__(self, xp, weight, padding, dilation, out_hw, in_hw, nb_max, slots):
        c_out, c_in, kh, kw = weight.shape
        full = flipped_padding(weight, padding, dilation)
        self.crop = [max(0, -f) for f in full]
        self.pad = [max(0, f) for f in full]
        pad_hw = [out_hw[a] - 2 * self.crop[a] + 2 * self.pad[a] for a in (0, 1)]
        self.xp, self.dilation, self.in_hw = xp, dilation, tuple(in_hw)
        self.kernel = (kh, kw)
        self.d_pads = [xp.zeros((nb_max, *pad_hw, c_out), weight.dtype) for _ in range(slots)]
        # (kH*kW*C_out, C_in), rows ordered (p, q, co) like the channels-last im2col
        self.w_flip = weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(kh * kw * c_out, c_in)

    def __call__(self, d_nhwc, dx, buf, slot):
        """Write the input gradient of a chunk, dout as NHWC (nb, H_out, W_out, C_out), into
        ``dx`` (nb, C_in, H, W): in place when it is channels-last, else by one copy."""
        xp, (c0, c1), (h, w) = self.xp, self.crop, self.in_hw
        nb = d_nhwc.shape[0]
        d_crop = d_nhwc[:, c0:d_nhwc.shape[1] - c0, c1:d_nhwc.shape[2] - c1]
        d_pad = pad_nhwc(d_crop, *self.pad, self.d_pads[slot][:nb])
        cols = im2col_nhwc(d_pad, self.kernel, (1, 1), self.dilation, self.in_hw, buf)
        dx_nhwc = dx.transpose(0, 2, 3, 1)
        if dx_nhwc.flags.c_contiguous:
            xp.matmul(cols, self.w_flip, out=dx_nhwc.reshape(nb * h * w, -1))
        else:
            xp.copyto(dx_nhwc, (cols @ self.w_flip).reshape(dx_nhwc.shape))


def _dx_col2im(d_t, weight, x_shape, padding, stride, dilation, out_hw):
    """Input gradient by col2im: one strided add per kernel offset (p, q) into padded dx.

    Channels-last adds run over C_in; with few input channels (< 8) NCHW adds, which run
    along output rows, are faster. ``d_t`` is dout as (C_out, N*H_out*W_out).
    Returns the padded dx as (N, H + 2P, W + 2P, C_in), possibly a transposed view.
    """
    xp = get_xp(d_t)
    c_out, c_in, kh, kw = weight.shape
    nb, _, h, w = x_shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = out_hw
    pad_hw = (h + 2 * padding[0], w + 2 * padding[1])
    rows = [slice(p * dh, p * dh + sh * (oh - 1) + 1, sh) for p in range(kh)]
    cols = [slice(q * dw, q * dw + sw * (ow - 1) + 1, sw) for q in range(kw)]
    if c_in < 8:
        dcols = (weight.reshape(c_out, -1).T @ d_t).reshape(c_in, kh, kw, nb, oh, ow)
        dx_pad = xp.zeros((c_in, nb, *pad_hw), dtype=d_t.dtype)
        for p in range(kh):
            for q in range(kw):
                dx_pad[:, :, rows[p], cols[q]] += dcols[:, p, q]
        return dx_pad.transpose(1, 2, 3, 0)
    w_mat = weight.transpose(0, 2, 3, 1).reshape(c_out, -1)  # (C_out, K), K ordered (kH, kW, C_in)
    dcols = (d_t.T @ w_mat).reshape(nb, oh, ow, kh, kw, c_in)
    dx_pad = xp.zeros((nb, *pad_hw, c_in), dtype=d_t.dtype)
    for p in range(kh):
        for q in range(kw):
            dx_pad[:, rows[p], cols[q]] += dcols[:, :, :, p, q]
    return dx_pad
