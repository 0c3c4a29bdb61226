"""Modules of the operators beyond the course networks: PyTorch parity of outputs, input and
parameter gradients (random upstream gradients), state_dict keys, finite differences, errors."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import glasscnn.nn as nn
from glasscnn.gradcheck import check_module

IMPLS = ["naive", "fast"]

# glasscnn module -> the torch constructor call with the same arguments
ACTIVATIONS = [
    (lambda impl: nn.Tanh(impl=impl), lambda t: t.nn.Tanh()),
    (lambda impl: nn.LeakyReLU(0.2, impl=impl), lambda t: t.nn.LeakyReLU(0.2)),
    (lambda impl: nn.LeakyReLU(impl=impl), lambda t: t.nn.LeakyReLU()),
    (lambda impl: nn.ReLU6(impl=impl), lambda t: t.nn.ReLU6()),
    (lambda impl: nn.Hardswish(impl=impl), lambda t: t.nn.Hardswish()),
    (lambda impl: nn.SiLU(impl=impl), lambda t: t.nn.SiLU()),
    (lambda impl: nn.GELU(impl=impl), lambda t: t.nn.GELU()),
    (lambda impl: nn.Softmax(dim=1, impl=impl), lambda t: t.nn.Softmax(dim=1)),
    (lambda impl: nn.Softmax(dim=-1, impl=impl), lambda t: t.nn.Softmax(dim=-1)),
    (lambda impl: nn.LogSoftmax(dim=1, impl=impl), lambda t: t.nn.LogSoftmax(dim=1)),
    (lambda impl: nn.LogSoftmax(dim=0, impl=impl), lambda t: t.nn.LogSoftmax(dim=0)),
]


def _torch_module_run(torch, module_t, x, dout):
    """Output and input gradient of a torch module for float64 ``x`` and ``dout``."""
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = module_t(xt)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", range(len(ACTIVATIONS)))
def test_activation_modules_match_torch(case, impl, torch, rng):
    make, make_t = ACTIVATIONS[case]
    module, module_t = make(impl), make_t(torch)
    x = rng.uniform(-7, 7, (2, 3, 4, 5))
    dout = rng.standard_normal(x.shape)
    out = module(x)
    dx = module.backward(dout)
    out_t, dx_t = _torch_module_run(torch, module_t, x, dout)
    np.testing.assert_allclose(out, out_t, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, dx_t, rtol=1e-12, atol=1e-14)
    assert list(module.state_dict()) == list(module_t.state_dict()) == []
    assert module.output_shape(x.shape) == x.shape


@pytest.mark.parametrize("case", range(len(ACTIVATIONS)))
def test_activation_modules_finite_differences(case, rng):
    module = ACTIVATIONS[case][0]("fast")
    errors = check_module(module, rng.uniform(-2, 2, (2, 3, 3)), h=1e-6)
    assert errors["input"] < 1e-6


@pytest.mark.parametrize("shape", [(5,), (2, 5), (2, 3, 4), (2, 3, 4, 5)])
@pytest.mark.parametrize("name", ["Softmax", "LogSoftmax"])
def test_softmax_implicit_dim_matches_torch(name, shape, torch, rng):
    x = rng.standard_normal(shape)
    with pytest.warns(UserWarning):
        expected = getattr(torch.nn, name)()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(getattr(nn, name)()(x), expected, rtol=1e-12)


def test_activation_reprs_match_torch(torch):
    pairs = [(nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)), (nn.Softmax(1), torch.nn.Softmax(1)),
             (nn.GELU(), torch.nn.GELU()), (nn.Tanh(), torch.nn.Tanh()),
             (nn.ReLU6(), torch.nn.ReLU6())]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nn.GELU(approximate="tanh"), r"^GELU: .*'tanh'"),
        (lambda: nn.LeakyReLU("0.1"), r"^LeakyReLU: negative_slope .*'0.1'"),
        (lambda: nn.Softmax(dim=1.5), r"^Softmax: dim .*1.5"),
    ],
)
def test_activation_constructor_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- losses ----------------------------------------------------------------------------------

def _loss_cases(rng):
    """(glasscnn criterion, torch criterion builder, input, target)."""
    w = rng.uniform(0.5, 2, 4)
    logits = rng.standard_normal((3, 4, 2))
    labels = rng.integers(0, 4, (3, 2))
    labels[0, 0] = 1
    labels[1, 1] = -1
    x, t = rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))
    return [
        (nn.CrossEntropyLoss(), lambda T: T.nn.CrossEntropyLoss(), logits, labels.clip(0)),
        (nn.CrossEntropyLoss(w, ignore_index=-1, reduction="sum", label_smoothing=0.2),
         lambda T: T.nn.CrossEntropyLoss(T.from_numpy(w), ignore_index=-1, reduction="sum",
                                         label_smoothing=0.2), logits, labels),
        (nn.NLLLoss(w, ignore_index=-1), lambda T: T.nn.NLLLoss(T.from_numpy(w), ignore_index=-1),
         logits, labels),
        (nn.NLLLoss(reduction="none"), lambda T: T.nn.NLLLoss(reduction="none"), logits,
         labels.clip(0)),
        (nn.MSELoss(), lambda T: T.nn.MSELoss(), x, t),
        (nn.MSELoss(reduction="sum"), lambda T: T.nn.MSELoss(reduction="sum"), x, t),
        (nn.BCEWithLogitsLoss(), lambda T: T.nn.BCEWithLogitsLoss(), x, t),
        (nn.BCEWithLogitsLoss(w[:1], reduction="none", pos_weight=w),
         lambda T: T.nn.BCEWithLogitsLoss(T.from_numpy(w[:1]), reduction="none",
                                          pos_weight=T.from_numpy(w)), x, t),
    ]


@pytest.mark.parametrize("case", range(8))
def test_loss_modules_match_torch(case, torch, rng):
    criterion, make_t, x, target = _loss_cases(rng)[case]
    criterion_t = make_t(torch)
    loss = criterion(x, target)
    dout = rng.standard_normal(np.shape(loss))
    dx = criterion.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    loss_t = criterion_t(xt, torch.from_numpy(target))
    loss_t.backward(torch.from_numpy(np.asarray(dout)))
    np.testing.assert_allclose(loss, loss_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    sd, sd_t = criterion.state_dict(), criterion_t.state_dict()
    assert list(sd) == list(sd_t)
    for key in sd:
        np.testing.assert_array_equal(sd[key], sd_t[key].numpy())
    assert repr(criterion) == repr(criterion_t)


def test_loss_module_errors():
    with pytest.raises(ValueError, match=r"^MSELoss: reduction .*'avg'"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"^NLLLoss: backward called before"):
        nn.NLLLoss().backward()
    with pytest.raises(ValueError, match=r"^BCEWithLogitsLoss: pos_weight .*<U1"):
        nn.BCEWithLogitsLoss(pos_weight=np.array(["a"]))


# --- pooling -------------------------------------------------------------------------------

POOLS = [
    (lambda i: nn.MaxPool2d(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True, impl=i),
     lambda t: t.nn.MaxPool2d(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True),
     (2, 3, 9, 8)),
    (lambda i: nn.MaxPool2d(3, 2, ceil_mode=True, impl=i),
     lambda t: t.nn.MaxPool2d(3, 2, ceil_mode=True), (1, 2, 8, 8)),
    (lambda i: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False, impl=i),
     lambda t: t.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 2, 6, 7)),
    (lambda i: nn.AvgPool2d(2, 1, divisor_override=3, impl=i),
     lambda t: t.nn.AvgPool2d(2, 1, divisor_override=3), (1, 2, 5, 4)),
    (lambda i: nn.AdaptiveMaxPool2d((3, 2), return_indices=True, impl=i),
     lambda t: t.nn.AdaptiveMaxPool2d((3, 2), return_indices=True), (2, 2, 7, 5)),
    (lambda i: nn.AdaptiveMaxPool2d(1, impl=i), lambda t: t.nn.AdaptiveMaxPool2d(1),
     (2, 3, 4, 4)),
    (lambda i: nn.MaxPool1d(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True, impl=i),
     lambda t: t.nn.MaxPool1d(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True),
     (2, 3, 11)),
    (lambda i: nn.MaxPool1d(2, impl=i), lambda t: t.nn.MaxPool1d(2), (3, 8)),
    (lambda i: nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False, impl=i),
     lambda t: t.nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 2, 10)),
    (lambda i: nn.AvgPool1d(4, impl=i), lambda t: t.nn.AvgPool1d(4), (3, 9)),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", range(len(POOLS)))
def test_pool_modules_match_torch(case, impl, torch, rng):
    make, make_t, shape = POOLS[case]
    module, module_t = make(impl), make_t(torch)
    size = int(np.prod(shape))
    x = rng.permutation(size).reshape(shape) / size  # no ties
    result = module(x)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    result_t = module_t(xt)
    if isinstance(result_t, tuple):
        (out, idx), (out_t, idx_t) = result, result_t
        np.testing.assert_array_equal(idx, idx_t.numpy())
    else:
        out, out_t = result, result_t
    dout = rng.standard_normal(out.shape)
    dx = module.backward(dout)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert module.output_shape(shape) == out.shape
    assert list(module.state_dict()) == list(module_t.state_dict()) == []


@pytest.mark.parametrize("case", [0, 2, 4, 6, 8])
def test_pool_modules_finite_differences(case, rng):
    make, _, shape = POOLS[case]
    module = make("fast")
    size = int(np.prod(shape))
    x = rng.permutation(size).reshape(shape) / size
    if getattr(module, "return_indices", False):
        module.return_indices = False
    assert check_module(module, x, h=1e-6)["input"] < 1e-6


def test_pool_module_reprs_match_torch(torch):
    pairs = [(nn.MaxPool1d(3, 2, 1, dilation=2, ceil_mode=True),
              torch.nn.MaxPool1d(3, 2, 1, dilation=2, ceil_mode=True)),
             (nn.AvgPool1d(3, 2, 1), torch.nn.AvgPool1d(3, 2, 1))]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nn.AdaptiveMaxPool2d(0), r"^AdaptiveMaxPool2d: output_size must be > 0"),
        (lambda: nn.MaxPool1d((2, 2)), r"^MaxPool1d: kernel_size must be an int, got \(2, 2\)"),
        (lambda: nn.AvgPool1d(2, stride=1.5), r"^AvgPool1d: stride must be an int, got 1.5"),
        (lambda: nn.MaxPool1d(2)(np.zeros((1, 2, 3, 4))),
         r"^MaxPool1d: expected input of shape \(N, C, L\) or \(C, L\), got shape \(1, 2, 3, 4\)"),
        (lambda: nn.MaxPool1d(5).output_shape((1, 2, 3)), r"^MaxPool1d: input \(1, 2, 3\) is too"),
    ],
)
def test_pool_module_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- normalisation ---------------------------------------------------------------------------

NORMS = [
    (lambda i: nn.GroupNorm(2, 6, impl=i, dtype=np.float64), lambda t: t.nn.GroupNorm(2, 6),
     (2, 6, 3, 4)),
    (lambda i: nn.GroupNorm(3, 6, eps=1e-3, affine=False, impl=i, dtype=np.float64),
     lambda t: t.nn.GroupNorm(3, 6, eps=1e-3, affine=False), (2, 6, 5)),
    (lambda i: nn.GroupNorm(1, 4, impl=i, dtype=np.float64, bias=False),
     lambda t: t.nn.GroupNorm(1, 4, bias=False), (3, 4)),
    (lambda i: nn.LayerNorm((3, 4), impl=i, dtype=np.float64),
     lambda t: t.nn.LayerNorm((3, 4)), (2, 5, 3, 4)),
    (lambda i: nn.LayerNorm(7, bias=False, impl=i, dtype=np.float64),
     lambda t: t.nn.LayerNorm(7, bias=False), (4, 7)),
    (lambda i: nn.LayerNorm([5], elementwise_affine=False, impl=i, dtype=np.float64),
     lambda t: t.nn.LayerNorm([5], elementwise_affine=False), (2, 3, 5)),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", range(len(NORMS)))
def test_norm_modules_match_torch(case, impl, torch, rng):
    make, make_t, shape = NORMS[case]
    module, module_t = make(impl), make_t(torch).double()
    for p in module_t.parameters():
        torch.nn.init.normal_(p)
    module.load_state_dict({k: v.numpy() for k, v in module_t.state_dict().items()})
    assert list(module.state_dict()) == list(module_t.state_dict())
    assert repr(module) == repr(module_t)
    x = rng.standard_normal(shape) * 2
    dout = rng.standard_normal(shape)
    out = module(x)
    module.zero_grad()
    dx = module.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = module_t(xt)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad, dict(module_t.named_parameters())[name].grad.numpy(),
                                   rtol=1e-10, atol=1e-12)
    assert module.output_shape(shape) == shape


@pytest.mark.parametrize("case", [0, 3])
def test_norm_modules_finite_differences(case, rng):
    module = NORMS[case][0]("fast")
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    errors = check_module(module, rng.standard_normal(NORMS[case][2]), h=1e-5)
    assert max(errors.values()) < 1e-6


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nn.GroupNorm(4, 6), r"^GroupNorm: num_groups .*num_groups=4, num_channels=6"),
        (lambda: nn.GroupNorm(2, 6)(np.zeros((2, 4, 3))),
         r"^GroupNorm: .*\(N, 6, \*\).*\(2, 4, 3\)"),
        (lambda: nn.LayerNorm((3, 0)), r"^LayerNorm: normalized_shape .*\(3, 0\)"),
        (lambda: nn.LayerNorm(3).output_shape((2, 4)), r"^LayerNorm: .*\(3,\), got \(2, 4\)"),
    ],
)
def test_norm_module_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- branching: Concat, Identity, the Fire block of docs/branching.md -----------------------

BRANCHING_DOC = Path(__file__).resolve().parents[1] / "docs" / "branching.md"


def _doc_blocks():
    """Run every Python block of docs/branching.md; return the last block's namespace."""
    blocks = re.findall(r"```python\n(.*?)```", BRANCHING_DOC.read_text(), re.S)
    assert len(blocks) == 2
    namespace = {}
    for code in blocks:
        namespace = {}
        exec(compile(code, str(BRANCHING_DOC), "exec"), namespace)
    return namespace


