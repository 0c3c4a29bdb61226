"""Convolution modules beyond the plain Conv2d: groups and "same" padding, ConvTranspose2d,
Conv1d;
PyTorch parity of the output and every gradient, state_dict keys and shapes, finite
differences, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import glasscnn.nn as nn
from glasscnn.gradcheck import numerical_gradient, rel_error
from glasscnn.io import to_torch

IMPLS = ["naive", "fast"]
# PyTorch warns that "same" with an even kernel pads a copy of the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.:UserWarning")

# (name, builder(impl, dtype), input shape); tiny so the naive kernels stay quick
CASES = [
    ("conv_groups", lambda i, d: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, impl=i,
                                           dtype=d), (2, 4, 7, 6)),
    ("conv_depthwise", lambda i, d: nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=False,
                                              impl=i, dtype=d), (2, 3, 6, 5)),
    ("conv_same_even", lambda i, d: nn.Conv2d(2, 3, (4, 2), padding="same", dilation=(1, 2),
                                              impl=i, dtype=d), (1, 2, 6, 7)),
    ("conv_valid", lambda i, d: nn.Conv2d(2, 4, 3, padding="valid", groups=2, impl=i,
                                          dtype=d), (2, 2, 5, 6)),
    ("convt", lambda i, d: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1,
                                              impl=i, dtype=d), (2, 3, 4, 3)),
    ("convt_groups", lambda i, d: nn.ConvTranspose2d(4, 6, (2, 3), stride=(1, 2), groups=2,
                                                     bias=False, dilation=(2, 1), impl=i,
                                                     dtype=d), (1, 4, 3, 4)),
    ("convt_depthwise", lambda i, d: nn.ConvTranspose2d(3, 3, 3, padding=1, groups=3,
                                                        impl=i, dtype=d), (2, 3, 4, 4)),
    ("conv1d", lambda i, d: nn.Conv1d(3, 4, 3, stride=2, padding=1, impl=i, dtype=d),
     (2, 3, 9)),
    ("conv1d_same_even", lambda i, d: nn.Conv1d(4, 6, 4, padding="same", dilation=1, groups=2,
                                                bias=False, impl=i, dtype=d), (1, 4, 7)),
    ("conv1d_depthwise", lambda i, d: nn.Conv1d(3, 3, (5,), padding=(2,), dilation=(2,),
                                                groups=3, impl=i, dtype=d), (2, 3, 8)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_module_matches_torch(case, impl, dtype, torch, rng):
    """Output, input gradient and every parameter gradient against the PyTorch twin (same
    state_dict) with a random upstream gradient; the state_dicts' keys and shapes agree."""
    _, build, shape = case
    layer = build(impl, dtype)
    twin = to_torch(layer, torch)
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        k: tuple(v.shape) for k, v in twin.state_dict().items()}
    x = rng.standard_normal(shape).astype(dtype)
    out = layer(x)
    assert out.dtype == dtype and out.shape == layer.output_shape(x.shape)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = twin(xt)
    dout = rng.standard_normal(out.shape).astype(dtype)
    out_t.backward(torch.from_numpy(dout))
    dx = layer.backward(dout)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(out, out_t.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    torch_params = dict(twin.named_parameters())
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, torch_params[name].grad.numpy(), **tol, err_msg=name)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_module_gradients_match_finite_differences(case, impl, rng):
    _, build, shape = case
    layer = build(impl, np.float64)
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(layer.output_shape(shape))
    layer(x)
    dx = layer.backward(dout)

    def f():
        return layer(x)

    assert rel_error(dx, numerical_gradient(f, x, dout, h=1e-3)) < 1e-7
    for name, p in layer.named_parameters():
        assert rel_error(p.grad, numerical_gradient(f, p.data, dout, h=1e-3)) < 1e-7, name


