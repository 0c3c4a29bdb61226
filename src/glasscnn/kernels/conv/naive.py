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