def _torch_fire(torch):
    """torchvision's Fire block, written out (torchvision is not a dependency)."""

    class Fire(torch.nn.Module):
        def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
            super().__init__()
            self.squeeze = torch.nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
            self.squeeze_activation = torch.nn.ReLU(inplace=True)
            self.expand1x1 = torch.nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
            self.expand1x1_activation = torch.nn.ReLU(inplace=True)
            self.expand3x3 = torch.nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3,
                                             padding=1)
            self.expand3x3_activation = torch.nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.squeeze_activation(self.squeeze(x))
            return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                              self.expand3x3_activation(self.expand3x3(x))], 1)

    return Fire


def _compare_with_twin(torch, ours, theirs, x, rng, tol=1e-10):
    """Load the twin's weights into ``ours``; compare output, dx and every parameter grad."""
    theirs = theirs.double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    out = ours(x)
    dout = rng.standard_normal(out.shape)
    ours.zero_grad()
    dx = ours.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = theirs(xt)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
    grads_t = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, grads_t[name].grad.numpy(), rtol=tol, atol=tol)
    assert ours.output_shape(x.shape) == out.shape


def test_fire_block_of_the_docs_matches_torchvision_fire(torch, rng):
    fire_cls = _doc_blocks()["Fire"]
    torch.manual_seed(0)
    ours = fire_cls(6, 3, 4, 5)
    for _, p in ours.named_parameters():
        p.data = p.data.astype(np.float64)
        p.grad = np.zeros_like(p.data)
    _compare_with_twin(torch, ours, _torch_fire(torch)(6, 3, 4, 5), rng.standard_normal(
        (2, 6, 5, 7)), rng)


