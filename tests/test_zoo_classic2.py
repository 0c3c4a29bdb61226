"""The branching classics in the zoo: MobileNetV2, SqueezeNet 1.0/1.1, ShuffleNetV2 ×1.0,
DenseNet-121 and GoogLeNet, as torchvision builds them.

Parity is against PyTorch twins written here from torchvision's model definitions
(torchvision does not install beside the CPU torch): a twin's ``state_dict``, saved with
``torch.save``, loads through glasscnn's torch-free reader with no key mapping, and the
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
from glasscnn.io import load_into, to_torch
from glasscnn.models._branches import channel_shuffle, join_channels, split_channels

PUBLISHED = {"mobilenet_v2": 3_504_872, "squeezenet1_0": 1_248_424,
             "squeezenet1_1": 1_235_496, "shufflenet_v2_x1_0": 2_278_604,
             "densenet121": 7_978_856, "googlenet": 6_624_904}
# one small input per model: enough for SqueezeNet's and GoogLeNet's pools, fast enough
SHAPES = {"mobilenet_v2": (2, 3, 64, 64), "squeezenet1_0": (2, 3, 64, 64),
          "squeezenet1_1": (2, 3, 64, 64), "shufflenet_v2_x1_0": (2, 3, 64, 64),
          "densenet121": (1, 3, 48, 48), "googlenet": (1, 3, 64, 64)}


def _twins(torch):
    """torchvision's networks, written from torchvision/models (v0.13+)."""
    nn, F = torch.nn, torch.nn.functional

    def conv_norm_act(c_in, c_out, k=3, stride=1, groups=1):
        return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups,
                                       bias=False),
                             nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, inp, oup, stride, expand_ratio):
            super().__init__()
            hidden = round(inp * expand_ratio)
            self.use_res_connect = stride == 1 and inp == oup
            layers = [conv_norm_act(inp, hidden, k=1)] if expand_ratio != 1 else []
            layers += [conv_norm_act(hidden, hidden, stride=stride, groups=hidden),
                       nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                        [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
            features, c_in = [conv_norm_act(3, 32, stride=2)], 32
            for t, c, n, s in settings:
                for i in range(n):
                    features.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                    c_in = c
            features.append(conv_norm_act(c_in, 1280, k=1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x):
            x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    class Fire(nn.Module):
        def __init__(self, inplanes, squeeze, e1, e3):
            super().__init__()
            self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
            self.squeeze_activation = nn.ReLU(inplace=True)
            self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
            self.expand1x1_activation = nn.ReLU(inplace=True)
            self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
            self.expand3x3_activation = nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.squeeze_activation(self.squeeze(x))
            return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                              self.expand3x3_activation(self.expand3x3(x))], 1)

    class SqueezeNet(nn.Module):
        def __init__(self, version, num_classes):
            super().__init__()
            pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
            if version == "1_0":
                self.features = nn.Sequential(
                    nn.Conv2d(3, 96, 7, stride=2), nn.ReLU(inplace=True), pool(),
                    Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128),
                    pool(), Fire(256, 32, 128, 128), Fire(256, 48, 192, 192),
                    Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), pool(),
                    Fire(512, 64, 256, 256))
            else:
                self.features = nn.Sequential(
                    nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True), pool(),
                    Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
                    Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
                    Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                    Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
            self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1),
                                            nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

        def forward(self, x):
            return torch.flatten(self.classifier(self.features(x)), 1)

    def channel_shuffle_t(x, groups):
        n, c, h, w = x.size()
        x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
        return x.view(n, -1, h, w)

    class ShuffleUnit(nn.Module):
        def __init__(self, inp, oup, stride):
            super().__init__()
            self.stride = stride
            bf = oup // 2
            if stride > 1:
                self.branch1 = nn.Sequential(
                    nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
                    nn.BatchNorm2d(inp), nn.Conv2d(inp, bf, 1, 1, 0, bias=False),
                    nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
            else:
                self.branch1 = nn.Sequential()
            self.branch2 = nn.Sequential(
                nn.Conv2d(inp if stride > 1 else bf, bf, 1, 1, 0, bias=False),
                nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
                nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
                nn.Conv2d(bf, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf),
                nn.ReLU(inplace=True))

        def forward(self, x):
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            return channel_shuffle_t(out, 2)

    class ShuffleNetV2(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            widths = [24, 116, 232, 464, 1024]
            self.conv1 = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False),
                                       nn.BatchNorm2d(24), nn.ReLU(inplace=True))
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            c_in = 24
            for name, repeats, c_out in zip(["stage2", "stage3", "stage4"], [4, 8, 4],
                                            widths[1:4], strict=True):
                units = [ShuffleUnit(c_in, c_out, 2)]
                units += [ShuffleUnit(c_out, c_out, 1) for _ in range(repeats - 1)]
                setattr(self, name, nn.Sequential(*units))
                c_in = c_out
            self.conv5 = nn.Sequential(nn.Conv2d(c_in, 1024, 1, 1, 0, bias=False),
                                       nn.BatchNorm2d(1024), nn.ReLU(inplace=True))
            self.fc = nn.Linear(1024, num_classes)

        def forward(self, x):
            x = self.maxpool(self.conv1(x))
            x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
            return self.fc(x.mean([2, 3]))

    class DenseLayer(nn.Module):
        def __init__(self, c_in, growth, bn_size):
            super().__init__()
            self.norm1 = nn.BatchNorm2d(c_in)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(bn_size * growth)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

        def forward(self, inputs):
            x = torch.cat(inputs, 1)
            x = self.conv1(self.relu1(self.norm1(x)))
            return self.conv2(self.relu2(self.norm2(x)))

    class DenseBlock(nn.ModuleDict):
        def __init__(self, n, c_in, bn_size, growth):
            super().__init__()
            for i in range(n):
                self.add_module(f"denselayer{i + 1}", DenseLayer(c_in + i * growth, growth,
                                                                 bn_size))

        def forward(self, x):
            features = [x]
            for layer in self.values():
                features.append(layer(features))
            return torch.cat(features, 1)

    class Transition(nn.Sequential):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.norm = nn.BatchNorm2d(c_in)
            self.relu = nn.ReLU(inplace=True)
            self.conv = nn.Conv2d(c_in, c_out, 1, 1, bias=False)
            self.pool = nn.AvgPool2d(2, 2)

    class DenseNet(nn.Module):
        def __init__(self, num_classes, growth=32, blocks=(6, 12, 24, 16), bn_size=4):
            super().__init__()
            self.features = nn.Sequential()
            self.features.add_module("conv0", nn.Conv2d(3, 64, 7, 2, 3, bias=False))
            self.features.add_module("norm0", nn.BatchNorm2d(64))
            self.features.add_module("relu0", nn.ReLU(inplace=True))
            self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
            c = 64
            for i, n in enumerate(blocks):
                self.features.add_module(f"denseblock{i + 1}", DenseBlock(n, c, bn_size,
                                                                          growth))
                c += n * growth
                if i != len(blocks) - 1:
                    self.features.add_module(f"transition{i + 1}", Transition(c, c // 2))
                    c //= 2
            self.features.add_module("norm5", nn.BatchNorm2d(c))
            self.classifier = nn.Linear(c, num_classes)

        def forward(self, x):
            x = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    class BasicConv2d(nn.Module):
        def __init__(self, c_in, c_out, **kwargs):
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, bias=False, **kwargs)
            self.bn = nn.BatchNorm2d(c_out, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)), inplace=True)

    class Inception(nn.Module):
        def __init__(self, c_in, ch1, ch3r, ch3, ch5r, ch5, proj):
            super().__init__()
            self.branch1 = BasicConv2d(c_in, ch1, kernel_size=1)
            self.branch2 = nn.Sequential(BasicConv2d(c_in, ch3r, kernel_size=1),
                                         BasicConv2d(ch3r, ch3, kernel_size=3, padding=1))
            self.branch3 = nn.Sequential(BasicConv2d(c_in, ch5r, kernel_size=1),
                                         BasicConv2d(ch5r, ch5, kernel_size=3, padding=1))
            self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                         BasicConv2d(c_in, proj, kernel_size=1))

        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x),
                              self.branch4(x)], 1)

    class GoogLeNet(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.conv2 = BasicConv2d(64, 64, kernel_size=1)
            self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
            self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
            self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
            self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
            self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
            self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
            self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
            self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
            self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
            self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
            self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.dropout = nn.Dropout(0.2)
            self.fc = nn.Linear(1024, num_classes)

        def forward(self, x):
            x = self.maxpool1(self.conv1(x))
            x = self.maxpool2(self.conv3(self.conv2(x)))
            x = self.maxpool3(self.inception3b(self.inception3a(x)))
            for name in ("4a", "4b", "4c", "4d", "4e"):
                x = getattr(self, f"inception{name}")(x)
            x = self.inception5b(self.inception5a(self.maxpool4(x)))
            return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    return {"mobilenet_v2": MobileNetV2,
            "squeezenet1_0": lambda k: SqueezeNet("1_0", k),
            "squeezenet1_1": lambda k: SqueezeNet("1_1", k),
            "shufflenet_v2_x1_0": ShuffleNetV2, "densenet121": DenseNet,
            "googlenet": GoogLeNet}


def make_twin(torch, name: str, num_classes: int = 10):
    """The PyTorch twin of zoo model ``name``, torch's own random weights."""
    torch.manual_seed(0)
    return _twins(torch)[name](num_classes)


@pytest.fixture(scope="module")
def loaded(torch, tmp_path_factory):
    """name → (glasscnn model with the twin's weights loaded from a .pth, the twin), built
    once per model for the whole file."""
    cache = {}

    def get(name):
        if name not in cache:
            twin = make_twin(torch, name)
            randomize_batch_norm(torch, twin)
            path = tmp_path_factory.mktemp(name) / f"{name}.pth"
            torch.save(twin.state_dict(), path)
            model = models.get(name, num_classes=10)
            load_into(model, path)  # strict, no key mapping
            cache[name] = (model.eval(), twin.eval())
        return cache[name]

    return get



@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_count_is_torchvisions(name):
    model = models.get(name)
    assert param_count(model) == PUBLISHED[name]
    assert model.name == name and model.input_shape == (3, 224, 224)


def test_all_are_listed():
    listed = {m["name"]: m["input_shape"] for m in models.available()}
    assert all(listed[name] == (3, 224, 224) for name in PUBLISHED)



@pytest.mark.parametrize("name", list(PUBLISHED))
def test_torch_checkpoint_loads_without_mapping_and_logits_agree(name, torch, loaded):
    model, twin = loaded(name)
    assert list(model.state_dict()) == list(twin.state_dict())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in twin.named_parameters()]
    x = np.random.default_rng(2).standard_normal(SHAPES[name]).astype(np.float32)
    ours = model(x)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    assert np.array_equal(ours.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("name", ["mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x1_0",
                                  "googlenet"])
def test_to_torch_builds_the_same_network(name, torch, loaded):
    """``glasscnn.io.to_torch`` (the benchmark's twin) runs the branching blocks as the
    hand-written twins do."""
    model, twin = loaded(name)
    built = to_torch(model, torch).eval()
    x = torch.from_numpy(np.random.default_rng(3).standard_normal(SHAPES[name])
                         .astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(built(x), twin(x), rtol=1e-5, atol=1e-5)



def test_branch_helpers_invert_each_other():
    x = np.arange(2 * 12 * 2 * 3, dtype=np.float64).reshape(2, 12, 2, 3)
    parts = split_channels(x, [5, 7])
    assert [p.shape[1] for p in parts] == [5, 7]
    np.testing.assert_array_equal(join_channels(parts), x)
    shuffled = channel_shuffle(x, 3)  # channel g·4 + j → j·3 + g
    np.testing.assert_array_equal(shuffled[:, 3 * 1 + 2], x[:, 2 * 4 + 1])
    np.testing.assert_array_equal(channel_shuffle(shuffled, 4), x)


@pytest.mark.parametrize("name, shape", [("mobilenet_v2", (2, 1, 32, 32)),
                                         ("squeezenet1_1", (2, 1, 40, 33)),
                                         ("shufflenet_v2_x1_0", (2, 1, 32, 32)),
                                         ("densenet121", (2, 1, 32, 32)),
                                         ("googlenet", (2, 1, 32, 32))])
def test_training_step_gradients_match_torch(name, shape, torch):
    """Train mode (batch statistics), float64: the loss, every parameter gradient, the
    input gradient and the updated running statistics agree with ``to_torch``'s twin."""
    check_training_step(torch, name, shape, loss_rel=1e-9, grad_rel=1e-6, check_dx=True)


def test_mobilenet_v2_learns_a_batch_of_28x28_grey_images():
    """A few Adam steps on one 1×28×28 batch (the Fashion-MNIST shape) lower the loss."""
    model = models.mobilenet_v2(in_channels=1, num_classes=10, input_size=28, dropout=0.0,
                                rng=np.random.default_rng(5)).requires_input_grad_(False)
    losses = losses_of_a_few_steps(model, 4)
    assert losses[-1] < 0.7 * losses[0]



def test_init_is_torchvisions():
    rng = np.random.default_rng(0)
    mb = models.mobilenet_v2(rng=rng)
    conv = mb.features[2].conv[0][0]  # 16 → 96 1×1: fan_out 96
    assert conv.weight.data.std() == pytest.approx(math.sqrt(2 / 96), rel=0.05)
    assert mb.classifier[1].weight.data.std() == pytest.approx(0.01, rel=0.02)
    sq = models.squeezenet1_1(rng=rng)
    fire = sq.features[3]  # squeeze 64 → 16: kaiming uniform, bound √(6/64)
    bound = math.sqrt(6 / 64)
    assert np.abs(fire.squeeze.weight.data).max() <= bound
    assert np.abs(fire.squeeze.weight.data).max() > 0.9 * bound
    assert np.all(fire.squeeze.bias.data == 0)
    assert sq.classifier[1].weight.data.std() == pytest.approx(0.01, rel=0.05)
    dn = models.densenet121(rng=rng)
    conv = dn.features.denseblock1.denselayer1.conv1  # fan_in 64
    assert conv.weight.data.std() == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    assert np.all(dn.classifier.bias.data == 0)
    gn = models.googlenet(rng=rng)
    assert gn.inception3a.branch2[1].conv.weight.data.std() == pytest.approx(0.01, rel=0.02)
    assert gn.conv1.bn.eps == 0.001



# MACs at 3×224×224, from glasscnn's analysis (convs and fc layers; see docs/analysis.md)
MACS_224 = {"mobilenet_v2": 300_774_272, "squeezenet1_0": 818_924_576,
            "squeezenet1_1": 349_151_936, "shufflenet_v2_x1_0": 144_907_992,
            "densenet121": 2_834_161_664, "googlenet": 1_498_376_192}


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2_x1_0"])
def test_macs_at_224(name):
    """MobileNetV2: torchvision's docs give 0.30 G; ShuffleNetV2 ×1.0: 0.14 G."""
    report = analyze(name)
    assert report.totals["macs"] == MACS_224[name]
    assert report.totals["params"] == PUBLISHED[name]


@pytest.mark.parametrize("name", ["squeezenet1_1", "densenet121", "googlenet"])
def test_every_layer_is_a_row(name):
    """Small inputs: each conv, batch norm, ReLU and pool of the branches is a row; the
    MACs at 224×224 are in ``MACS_224`` (checked for the lighter two above)."""
    model = models.get(name, num_classes=10)
    report = analyze(model, (3, 64, 64))
    types = [row["type"] for row in report.rows]
    convs = sum(1 for _, m in model.named_modules() if type(m).__name__ == "Conv2d")
    assert types.count("Conv2d") == convs
    assert report.totals["params"] == param_count(model)



@pytest.mark.parametrize("name", list(PUBLISHED))
def test_onnx_export_runs_in_onnxruntime(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from glasscnn.io import export_onnx

    rng = np.random.default_rng(7)
    model = models.get(name, num_classes=10, rng=rng).eval()
    for _, m in model.named_modules():
        if hasattr(m, "running_var"):
            m.running_mean[...] = rng.normal(0, 0.1, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
    shape = SHAPES[name][1:]
    path = export_onnx(model, tmp_path / f"{name}.onnx", shape)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    got, want = session.run(None, {"input": x})[0], model(x)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert np.array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mobilenet_v2_infer_equals_eval_forward(dtype):
    """The cache-free inference path (batch norm folded into the convs) gives the
    evaluation-mode forward's logits, and leaves the model's state alone."""
    rng = np.random.default_rng(8)
    model = models.mobilenet_v2(num_classes=10, dtype=dtype, rng=rng).eval()
    for _, m in model.named_modules():
        if hasattr(m, "running_var"):
            m.running_mean[...] = rng.normal(0, 0.1, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.num_features)
    x = rng.standard_normal((2, 3, 40, 36)).astype(dtype)
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    got = model.infer(x)
    want = model(x)
    assert got.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.abs(got - want).max() <= tol * np.abs(want).max()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("block", ["fire", "shuffle1", "shuffle2", "dense", "inception"])
def test_block_without_input_gradient_still_trains(block):
    """A branching block first in a network (``requires_input_grad_(False)``) returns no
    input gradient and still gives every parameter the gradient it gives with one."""
    from glasscnn.models.densenet import DenseLayer
    from glasscnn.models.googlenet import Inception
    from glasscnn.models.shufflenetv2 import ShuffleUnit
    from glasscnn.models.squeezenet import Fire

    def build():
        o = {"impl": "fast", "dtype": np.float64, "rng": np.random.default_rng(9)}
        return {"fire": lambda: Fire(6, 3, 4, 5, o),
                "shuffle1": lambda: ShuffleUnit(6, 6, 1, o),
                "shuffle2": lambda: ShuffleUnit(6, 8, 2, o),
                "dense": lambda: DenseLayer(6, 4, 2, o),
                "inception": lambda: Inception(6, 2, 3, 4, 2, 3, 2, o)}[block]()

    x = np.random.default_rng(10).standard_normal((2, 6, 7, 5))
    with_dx, without = build(), build().requires_input_grad_(False)
    dout = np.random.default_rng(11).standard_normal(with_dx(x).shape)
    assert with_dx.backward(dout).shape == x.shape
    without(x)
    assert without.backward(dout) is None
    for (key, p), (_, q) in zip(with_dx.named_parameters(), without.named_parameters(),
                                strict=True):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-12, atol=1e-12, err_msg=key)
