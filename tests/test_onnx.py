"""glasscnn.io.onnx_export and ``glasscnn export``: every zoo model (and every kind of
convolution) runs in onnxruntime."""

from __future__ import annotations

import json
import sys
import warnings
from collections import OrderedDict

import numpy as np
import pytest

from glasscnn import models
from glasscnn.cli.main import main
from glasscnn.io import save_state_dict
from glasscnn.io.onnx_export import export_onnx
from glasscnn.nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
    Sigmoid,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ZOO = [("alexnet_cifar33", {}), ("mnist_net", {}), ("three_layer_convnet", {}),
       ("lenet_bn", {}), ("vgg_cifar", {}), ("alexnet", {}), ("resnet_cifar", {"depth": 8}),
       ("three_layer_convnet", {"batchnorm": True}), ("resnet_cifar", {"in_channels": 1,
                                                                     "input_size": 28,
                                                                     "depth": 8})]


def randomize_norm(model: Module, rng: np.random.Generator) -> None:
    """Give batch-norm layers non-trivial affine parameters and running statistics."""
    for _, m in model.named_modules():
        if isinstance(m, BatchNorm1d | BatchNorm2d):
            c = m.num_features
            m.running_mean[...] = rng.normal(0, 0.2, c)
            m.running_var[...] = rng.uniform(0.5, 2.0, c)
            if m.weight is not None:
                m.weight.data[...] = rng.uniform(0.5, 1.5, c)
                m.bias.data[...] = rng.normal(0, 0.1, c)


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.parametrize(("name", "kwargs"), ZOO, ids=lambda v: str(v) if v else "")
def test_zoo_model_runs_in_onnxruntime(name, kwargs, tmp_path, rng):
    model = models.get(name, rng=rng, **kwargs)
    randomize_norm(model, rng)
    model.eval()
    shape = models.default_input_shape(name)
    if "input_size" in kwargs:
        shape = (kwargs["in_channels"], kwargs["input_size"], kwargs["input_size"])
    path = export_onnx(model, tmp_path / f"{name}.onnx", shape)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 2 if name == "alexnet" else 5):
        x = rng.random((n, *shape), dtype=np.float32)
        got, want = session.run(None, {"input": x})[0], model(x)
        assert got.shape == want.shape
        assert rel_diff(got, want) < 1e-4
        np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
    proto = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys <= inits
    ops = {node.op_type for node in proto.graph.node}
    assert "Dropout" not in ops and "Conv" in ops and "Gemm" in ops
    if name == "resnet_cifar":
        assert {"Add", "BatchNormalization", "GlobalAveragePool"} <= ops
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(shape)


def test_layers_without_a_zoo_model(tmp_path, rng):
    """Average pool with and without padding counted, padded max pool, sigmoid, BN1d without
    affine, an evenly dividing adaptive pool, and a flatten that keeps two axes."""
    model = Sequential(OrderedDict([
        ("conv", Conv2d(2, 4, 3, stride=2, padding=1, dilation=1, rng=rng)),
        ("sig", Sigmoid()),
        ("avg", AvgPool2d(3, 1, padding=1, count_include_pad=False)),
        ("avg2", AvgPool2d(2, 1, padding=1, count_include_pad=True)),
        ("max", MaxPool2d(3, 1, padding=1)),
        ("adapt", AdaptiveAvgPool2d((3, 2))),
        ("flat", Flatten()),
        ("bn", BatchNorm1d(24, affine=False)),
        ("fc", Linear(24, 5, bias=False, rng=rng)),
    ]))
    randomize_norm(model, rng)
    model.eval()
    # conv 11x7 -> 6x4, avg keeps, avg2 -> 7x5, max keeps: 7x5 is not a multiple of 3x2
    with pytest.raises(ValueError, match=r"'adapt' \(AdaptiveAvgPool2d to 3x2\) gets a 7x5"):
        export_onnx(model, tmp_path / "bad.onnx", (2, 11, 7))
    path = export_onnx(model, tmp_path / "layers.onnx", (2, 9, 5))
    x = rng.standard_normal((3, 2, 9, 5), dtype=np.float32)
    assert rel_diff(run_onnx(path, x), model(x)) < 1e-5
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["Conv", "Sigmoid", "AveragePool", "AveragePool", "MaxPool", "AveragePool",
                   "Flatten", "BatchNormalization", "Gemm"]
    keep = Sequential(Conv2d(1, 3, 3, rng=rng), ReLU(), Flatten(start_dim=2))
    path = export_onnx(keep, tmp_path / "flat2.onnx", (1, 6, 6))
    x = rng.standard_normal((2, 1, 6, 6), dtype=np.float32)
    got = run_onnx(path, x)
    assert got.shape == (2, 3, 16) and rel_diff(got, keep(x)) < 1e-5