def test_fire_block_finite_differences(rng):
    fire_cls = _doc_blocks()["Fire"]
    fire = fire_cls(3, 2, 2, 3)
    for _, p in fire.named_parameters():
        p.data = rng.standard_normal(p.shape)
        p.grad = np.zeros_like(p.data)
    errors = check_module(fire, rng.standard_normal((1, 3, 4, 3)), h=1e-6)
    assert max(errors.values()) < 1e-6


def _branches(dtype=np.float64):
    o = {"dtype": dtype}
    return OrderedDict(
        branch1=nn.Sequential(nn.Conv2d(4, 3, 1, **o), nn.ReLU()),
        branch2=nn.Sequential(nn.Conv2d(4, 2, 1, **o), nn.Tanh(), nn.Conv2d(2, 3, 3, padding=1,
                                                                             **o)),
        branch3=nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(4, 2, 1, **o)),
    )


def _torch_branches(torch):
    return torch.nn.ModuleDict(OrderedDict(
        branch1=torch.nn.Sequential(torch.nn.Conv2d(4, 3, 1), torch.nn.ReLU()),
        branch2=torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1), torch.nn.Tanh(),
                                    torch.nn.Conv2d(2, 3, 3, padding=1)),
        branch3=torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, padding=1),
                                    torch.nn.Conv2d(4, 2, 1)),
    ))


