"""Parity with PyTorch: torch.save → torch-free reader → glasscnn gives torch's logits.

For every zoo model the PyTorch twin (glasscnn.io.to_torch) is built with torch's own
initialisation, its ``state_dict`` saved with ``torch.save``, and the file loaded into
glasscnn by ``glasscnn.inference.load_predictor`` (which reads ``.pth`` without torch). Logits
must agree to a relative 1e-4 (float32) and the argmax predictions exactly, on real
Fashion-MNIST pictures (resized and replicated to the model's input by the model's own
preprocessing) and on random inputs. ``pytest -s`` prints one table row per model.

The last test mirrors seed-facts §2: the MNIST loop-nest network with torch-trained weights
must give PyTorch's predictions on 1,000 real test pictures.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from datasets_helper import load_or_skip

from glasscnn import models
from glasscnn.inference import load_predictor, predict
from glasscnn.io import to_torch

Image = pytest.importorskip("PIL.Image")

REL_TOL = 1e-4
CASES = [  # (model, builder arguments, real pictures, random inputs)
    ("alexnet_cifar33", {}, 16, 16),
    ("mnist_net", {}, 64, 64),
    ("three_layer_convnet", {}, 32, 32),
    ("three_layer_convnet", {"batchnorm": True}, 32, 32),
    ("lenet_bn", {}, 64, 64),
    ("vgg_cifar", {}, 32, 32),
    ("alexnet", {}, 2, 1),
    ("resnet_cifar", {"depth": 8}, 32, 32),
]


@pytest.fixture(scope="module")
def fashion_test():
    return load_or_skip("fashion-mnist", "test")


def randomize_norm(twin, torch, seed: int) -> None:
    """Non-trivial batch-norm statistics and affine parameters in the torch twin."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.num_batches_tracked.fill_(100)


def compare(name: str, kind: str, got: np.ndarray, want: np.ndarray) -> None:
    """Print a table row and assert the tolerance and identical argmax."""
    diff = float(np.abs(got - want).max())
    rel = diff / float(np.abs(want).max())
    same = bool(np.array_equal(got.argmax(axis=1), want.argmax(axis=1)))
    print(f"\nPARITY | {name:<34} | {kind:<6} | {got.shape[0]:>4} images | max |Δlogit| "
          f"{diff:.2e} | relative {rel:.2e} | identical predictions {'yes' if same else 'NO'}")
    assert got.shape == want.shape
    assert rel <= REL_TOL, f"{name} ({kind}): relative logit difference {rel:.2e}"
    assert same, f"{name} ({kind}): predictions differ"


@pytest.mark.parametrize(("name", "kwargs", "n_real", "n_random"), CASES,
                         ids=[f"{c[0]}{''.join(f'-{k}={v}' for k, v in c[1].items())}"
                              for c in CASES])
def test_zoo_model_matches_torch(name, kwargs, n_real, n_random, torch, fashion_test,
                                 tmp_path):
    torch.manual_seed(0)
    twin = to_torch(models.get(name, **kwargs), torch, weights=False)
    randomize_norm(twin, torch, 1)
    twin.eval()
    path = tmp_path / f"{name}.pth"
    torch.save(twin.state_dict(), path)
    loaded = load_predictor(path, name, kwargs)
    assert not any(m.training for _, m in loaded.model.named_modules())
    label = name + "".join(f" {k}={v}" for k, v in kwargs.items())

    pre = dataclasses.replace(loaded.preprocessing, convert_channels=True)
    pictures = [Image.fromarray(img[0]) for img in fashion_test.images[:n_real]]
    result = predict(loaded, pictures, preprocessing=pre, batch_size=16)
    x = pre.normalize(np.stack([pre.read(p) for p in pictures]))  # (n, C, H, W)
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    compare(label, "real", result.logits, want)

    rng = np.random.default_rng(2)
    x = rng.standard_normal((n_random, *pre.input_shape), dtype=np.float32)
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    compare(label, "random", loaded.model(x), want)


def test_mnist_net_trained_in_torch_1000_test_pictures(torch, fashion_test, tmp_path):
    """seed-facts §2: PyTorch-trained weights, same predictions as PyTorch on 1,000 pictures.

    The network is trained for one short epoch on Fashion-MNIST (pixels (x/255 − 0.5)/0.5)
    so that its predictions mean something; glasscnn reads the ``torch.save`` file without
    torch and classifies the first 1,000 test pictures through ``glasscnn.inference``.
    """
    train = load_or_skip("fashion-mnist", "train")
    torch.manual_seed(0)
    twin = to_torch(models.mnist_net(), torch, weights=False)
    images = torch.from_numpy((train.images[:12000] / 255 - 0.5).astype(np.float32) / 0.5)
    labels = torch.from_numpy(train.labels[:12000])
    optimizer = torch.optim.Adam(twin.parameters(), lr=2e-3)
    twin.train()
    for start in range(0, len(images), 100):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(twin(images[start:start + 100]),
                                                 labels[start:start + 100])
        loss.backward()
        optimizer.step()
    twin.eval()
    path = tmp_path / "mnist_net.pth"
    torch.save(twin.state_dict(), path)

    test = fashion_test.images[:1000]  # (1000, 1, 28, 28) uint8
    truth = fashion_test.labels[:1000]
    result = predict(load_predictor(path, "mnist_net"), test, batch_size=250)
    with torch.no_grad():
        want = twin(torch.from_numpy((test / 255 - 0.5).astype(np.float32) / 0.5)).numpy()
    agree = int((result.labels == want.argmax(axis=1)).sum())
    ours, theirs = int((result.labels == truth).sum()), int((want.argmax(axis=1) == truth).sum())
    print(f"\nmnist_net (torch-trained, 1 short epoch) on 1,000 Fashion-MNIST test pictures: "
          f"predictions agree {agree}/1000; correct: glasscnn {ours}/1000, torch {theirs}/1000")
    compare("mnist_net torch-trained", "real", result.logits, want)
    assert agree == 1000 and ours == theirs
    assert ours > 600
