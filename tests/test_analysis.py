"""Model analysis: the seed-facts figures, the counting policy, memory, reports, charts, CLI."""

from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict

import numpy as np
import pytest

from glasscnn import kernels as K
from glasscnn import models, nn
from glasscnn.analysis import (
    RULES,
    CountingOptions,
    LayerCount,
    UnsupportedLayerError,
    analyze,
    compare_rows,
    compare_table,
    counting_options,
    register_rule,
)
from glasscnn.analysis import machine as machine_mod
from glasscnn.checkpoint import Checkpoint, save_checkpoint
from glasscnn.cli.main import main

FAKE_MACHINE = {"sgemm_gflops": 150.0, "copy_gbs": 20.0}


def _rows(report):
    return {r["name"]: r for r in report.rows}


def test_seed_facts_1_alexnet_cifar33_report_counting():
    """seed-facts §1: per-layer params and FLOPs, totals 6,615,338 and 457,211,552."""
    rep = analyze("alexnet_cifar33", (3, 33, 33), counting="seed")
    rows = _rows(rep)
    params = {"conv1": 14_112, "conv2": 614_400, "conv3": 884_736, "conv4": 1_327_104,
              "conv5": 884_736, "fc1": 2_360_320, "fc2": 524_800, "fc3": 5_130}
    flops = {"conv1": 20_575_296, "pool1": 146_016, "conv2": 207_667_200, "pool2": 82_944,
             "conv3": 63_700_992, "conv4": 95_551_488, "conv5": 63_700_992, "pool3": 9_216,
             "fc1": 4_718_592, "fc2": 1_048_576, "fc3": 10_240}
    assert {k: rows[k]["params"] for k in params} == params
    assert {k: rows[k]["flops"] for k in flops} == flops
    assert sum(r["flops"] for r in rep.rows if r["name"] not in flops) == 0
    assert rep.totals["params"] == 6_615_338
    assert rep.totals["flops"] == 457_211_552
    assert round(rep.totals["macs"] / 1e6, 1) == 228.5
    assert [r["output_shape"][1:] for r in rep.rows if r["name"] in flops] == [
        (96, 27, 27), (96, 13, 13), (256, 13, 13), (256, 6, 6), (384, 6, 6), (384, 6, 6),
        (256, 6, 6), (256, 3, 3), (1024,), (512,), (10,)]
    assert rep.memory["weight_bytes"] == 6_615_338 * 4


def test_seed_facts_1_default_counts_what_the_checkpoint_has():
    """seed-facts §1: the checkpoint has no biases, so by default none are counted."""
    rep = analyze("alexnet_cifar33")
    assert rep.totals["params"] == 6_615_338 - (1024 + 512 + 10)
    assert rep.totals["biases"] == 0
    relu_values = 96 * 27 * 27 + 256 * 13 * 13 + 384 * 36 + 384 * 36 + 256 * 36 + 1024 + 512
    assert rep.totals["flops"] == 457_211_552 + relu_values


def test_seed_facts_2_mnist_net_weights_multiplications_intensity():
    """seed-facts §2: 103,812 weights, 338,112 multiplications, the four intensities."""
    rep = analyze("mnist_net", (1, 28, 28))
    rows = _rows(rep)
    assert rep.totals["weights"] == 103_812
    assert {k: rows[k]["weights"] for k in ("conv1", "conv2", "fc1", "fc2")} == {
        "conv1": 100, "conv2": 800, "fc1": 100_352, "fc2": 2_560}
    assert {k: rows[k]["macs"] for k in ("conv1", "conv2", "fc1", "fc2")} == {
        "conv1": 78_400, "conv2": 156_800, "fc1": 100_352, "fc2": 2_560}
    assert rep.totals["macs"] == 338_112
    assert rows["conv1"]["intensity"] == 78_400 / (784 + 100 + 3136)
    assert f"{rows['conv1']['intensity']:.2f}" == "19.50"
    assert f"{rows['conv2']['intensity']:.2f}" == "49.75"
    assert f"{rows['fc1']['intensity']:.4f}" == "0.9936"
    assert f"{rows['fc2']['intensity']:.4f}" == "0.9059"
    for name in ("relu1", "pool1", "relu2", "pool2", "relu3"):
        assert rows[name]["intensity"] == 0
    table = rep.table()
    for text in ("19.50", "49.75", "0.9936", "0.9059", "338,112"):
        assert text in table


