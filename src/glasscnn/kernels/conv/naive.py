"""The loop-nest conv2d: the reference every fast strategy is tested against."""

from __future__ import annotations

import numpy as np


def forward(x, weight, bias, stride, padding, dilation, out_hw):
    """Loop nest over (n, c_out, i, j); the window sum is one ``np.sum``."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    kh, kw = weight.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    b = np.zeros(weight.shape[0], x.dtype) if bias is None else bias
    out = np.zeros((x.shape[0], weight.shape[0], *out_hw), dtype=x.dtype)
    # out[n,co,i,j] = b[co] + sum_{ci,p,q} w[co,ci,p,q] * x_pad[n,ci,i*S+p*D,j*S+q*D]
    for n in range(out.shape[0]):
        for co in range(out.shape[1]):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                    out[n, co, i, j] = b[co] + np.sum(weight[co] * x_pad[n, :, rows, cols])
    return out


def backward(dout, x, weight, stride, padding, dilation):
    """The forward loop nest, scattering each ``dout[n, co, i, j]`` into dx_pad and dw."""
    (sh, sw), (ph, pw), (dh, dw_) = stride, padding, dilation
    kh, kw = weight.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(weight)
    # window = x_pad[n, :, i*S : i*S + D*(kH-1)+1 : D, j*S : j*S + D*(kW-1)+1 : D]
    # dx_pad[window] += dout[n,co,i,j] * w[co];  dw[co] += dout[n,co,i,j] * window
    for n in range(dout.shape[0]):
        for co in range(dout.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw_ * (kw - 1) + 1, dw_)
                    dx_pad[n, :, rows, cols] += dout[n, co, i, j] * weight[co]
                    dw[co] += dout[n, co, i, j] * x_pad[n, :, rows, cols]
    return np.ascontiguousarray(dx_pad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]), dw