def test_torch_state_dict_loads(torch, rng):
    """A PyTorch grouped conv's state_dict loads as it is and gives PyTorch's output."""
    twin = torch.nn.Conv2d(6, 9, 3, padding="same", groups=3).double()
    layer = nn.Conv2d(6, 9, 3, padding="same", groups=3, dtype=np.float64)
    layer.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    x = rng.standard_normal((2, 6, 5, 4))
    np.testing.assert_allclose(layer(x), twin(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_conv2d_attributes_and_repr():
    layer = nn.Conv2d(8, 16, 3, padding="same", groups=8, bias=False)
    assert layer.weight.data.shape == (16, 1, 3, 3)
    assert (layer.groups, layer.padding, layer.pads()) == (8, "same", ((1, 1), (1, 1)))
    assert repr(layer) == ("Conv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding='same', "
                           "groups=8, bias=False)")
    assert nn.Conv2d(2, 2, 4, padding="same").pads() == ((1, 1), (2, 2))


def test_conv_transpose2d_attributes_and_repr():
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert layer.weight.data.shape == (4, 3, 3, 3) and layer.bias.data.shape == (6,)
    assert layer.output_shape((5, 4, 7, 8)) == (5, 6, 14, 16)
    assert repr(layer) == ("ConvTranspose2d(4, 6, kernel_size=(3, 3), stride=(2, 2), "
                           "padding=(1, 1), output_padding=(1, 1), groups=2)")


def test_conv_transpose2d_torch_state_dict_loads(torch, rng):
    twin = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=np.float64)
    layer.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    x = rng.standard_normal((2, 4, 3, 5))
    np.testing.assert_allclose(layer(x), twin(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_conv1d_attributes_and_repr():
    layer = nn.Conv1d(4, 8, 3, padding="same", groups=4, bias=False)
    assert layer.weight.data.shape == (8, 1, 3)
    assert (layer.padding, layer.pads(), layer.output_shape((2, 4, 10))) == (
        "same", (1, 1), (2, 8, 10))
    assert nn.Conv1d(2, 2, 4, padding="same").pads() == (1, 2)
    assert repr(nn.Conv1d(2, 3, 5, stride=2, padding=1)) == (
        "Conv1d(2, 3, kernel_size=(5,), stride=(2,), padding=(1,))")


def test_conv1d_torch_state_dict_loads(torch, rng):
    twin = torch.nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2).double()
    layer = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2, dtype=np.float64)
    layer.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    x = rng.standard_normal((2, 4, 11))
    np.testing.assert_allclose(layer(x), twin(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_uint8_images_are_computed_in_float32(impl, rng):
    """A uint8 batch gives the output of its float32 conversion (never zeros)."""
    layer = nn.Conv2d(3, 4, 3, impl=impl)
    x = rng.integers(0, 256, size=(2, 3, 6, 6)).astype(np.uint8)
    out = layer(x)
    assert out.dtype == np.float32 and np.abs(out).max() > 1
    np.testing.assert_allclose(out, layer(x.astype(np.float32)), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: nn.Conv2d(6, 4, 3, groups=4), r"^Conv2d: groups=4 must divide .*\(6\)"),
    (lambda: nn.Conv2d(6, 3, 3, groups=2), r"^Conv2d: groups=2 must divide .*\(3\)"),
    (lambda: nn.Conv2d(6, 6, 3, groups=0), r"^Conv2d: groups must be a positive int, got 0"),
    (lambda: nn.Conv2d(2, 2, 3, stride=2, padding="same"), r"^Conv2d: padding='same' needs"),
    (lambda: nn.Conv2d(2, 2, 3, padding="full"), r"^Conv2d: padding must be .*'full'"),
    (lambda: nn.ConvTranspose2d(4, 6, 3, groups=4), r"^ConvTranspose2d: groups=4 must divide"),
    (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=2),
     r"^ConvTranspose2d: output_padding \(2, 2\) must be smaller"),
    (lambda: nn.ConvTranspose2d(4, 6, 0), r"^ConvTranspose2d: kernel_size, stride and dilation"),
    (lambda: nn.ConvTranspose2d(0, 6, 3), r"^ConvTranspose2d: channels must be > 0"),
    (lambda: nn.Conv1d(4, 6, (3, 3)), r"^Conv1d: kernel_size must be an int or a 1-tuple"),
    (lambda: nn.Conv1d(4, 6, 3, stride=0), r"^Conv1d: kernel_size, stride and dilation"),
    (lambda: nn.Conv1d(4, 6, 3, groups=3), r"^Conv1d: groups=3 must divide"),
    (lambda: nn.Conv1d(4, 6, 3, stride=2, padding="same"), r"^Conv1d: padding='same' needs"),
])
def test_bad_constructor_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_conv1d_rejects_a_4d_input():
    with pytest.raises(ValueError, match=r"^Conv1d: expected input of shape \(N, C_in, L\), "
                                         r"got shape \(1, 2, 3, 4\)"):
        nn.Conv1d(2, 2, 3)(np.zeros((1, 2, 3, 4)))