@pytest.mark.parametrize("impl", IMPLS)
def test_concat_matches_torch_twin(impl, torch, rng):
    class TorchConcat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for name, m in _torch_branches(torch).items():
                self.add_module(name, m)

        def forward(self, x):
            return torch.cat([m(x) for m in self.children()], 1)

    torch.manual_seed(0)
    _compare_with_twin(torch, nn.Concat(_branches(), impl=impl), TorchConcat(),
                       rng.standard_normal((2, 4, 5, 6)), rng)


def test_dense_layer_with_identity_matches_torch(torch, rng):
    class TorchDense(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.GELU())

        def forward(self, x):
            return torch.cat([x, self.body(x)], 1)

    ours = nn.Concat(OrderedDict(identity=nn.Identity(), body=nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1, dtype=np.float64), nn.GELU())))
    _compare_with_twin(torch, ours, TorchDense(), rng.standard_normal((2, 3, 4, 4)), rng)


def test_concat_finite_differences_and_no_input_grad(rng):
    block = nn.Concat(_branches())
    errors = check_module(block, rng.standard_normal((1, 4, 3, 3)), h=1e-6)
    assert max(errors.values()) < 1e-6
    block.requires_input_grad_(False)
    out = block(rng.standard_normal((1, 4, 3, 3)))
    assert block.backward(np.ones_like(out)) is None


