"""Modules: PyTorch parity (forward, input and parameter gradients), state_dicts, errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import glasscnn.nn as nn
from glasscnn.gradcheck import check_module
from glasscnn.io import to_torch

IMPLS = ["naive", "fast"]


def _layer_cases():
    """(name, builder(impl, dtype), input shape); tiny so the naive kernels stay quick."""
    return [
        ("conv", lambda i, d: nn.Conv2d(3, 4, 3, stride=2, padding=1, impl=i, dtype=d),
         (2, 3, 7, 6)),
        ("conv_nobias_dil", lambda i, d: nn.Conv2d(2, 3, (3, 2), dilation=(2, 1), bias=False,
                                                   impl=i, dtype=d), (1, 2, 8, 5)),
        ("linear", lambda i, d: nn.Linear(5, 3, impl=i, dtype=d), (4, 5)),
        ("maxpool", lambda i, d: nn.MaxPool2d(3, 2, padding=1, impl=i), (2, 2, 7, 5)),
        ("avgpool", lambda i, d: nn.AvgPool2d(2, 1, impl=i), (1, 3, 5, 4)),
        ("adaptive", lambda i, d: nn.AdaptiveAvgPool2d((3, 2), impl=i), (2, 2, 7, 5)),
        ("relu", lambda i, d: nn.ReLU(i), (2, 3, 4)),
        ("sigmoid", lambda i, d: nn.Sigmoid(i), (3, 5)),
        ("flatten", lambda i, d: nn.Flatten(impl=i), (2, 3, 2, 2)),
        ("bn2d", lambda i, d: nn.BatchNorm2d(3, impl=i, dtype=d), (4, 3, 3, 2)),
        ("bn1d", lambda i, d: nn.BatchNorm1d(5, impl=i, dtype=d), (6, 5)),
        ("residual", lambda i, d: nn.ResidualBlock(2, 3, stride=2, impl=i, dtype=d), (2, 2, 5, 5)),
        ("residual_id", lambda i, d: nn.ResidualBlock(3, 3, batchnorm=False, impl=i, dtype=d),
         (1, 3, 4, 4)),
    ]


CASES = _layer_cases()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("training", [True, False])
def test_layer_matches_torch(case, impl, dtype, training, torch, rng):
    _, build, shape = case
    layer = build(impl, dtype)
    layer.train(training)
    twin = to_torch(layer, torch)
    x = rng.standard_normal(shape).astype(dtype)
    out = layer(x)
    assert out.dtype == dtype
    assert out.shape == layer.output_shape(x.shape)
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
        np.testing.assert_allclose(p.grad, torch_params[name].grad.numpy(), **tol,
                                   err_msg=name)
    for key, value in twin.state_dict().items():
        np.testing.assert_allclose(layer.state_dict()[key], value.numpy(), **tol, err_msg=key)


@pytest.mark.parametrize("impl", IMPLS)
def test_composed_network_finite_differences(impl, rng):
    nn.init.manual_seed(2)  # weights independent of the tests run before
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False, impl=impl, dtype=np.float64),
        nn.BatchNorm2d(3, impl=impl, dtype=np.float64),
        nn.ReLU(impl),
        nn.MaxPool2d(2, impl=impl),
        nn.Flatten(impl=impl),
        nn.Linear(3 * 2 * 3, 4, impl=impl, dtype=np.float64),
        nn.Sigmoid(impl),
    )
    x = rng.standard_normal((2, 2, 5, 6))
    errors = check_module(net, x)
    # ReLU and max pool have kinks and batch norm couples the batch: 1e-5 is the usual bar
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("impl", IMPLS)
def test_residual_block_finite_differences(impl, rng):
    block = nn.ResidualBlock(2, 3, stride=2, impl=impl, dtype=np.float64, rng=rng)
    errors = check_module(block, rng.standard_normal((2, 2, 4, 5)))
    # the ReLU kinks make 1e-5 the usual bar for a block
    assert max(errors.values()) < 1e-5, errors


def test_nested_sequential_keys_match_torch(torch):
    net = nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)),
        flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Dropout(0.5), nn.Linear(4 * 6 * 6, 2)),
    ))
    twin = to_torch(net, torch)
    assert list(net.state_dict()) == list(twin.state_dict())
    assert "features.0.weight" in net.state_dict()
    assert "features.2.num_batches_tracked" in net.state_dict()


def test_state_dict_round_trip_through_torch(torch, rng):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
    twin = to_torch(net, torch)
    with torch.no_grad():
        for p in twin.parameters():
            p.copy_(torch.randn(p.shape))
    twin.train()
    twin(torch.randn(5, 3, 6, 6))
    net.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    assert net.state_dict()["1.num_batches_tracked"] == 1
    back = to_torch(net, torch)
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key].numpy(), value.numpy())


def test_load_state_dict_casts_to_module_dtype():
    layer = nn.Linear(3, 2)
    layer.load_state_dict({"weight": np.ones((2, 3), np.float64), "bias": np.zeros(2, np.int64)})
    assert layer.weight.data.dtype == np.float32
    assert layer.bias.data.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, 1)


def test_load_state_dict_missing_and_extra_keys_listed():
    layer = nn.Linear(3, 2)
    with pytest.raises(KeyError, match=r"missing keys \['bias'\].*unexpected keys \['extra'\]"):
        layer.load_state_dict({"weight": np.ones((2, 3)), "extra": np.ones(1)})
    missing = layer.load_state_dict({"weight": np.ones((2, 3))}, strict=False)
    assert missing == ["bias"]


def test_load_state_dict_wrong_shape_names_key_and_shapes():
    layer = nn.Conv2d(3, 4, 3)
    sd = layer.state_dict()
    sd["weight"] = np.zeros((4, 3, 5, 5))
    with pytest.raises(ValueError, match=r"weight: expected \(4, 3, 3, 3\), got \(4, 3, 5, 5\)"):
        layer.load_state_dict(sd)


def test_parameters_and_zero_grad(rng):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    net(rng.standard_normal((2, 3)).astype(np.float32))
    net.backward(rng.standard_normal((2, 2)).astype(np.float32))
    assert any(np.any(p.grad != 0) for p in net.parameters())
    net.zero_grad()
    assert all(np.all(p.grad == 0) for p in net.parameters())


def test_zero_grad_reads_zero_and_the_next_accumulate_overwrites():
    p = nn.Parameter(np.ones((2, 3), dtype=np.float32))
    buffer = p.grad
    p.accumulate(np.full((2, 3), 5.0, dtype=np.float32))
    p.zero_grad()
    p.accumulate(np.full((2, 3), 2.0, dtype=np.float32))  # a copy, not 5 + 2
    p.accumulate(np.full((2, 3), 1.0, dtype=np.float32))
    np.testing.assert_array_equal(p.grad, np.full((2, 3), 3.0))
    p.zero_grad()
    np.testing.assert_array_equal(p.grad, np.zeros((2, 3)))  # read after zero_grad: zeros
    assert p.grad is buffer  # the same array throughout, zeroed in place


def _conv_relu_net(fuse):
    nn.init.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 9, 3, dtype=np.float64), nn.ReLU(), nn.Flatten(),
        nn.Linear(9 * 2 * 2, 4, dtype=np.float64), nn.ReLU(),
    )
    net.fuse_conv_relu = fuse
    return net


def test_sequential_fuses_conv_relu_with_the_same_results(rng):
    x = rng.standard_normal((3, 3, 8, 8))
    dout = rng.standard_normal((3, 4))
    results = []
    for fuse in (True, False):
        net = _conv_relu_net(fuse)
        out = net(x)
        assert ("relu_out" in net[0]._cache) == fuse and ("relu_out" in net[3]._cache) == fuse
        dx = net.backward(dout)
        results.append([out, dx] + [p.grad.copy() for p in net.parameters()])
    for fused, plain in zip(*results, strict=True):
        np.testing.assert_allclose(fused, plain, rtol=1e-12, atol=1e-12)


def test_no_fusion_when_a_layer_is_wrapped(rng):
    net = _conv_relu_net(True)
    calls = []
    relu = net[1]
    relu.forward = lambda x, f=relu.forward: calls.append("relu") or f(x)  # a per-layer timer
    net(rng.standard_normal((2, 3, 8, 8)))
    assert calls == ["relu"] and "relu_out" not in net[0]._cache
    assert "relu_out" in net[3]._cache  # the other pair is still fused


def test_gradients_accumulate_over_backward_calls(rng):
    layer = nn.Linear(3, 2)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    dout = rng.standard_normal((4, 2)).astype(np.float32)
    layer(x)
    layer.backward(dout)
    once = layer.weight.grad.copy()
    layer(x)
    layer.backward(dout)
    np.testing.assert_allclose(layer.weight.grad, 2 * once, rtol=1e-6)


def test_linear_writes_a_fresh_weight_gradient_into_the_grad_buffer(rng):
    layer = nn.Linear(3, 2)
    buffer = layer.weight.grad
    x = rng.standard_normal((4, 3)).astype(np.float32)
    dout = rng.standard_normal((4, 2)).astype(np.float32)
    layer(x)
    layer.backward(dout)
    once = buffer.copy()
    layer.zero_grad()
    assert layer.weight.fresh_grad_buffer() is buffer
    layer(x)
    layer.backward(dout)  # written in place: not added to the old gradient
    assert layer.weight.grad is buffer and layer.weight.fresh_grad_buffer() is None
    np.testing.assert_allclose(buffer, once, rtol=1e-6)
    layer(x)
    layer.backward(dout)
    np.testing.assert_allclose(layer.weight.grad, 2 * once, rtol=1e-6)


def test_train_eval_propagates():
    net = nn.Sequential(nn.Sequential(nn.Dropout()), nn.BatchNorm1d(2))
    net.eval()
    assert all(not m.training for _, m in net.named_modules())
    net.train()
    assert all(m.training for _, m in net.named_modules())


def test_batchnorm_eval_does_not_depend_on_batch(rng):
    bn = nn.BatchNorm2d(3)
    for _ in range(3):
        bn(rng.standard_normal((8, 3, 4, 4)).astype(np.float32))
    bn.eval()
    x = rng.standard_normal((6, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(bn(x)[:1], bn(x[:1]))
    assert bn.num_batches_tracked == 3


def test_dropout_seeded_and_identity_in_eval(rng):
    x = rng.standard_normal((50, 20)).astype(np.float32)
    a, b = nn.Dropout(0.5, seed=7), nn.Dropout(0.5, seed=7)
    np.testing.assert_array_equal(a(x), b(x))
    a.eval()
    np.testing.assert_array_equal(a(x), x)


def test_cross_entropy_loss_matches_torch(torch, rng):
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    criterion = nn.CrossEntropyLoss()
    loss = criterion(logits, labels)
    lt = torch.from_numpy(logits).requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels))
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(criterion.backward(), lt.grad.numpy(), rtol=1e-10)


def test_cross_entropy_backward_before_forward():
    with pytest.raises(ValueError, match="CrossEntropyLoss"):
        nn.CrossEntropyLoss().backward()


def test_default_init_matches_pytorch_bounds():
    nn.manual_seed(3)
    conv = nn.Conv2d(16, 8, 3)
    bound = 1 / np.sqrt(16 * 9)
    assert np.abs(conv.weight.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.9 * bound
    assert np.abs(conv.bias.data).max() <= bound


def test_manual_seed_makes_init_reproducible():
    nn.manual_seed(5)
    a = nn.Linear(4, 3).weight.data.copy()
    nn.manual_seed(5)
    np.testing.assert_array_equal(a, nn.Linear(4, 3).weight.data)


def test_repr_lists_layers():
    text = repr(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)))
    assert "(0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in text
    assert "(1): ReLU()" in text
    assert "(2): MaxPool2d(" in text


def test_residual_block_projection_only_when_shapes_change():
    assert "shortcut" in dict(nn.ResidualBlock(4, 8).named_children())
    assert "shortcut" in dict(nn.ResidualBlock(4, 4, stride=2).named_children())
    assert "shortcut" not in dict(nn.ResidualBlock(4, 4).named_children())


def test_residual_block_weights_seed_facts_5():
    block = nn.ResidualBlock(128, 256, stride=2, batchnorm=False)
    weights = {n: p.data.size for n, p in block.named_parameters() if n.endswith("weight")}
    assert weights == {"conv1.weight": 294_912, "conv2.weight": 589_824,
                       "shortcut.0.weight": 32_768}
    assert block.output_shape((1, 128, 16, 16)) == (1, 256, 8, 8)


def test_conv_params_seed_facts_5():
    conv = nn.Conv2d(3, 28, 3, padding=1)
    assert conv.output_shape((1, 3, 15, 15)) == (1, 28, 15, 15)
    assert sum(p.data.size for p in conv.parameters()) == 784


@pytest.mark.parametrize(
    ("layer", "shape", "match"),
    [
        (nn.Conv2d(3, 4, 3), (2, 5, 8, 8), "Conv2d: expected 3 input channels"),
        (nn.Conv2d(3, 4, 5), (1, 3, 4, 4), "Conv2d: input 4x4 is too small"),
        (nn.Linear(5, 2), (2, 6), "Linear: expected 5 input features"),
        (nn.MaxPool2d(2), (2, 3, 8), "MaxPool2d: expected a shape of 4"),
        (nn.BatchNorm2d(3), (2, 4, 5, 5), "BatchNorm2d: expected 3 channels"),
        (nn.Conv2d(3, 4, 3), (1, 3, 0, 8), "Conv2d: expected a shape of 4 positive"),
    ],
)
def test_output_shape_errors(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer.output_shape(shape)


@pytest.mark.parametrize(
    ("layer", "x", "match"),
    [
        (nn.Conv2d(3, 4, 3), np.zeros((2, 5, 8, 8), np.float32), "conv2d"),
        (nn.Linear(5, 2), np.zeros((2, 6), np.float32), "linear"),
        (nn.BatchNorm2d(3), np.zeros((2, 4, 5, 5), np.float32), "BatchNorm2d"),
        (nn.BatchNorm1d(3), np.zeros((2, 3, 5, 5), np.float32), "BatchNorm1d"),
        (nn.MaxPool2d(2), np.zeros((3, 8, 8), np.float32), "max_pool2d"),
    ],
)
def test_forward_bad_input_names_layer(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer(x)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: nn.Conv2d(0, 4, 3), "Conv2d: channels must be > 0"),
        (lambda: nn.Conv2d(3, 4, (3, 3, 3)), "Conv2d: kernel_size must be an int or a pair"),
        (lambda: nn.Linear(3, -1), "Linear: features must be > 0"),
        (lambda: nn.Dropout(1.5), r"Dropout: p must be in \[0, 1\], got 1.5"),
        (lambda: nn.AdaptiveAvgPool2d(0), "AdaptiveAvgPool2d: output_size must be > 0"),
        (lambda: nn.BatchNorm1d(0), "BatchNorm1d: num_features must be > 0"),
        (lambda: nn.Sequential(nn.ReLU(), 3), "Sequential: child '1' is not a Module"),
        (lambda: nn.Conv2d(3, 4, 0), "Conv2d: kernel_size must be > 0, got 0"),
        (lambda: nn.Conv2d(3, 4, (3, 0)), r"Conv2d: kernel_size must be > 0, got \(3, 0\)"),
        (lambda: nn.Conv2d(3, 4, 3, stride=0), "Conv2d: stride must be > 0, got 0"),
        (lambda: nn.Conv2d(3, 4, 3, padding=-1), "Conv2d: padding must be >= 0, got -1"),
        (lambda: nn.Conv2d(3, 4, 3, dilation=(1, 0)), "Conv2d: dilation must be > 0"),
        (lambda: nn.Conv2d(3, 4, 3, impl="turbo"), "Conv2d: impl must be one of"),
        (lambda: nn.MaxPool2d(0), "MaxPool2d: kernel_size must be > 0, got 0"),
        (lambda: nn.MaxPool2d(2, stride=0), "MaxPool2d: stride must be > 0, got 0"),
        (lambda: nn.MaxPool2d(2, padding=-1), "MaxPool2d: padding must be >= 0, got -1"),
        (lambda: nn.AvgPool2d(3, padding=2), "AvgPool2d: padding must be at most half"),
        (lambda: nn.AvgPool2d((2, 0)), r"AvgPool2d: kernel_size must be > 0, got \(2, 0\)"),
        (lambda: nn.AdaptiveAvgPool2d((2, -1)), "AdaptiveAvgPool2d: output_size must be > 0"),
        (lambda: nn.BatchNorm2d(3, eps=0), "BatchNorm2d: eps must be > 0, got 0"),
        (lambda: nn.BatchNorm1d(3, momentum=1.5), r"BatchNorm1d: momentum must be in \[0, 1\]"),
        (lambda: nn.Flatten(-1), "Flatten: start_dim must be an int >= 0, got -1"),
        (lambda: nn.ReLU("slow"), "ReLU: impl must be one of"),
        (lambda: nn.ResidualBlock(4, 4, stride=0), "ResidualBlock: stride must be an int > 0"),
    ],
)
def test_constructor_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("first", ["conv", "linear"])
def test_input_gradient_can_be_skipped(impl, first, rng):
    def build():
        nn.manual_seed(0)
        if first == "conv":
            return nn.Sequential(nn.Conv2d(2, 3, 3, impl=impl), nn.ReLU(impl), nn.Flatten(),
                                 nn.Linear(12, 2, impl=impl)), (2, 2, 4, 4)
        return nn.Sequential(nn.Linear(5, 3, impl=impl), nn.ReLU(impl)), (4, 5)

    full, shape = build()
    skip, _ = build()
    skip.requires_input_grad_(False)
    x = rng.standard_normal(shape).astype(np.float32)
    dout = rng.standard_normal(full(x).shape).astype(np.float32)
    assert full.backward(dout) is not None
    skip(x)
    assert skip.backward(dout) is None
    for (name, a), (_, b) in zip(full.named_parameters(), skip.named_parameters(), strict=True):
        np.testing.assert_array_equal(a.grad, b.grad, err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_backward_before_forward_names_the_layer(case):
    _, build, shape = case
    layer = build("fast", np.float32)
    kind = type(layer).__name__
    with pytest.raises(nn.BackwardOrderError, match=rf"^{kind}: backward called before forward"):
        layer.backward(np.zeros(layer.output_shape(shape), np.float32))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_second_backward_after_one_forward_raises_and_adds_nothing(case, rng):
    _, build, shape = case
    layer = build("fast", np.float64)
    out = layer(rng.standard_normal(shape))
    dout = rng.standard_normal(out.shape)
    layer.backward(dout)
    grads = [p.grad.copy() for p in layer.parameters()]
    with pytest.raises(RuntimeError, match="backward called twice after one forward"):
        layer.backward(dout)
    for p, g in zip(layer.parameters(), grads, strict=True):
        np.testing.assert_array_equal(p.grad, g)
    layer(rng.standard_normal(shape))
    layer.backward(dout)  # a new forward arms backward again


def test_backward_order_error_names_the_layer_inside_containers(rng):
    net = nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()),
        block=nn.ResidualBlock(2, 2, batchnorm=False),
        flatten=nn.Flatten(),
    ))
    out = net(rng.standard_normal((2, 1, 6, 6)).astype(np.float32))
    dout = rng.standard_normal(out.shape).astype(np.float32)
    net.block.relu2.backward(dout.reshape(2, 2, 4, 4))  # one layer's backward run by hand
    with pytest.raises(nn.BackwardOrderError,
                       match=r"^layer 'block.relu2' \(ReLU\): backward called twice"):
        net.backward(dout)


def test_a_layer_used_twice_in_one_forward_is_refused_at_backward(rng):
    relu = nn.ReLU()
    net = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu)
    out = net(rng.standard_normal((2, 3)).astype(np.float32))
    with pytest.raises(nn.BackwardOrderError, match=r"layer '1' \(ReLU\).*use each layer once"):
        net.backward(np.ones_like(out))


def test_fused_conv_relu_and_subclass_super_calls_keep_working(rng):
    class Doubled(nn.ReLU):
        def forward(self, x):
            return 2 * super().forward(x)

        def backward(self, dout):
            return super().backward(2 * dout)

    net = nn.Sequential(nn.Conv2d(2, 3, 3, dtype=np.float64), nn.ReLU(), Doubled(),
                        nn.Flatten())
    x = rng.standard_normal((2, 2, 5, 5))
    out = net(x)
    assert "relu_out" in net[0]._cache  # conv + ReLU ran fused
    assert net.backward(np.ones_like(out)).shape == x.shape
    with pytest.raises(nn.BackwardOrderError, match="twice"):
        net.backward(np.ones_like(out))


@pytest.mark.parametrize("bad", [
    np.array([object(), object()], dtype=object),
    np.ones(2, np.complex128),
    np.array(["a", "b"]),
], ids=["object", "complex", "text"])
def test_load_state_dict_refuses_non_real_arrays_and_copies_nothing(bad):
    layer = nn.Linear(3, 2)
    before = layer.state_dict()
    sd = {"weight": np.zeros((2, 3)), "bias": bad}
    with pytest.raises(ValueError, match=rf"Linear.load_state_dict: only real numbers.*bias: "
                                         rf"dtype {bad.dtype}"):
        layer.load_state_dict(sd)
    after = layer.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


# every Module class glasscnn.nn exports (containers included): a builder and an input shape
INTEGER_CASES = {
    "AdaptiveAvgPool2d": (lambda d: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 7)),
    "Add": (lambda d: nn.Add(), [(2, 3, 4), (2, 3, 4)]),
    "AvgPool2d": (lambda d: nn.AvgPool2d(2, 1, padding=1), (2, 3, 5, 4)),
    "BatchNorm1d": (lambda d: nn.BatchNorm1d(5, dtype=d), (4, 5)),
    "BatchNorm2d": (lambda d: nn.BatchNorm2d(3, dtype=d), (2, 3, 4, 5)),
    "Conv2d": (lambda d: nn.Conv2d(3, 4, 3, padding=1, dtype=d), (2, 3, 5, 6)),
    "Dropout": (lambda d: nn.Dropout(0.5, seed=3), (4, 6)),
    "Flatten": (lambda d: nn.Flatten(), (2, 3, 2, 2)),
    "Linear": (lambda d: nn.Linear(6, 3, dtype=d), (4, 6)),
    "MaxPool2d": (lambda d: nn.MaxPool2d(3, 2, padding=1), (2, 3, 7, 5)),
    "ReLU": (lambda d: nn.ReLU(), (2, 3, 4)),
    "ResidualBlock": (lambda d: nn.ResidualBlock(3, 4, stride=2, dtype=d), (2, 3, 5, 5)),
    "Sequential": (lambda d: nn.Sequential(nn.Conv2d(3, 2, 3, dtype=d), nn.ReLU(),
                                           nn.Flatten(), nn.Linear(18, 2, dtype=d)),
                   (2, 3, 5, 5)),
    "Sigmoid": (lambda d: nn.Sigmoid(), (3, 5)),
    "AdaptiveMaxPool2d": (lambda d: nn.AdaptiveMaxPool2d((2, 3)), (2, 3, 5, 7)),
    "AvgPool1d": (lambda d: nn.AvgPool1d(3, 2, padding=1), (2, 3, 9)),
    "Concat": (lambda d: nn.Concat(nn.Conv2d(3, 2, 1, dtype=d), nn.Identity()), (2, 3, 4, 5)),
    "Conv1d": (lambda d: nn.Conv1d(4, 6, 3, padding=1, groups=2, dtype=d), (2, 4, 9)),
    "ConvTranspose2d": (lambda d: nn.ConvTranspose2d(3, 4, 3, stride=2, dtype=d), (2, 3, 4, 5)),
    "GELU": (lambda d: nn.GELU(), (3, 5)),
    "GroupNorm": (lambda d: nn.GroupNorm(2, 4, dtype=d), (2, 4, 3, 3)),
    "Hardswish": (lambda d: nn.Hardswish(), (3, 5)),
    "Identity": (lambda d: nn.Identity(), (3, 5)),
    "LayerNorm": (lambda d: nn.LayerNorm(5, dtype=d), (3, 5)),
    "LeakyReLU": (lambda d: nn.LeakyReLU(0.1), (3, 5)),
    "LogSoftmax": (lambda d: nn.LogSoftmax(1), (3, 5)),
    "MaxPool1d": (lambda d: nn.MaxPool1d(3, 2, padding=1), (2, 3, 9)),
    "ReLU6": (lambda d: nn.ReLU6(), (3, 5)),
    "SiLU": (lambda d: nn.SiLU(), (3, 5)),
    "Softmax": (lambda d: nn.Softmax(1), (3, 5)),
    "Tanh": (lambda d: nn.Tanh(), (3, 5)),
}


def test_every_exported_layer_has_an_integer_input_case():
    exported = {name for name in nn.__all__
                if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Module)
                and name != "Module"}
    assert exported == set(INTEGER_CASES), "add the new layers to INTEGER_CASES"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("int_dtype", [np.uint8, np.int64, np.bool_])
@pytest.mark.parametrize("name", sorted(INTEGER_CASES))
def test_integer_input_computes_in_floating_point(name, int_dtype, impl, dtype, rng):
    """A uint8 (int64, bool) batch gives what the same batch in float gives, in float."""
    build, shape = INTEGER_CASES[name]
    layers = []
    for _ in range(2):
        nn.manual_seed(0)
        layer = build(dtype)
        for _, m in layer.named_modules():
            if hasattr(m, "impl"):
                m.impl = impl
        layers.append(layer)
    high = 2 if int_dtype is np.bool_ else 256
    shapes = shape if isinstance(shape, list) else [shape]  # Add takes two inputs
    xs = [rng.integers(0, high, s).astype(int_dtype) for s in shapes]
    # layers without parameters compute in float32
    float_dtype = dtype if layers[0].parameters() else np.float32
    out = layers[0](*xs)
    expected = layers[1](*(x.astype(float_dtype) for x in xs))
    assert out.dtype == float_dtype
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    grads = layers[0].backward(np.ones_like(out))
    for dx, s in zip(grads if isinstance(grads, tuple) else [grads], shapes, strict=True):
        assert dx.dtype == float_dtype and dx.shape == s


@pytest.mark.parametrize("bad", [np.ones((2, 3), np.complex64), np.full((2, 3), "a"),
                                 np.full((2, 3), None)], ids=["complex", "text", "object"])
def test_non_real_input_is_refused_naming_the_layer(bad):
    with pytest.raises(ValueError, match="Linear: expected an array of real numbers, got dtype"):
        nn.Linear(3, 2)(bad)


def test_parameter_numel_dtype_size_as_pytorch(torch):
    p = nn.Parameter(np.zeros((4, 3, 5, 2), np.float32))
    t = torch.nn.Parameter(torch.zeros(4, 3, 5, 2))
    assert p.numel() == t.numel() == 120
    assert p.size() == tuple(t.size()) == (4, 3, 5, 2)
    assert p.size(1) == t.size(1) == 3 and p.size(-1) == t.size(-1) == 2
    assert p.dtype == np.float32 and p.ndim == 4
    with pytest.raises(ValueError, match=r"Parameter.size: dim must be in \[-4, 4\), got 4"):
        p.size(4)
    net = nn.Sequential(nn.Conv2d(3, 28, 3, padding=1), nn.ReLU())
    assert sum(q.numel() for q in net.parameters()) == 784  # seed-facts §5


def test_modules_named_modules_children_as_pytorch(torch):
    net = nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
        flatten=nn.Flatten(),
        fc=nn.Linear(4, 2),
    ))
    twin = to_torch(net, torch)
    assert [n for n, _ in net.named_modules()] == [n for n, _ in twin.named_modules()]
    assert [type(m).__name__ for m in net.modules()] == [type(m).__name__
                                                         for m in twin.modules()]
    assert [type(m).__name__ for m in net.children()] == [type(m).__name__
                                                          for m in twin.children()]
    assert next(iter(net.modules())) is net


def test_forward_hooks_see_every_layer_and_can_be_removed(rng):
    net = _conv_relu_net(True)
    seen = []
    handle = net[1].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    x = rng.standard_normal((2, 3, 8, 8))
    net(x)
    assert seen == [(2, 8, 8, 8)] and "relu_out" not in net[0]._cache  # not fused away
    handle.remove()
    net(x)
    assert len(seen) == 1 and "relu_out" in net[0]._cache
    calls = []
    with nn.register_module_forward_pre_hook(lambda m, args: calls.append(type(m).__name__)):
        net(x)
    assert calls == ["Sequential", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Flatten",
                     "Linear", "ReLU"]
    with nn.register_module_forward_hook(lambda m, args, out: out * 0 if m is net else None):
        assert not net(x).any()  # a hook's return value replaces the output
    assert net(x).any()


def test_module_display_in_a_notebook():
    from glasscnn import models

    html = models.get("lenet_bn")._repr_html_()
    assert "<strong>lenet_bn, input 3x32x32</strong>" in html
    assert "<td style=\"text-align:left\">6x28x28</td>" in html  # conv1's output shape
    assert "62,458 parameters" in html
    text = repr(models.get("mnist_net"))
    assert text.startswith("Sequential(\n  (conv1): Conv2d(1, 4, kernel_size=(5, 5)")
    plain = nn.Sequential(nn.Linear(3, 2))._repr_html_()
    assert "set .input_shape" in plain and "8 parameters" in plain


def test_add_layer_forward_backward(rng):
    add = nn.Add()
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    np.testing.assert_array_equal(add(a, b), a + b)
    dout = rng.standard_normal((2, 3))
    da, db = add.backward(dout)
    np.testing.assert_array_equal(da, dout)
    np.testing.assert_array_equal(db, dout)