def test_seed_facts_5_conv_15x15x28_and_784_params():
    """seed-facts §5: 15×15×3, 28 filters 3×3×3, pad 1 → 15×15×28, 784 params with biases."""
    rep = analyze(nn.Conv2d(3, 28, 3, padding=1), (3, 15, 15))
    assert rep.rows[0]["output_shape"] == (1, 28, 15, 15)
    assert rep.totals["params"] == 784


def test_seed_facts_5_residual_block_917504_weights():
    """seed-facts §5: 294,912 + 589,824 + 32,768 = 917,504 weights; the add is counted."""
    rep = analyze(nn.ResidualBlock(128, 256, stride=2, batchnorm=False), (128, 16, 16))
    rows = _rows(rep)
    assert [rows[k]["weights"] for k in ("conv1", "conv2", "shortcut.0")] == [
        294_912, 589_824, 32_768]
    assert rep.totals["weights"] == 917_504
    assert rows["add"]["type"] == "Add"
    assert rows["add"]["flops"] == 256 * 8 * 8
    assert analyze(nn.ResidualBlock(128, 256, stride=2, batchnorm=False), (128, 16, 16),
                   add=False).totals["flops"] == rep.totals["flops"] - 256 * 64


def test_seed_facts_5_torchvision_alexnet():
    """seed-facts §5: 61,100,840 parameters; 714,188,480 MACs (conv 655,566,528, fc 58,621,952)."""
    rep = analyze("alexnet", (3, 224, 224))
    assert rep.totals["params"] == 61_100_840
    assert rep.totals["macs"] == 714_188_480
    assert rep.by_kind["conv"]["macs"] == 655_566_528
    assert rep.by_kind["fc"]["macs"] == 58_621_952


@pytest.mark.parametrize("cfg", [
    # (C_in, C_out, H, W, kernel, stride, padding, dilation)
    (2, 3, 7, 9, (3, 3), (1, 1), (1, 1), (1, 1)),
    (1, 2, 13, 13, (5, 5), (1, 1), (2, 2), (1, 1)),
    (3, 2, 11, 8, (3, 5), (2, 3), (2, 1), (1, 1)),
    (2, 2, 9, 10, (3, 3), (2, 1), (3, 2), (2, 3)),
    (1, 1, 4, 4, (7, 7), (1, 1), (3, 3), (1, 1)),
])
def test_effective_macs_equal_conv_of_ones(cfg):
    """Effective MACs = number of products with an in-bounds input = Σ conv(ones, ones)."""
    c_in, c_out, h, w, k, s, p, d = cfg
    conv = nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, dtype=np.float64)
    rep = analyze(conv, (c_in, h, w), batch_size=2)
    out, _ = K.conv2d_forward(np.ones((2, c_in, h, w)), np.ones((c_out, c_in, *k)), None,
                              stride=s, padding=p, dilation=d)
    assert rep.totals["macs_effective"] == int(out.sum())
    assert rep.totals["macs"] == out.size * c_in * k[0] * k[1]


SMALL = [("alexnet_cifar33", {}), ("mnist_net", {}), ("three_layer_convnet", {}),
         ("lenet_bn", {}), ("vgg_cifar", {}), ("resnet_cifar", {"depth": 8})]


@pytest.mark.parametrize(("name", "kwargs"), SMALL)
def test_row_shapes_equal_real_forward_shapes(name, kwargs, rng):
    """Every layer's shape rule agrees with what its forward really returns."""
    net = models.get(name, **kwargs)
    net.eval()
    shape = models.default_input_shape(name)
    seen = {}
    leaves = [(n, m) for n, m in net.named_modules() if not m._modules]
    for n, m in leaves:
        def record(x, n=n, fn=m.forward):
            out = fn(x)
            seen[n] = (x.shape, out.shape)
            return out
        object.__setattr__(m, "forward", record)
    net(rng.standard_normal((2, *shape)).astype(np.float32))
    for _, m in leaves:
        del m.__dict__["forward"]
    rep = analyze(net, shape, batch_size=2)
    counted = {r["name"]: (r["input_shape"], r["output_shape"]) for r in rep.rows
               if r["type"] != "Add"}
    assert counted == seen


