"""Gradient checks: known answers, true zero gradients, wrong backwards caught, float32 refused."""

from __future__ import annotations

import numpy as np
import pytest

import glasscnn.nn as nn
from glasscnn.gradcheck import (
    GradcheckResult,
    check_gradients,
    check_module,
    gradient_error,
    numerical_gradient,
    rel_error,
)

IMPLS = ["naive", "fast"]


def test_numerical_gradient_of_a_known_function(rng):
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    num = numerical_gradient(lambda: x**3, x, dout)
    np.testing.assert_allclose(num, 3 * x**2 * dout, rtol=1e-8, atol=1e-9)


def test_check_gradients_known_answer_passes_and_reports(rng):
    w = rng.standard_normal((4, 3))
    v = rng.standard_normal(3)
    dout = rng.standard_normal(4)
    dw = np.outer(dout * (1 - np.tanh(w @ v) ** 2), v)
    result = check_gradients(lambda: np.tanh(w @ v), {"w": (w, dw)}, dout)
    assert isinstance(result, GradcheckResult)
    assert result.passed and result.max_error < 1e-7
    assert result.tolerance == 1e-5 and 0 < result.atol < 1e-8


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("shape", "stride"), [((2, 2, 5, 6), 1), ((1, 3, 7, 5), 2),
                                               ((3, 1, 4, 4), 1)])
def test_true_zero_gradient_passes(impl, shape, stride, rng):
    """A conv bias feeding batch norm (training) has gradient 0: the check must pass."""
    net = nn.Sequential(
        nn.Conv2d(shape[1], 3, 3, stride=stride, padding=1, impl=impl, dtype=np.float64,
                  rng=rng),
        nn.BatchNorm2d(3, impl=impl, dtype=np.float64),
        nn.Sigmoid(impl),
    )
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(net.output_shape(shape))
    result = check_module(net, x, dout)
    assert result.passed, result
    # the analytic bias gradient is rounding noise around 0, the numerical one too
    assert result.max_abs_diff["0.bias"] < result.atol
    assert result["0.bias"] <= result.tolerance
    # the course's relative error calls these two noises wildly different
    num = numerical_gradient(lambda: net(x), net[0].bias.data, dout)
    assert rel_error(net[0].bias.grad, num) > 1e-3


class _ScaledInputGrad(nn.Linear):
    def backward(self, dout):
        return 1.001 * super().backward(dout)


class _NoBiasGrad(nn.Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.bias.grad[...] = 0
        return dx


class _TransposedWeightGrad(nn.Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.weight.grad[...] = self.weight.grad.T.copy()
        return dx


class _SpuriousBiasGrad(nn.Conv2d):
    """Adds 1e-6 to a bias gradient that is truly zero (batch norm follows)."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.bias.grad[...] += 1e-6
        return dx


def _linear(cls, rng):
    return cls(4, 4, dtype=np.float64, rng=rng), (3, 4)


def _conv_bn(cls, rng):
    return nn.Sequential(cls(2, 3, 3, dtype=np.float64, rng=rng),
                         nn.BatchNorm2d(3, dtype=np.float64)), (2, 2, 5, 5)


@pytest.mark.parametrize(("build", "cls", "bad"), [
    (_linear, _ScaledInputGrad, "input"),
    (_linear, _NoBiasGrad, "bias"),
    (_linear, _TransposedWeightGrad, "weight"),
    (_conv_bn, _SpuriousBiasGrad, "0.bias"),
], ids=["dx_off_by_0.1pct", "bias_grad_missing", "weight_grad_transposed",
        "tiny_grad_where_zero"])
def test_wrong_backward_is_caught(build, cls, bad, rng):
    module, shape = build(cls, rng)
    result = check_module(module, rng.standard_normal(shape))
    assert not result.passed
    assert not result
    assert bad in result.failed
    assert "FAILED" in repr(result) and "FAIL" in repr(result).splitlines()[2 + list(
        result).index(bad)]


def test_correct_backward_of_the_same_modules_passes(rng):
    for build in (_linear, _conv_bn):
        module, shape = build(nn.Linear if build is _linear else nn.Conv2d, rng)
        assert check_module(module, rng.standard_normal(shape)).passed


def test_float32_is_refused(rng):
    with pytest.raises(ValueError, match=r"weight \(float32\), bias \(float32\).*float64"):
        check_module(nn.Linear(3, 2), rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match="input x has dtype float32; finite differences need"):
        check_module(nn.Linear(3, 2, dtype=np.float64), rng.standard_normal((2, 3), np.float32))
    x32 = rng.standard_normal(3).astype(np.float32)
    with pytest.raises(ValueError, match="array differentiated has dtype float32"):
        numerical_gradient(lambda: x32 * 2, x32)
    x64 = rng.standard_normal(3)
    with pytest.raises(ValueError, match="output has dtype float32"):
        numerical_gradient(lambda: (x64 * 2).astype(np.float32), x64)


def test_result_reads_as_a_mapping_with_a_verdict(rng):
    result = check_module(nn.Linear(3, 2, dtype=np.float64, rng=rng), rng.standard_normal((2, 3)))
    assert list(result) == ["input", "weight", "bias"]
    assert max(result.values()) == result.max_error
    assert result["weight"] == result.errors["weight"]
    assert result.max_error <= result.tolerance and bool(result) is True
    text = repr(result)
    assert text.startswith("gradcheck passed: max error")
    assert "tolerance 1e-05" in text and "atol" in text


def test_explicit_tolerances(rng):
    module = _ScaledInputGrad(3, 3, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, 3))
    assert not check_module(module, x).passed
    loose = check_module(module, x, rtol=1e-2)
    assert loose.passed and loose.tolerance == 1e-2
    assert check_module(module, x, atol=1.0, rtol=1e-2).atol == 1.0


def test_gradient_error_formula():
    a = np.array([1.0, 1e-12, 0.0])
    n = np.array([1.0 + 2e-6, -1e-12, 5e-9])
    # element 0: relative 2e-6 / (2 + 2e-6); elements 1, 2: below atol / rtol, so absolute
    expected = max(2e-6 / (2 + 2e-6), 2e-12 / 1e-3, 5e-9 / 1e-3)
    assert gradient_error(a, n, atol=1e-8, rtol=1e-5) == pytest.approx(expected)
    with pytest.raises(ValueError, match="shapes differ"):
        gradient_error(a, n[:2], atol=1e-8, rtol=1e-5)


def test_check_module_restores_buffers(rng):
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    before = {k: v.copy() for k, v in bn.state_dict().items()}
    assert check_module(bn, rng.standard_normal((3, 2, 2, 2))).passed
    after = bn.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_every_subpackage_is_reachable_after_import_glasscnn():
    """``import glasscnn`` then ``glasscnn.gradcheck`` (and the others), in a fresh process."""
    import subprocess
    import sys

    code = ("import glasscnn\n"
            "assert callable(glasscnn.gradcheck.check_module)\n"
            "assert callable(glasscnn.analysis.analyze)\n"
            "assert glasscnn.nn.Conv2d and glasscnn.optim and glasscnn.kernels\n"
            "assert glasscnn.train and glasscnn.io and glasscnn.data and glasscnn.models\n"
            "assert set(glasscnn.SUBPACKAGES) <= set(dir(glasscnn))\n"
            "try:\n    glasscnn.nonsense\nexcept AttributeError as e:\n"
            "    assert 'nonsense' in str(e)\nelse:\n    raise SystemExit(1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