def test_concat_shapes_keys_and_errors():
    block = nn.Concat(_branches())
    assert block.output_shape((2, 4, 5, 6)) == (2, 8, 5, 6)
    assert list(block.state_dict())[:2] == ["branch1.0.weight", "branch1.0.bias"]
    assert list(nn.Concat(nn.Identity(), nn.ReLU()).named_children())[1][0] == "1"
    with pytest.raises(ValueError, match=r"^Concat: expected at least one branch"):
        nn.Concat()
    with pytest.raises(ValueError, match=r"^Concat: branch '1' is not a Module, got int"):
        nn.Concat(nn.ReLU(), 3)
    with pytest.raises(ValueError, match=r"^Concat: branch outputs must agree .*\(2, 4, 3, 2\)"):
        nn.Concat(nn.Identity(), nn.MaxPool2d(2)).output_shape((2, 4, 6, 4))


def test_torch_twin_of_a_network_of_the_new_modules(torch, rng):
    from glasscnn.io import to_torch

    net = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 6, 3, padding=1, dtype=np.float64),
        gn=nn.GroupNorm(3, 6, dtype=np.float64),
        act=nn.Sequential(nn.GELU(), nn.LeakyReLU(0.2), nn.ReLU6(), nn.Hardswish(), nn.SiLU(),
                          nn.Tanh()),
        cat=nn.Concat(OrderedDict(a=nn.Conv2d(6, 2, 1, dtype=np.float64), b=nn.Identity())),
        pool=nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True),
        avg=nn.AvgPool2d(2, 1, ceil_mode=True, divisor_override=3),
        amax=nn.AdaptiveMaxPool2d(2),
        flat=nn.Flatten(start_dim=2),
        mp=nn.MaxPool1d(2, 1, ceil_mode=True), ap=nn.AvgPool1d(2, 1, 1),
        ln=nn.LayerNorm(4, dtype=np.float64),
        flat2=nn.Flatten(),
        sm=nn.LogSoftmax(1),
    ))
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    twin = to_torch(net, torch)
    x = rng.standard_normal((2, 3, 9, 8))
    np.testing.assert_allclose(net(x), twin(torch.from_numpy(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(channels=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       c_in=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5),
       dim=st.sampled_from([1, -3]), seed=st.integers(0, 2**16))
def test_concat_random_branches_match_torch(channels, c_in, h, w, dim, seed, torch):
    from glasscnn.io import to_torch

    rng = np.random.default_rng(seed)
    block = nn.Concat(*[nn.Sequential(nn.Conv2d(c_in, c, 1, dtype=np.float64), nn.Tanh())
                        for c in channels], dim=dim)
    twin = to_torch(block, torch)
    x = rng.standard_normal((2, c_in, h, w))
    out = block(x)
    dout = rng.standard_normal(out.shape)
    block.zero_grad()
    dx = block.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = twin(xt)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-13)
    grads_t = dict(twin.named_parameters())
    for name, p in block.named_parameters():
        np.testing.assert_allclose(p.grad, grads_t[name].grad.numpy(), rtol=1e-12, atol=1e-13)