def test_input_too_small_names_the_layer_and_size():
    with pytest.raises(ValueError, match=r"input 3x16x16 is too small.*'pool3'.*256x1x1"):
        analyze("alexnet_cifar33", "3x16x16")
    with pytest.raises(ValueError, match=r"'pool2'.*8x1x1"):
        analyze(models.mnist_net(), (1, 3, 3))


@pytest.mark.parametrize("shape", [(3, 0, 33), "3x-1x33", (), "3xax33"])
def test_non_positive_or_malformed_dimension(shape):
    with pytest.raises(ValueError, match="input"):
        analyze("alexnet_cifar33", shape)


def test_non_positive_batch():
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        analyze("mnist_net", batch_size=0)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'lenet'.*lenet_bn.*alexnet"):
        analyze("lenet", "3x32x32")


class Swish(nn.Module):
    """A layer the analysis has no rule for."""

    def forward(self, x):
        return x / (1 + np.exp(-x))


class Pair(nn.Module):
    """A container without a forward."""

    def __init__(self):
        super().__init__()
        self.a = nn.ReLU()
        self.b = nn.ReLU()


def test_layer_without_rule_is_an_error_never_a_zero():
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), act=Swish()))
    with pytest.raises(UnsupportedLayerError, match=r"'act' of type Swish has no counting rule"):
        analyze(net, (1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match="'p' of type Pair does not implement forward"):
        analyze(nn.Sequential(OrderedDict(p=Pair())), (1, 8, 8))

    @register_rule(Swish)
    def _swish(layer, ins, outs, opts):
        return LayerCount(kind="act", extra_flops=5 * int(np.prod(outs)), saves=("input",))

    try:
        rep = analyze(net, (1, 8, 8))
        assert _rows(rep)["act"]["flops"] == 5 * 2 * 6 * 6
    finally:
        del RULES[Swish]


def test_a_layer_needs_no_shape_rule():
    """Shapes come from the recorded pass: a layer without output_shape is counted."""
    class Half(nn.Module):
        def forward(self, x):
            return x[:, : x.shape[1] // 2]

    register_rule(Half)(lambda layer, ins, outs, opts: LayerCount(kind="other"))
    try:
        rep = analyze(nn.Sequential(OrderedDict(x=Half(), fc=nn.Linear(2, 3))), (4,))
        assert [(r["name"], r["output_shape"]) for r in rep.rows] == [("x", (1, 2)),
                                                                      ("fc", (1, 3))]
    finally:
        del RULES[Half]


class HandWritten(nn.Module):
    """A user's own network: layers in attributes and in a list, forward and backward by hand."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.add = nn.Add()
        self.relu2 = nn.ReLU()
        self.head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)]  # not registered

    def forward(self, x):
        h = self.relu1(self.stem(x))
        h = self.relu2(self.add(self.body(h), h))
        for layer in self.head:
            h = layer(h)
        return h

    def backward(self, dout):
        for layer in reversed(self.head):
            dout = layer.backward(dout)
        d_body, d_skip = self.add.backward(self.relu2.backward(dout))
        return self.stem.backward(self.relu1.backward(self.body.backward(d_body) + d_skip))


def test_any_module_with_a_hand_written_forward_is_analysed():
    nn.manual_seed(0)
    rep = analyze(HandWritten(), (3, 16, 16), batch_size=2)
    assert [r["name"] for r in rep.rows] == [
        "stem", "relu1", "body.0", "body.1", "add", "relu2", "head.0", "head.1", "head.2"]
    rows = _rows(rep)
    assert rows["stem"]["macs"] == 2 * 8 * 16 * 16 * 3 * 9
    assert rows["add"]["type"] == "Add" and rows["add"]["flops"] == 2 * 8 * 16 * 16
    assert rows["head.2"]["output_shape"] == (2, 10)
    assert rep.name == "HandWritten"
    # the same layers in a Sequential count the same, except for the add
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 10))
    flat = analyze(seq, (3, 16, 16), batch_size=2)
    assert rep.totals["macs"] == flat.totals["macs"]
    assert rep.totals["flops"] == flat.totals["flops"] + 2 * 8 * 16 * 16
    timed = _rows(analyze(HandWritten(), (3, 16, 16), measure=True, repeat=1))
    assert timed["stem"]["fwd_ms"] > 0 and timed["head.2"]["bwd_ms"] > 0
    assert timed["add"]["fwd_ms"] > 0


def test_analysis_leaves_the_model_as_it_was(rng):
    net = models.resnet_cifar(8)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    out = net(x)  # training mode: a backward is now due
    before = {k: v.copy() for k, v in net.state_dict().items()}
    analyze(net)
    assert all(m.training for m in net.modules())
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())
    dx = net.backward(np.ones_like(out))  # the caches of the user's own forward were kept
    assert dx.shape == x.shape


@pytest.mark.parametrize(("model", "shape", "batch", "first_out"), [
    (lambda: nn.Conv2d(3, 28, 3, padding=1), (3, 15, 15), 1, (1, 28, 15, 15)),
    (lambda: nn.Conv2d(3, 28, 3, padding=1), (4, 3, 15, 15), 4, (4, 28, 15, 15)),
    (lambda: nn.Linear(5, 3), (5,), 1, (1, 3)),
    (lambda: nn.Linear(5, 3), (6, 5), 6, (6, 3)),
    (lambda: models.get("lenet_bn"), (3, 32, 32), 1, (1, 6, 28, 28)),
    (lambda: models.get("lenet_bn"), (8, 3, 32, 32), 8, (8, 6, 28, 28)),
    (lambda: models.get("lenet_bn"), None, 1, (1, 6, 28, 28)),
])
def test_input_shape_with_or_without_the_batch_axis(model, shape, batch, first_out):
    rep = analyze(model(), shape)
    assert rep.batch_size == batch
    assert rep.rows[0]["output_shape"] == first_out


def test_batch_axis_and_batch_size_must_agree():
    with pytest.raises(ValueError, match=r"batch axis 4 .* batch_size=8"):
        analyze(nn.Linear(5, 3), (4, 5), batch_size=8)
    assert analyze(nn.Linear(5, 3), (4, 5), batch_size=4).batch_size == 4


def test_zoo_models_keep_their_names():
    assert analyze(models.get("lenet_bn"), (3, 32, 32)).name == "lenet_bn"
    assert analyze(models.mnist_net()).name == "mnist_net"
    assert analyze("vgg_cifar").name == "vgg_cifar"
    assert analyze(models.get("lenet_bn"), name="mine").name == "mine"


def test_counting_option_specs():
    assert counting_options("seed") == CountingOptions(
        bias=False, activations=False, norm=False, add=False, assume_bias=("fc",))
    assert counting_options("seed,bias=1").bias is True
    assert counting_options("activations=0,assume_bias=conv+fc").assume_bias == ("conv", "fc")
    assert counting_options(None, pooling=False).pooling is False
    for bad, msg in [("nope", "unknown preset"), ("seed,bias", "key=value"), ("bias=maybe", "0/1"),
                     ("colour=1", "unknown option"), ("assume_bias=bn", "conv and/or fc")]:
        with pytest.raises(ValueError, match=msg):
            counting_options(bad)


def test_default_policy_per_layer():
    """Default FLOPs: 2×MACs + bias adds + ReLU 1 + pool window + batch norm 2 per value."""
    rows = _rows(analyze("mnist_net"))
    assert rows["conv1"]["flops"] == 2 * 78_400 + 4 * 28 * 28
    assert rows["relu1"]["flops"] == 4 * 28 * 28
    assert rows["pool1"]["flops"] == 4 * 14 * 14 * 4
    assert rows["fc2"]["flops"] == 2 * 2560 + 10
    assert rows["flatten"]["flops"] == 0
    lenet = _rows(analyze("lenet_bn"))
    assert lenet["bn1"]["flops"] == 2 * 6 * 28 * 28
    assert lenet["bn1"]["buffers"] == 6 + 6 + 1
    assert lenet["bn1"]["params"] == 12
    macs_only = analyze("lenet_bn", counting="macs")
    assert macs_only.totals["flops"] == 2 * macs_only.totals["macs"]
    soft = analyze("mnist_net", counting="default,softmax=1", batch_size=3)
    assert soft.rows[-1]["name"] == "softmax"
    assert soft.rows[-1]["flops"] == 3 * (5 * 10 - 2)


def test_adaptive_pool_window_counts_pytorch_bins():
    rep = analyze(nn.AdaptiveAvgPool2d((2, 3)), (1, 5, 7))
    # rows of 5 into 2 bins: [0,3) and [2,5); 7 columns into 3 bins: [0,3) [2,5) [4,7)
    assert rep.totals["flops"] == (3 + 3) * (3 + 3 + 3)


def test_memory_model():
    """Each activation counted once; views are free; saved tensors shared are counted once."""
    rep = analyze("mnist_net", batch_size=2)
    rows = _rows(rep)
    outputs = [2 * 4 * 28 * 28, 2 * 4 * 28 * 28, 2 * 4 * 14 * 14, 2 * 8 * 14 * 14,
               2 * 8 * 14 * 14, 2 * 8 * 7 * 7, 2 * 256, 2 * 256, 2 * 10]
    assert rep.memory["activation_bytes"] == 4 * (2 * 784 + sum(outputs))
    assert rows["flatten"]["activation_bytes"] == 0
    assert rep.memory["peak_inference_bytes"] == 4 * 2 * (4 * 784 + 4 * 784)
    # conv2 keeps its input = pool1's output; relu2 keeps its output; pool2 keeps relu2's
    # output again (already saved); fc1 keeps the flattened pool2 output
    assert rows["conv2"]["saved_bytes"] == 4 * 2 * 4 * 14 * 14
    assert rows["pool2"]["saved_bytes"] == 0
    assert rows["fc1"]["saved_bytes"] == 4 * 2 * 392
    assert rep.memory["gradient_bytes"] == 4 * rep.totals["params"]
    f64 = analyze(models.mnist_net(dtype=np.float64), (1, 28, 28))
    assert f64.memory["weight_bytes"] == 8 * f64.totals["params"]


def test_report_formats():
    rep = analyze("alexnet_cifar33", counting="seed")
    data = json.loads(rep.to_json())
    assert data["totals"]["flops"] == 457_211_552
    assert data["counting"]["assume_bias"] == ["fc"]
    assert data["rows"][0]["output_shape"] == [1, 96, 27, 27]
    rows = list(csv.DictReader(io.StringIO(rep.to_csv())))
    assert len(rows) == len(rep.rows) + 1
    assert rows[-1]["name"] == "total" and rows[-1]["params"] == "6615338"
    assert rows[0]["output_shape"] == "1x96x27x27"
    md = rep.to_markdown()
    assert "| conv1 | Conv2d | 3x33x33 | 96x27x27 | 14,112 |" in md
    assert "**457,211,552**" in md
    table = rep.table()
    assert "MACs" in table and "FLOPs" in table and "MB (" in table and "MiB)" in table
    other = analyze("mnist_net")
    assert "mnist_net" in compare_table([rep, other])
    assert compare_table([rep, other], markdown=True).startswith("| model |")


def test_report_dataframe():
    pd = pytest.importorskip("pandas")
    frame = analyze("mnist_net").to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert frame.loc["total", "macs"] == 338_112


def test_measure_times_every_layer_and_restores_the_model():
    net = models.resnet_cifar(8)
    net.eval()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    rep = analyze(net, (3, 16, 16), batch_size=2, measure=True, repeat=1)
    assert rep.measured
    assert all(r["fwd_ms"] >= 0 and r["bwd_ms"] >= 0 for r in rep.rows)
    assert sum(r["fwd_ms"] for r in rep.rows if r["kind"] == "conv") > 0
    assert abs(sum(r["step_pct"] for r in rep.rows) - 100) < 1e-6
    assert "layer2.0.add" in _rows(rep)
    assert all(not m.training for _, m in net.named_modules())
    after = net.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(not p.grad.any() for p in net.parameters())
    assert "fwd ms" in rep.table()


def test_machine_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kw = {"gemm_size": 64, "copy_bytes": 2**16, "repeat": 1}
    first = machine_mod.machine_info(**kw)
    assert not first["cached"] and first["sgemm_gflops"] > 0 and first["copy_gbs"] > 0
    assert machine_mod.cache_path() == tmp_path / "glasscnn" / "machine.json"
    second = machine_mod.machine_info(**kw)
    assert second["cached"] and second["sgemm_gflops"] == first["sgemm_gflops"]
    monkeypatch.setattr(machine_mod, "fingerprint", lambda: {"host": "elsewhere"})
    assert not machine_mod.machine_info(**kw)["cached"]
    assert not machine_mod.machine_info(refresh=True, **kw)["cached"]


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from glasscnn.analysis import plots

    rep = analyze("alexnet_cifar33", counting="seed")
    paths = plots.plot_report(rep, tmp_path, FAKE_MACHINE)
    assert [p.name for p in paths] == [f"alexnet_cifar33_{k}.png" for k in
                                       ("params", "flops", "split", "memory", "roofline")]
    assert all(_is_png(p) for p in paths)
    measured = analyze("mnist_net", batch_size=2, measure=True, repeat=1)
    assert _is_png(plots.plot_roofline(measured, FAKE_MACHINE, tmp_path / "measured.png"))
    assert _is_png(plots.plot_compare([rep, measured], tmp_path / "compare.png"))


@pytest.fixture
def mnist_checkpoint(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    net = models.mnist_net()
    path = tmp_path / "mnist.npz"
    save_checkpoint(path, Checkpoint(
        {"model": "mnist_net", "input_shape": [1, 28, 28], "classes": list("0123456789")},
        net.state_dict(), {"normalizer": {"mean": np.array([0.5]), "std": np.array([0.5])}}))
    yy, xx = np.mgrid[0:28, 0:28]
    Image.fromarray(((xx * 9 + yy * 3) % 256).astype(np.uint8)).save(tmp_path / "digit.png")
    return net, path, tmp_path / "digit.png"


def test_inspect(mnist_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    from glasscnn.analysis.inspect import inspect_checkpoint
    from glasscnn.data.transforms import load_image

    net, ckpt, image = mnist_checkpoint
    only = inspect_checkpoint(ckpt, None, tmp_path / "f")
    assert _is_png(only["filters"]) and only["probabilities"] is None
    res = inspect_checkpoint(ckpt, image, tmp_path / "out")
    assert [p.name for p in res["feature_maps"]] == ["features_conv1.png", "features_conv2.png"]
    assert all(_is_png(p) for p in [res["filters"], *res["feature_maps"], res["probabilities"]])
    assert abs(sum(res["probs"].values()) - 1) < 1e-9
    net.eval()
    logits = net((load_image(image, "L", 28) - 0.5) / 0.5)
    assert res["prediction"] == str(int(np.argmax(logits)))


def test_cli_analyze_seed_table(capsys):
    assert main(["analyze", "alexnet_cifar33", "--input", "3x33x33", "--counting", "seed"]) == 0
    out = capsys.readouterr().out
    assert "6,615,338" in out and "457,211,552" in out and "228.5 M" in out


def test_cli_analyze_formats_compare_and_errors(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(machine_mod, "machine_info", lambda refresh=False: FAKE_MACHINE)
    assert main(["analyze", "mnist_net", "--format", "json", "--batch", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["macs"] == 2 * 338_112
    assert main(["analyze", "--compare", "mnist_net", "lenet_bn", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model,") and len(lines) == 3
    pytest.importorskip("matplotlib")
    assert main(["analyze", "mnist_net", "--plots", str(tmp_path / "p")]) == 0
    assert len(list((tmp_path / "p").glob("*.png"))) == 5
    assert main(["analyze", "alexnet_cifar33", "--input", "3x16x16"]) == 1
    assert "collapses at layer 'pool3'" in capsys.readouterr().err
    assert main(["analyze", "nosuchnet"]) == 1
    assert "known models: alexnet_cifar33" in capsys.readouterr().err


def test_cli_analyze_checkpoint_and_inspect(mnist_checkpoint, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    _, ckpt, image = mnist_checkpoint
    assert main(["analyze", str(ckpt)]) == 0
    assert "338,112" in capsys.readouterr().out
    assert main(["inspect", str(ckpt), str(image), "--out", str(tmp_path / "i")]) == 0
    out = capsys.readouterr().out
    assert "prediction:" in out and (tmp_path / "i" / "probabilities.png").is_file()


def test_cli_machine(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real = machine_mod.measure_machine
    monkeypatch.setattr(machine_mod, "measure_machine",
                        lambda: real(gemm_size=64, copy_bytes=2**16, repeat=1))
    assert main(["machine"]) == 0
    assert "measured now" in capsys.readouterr().out
    assert main(["machine"]) == 0
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "GB/s" in out and "cached" in out


def test_report_display_text_and_html():
    rep = analyze(models.get("mnist_net"), batch_size=2)
    assert repr(rep) == ("<Report mnist_net, input 1x28x28, batch 2, float32: 10 layers, "
                         "104,090 parameters, 0.68 M MACs, 1.38 M FLOPs>")
    html = rep._repr_html_()
    assert html.startswith("<div><strong>mnist_net, input 1x28x28, batch 2, float32</strong>")
    assert "<th style=\"text-align:right\">MACs</th>" in html
    assert ">conv1<" in html and ">676,224<" in html  # the MAC total, in the bold total row
    assert "counting: FLOPs = 2×MACs" in html
    assert str(rep) == rep.table()


def test_plots_and_compare_use_the_zoo_names(tmp_path):
    pytest.importorskip("matplotlib")
    from glasscnn.analysis import plots

    reps = [analyze(models.get(n)) for n in ("mnist_net", "lenet_bn")]
    paths = plots.plot_report(reps[1], tmp_path)
    assert paths[0].name == "lenet_bn_params.png"
    assert [r["model"] for r in compare_rows(reps)] == ["mnist_net", "lenet_bn"]


def test_a_growing_windowed_layer_is_not_called_too_small():
    """Only a layer whose own shape rule refuses the input is reported as collapsing."""
    class Upsample(nn.Module):
        kernel_size, stride, padding = (3, 3), (2, 2), (0, 0)

        def forward(self, x):
            return x.repeat(2, axis=2).repeat(2, axis=3)

        def output_shape(self, input_shape):
            n, c, h, w = input_shape
            return (n, c, 2 * h, 2 * w)

    register_rule(Upsample)(lambda layer, ins, outs, opts: LayerCount(kind="other"))
    try:
        rep = analyze(nn.Sequential(Upsample()), (2, 1, 1))
        assert rep.rows[0]["output_shape"] == (1, 2, 2, 2)
    finally:
        del RULES[Upsample]
def test_new_layers_are_counted(rng):
    """Every layer of the new modules has a rule; shapes equal the real forward's; a Concat
    adds a Cat row; FLOP conventions as docs/analysis.md."""
    from collections import OrderedDict

    from glasscnn import nn
    net = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 8, 3, padding=1),
        gn=nn.GroupNorm(2, 8),
        gelu=nn.GELU(),
        fire=nn.Concat(OrderedDict(a=nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU6()),
                                   skip=nn.Identity())),
        pool=nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        amax=nn.AdaptiveMaxPool2d(2),
        act=nn.Sequential(nn.LeakyReLU(), nn.SiLU(), nn.Hardswish(), nn.Tanh()),
        flat=nn.Flatten(start_dim=2),
        mp=nn.MaxPool1d(2, 1), ap=nn.AvgPool1d(2, 1),
        flat2=nn.Flatten(), ln=nn.LayerNorm(24), fc=nn.Linear(24, 5),
        out=nn.LogSoftmax(1), sm=nn.Softmax(1),
    ))
    rep = analyze(net, (3, 9, 9), batch_size=2)
    out = net(rng.standard_normal((2, 3, 9, 9)).astype(np.float32))
    rows = {r["name"]: r for r in rep.rows}
    assert rows["sm"]["output_shape"] == out.shape
    assert rows["fire.skip"]["activation_bytes"] == 0
    assert rows["gn"]["params"] == 16 and rows["ln"]["params"] == 48
    assert rows["gn"]["flops"] == 7 * 2 * 8 * 9 * 9
    assert rows["gelu"]["flops"] == 5 * 2 * 8 * 9 * 9
    assert rows["pool"]["output_shape"] == (2, 12, 5, 5)
    assert rows["amax"]["flops"] == 2 * 12 * 6 * 6  # bins [0, 3) and [2, 5) per axis
    assert rows["mp"]["flops"] == 2 * 12 * 3 * 2
