"""The classic networks in the zoo: ResNet-18/34/50/101, VGG-11/13/16/19 (± BN) as
torchvision builds them, and LeNet-5.

Parity is against PyTorch twins written here from torchvision's model definitions
(torchvision itself does not install beside the CPU torch): a twin's ``state_dict``, saved
with ``torch.save``, loads through glasscnn's torch-free reader with no key mapping, and the
logits agree. Parameter counts are torchvision's published figures (its model docs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from zoo_helper import (
    check_training_step,
    losses_of_a_few_steps,
    param_count,
    randomize_batch_norm,
)

from glasscnn import models
from glasscnn.analysis import analyze
from glasscnn.io import load_into
from glasscnn.models.vgg import CONFIGS

RESNETS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
           "resnet101": 44_549_160}
VGGS = {"vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848,
        "vgg13_bn": 133_053_736, "vgg16": 138_357_544, "vgg16_bn": 138_365_992,
        "vgg19": 143_667_240, "vgg19_bn": 143_678_248}
# torchvision's classifier at 1000 classes: 25088→4096, 4096→4096, 4096→1000, with biases
VGG_CLASSIFIER = (25088 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000
WIDTH = 16  # a light VGG classifier, so that tests need not build 120 M fc weights


def _twin_classes(torch):
    """torchvision's ResNet blocks and VGG, as written in torchvision/models (v0.8+)."""
    nn = torch.nn

    def conv3x3(c_in, c_out, stride=1):
        return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)

    def conv1x1(c_in, c_out, stride=1):
        return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = conv3x3(inplanes, planes, stride)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = conv3x3(planes, planes)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = conv1x1(inplanes, planes)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = conv3x3(planes, planes, stride)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = conv1x1(planes, planes * 4)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class ResNet(nn.Module):
        def __init__(self, block, layers, num_classes=1000, in_channels=3):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, 64, layers[0])
            self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
            self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
            self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * block.expansion, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def _make_layer(self, block, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion,
                                                   stride),
                                           nn.BatchNorm2d(planes * block.expansion))
            layers = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class VGG(nn.Module):
        def __init__(self, cfg, batch_norm, num_classes=1000, width=4096):
            super().__init__()
            layers, c_in = [], 3
            for v in cfg:
                if v == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    continue
                layers.append(nn.Conv2d(c_in, v, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU(inplace=True))
                c_in = v
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, width), nn.ReLU(True), nn.Dropout(),
                nn.Linear(width, width), nn.ReLU(True), nn.Dropout(),
                nn.Linear(width, num_classes),
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(400, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = nn.functional.avg_pool2d(torch.tanh(self.conv1(x)), 2)
            x = nn.functional.avg_pool2d(torch.tanh(self.conv2(x)), 2)
            x = torch.tanh(self.fc1(torch.flatten(x, 1)))
            return self.fc3(torch.tanh(self.fc2(x)))

    return BasicBlock, Bottleneck, ResNet, VGG, LeNet5


def make_twin(torch, name: str, num_classes: int = 10, in_channels: int = 3):
    """The PyTorch twin of zoo model ``name`` (VGGs with the light classifier)."""
    basic, bottleneck, resnet, vgg, lenet5 = _twin_classes(torch)
    torch.manual_seed(0)
    if name == "lenet5":
        return lenet5()
    if name.startswith("resnet"):
        depth = int(name[6:])
        depths = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
        block = basic if depth < 50 else bottleneck
        return resnet(block, depths[depth], num_classes, in_channels)
    depth = int(name[3:5])
    return vgg(CONFIGS[depth], name.endswith("_bn"), num_classes, WIDTH)


@pytest.mark.parametrize("name", list(RESNETS))
def test_resnet_parameter_count_is_torchvisions(name):
    assert param_count(models.get(name)) == RESNETS[name]


@pytest.mark.parametrize("name", list(VGGS))
def test_vgg_parameter_count_is_torchvisions(name):
    """features counted on the model; torchvision's classifier is 25088→4096→4096→1000."""
    model = models.get(name, classifier_width=WIDTH)
    small_classifier = param_count(model.classifier)
    assert param_count(model) - small_classifier + VGG_CLASSIFIER == VGGS[name]
    widths = [fc.weight.shape for fc in model.classifier if hasattr(fc, "weight")]
    assert widths == [(WIDTH, 25088), (WIDTH, WIDTH), (1000, WIDTH)]


def test_vgg_classifier_defaults_to_torchvisions_width():
    import inspect

    assert inspect.signature(models.vgg16).parameters["classifier_width"].default == 4096


def test_lenet5_parameter_count_and_keys():
    model = models.lenet5()
    assert param_count(model) == 61_706
    assert [k for k in model.state_dict() if k.endswith("weight")] == [
        "conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]
    assert model.fc1.weight.shape == (120, 400)
    assert models.lenet5(input_size=28).fc1.weight.shape == (120, 256)


def test_all_classic_models_are_listed():
    listed = {m["name"]: m["input_shape"] for m in models.available()}
    for name in [*RESNETS, *VGGS]:
        assert listed[name] == (3, 224, 224)
    assert listed["lenet5"] == (1, 32, 32)



def test_resnet_init_is_torchvisions():
    model = models.resnet18(rng=np.random.default_rng(0))
    conv = model.layer2[0].conv1  # 64 → 128, 3×3: fan_out 1152
    assert conv.weight.data.std() == pytest.approx(math.sqrt(2 / 1152), rel=0.02)
    assert conv.weight.data.mean() == pytest.approx(0, abs=3e-3)
    bn = model.layer2[0].bn1
    assert np.all(bn.weight.data == 1) and np.all(bn.bias.data == 0)
    bound = 1 / math.sqrt(512)  # PyTorch's default Linear init, fan_in 512
    assert np.abs(model.fc.weight.data).max() <= bound
    assert np.abs(model.fc.weight.data).max() > 0.95 * bound


def test_vgg_init_is_torchvisions():
    model = models.vgg11_bn(classifier_width=64, rng=np.random.default_rng(0))
    conv = model.features[4]  # 64 → 128: fan_out 1152
    assert conv.weight.data.std() == pytest.approx(math.sqrt(2 / 1152), rel=0.02)
    assert np.all(conv.bias.data == 0)
    fc = model.classifier[0]
    assert fc.weight.data.std() == pytest.approx(0.01, rel=0.02)
    assert np.all(fc.bias.data == 0)



@pytest.mark.parametrize("name, shape", [("resnet18", (2, 3, 64, 64)),
                                         ("resnet50", (2, 3, 64, 64)),
                                         ("vgg11_bn", (2, 3, 32, 32)),
                                         ("lenet5", (4, 1, 32, 32))])
def test_torch_checkpoint_loads_without_mapping_and_logits_agree(name, shape, torch, tmp_path):
    twin = make_twin(torch, name)
    randomize_batch_norm(torch, twin)
    path = tmp_path / f"{name}.pth"
    torch.save(twin.state_dict(), path)
    kwargs = {"classifier_width": WIDTH} if name.startswith("vgg") else {}
    model = models.get(name, num_classes=10, **kwargs)
    assert list(model.state_dict()) == list(twin.state_dict())
    assert param_count(model) == sum(p.numel() for p in twin.parameters())
    load_into(model, path)  # strict, no key mapping
    model.eval()
    twin.eval()
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    ours = model(x)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    assert np.array_equal(ours.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_training_step_gradients_match_torch(name, torch):
    """Train mode (batch statistics), 1×32×32 input: the loss, every parameter gradient, the
    input gradient and the updated running statistics agree with the twin. In float64: with
    1×1 maps in layer4, batch norm over 2 values per channel amplifies float32 rounding."""
    check_training_step(torch, name, (2, 1, 32, 32), loss_rel=1e-10, grad_rel=1e-7,
                        check_dx=True)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_infer_equals_eval_forward_and_keeps_no_activations(name):
    """``infer``: the evaluation-mode logits, with a peak memory a fraction of the
    activations (the layers of a forward keep about all of them, as their inputs)."""
    import tracemalloc

    model = models.get(name, num_classes=10, rng=np.random.default_rng(8))
    rng = np.random.default_rng(9)
    for _, m in model.named_modules():
        if hasattr(m, "running_var"):
            m.running_mean[...] = rng.normal(0, 0.1, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
            m.bias.data[...] = rng.normal(0, 0.1, m.num_features)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    want = model.eval()(x)
    model.infer(x)
    tracemalloc.start()
    got = model.infer(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    activations = analyze(model, (3, 64, 64), batch_size=2).totals["activation_bytes"]
    assert peak < 0.5 * activations


def test_resnet18_learns_a_batch_of_28x28_grey_images():
    """A few Adam steps on one 1×28×28 batch (the Fashion-MNIST shape) lower the loss."""
    model = models.resnet18(in_channels=1, num_classes=10, input_size=28,
                            rng=np.random.default_rng(5)).requires_input_grad_(False)
    losses = losses_of_a_few_steps(model, 3)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name, macs", [("resnet18", 1_814_073_344),
                                        ("resnet50", 4_089_184_256)])
def test_resnet_macs_at_224_are_torchvisions(name, macs):
    """torchvision's model docs give 1.81 and 4.09 G (its "GFLOPS" are MACs)."""
    report = analyze(name)
    assert report.totals["macs"] == macs
    assert report.totals["params"] == RESNETS[name]


def test_lenet5_analysis():
    report = analyze("lenet5")
    assert report.totals["params"] == 61_706
    # conv1 6·28·28·25 + conv2 16·10·10·150 + fc 400·120 + 120·84 + 84·10
    assert report.totals["macs"] == 117_600 + 240_000 + 48_000 + 10_080 + 840


def test_vgg16_macs_at_224_are_torchvisions():
    """15.47 G in torchvision's docs: the features' MACs plus the classifier's."""
    report = analyze(models.vgg16(classifier_width=WIDTH), (3, 224, 224))
    small = 25088 * WIDTH + WIDTH * WIDTH + WIDTH * 1000
    full = 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert report.totals["macs"] - small + full == 15_470_264_320



@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "vgg11",
                                  "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
                                  "vgg19_bn", "lenet5"])
def test_onnx_export_runs_in_onnxruntime(name, tmp_path):
    """Every model of this file. ResNets at 1×32×32 with 10 classes; VGGs at 3×32×32 with
    the light classifier (their 1×1 feature map is broadcast to the 7×7 of the adaptive
    pool)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from glasscnn.io import export_onnx

    rng = np.random.default_rng(7)
    kwargs = {"classifier_width": WIDTH} if name.startswith("vgg") else {"in_channels": 1}
    model = models.get(name, num_classes=10, rng=rng, **kwargs).eval()
    if name == "lenet5":
        assert {"Tanh", "AveragePool"} <= _onnx_ops(export_onnx(model, tmp_path / "l.onnx",
                                                                (1, 32, 32)))
    for _, m in model.named_modules():
        if hasattr(m, "running_var"):
            m.running_mean[...] = rng.normal(0, 0.1, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
    shape = (3 if name.startswith("vgg") else 1, 32, 32)
    path = export_onnx(model, tmp_path / f"{name}.onnx", shape)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    got, want = session.run(None, {"input": x})[0], model(x)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert np.array_equal(got.argmax(1), want.argmax(1))


def _onnx_ops(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}



def test_bench_zoo_inference_case_twin_gives_the_same_logits(torch):
    from glasscnn import bench

    case = bench.zoo_inference_case("resnet18", 2, torch, size=32)
    ours, theirs = case.ours(), case.theirs().numpy()
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    assert case.flops == 2.0 * analyze("resnet18", (3, 32, 32), batch_size=2).totals["macs"]


def test_bench_resnet50_memory_report(monkeypatch):
    from glasscnn import bench

    mem = {"name": "resnet50", "batch": 16, "ours_traced": 3 * 2**20, "ours_rss": 2**21,
           "torch_rss": 2**21}
    monkeypatch.setattr(bench, "measure_zoo_memory", lambda torch: mem)
    monkeypatch.setattr(bench, "measure_sgemm", lambda: 100.0)
    lines: list[str] = []
    report = bench.run_benchmark(("resnet50_memory",), compare_torch=False, echo=lines.append)
    assert report["zoo_memory"] is mem
    assert lines[-2].endswith("glasscnn 3.0 MiB traced, 2.0 MiB RSS;  torch 2.0 MiB RSS")
    assert lines[-1] == "  glasscnn ÷ torch: traced ÷ RSS 1.50, RSS ÷ RSS 1.00  (target ≤ 2)"