def test_unsupported_layer_and_opset(tmp_path):
    class Square(Module):
        def forward(self, x):
            return x * x

        def output_shape(self, input_shape):
            return input_shape

    model = Sequential(OrderedDict([("conv", Conv2d(1, 2, 3)), ("sq", Square())]))
    with pytest.raises(ValueError, match=r"layer 'sq' \(Square\) has no ONNX mapping"):
        export_onnx(model, tmp_path / "x.onnx", (1, 5, 5))
    with pytest.raises(ValueError, match="opset must be >= 13"):
        export_onnx(model, tmp_path / "x.onnx", (1, 5, 5), opset=11)
    assert not (tmp_path / "x.onnx").exists()


def test_alexnet_input_with_uneven_adaptive_pool_is_refused(tmp_path):
    """torchvision's AlexNet at 256×256 has a 7×7 map before its 6×6 adaptive pool."""
    model = models.alexnet(num_classes=10)
    with pytest.raises(ValueError, match=r"'avgpool' .* gets a 7x7 input.* 6x6 bins"):
        export_onnx(model, tmp_path / "a.onnx", (3, 256, 256))


def test_missing_onnx_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'glasscnn\[onnx\]'"):
        export_onnx(models.mnist_net(), tmp_path / "m.onnx", (1, 28, 28))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_export_command(tmp_path, capsys, rng, suffix):
    model = models.resnet_cifar(depth=8, rng=rng)
    randomize_norm(model, rng)
    weights = tmp_path / f"resnet{suffix}"
    save_state_dict(model, weights)
    out = tmp_path / "out" / "resnet.onnx"
    code = main(["export", "resnet_cifar", str(weights), "--onnx", str(out), "--model-arg",
                 "depth=8", "--verify"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"wrote {out}: resnet_cifar, input (batch, 3, 32, 32), opset 17" in printed
    assert "onnxruntime vs glasscnn: max relative logit difference" in printed
    model.eval()
    x = rng.random((4, 3, 32, 32), dtype=np.float32)
    assert rel_diff(run_onnx(out, x), model(x)) < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["model"] == "resnet_cifar" and json.loads(meta["model_kwargs"]) == {"depth": 8}
    assert json.loads(meta["classes"])[0] == "airplane"


def test_export_command_refuses_wrong_weights(tmp_path, capsys, rng):
    weights = tmp_path / "mnist.npz"
    save_state_dict(models.mnist_net(rng=rng), weights)
    code = main(["export", "lenet_bn", str(weights), "--onnx", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and str(weights) in err and "conv1.weight: model (6, 3, 5, 5)" in err
    assert not (tmp_path / "x.onnx").exists()


# grouped, depthwise, "same"-padded, transposed and 1-d convolutions
CONV_NETS = [
    ("grouped_depthwise_same", lambda rng: Sequential(
        Conv2d(4, 8, 3, stride=2, padding=1, groups=2, rng=rng), ReLU(),
        Conv2d(8, 8, 3, padding="same", groups=8, bias=False, rng=rng),
        Conv2d(8, 6, (4, 2), padding="same", dilation=(1, 2), rng=rng)), (4, 11, 9),
     ["Conv", "Relu", "Conv", "Conv"]),
    ("transposed", lambda rng: Sequential(
        ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, rng=rng),
        ReLU(), ConvTranspose2d(6, 3, (2, 3), stride=(1, 2), dilation=(2, 1), bias=False,
                                rng=rng)), (4, 5, 4), ["ConvTranspose", "Relu", "ConvTranspose"]),
    ("conv1d", lambda rng: Sequential(
        Conv1d(3, 6, 5, stride=2, padding=2, rng=rng), ReLU(),
        Conv1d(6, 6, 4, padding="same", groups=3, rng=rng)), (3, 17), ["Conv", "Relu", "Conv"]),
]


@pytest.mark.parametrize(("name", "build", "shape", "ops"), CONV_NETS,
                         ids=[n[0] for n in CONV_NETS])
def test_convolutions_run_in_onnxruntime(name, build, shape, ops, tmp_path, rng):
    model = build(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the graph passes the checker without complaint
        path = export_onnx(model, tmp_path / f"{name}.onnx", shape)
    graph = onnx.load(str(path)).graph
    assert [n.op_type for n in graph.node] == ops
    groups = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in graph.node
              if n.op_type.startswith("Conv")]
    assert groups == [getattr(m, "groups", 1) for m in model.children()
                      if type(m).__name__.startswith("Conv")]
    x = rng.standard_normal((3, *shape), dtype=np.float32)
    want = model(x)
    got = run_onnx(path, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
def test_new_layers_run_in_onnxruntime(tmp_path, rng):
    """The layers of glasscnn.io.onnx_ops and the pool options, in one network: group and
    layer norm, every new activation, a Concat with an identity branch, dilated and
    ceil-mode pools, adaptive max pool, 1-D pools, log-softmax."""
    from glasscnn import nn
    model = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(2, 6, 3, padding=1, rng=rng),
        gn=nn.GroupNorm(3, 6),
        gelu=nn.GELU(),
        fire=nn.Concat(OrderedDict(
            a=nn.Sequential(nn.Conv2d(6, 4, 1, rng=rng), nn.ReLU6()),
            b=nn.Sequential(nn.Conv2d(6, 4, 3, padding=1, rng=rng), nn.Hardswish()),
            skip=nn.Identity())),
        pool=nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True),
        avg=nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
        amax=nn.AdaptiveMaxPool2d(2),
        lrelu=nn.LeakyReLU(0.1), silu=nn.SiLU(), tanh=nn.Tanh(),
        flat=nn.Flatten(start_dim=2),
        mp1=nn.MaxPool1d(2, 1, dilation=2, ceil_mode=True),
        ap1=nn.AvgPool1d(2, 1, 1, ceil_mode=True, count_include_pad=False),
        flat2=nn.Flatten(),
        ln=nn.LayerNorm(42),
        fc=nn.Linear(42, 5, rng=rng),
        out=nn.LogSoftmax(1),
    ))
    for _, m in model.named_modules():
        if isinstance(m, nn.GroupNorm | nn.LayerNorm):
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data[...] = rng.normal(0, 0.2, m.bias.shape)
    model.eval()
    path = export_onnx(model, tmp_path / "new.onnx", (2, 15, 13))
    x = rng.standard_normal((3, 2, 15, 13), dtype=np.float32)
    assert rel_diff(run_onnx(path, x), model(x)) < 1e-5
    softmax = nn.Sequential(nn.Conv2d(2, 3, 1, rng=rng), nn.Softmax(1), nn.AdaptiveMaxPool2d(1))
    path = export_onnx(softmax, tmp_path / "softmax.onnx", (2, 4, 4))
    x = rng.standard_normal((2, 2, 4, 4), dtype=np.float32)
    assert rel_diff(run_onnx(path, x), softmax(x)) < 1e-5
def test_new_layers_without_an_onnx_equivalent_are_refused(tmp_path):
    from glasscnn import nn
    with pytest.raises(ValueError, match=r"'1' \(AvgPool2d with divisor_override=3\)"):
        export_onnx(Sequential(Conv2d(1, 2, 1), AvgPool2d(2, divisor_override=3)),
                    tmp_path / "a.onnx", (1, 4, 4))
    with pytest.raises(ValueError, match=r"'0' \(AdaptiveMaxPool2d to 3x3\) gets a 4x4"):
        export_onnx(Sequential(nn.AdaptiveMaxPool2d(3)), tmp_path / "b.onnx", (1, 4, 4))
    with pytest.raises(ValueError, match=r"'0' \(LayerNorm\) needs .*opset >= 17, got opset 13"):
        export_onnx(Sequential(nn.LayerNorm(4)), tmp_path / "c.onnx", (1, 4, 4), opset=13)
