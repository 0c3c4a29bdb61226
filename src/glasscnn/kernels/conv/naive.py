"""The loop-nest conv2d: the reference every fast strategy is tested against.

With ``groups`` G, output channel ``co`` sees only the input channels of its group,
``g(co) = co // (C_out/G)``: ``x[:, g*C_in/G : (g+1)*C_in/G]``.
"""

from __future__ import annotations

import numpy as np


def forward(x, weight, bias, stride, padding, dilation, out_hw, groups=1):
    """Loop nest over (n, c_out, i, j); the window sum is one ``np.sum``."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    c_out, c_in_g, kh, kw = weight.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    b = np.zeros(c_out, x.dtype) if bias is None else bias
    out = np.zeros((x.shape[0], c_out, *out_hw), dtype=x.dtype)
    # out[n,co,i,j] = b[co] + sum_{ci,p,q} w[co,ci,p,q] * x_pad[n,g(co)*C_in/G+ci,i*S+p*D,j*S+q*D]
    for n in range(out.shape[0]):
        for co in range(c_out):
            chans = slice(co // (c_out // groups) * c_in_g, (co // (c_out // groups) + 1) * c_in_g)
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                    out[n, co, i, j] = b[co] + np.sum(weight[co] * x_pad[n, chans, rows, cols])
    return out


def backward(dout, x, weight, stride, padding, dilation, groups=1):
    """The forward loop nest, scattering each ``dout[n, co, i, j]`` into dx_pad and dw."""
    (sh, sw), (ph, pw), (dh, dw_) = stride, padding, dilation
    c_out, c_in_g, kh, kw = weight.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(weight)
    # window = x_pad[n, group of co, i*S : i*S + D*(kH-1)+1 : D, j*S : j*S + D*(kW-1)+1 : D]
    # dx_pad[window] += dout[n,co,i,j] * w[co];  dw[co] += dout[n,co,i,j] * window
    for n in range(dout.shape[0]):
        for co in range(c_out):
            chans = slice(co // (c_out // groups) * c_in_g, (co // (c_out // groups) + 1) * c_in_g)
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw_ * (kw - 1) + 1, dw_)
                    dx_pad[n, chans, rows, cols] += dout[n, co, i, j] * weight[co]
                    dw[co] += dout[n, co, i, j] * x_pad[n, chans, rows, cols]
    return np.ascontiguousarray(dx_pad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]), dw


def transpose_forward(x, weight, bias, stride, padding, dilation, out_hw, groups=1):
    """Transposed conv as a loop nest over input pixels (n, c_in, i, j), each scattering
    ``x[n, ci, i, j] * w[ci]`` into the window it would read in the convolution."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    c_in, c_out_g, kh, kw = weight.shape
    n, _, h, w = x.shape
    full = np.zeros((n, c_out_g * groups, out_hw[0] + 2 * ph, out_hw[1] + 2 * pw), x.dtype)
    # out_full[n, g(ci)*C_out/G + co, i*S + p*D, j*S + q*D] += x[n, ci, i, j] * w[ci, co, p, q]
    for b in range(n):
        for ci in range(c_in):
            chans = slice(ci // (c_in // groups) * c_out_g, (ci // (c_in // groups) + 1) * c_out_g)
            for i in range(h):
                for j in range(w):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                    full[b, chans, rows, cols] += x[b, ci, i, j] * weight[ci]
    out = full[:, :, ph:ph + out_hw[0], pw:pw + out_hw[1]]  # the padding cropped
    if bias is not None:
        out = out + bias[:, None, None]
    return np.ascontiguousarray(out)


def transpose_backward(dout, x, weight, stride, padding, dilation, groups=1):
    """The transposed conv's loop nest gathering instead of scattering: each input pixel's
    gradient is the sum of its window of dout times ``w[ci]``, and ``dw[ci]`` sums the
    windows times the pixel."""
    (sh, sw), (ph, pw), (dh, dw_) = stride, padding, dilation
    c_in, c_out_g, kh, kw = weight.shape
    n, _, h, w = x.shape
    full_hw = [dout.shape[2 + a] + 2 * padding[a] for a in (0, 1)]
    d_full = np.zeros((n, dout.shape[1], *full_hw), dout.dtype)  # dout in the uncropped frame
    d_full[:, :, ph:ph + dout.shape[2], pw:pw + dout.shape[3]] = dout
    dx = np.zeros_like(x)
    dw = np.zeros_like(weight)
    # window = d_full[n, group of ci, i*S : i*S + D*(kH-1)+1 : D, j*S : j*S + D*(kW-1)+1 : D]
    # dx[n,ci,i,j] = sum(w[ci] * window);  dw[ci] += x[n,ci,i,j] * window
    for b in range(n):
        for ci in range(c_in):
            chans = slice(ci // (c_in // groups) * c_out_g, (ci // (c_in // groups) + 1) * c_out_g)
            for i in range(h):
                for j in range(w):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw_ * (kw - 1) + 1, dw_)
                    window = d_full[b, chans, rows, cols]
                    dx[b, ci, i, j] = np.sum(weight[ci] * window)
                    dw[ci] += x[b, ci, i, j] * window
    return dx, dw
