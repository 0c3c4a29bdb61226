"""The model zoo: keys, parameter counts, shape rules, and logits equal to PyTorch twins."""

from __future__ import annotations

import numpy as np
import pytest

from glasscnn import models
from glasscnn.io import to_torch

SMALL = ["alexnet_cifar33", "mnist_net", "three_layer_convnet", "lenet_bn", "vgg_cifar",
         "resnet_cifar"]


def test_alexnet_cifar33_keys_and_shapes_seed_facts_1():
    sd = models.alexnet_cifar33().state_dict()
    assert {k: v.shape for k, v in sd.items()} == {
        "conv1.weight": (96, 3, 7, 7), "conv2.weight": (256, 96, 5, 5),
        "conv3.weight": (384, 256, 3, 3), "conv4.weight": (384, 384, 3, 3),
        "conv5.weight": (256, 384, 3, 3), "fc1.weight": (1024, 2304),
        "fc2.weight": (512, 1024), "fc3.weight": (10, 512),
    }


def test_alexnet_torchvision_keys_and_count_seed_facts_5():
    sd = models.alexnet().state_dict()
    convs = [f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")]
    fcs = [f"classifier.{i}.{p}" for i in (1, 4, 6) for p in ("weight", "bias")]
    assert list(sd) == convs + fcs
    assert sum(v.size for v in sd.values()) == 61_100_840


def test_mnist_net_weights_seed_facts_2():
    net = models.mnist_net()
    weights = sum(p.data.size for n, p in net.named_parameters() if n.endswith("weight"))
    assert weights == 103_812


def test_resnet_depth_rule():
    net = models.resnet_cifar(8)
    assert "layer2.0.shortcut.0.weight" in net.state_dict()
    with pytest.raises(ValueError, match="depth must be 6n"):
        models.resnet_cifar(10)


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match=r"unknown model 'lenet'.*lenet_bn"):
        models.get("lenet")


def test_input_too_small_is_reported():
    with pytest.raises(ValueError, match="alexnet_cifar33: input 3x16x16 is too small"):
        models.alexnet_cifar33(input_size=16)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("input_shape", ["default", (1, 28, 28)])
def test_forward_shape_equals_shape_rule(name, input_shape, rng):
    shape = models.default_input_shape(name) if input_shape == "default" else input_shape
    kwargs = {} if input_shape == "default" else {"in_channels": 1, "input_size": 28}
    net = models.get(name, **kwargs)
    net.eval()
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    out = net(x)
    assert out.shape == net.output_shape(x.shape) == (2, 10)


@pytest.mark.parametrize("name", [*SMALL, "alexnet"])
def test_logits_match_torch_twin(name, torch, rng):
    kwargs = {"depth": 8} if name == "resnet_cifar" else {}
    net = models.get(name, **kwargs)
    twin = to_torch(net, torch)
    assert list(net.state_dict()) == list(twin.state_dict())
    net.eval()
    twin.eval()
    batch = 1 if name == "alexnet" else 4
    x = rng.standard_normal((batch, *models.default_input_shape(name))).astype(np.float32)
    ours = net(x)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= 1e-4 * scale
    np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("name", [*SMALL, "alexnet"])
def test_zoo_models_carry_their_name_and_input_shape(name):
    net = models.get(name)
    assert net.name == name
    assert net.input_shape == models.default_input_shape(name)
    small = models.get(name, in_channels=1, input_size=(36, 40)) if name != "alexnet" else None
    if small is not None:
        assert small.name == name and small.input_shape == (1, 36, 40)


def test_builders_called_directly_are_named_too():
    assert models.resnet_cifar(8, input_size=24).name == "resnet_cifar"
    assert models.resnet_cifar(8, input_size=24).input_shape == (3, 24, 24)
    assert models.lenet_bn.__name__ == "lenet_bn" and "LeNet" in models.lenet_bn.__doc__
