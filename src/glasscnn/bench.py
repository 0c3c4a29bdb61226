"""Benchmark glasscnn's fast path against PyTorch on the CPU, both in one process.

Every workload is timed interleaved (glasscnn run, torch run, glasscnn run, ...) after
untimed warm-up runs, and reported as min / median / max milliseconds and the ratio of the
medians, glasscnn ÷ torch. The thread settings must be in the environment before NumPy
and torch are imported (OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` when it loads):
:func:`required_env` lists them and :func:`env_ready` says whether this process has them;
``glasscnn bench`` re-executes itself with them when it does not.

FLOPs count 2 per multiply-accumulate of the conv and fc layers (forward) and 3× that for a
training step (forward, input gradient, weight gradient); GFLOP/s are set against sgemm
2048³ measured in the same run. Memory: see :func:`measure_memory`.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn import models as zoo_models
from glasscnn import nn as gnn
from glasscnn import optim
from glasscnn.analysis import analyze
from glasscnn.io import to_torch
from glasscnn.kernels._common import conv_output_size
from glasscnn.kernels._parallel import ENV as THREADS_ENV
from glasscnn.kernels._parallel import blas_core, blas_found, single_threaded
from glasscnn.kernels._parallel import threads as kernel_threads
from glasscnn.kernels.conv import choice as conv_choice
from glasscnn.kernels.conv import winograd
from glasscnn.models import zoo
from glasscnn.optim.optimizer import Optimizer

THREADS = 2
ENV = {
    "OPENBLAS_THREAD_TIMEOUT": "4",  # idle OpenBLAS threads sleep instead of spinning
    "OMP_WAIT_POLICY": "PASSIVE",  # likewise torch's OpenMP threads
}
WORKLOADS = ("alexnet_b1", "alexnet_b64", "three_layer", "vgg", "lenet_bn", "depthwise",
             "grouped", "epoch", "kernels", "memory", "resnet18_b1", "resnet18_b16",
             "resnet50_b1", "resnet50_memory", "mobilenet_v2_b1")
# untimed runs of each library before a step workload is timed: at least the calls in
# which GLASSCNN_WINOGRAD=auto times Winograd against the GEMM path in turn
WARMUP = max(2, 2 * winograd.TRIALS)
TARGETS = {"alexnet_b1": 0.8, "alexnet_b64": 1.2, "three_layer": 1.2, "vgg": 1.5,
           "lenet_bn": 1.8, "depthwise": 2.0, "grouped": 2.0, "resnet18_b1": 1.3,
           "resnet18_b16": 1.3, "resnet50_b1": 1.5,
           "mobilenet_v2_b1": 2.0}
# torchvision networks timed in inference at 224×224: workload → (zoo name, batch)
ZOO_INFERENCE = {"resnet18_b1": ("resnet18", 1), "resnet18_b16": ("resnet18", 16),
                 "resnet50_b1": ("resnet50", 1), "mobilenet_v2_b1": ("mobilenet_v2", 1)}
# one conv layer's forward + backward (input gradient included), batch 16: MobileNetV2's
# depthwise 3×3 on 144 channels at 56×56, and AlexNet's (2012) two-group conv2
CONV_LAYERS = {
    "depthwise": ((16, 144, 56, 56), {"in_channels": 144, "out_channels": 144,
                                      "kernel_size": 3, "padding": 1, "groups": 144,
                                      "bias": False}),
    "grouped": ((16, 96, 27, 27), {"in_channels": 96, "out_channels": 256, "kernel_size": 5,
                                   "padding": 2, "groups": 2}),
}


def required_env() -> dict[str, str]:
    """The environment variables the benchmark needs set before NumPy and torch load."""
    return dict(ENV)


def env_ready() -> bool:
    """Whether this process was started with every variable of :func:`required_env`."""
    return all(os.environ.get(k) == v for k, v in ENV.items())


@dataclass
class Timing:
    """Wall-clock times in seconds of one workload, glasscnn and (optionally) torch."""

    name: str
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    flops: float = 0.0
    unit: str = "ms"

    def ratio(self) -> float | None:
        """Median glasscnn time ÷ median torch time, or None without torch."""
        if not self.theirs:
            return None
        return statistics.median(self.ours) / statistics.median(self.theirs)


def interleave(ours: Callable[[], Any], theirs: Callable[[], Any] | None, repeat: int,
               warmup: int = 2) -> tuple[list[float], list[float]]:
    """Time ``ours`` and ``theirs`` alternately ``repeat`` times after ``warmup`` untimed runs.

    Returns:
        ``(our_seconds, their_seconds)``, each of length ``repeat`` (the second empty when
        ``theirs`` is None).
    """
    fns = [ours] if theirs is None else [ours, theirs]
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, store in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            store.append(time.perf_counter() - start)
    return times[0], (times[1] if theirs is not None else [])


def model_macs(model: gnn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of the weights of ``model`` for one input batch (N, C, H, W)."""
    return int(analyze(model, tuple(input_shape[1:]), batch_size=input_shape[0]).totals["macs"])


def measure_sgemm(n: int = 2048, repeat: int = 5) -> float:
    """Best float32 GEMM throughput n×n×n on this machine now, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9



def _batch(shape: tuple[int, ...], classes: int = 10, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, classes, size=shape[0])
    return x, y


def _train_step(model: gnn.Module, optimizer: Any) -> Callable[[Any, Any], Any]:
    """glasscnn: zero the gradients, forward, cross-entropy, backward, update."""
    criterion = gnn.CrossEntropyLoss()

    def step(x: Any, y: Any) -> Any:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
        optimizer.step()
        return loss

    return step


def _torch_train_step(model: Any, optimizer: Any, torch: Any) -> Callable[[Any, Any], Any]:
    """torch: the same step (gradients set to None, as torch's default zero_grad)."""
    criterion = torch.nn.CrossEntropyLoss()

    def step(x: Any, y: Any) -> Any:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step


@dataclass
class StepCase:
    """A model, its optimizers and a batch, for both libraries."""

    model: gnn.Module
    ours: Callable[[], Any]
    theirs: Callable[[], Any] | None
    flops: float


def inference_case(batch: int, torch: Any | None) -> StepCase:
    """alexnet_cifar33 forward in evaluation mode on a batch of 3×33×33 images."""
    return zoo_inference_case("alexnet_cifar33", batch, torch, size=33)


def zoo_inference_case(name: str, batch: int, torch: Any | None, size: int = 224) -> StepCase:
    """Inference of zoo model ``name`` (e.g. ``resnet50``) on a batch of 3×``size``×``size``
    images: glasscnn's cache-free ``infer`` where the model has one (else its forward in
    evaluation mode), torch's ``to_torch`` twin under ``inference_mode``."""
    model = zoo_models.get(name).eval()
    run = getattr(model, "infer", model)
    x, _ = _batch((batch, 3, size, size))
    theirs = None
    if torch is not None:
        twin = to_torch(model, torch).eval()
        tx = torch.from_numpy(x)

        def theirs() -> Any:
            with torch.inference_mode():
                return twin(tx)

    return StepCase(model, lambda: run(x), theirs, 2.0 * model_macs(model, x.shape))


def measure_zoo_memory(torch: Any | None, name: str = "resnet50", batch: int = 16
                       ) -> dict[str, Any]:
    """Peak extra memory of one inference of ``name`` at 224×224 (as :func:`zoo_inference_case`).

    glasscnn: tracemalloc peak and RSS high-water-mark rise; torch (``inference_mode``):
    RSS high-water-mark rise. Model and input exist before, and one untimed forward of
    each runs first, so the figures are activations and workspace.
    """
    case = zoo_inference_case(name, batch, torch)
    case.ours()
    result: dict[str, Any] = {"name": name, "batch": batch,
                              "ours_traced": peak_traced(case.ours),
                              "ours_rss": peak_rss_delta(case.ours)}
    if case.theirs is not None:
        case.theirs()
        result["torch_rss"] = peak_rss_delta(case.theirs)
    return result


def training_case(name: str, batch: int, torch: Any | None, size: int = 32,
                  channels: int = 3) -> StepCase:
    """One training step of ``three_layer`` (Adam), ``vgg`` or ``lenet_bn`` (SGD momentum)."""
    builders = {"three_layer": zoo.three_layer_convnet, "vgg": zoo.vgg_cifar,
                "lenet_bn": zoo.lenet_bn}
    # the input is data: no gradient for it, as torch's input tensor has none
    model = builders[name](in_channels=channels, input_size=size).requires_input_grad_(False)
    x, y = _batch((batch, channels, size, size))

    def make_opt(params: Any, lib: Any) -> Any:
        if name == "three_layer":
            return lib.Adam(params, lr=1e-3)
        return lib.SGD(params, lr=0.01, momentum=0.9)

    theirs = None
    if torch is not None:
        twin = to_torch(model, torch).train()
        t_step = _torch_train_step(twin, make_opt(twin.parameters(), torch.optim), torch)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def theirs() -> Any:
            return t_step(tx, ty)

    ours_opt = make_opt(model.parameters(), optim)
    step = _train_step(model, ours_opt)
    return StepCase(model, lambda: step(x, y), theirs, 6.0 * model_macs(model, x.shape))


def conv_layer_case(name: str, torch: Any | None, batch: int | None = None) -> StepCase:
    """Forward and backward (input gradient included) of one conv layer of ``CONV_LAYERS``
    with a random upstream gradient; ``batch`` overrides its batch size."""
    shape, kwargs = CONV_LAYERS[name]
    shape = shape if batch is None else (batch, *shape[1:])
    layer = gnn.Conv2d(**kwargs, rng=np.random.default_rng(0))
    x, _ = _batch(shape)
    dout = np.random.default_rng(1).standard_normal(layer.output_shape(shape), dtype=np.float32)

    def ours() -> Any:
        layer(x)
        return layer.backward(dout)

    theirs = None
    if torch is not None:
        twin = to_torch(layer, torch)
        tx = torch.from_numpy(x).requires_grad_(True)
        tdout = torch.from_numpy(dout)

        def theirs() -> Any:
            twin(tx).backward(tdout)
            return tx.grad

    return StepCase(layer, ours, theirs, 6.0 * model_macs(layer, shape))


def epoch_case(torch: Any | None, batch: int = 128, max_batches: int | None = None,
               ) -> tuple[float, float | None, int]:
    """One epoch of lenet_bn on Fashion-MNIST through the real DataLoader, both libraries.

    The same loader order feeds both (same seed and epoch); preprocessing (x/255 − 0.5)/0.5
    is NumPy in both. Returns ``(glasscnn seconds, torch seconds or None, images)``.
    """
    from glasscnn.data import DataLoader, load_fashion_mnist

    data = load_fashion_mnist(split="train")
    loader = DataLoader(data, batch, shuffle=True, seed=0)

    def batches() -> Iterator[tuple[Any, Any]]:
        loader.set_epoch(0)
        for i, (images, labels) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                return
            x = images.astype(np.float32)
            x *= 2 / 255
            x -= 1
            yield x, np.asarray(labels, dtype=np.int64)

    model = zoo.lenet_bn(in_channels=1, input_size=28, seed=0).requires_input_grad_(False)
    twin = None if torch is None else to_torch(model, torch).train()  # the same start
    step = _train_step(model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    images = 0
    start = time.perf_counter()
    for x, y in batches():
        step(x, y)
        images += len(y)
    ours = time.perf_counter() - start
    theirs = None
    if twin is not None:
        t_step = _torch_train_step(twin, torch.optim.SGD(twin.parameters(), lr=0.01,
                                                         momentum=0.9), torch)
        start = time.perf_counter()
        for x, y in batches():
            t_step(torch.from_numpy(x), torch.from_numpy(y))
        theirs = time.perf_counter() - start
    return ours, theirs, images


def kernel_cases() -> list[tuple[str, Callable[[str], Any]]]:
    """Fast-vs-naive cases on the seed sizes; each callable takes ``impl`` and runs once.

    conv2d: 2×3×32×32 with 32 7×7 filters (the three-layer convnet's), and alexnet conv3 at batch 1
    (256→384, 3×3 pad 1 on 6×6); max_pool2d: alexnet pool1 at batch 2 (3×3 s2 on 96×27×27)
    and the VGG 2×2 s2 pool at batch 4 on 32×32×32.
    """
    rng = np.random.default_rng(1)
    cases = []
    conv_sizes = [((2, 3, 32, 32), (32, 3, 7, 7), 0), ((1, 256, 6, 6), (384, 256, 3, 3), 1)]
    for xs, ws, pad in conv_sizes:
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32)
        label = f"conv2d {'x'.join(map(str, xs))} w{'x'.join(map(str, ws))} p{pad}"
        cases.append((label + " fwd",
                      lambda impl, x=x, w=w, pad=pad: K.conv2d_forward(x, w, None, 1, pad,
                                                                       impl=impl)))
        cases.append((label + " bwd", _backward_case(
            lambda impl, x=x, w=w, pad=pad: K.conv2d_forward(x, w, None, 1, pad, impl=impl),
            K.conv2d_backward, rng)))
    for xs, k, s in [((2, 96, 27, 27), 3, 2), ((4, 32, 32, 32), 2, 2)]:
        x = rng.standard_normal(xs, dtype=np.float32)
        label = f"max_pool2d {'x'.join(map(str, xs))} k{k} s{s}"
        cases.append((label + " fwd",
                      lambda impl, x=x, k=k, s=s: K.max_pool2d_forward(x, k, s, impl=impl)))
        cases.append((label + " bwd", _backward_case(
            lambda impl, x=x, k=k, s=s: K.max_pool2d_forward(x, k, s, impl=impl),
            K.max_pool2d_backward, rng)))
    return cases


def _backward_case(forward: Callable[[str], Any], backward: Callable[..., Any],
                   rng: np.random.Generator) -> Callable[[str], Any]:
    """A callable running only ``backward`` on a cache made once per impl; both impls get
    the same upstream gradient."""
    made: dict[str, Any] = {}
    douts: list[Any] = []

    def run(impl: str) -> Any:
        if impl not in made:
            out, made[impl] = forward(impl)
            if not douts:
                douts.append(rng.standard_normal(out.shape).astype(out.dtype))
        return backward(douts[0], made[impl])

    return run



def _proc_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_delta(fn: Callable[[], Any]) -> int | None:
    """Bytes by which the resident set's high-water mark rose above the RSS before ``fn``.

    Linux only: returns freed heap pages to the system (glibc ``malloc_trim``) so that
    memory kept from an earlier step does not hide this one's, resets ``VmHWM`` through
    ``/proc/self/clear_refs`` and reads ``/proc/self/status``; None where that is not possible.
    """
    gc.collect()
    _malloc_trim()
    if not _reset_peak_rss():
        return None
    base = _proc_kib("VmRSS")
    fn()
    peak = _proc_kib("VmHWM")
    if base is None or peak is None:
        return None
    return max(0, peak - base) * 1024


def peak_traced(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated through Python's allocators (NumPy's included) during ``fn``."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure_memory(torch: Any | None) -> dict[str, Any]:
    """Peak extra memory of one vgg_cifar SGD step (after warm-up), at batch 128 and 1,024.

    glasscnn: tracemalloc peak (NumPy reports its buffers to tracemalloc) and the RSS
    high-water-mark rise; torch: the RSS high-water-mark rise (its allocator is invisible
    to tracemalloc). Model, optimizer state and the input batch exist before the
    measurement, so the figures are activations, gradients and workspace.
    """
    result: dict[str, Any] = {}
    for batch in (128, 1024):
        case = training_case("vgg", batch, torch if batch == 128 else None)
        case.ours()
        result[f"ours_traced_{batch}"] = peak_traced(case.ours)
        result[f"ours_rss_{batch}"] = peak_rss_delta(case.ours)
        if case.theirs is not None:
            case.theirs()
            result[f"torch_rss_{batch}"] = peak_rss_delta(case.theirs)
        del case
        gc.collect()
    return result



def _ms(values: list[float]) -> str:
    return (f"{min(values) * 1e3:9.2f} {statistics.median(values) * 1e3:9.2f} "
            f"{max(values) * 1e3:9.2f}")


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"


def run_benchmark(workloads: tuple[str, ...] = WORKLOADS, compare_torch: bool = True,
                  repeat: int = 10, epoch_batches: int | None = None,
                  echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the chosen workloads and print the report line by line through ``echo``.

    Args:
        workloads: names from ``WORKLOADS``.
        compare_torch: time torch twins alongside (needs torch installed).
        repeat: timed runs per workload (the epoch runs once).
        epoch_batches: stop the Fashion-MNIST epoch after this many batches (None: whole).
        echo: where each line of the report goes.

    Returns:
        ``{"timings": [Timing], "sgemm_gflops": float, "memory": dict or None, ...}``.
    """
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"bench: unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    torch = None
    if compare_torch:
        import torch

        torch.set_num_threads(THREADS)
    if not env_ready():
        echo("warning: thread settings not in the environment "
             f"({' '.join(f'{k}={v}' for k, v in ENV.items())}); ratios may be wrong")
    peak = measure_sgemm()
    echo(f"threads {THREADS}; " + " ".join(f"{k}={os.environ.get(k, '')}" for k in ENV))
    echo(f"glasscnn kernel threads {kernel_threads()} ({THREADS_ENV}="
         f"{os.environ.get(THREADS_ENV, '')}); NumPy's OpenBLAS "
         + ("found" if blas_found() else "not found: kernel thread pool off")
         + (f", kernels {blas_core()} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')})"
            if blas_core() else ""))
    echo(f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch else ""))
    echo(f"sgemm 2048³ float32 peak: {peak:.1f} GFLOP/s (measured now)")
    echo("")
    report: dict[str, Any] = {"sgemm_gflops": peak, "timings": [], "memory": None}
    head = (f"{'workload':<34} {'ours min/med/max ms':>29}  {'torch min/med/max ms':>29}  "
            f"{'ratio':>6} {'target':>6}  {'GFLOP/s ours/torch (% peak)':>28}")
    step_names = {
        "alexnet_b1": "alexnet_cifar33 infer b1",
        "alexnet_b64": "alexnet_cifar33 infer b64",
        "three_layer": "three_layer Adam step b50",
        "vgg": "vgg_cifar SGD-m step b128",
        "lenet_bn": "lenet_bn SGD-m step b128",
        "depthwise": "depthwise 3x3 144@56x56 f+b b16",
        "grouped": "conv 96->256 5x5 g2 27x27 f+b b16",
        **{w: f"{n} infer b{b} 224x224" for w, (n, b) in ZOO_INFERENCE.items()},
    }
    printed_head = False
    for name in workloads:
        if name not in step_names:
            continue
        if not printed_head:
            echo(head)
            echo("-" * len(head))
            printed_head = True
        if name in ZOO_INFERENCE:
            case = zoo_inference_case(*ZOO_INFERENCE[name], torch)
        elif name.startswith("alexnet"):
            case = inference_case(1 if name == "alexnet_b1" else 64, torch)
        elif name in CONV_LAYERS:
            case = conv_layer_case(name, torch)
        else:
            batch = 50 if name == "three_layer" else 128
            case = training_case(name, batch, torch)
        reps = repeat * 3 if name == "alexnet_b1" else repeat
        ours, theirs = interleave(case.ours, case.theirs, reps, warmup=WARMUP)
        t = Timing(step_names[name], ours, theirs, case.flops)
        report["timings"].append(t)
        ratio = t.ratio()
        g_ours = case.flops / statistics.median(ours) / 1e9
        gflops = f"{g_ours:6.1f} ({100 * g_ours / peak:3.0f}%)"
        if theirs:
            g_t = case.flops / statistics.median(theirs) / 1e9
            gflops += f" / {g_t:6.1f} ({100 * g_t / peak:3.0f}%)"
        echo(f"{t.name:<34} {_ms(ours):>29}  {_ms(theirs) if theirs else '—':>29}  "
             f"{'—' if ratio is None else f'{ratio:6.2f}':>6} {TARGETS[name]:>6.1f}  {gflops}")
    if printed_head:
        _winograd_report(echo, report)
    if "epoch" in workloads:
        _epoch_report(torch, epoch_batches, echo, report)
    if "kernels" in workloads:
        _kernel_report(echo, report)
    if "memory" in workloads:
        _memory_report(torch, echo, report)
    if "resnet50_memory" in workloads:
        _zoo_memory_report(torch, echo, report)
    return report


def _winograd_report(echo: Callable[[str], None], report: dict[str, Any]) -> None:
    """Print which kernel ``GLASSCNN_WINOGRAD=auto`` chose for each layer it measured."""
    report["winograd"] = winograd.timings()
    if not report["winograd"]:
        return
    echo("")
    echo(f"Winograd or GEMMs (im2col, or kernel rows), measured per layer "
         f"({winograd.MODE_ENV}={winograd.mode}; best of {winograd.TRIALS} calls, ms):")
    for key, (wino, gemm) in report["winograd"].items():
        direction, x_shape, w_shape, padding = key[:4]
        out_hw = tuple(conv_output_size(x_shape[2 + a], w_shape[2 + a], 1, padding[a])
                       for a in (0, 1))  # Winograd layers: stride 1, no dilation
        path = "rows" if conv_choice.rows_apply(w_shape, (1, 1), out_hw) else "im2col"
        echo(f"  {direction:<8} x {'x'.join(map(str, x_shape))} w {'x'.join(map(str, w_shape))}: "
             f"winograd {wino * 1e3:.2f}, {path} {gemm * 1e3:.2f} -> "
             + ("winograd" if wino < gemm else path))


def _epoch_report(torch: Any, epoch_batches: int | None, echo: Callable[[str], None],
                  report: dict[str, Any]) -> None:
    echo("")
    try:
        ours, theirs, images = epoch_case(torch, max_batches=epoch_batches)
    except FileNotFoundError as err:
        echo(f"lenet_bn Fashion-MNIST epoch: skipped ({err})")
        return
    line = (f"lenet_bn Fashion-MNIST epoch (DataLoader, b128, {images} images): "
            f"ours {images / ours:,.0f} img/s ({ours:.1f} s)")
    if theirs is not None:
        line += f", torch {images / theirs:,.0f} img/s ({theirs:.1f} s), ratio {ours / theirs:.2f}"
    echo(line)
    report["epoch"] = {"ours_s": ours, "torch_s": theirs, "images": images}


def _kernel_report(echo: Callable[[str], None], report: dict[str, Any]) -> None:
    echo("")
    head = f"{'fast vs naive':<50} {'naive ms':>10} {'fast ms':>9} {'speed-up':>9}"
    echo(head)
    echo("-" * len(head))
    rows = []
    for label, fn in kernel_cases():
        naive, _ = interleave(lambda fn=fn: fn("naive"), None, 1, warmup=0)
        fast, _ = interleave(lambda fn=fn: fn("fast"), None, 10, warmup=1)
        n_s, f_s = min(naive), statistics.median(fast)
        rows.append((label, n_s, f_s))
        echo(f"{label:<50} {n_s * 1e3:10.1f} {f_s * 1e3:9.3f} {n_s / f_s:8.0f}x")
    report["kernels"] = rows


def _memory_report(torch: Any, echo: Callable[[str], None], report: dict[str, Any]) -> None:
    echo("")
    mem = measure_memory(torch)
    report["memory"] = mem
    echo("peak extra memory of one vgg_cifar SGD step (tracemalloc peak for glasscnn; "
         "RSS high-water-mark rise for both):")
    echo(f"  batch 128:  glasscnn {_mib(mem['ours_traced_128'])} traced, "
         f"{_mib(mem['ours_rss_128'])} RSS;  torch {_mib(mem.get('torch_rss_128'))} RSS")
    echo(f"  batch 1024: glasscnn {_mib(mem['ours_traced_1024'])} traced, "
         f"{_mib(mem['ours_rss_1024'])} RSS")
    if mem.get("torch_rss_128"):
        echo(f"  glasscnn ÷ torch at 128: traced ÷ torch RSS "
             f"{mem['ours_traced_128'] / mem['torch_rss_128']:.2f}, RSS ÷ RSS "
             f"{(mem['ours_rss_128'] or 0) / mem['torch_rss_128']:.2f}  (target ≤ 2)")
    echo(f"  batch 1024 ÷ batch 128 (traced): "
         f"{mem['ours_traced_1024'] / mem['ours_traced_128']:.2f}  (target ≤ 8)")



def _zoo_memory_report(torch: Any, echo: Callable[[str], None], report: dict[str, Any]) -> None:
    echo("")
    mem = measure_zoo_memory(torch)
    report["zoo_memory"] = mem
    echo(f"peak extra memory of one {mem['name']} inference, batch {mem['batch']}, 224x224 "
         "(tracemalloc peak for glasscnn; RSS high-water-mark rise for both): "
         f"glasscnn {_mib(mem['ours_traced'])} traced, {_mib(mem['ours_rss'])} RSS;  "
         f"torch {_mib(mem.get('torch_rss'))} RSS")
    if mem.get("torch_rss"):
        echo(f"  glasscnn ÷ torch: traced ÷ RSS {mem['ours_traced'] / mem['torch_rss']:.2f}, "
             f"RSS ÷ RSS {(mem['ours_rss'] or 0) / mem['torch_rss']:.2f}  (target ≤ 2)")


CATEGORIES = ("GEMM", "im2col", "col2im", "pooling", "elementwise", "optimizer", "other")
# NumPy functions timed by the profile; the rest (and operators such as += and @) count as
# "other", with the Python overhead of every layer
_PROFILED = ("matmul", "copyto", "maximum", "minimum", "greater", "equal", "multiply", "add",
             "subtract", "divide", "sqrt", "exp", "log", "logical_not", "logical_and",
             "logical_xor", "sum", "mean",
             "empty", "zeros", "ones", "empty_like", "zeros_like")


def _category(numpy_name: str, path: str, caller: str) -> str:
    """The category of a NumPy call ``numpy_name`` made by function ``caller`` in ``path``.

    In the conv kernels: everything col2im does to col2im (its GEMM included), other GEMMs
    to GEMM, copies and buffers (window copies, padding, the transposed conv's dout
    windows, layout changes of dout) to im2col, ufuncs (bias, fused ReLU, its mask) to
    elementwise. In the Winograd kernels: the 16 or 36 products to GEMM, the tile gathering,
    the transforms (small GEMMs) and the copies of dout's tiles and of dx to im2col; bias,
    ReLU, its mask and the overlap-add of dx's tiles to elementwise. Calls
    from linear.py and the thread pool's matmul: GEMM; pool.py: pooling; the optimizers:
    optimizer; other kernels: elementwise.
    """
    path = path.replace("\\", "/")
    if "/glasscnn/kernels/conv/winograd.py" in path:
        if caller == "_products":
            return "GEMM"
        elementwise = ("add", "maximum", "greater", "multiply")
        return "elementwise" if numpy_name in elementwise else "im2col"
    if "/glasscnn/kernels/conv/" in path:
        if caller == "_dx_col2im":
            return "col2im"
        if numpy_name == "matmul":
            return "GEMM"
        return "im2col" if numpy_name in ("copyto", "zeros", "empty") else "elementwise"
    if "/glasscnn/kernels/_parallel.py" in path:
        return "GEMM"
    if "/glasscnn/kernels/linear.py" in path:
        return "GEMM" if numpy_name == "matmul" else "elementwise"
    if "/glasscnn/kernels/pool.py" in path or "/glasscnn/kernels/adaptive_pool.py" in path:
        return "pooling"
    if "/glasscnn/kernels/" in path:
        return "elementwise"
    if "/glasscnn/optim/" in path:
        return "optimizer"
    return "other"


class _TimedNumpy:
    """Stands in for one NumPy function during a profile: adds its run time to the category
    of the function that called it; anything else (``np.add.reduce``, ...) is passed on."""

    def __init__(self, name: str, fn: Any, totals: dict[str, float]) -> None:
        self._name, self._fn, self._totals = name, fn, totals

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        code = sys._getframe(1).f_code
        start = time.perf_counter()
        try:
            return self._fn(*args, **kwargs)
        finally:
            cat = _category(self._name, code.co_filename, code.co_name)
            self._totals[cat] += time.perf_counter() - start

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._fn, attr)


def profile_step(name: str = "vgg", batch: int = 128, steps: int = 5) -> dict[str, float]:
    """Seconds per step spent in each of ``CATEGORIES`` during a training step.

    Technique: for the timed steps the NumPy functions of ``_PROFILED`` are replaced by
    timers that charge each call to a category chosen from the NumPy function and the
    kernel function that called it (:func:`_category`); "other" is the rest of the step's
    wall time (Python, operators such as ``+=``, NumPy functions not listed), except that
    the optimizer's ``zero_grad`` and ``step`` are charged to "optimizer" whole. The step runs
    single-threaded (``glasscnn.kernels._parallel.single_threaded``), so the categories add
    up to the step's time on one thread, not to the wall time of a two-thread step.
    """
    case = training_case(name, batch, None)
    totals = dict.fromkeys(CATEGORIES, 0.0)
    originals = {n: getattr(np, n) for n in _PROFILED}
    opt_methods = {m: getattr(Optimizer, m) for m in ("step", "zero_grad")}
    with single_threaded():
        for _ in range(2):
            case.ours()
        try:
            for n, fn in originals.items():
                setattr(np, n, _TimedNumpy(n, fn, totals))
            for m, fn in opt_methods.items():
                setattr(Optimizer, m, _charged_to_optimizer(fn, totals))
            start = time.perf_counter()
            for _ in range(steps):
                case.ours()
            wall = time.perf_counter() - start
        finally:
            for n, fn in originals.items():
                setattr(np, n, fn)
            for m, fn in opt_methods.items():
                setattr(Optimizer, m, fn)
    totals["other"] += wall - sum(totals.values())
    return {k: v / steps for k, v in totals.items()}


def _charged_to_optimizer(method: Any, totals: dict[str, float]) -> Callable[..., Any]:
    """``method`` with its whole wall time (NumPy calls, operators, Python) charged to
    "optimizer" instead of wherever its NumPy calls would go."""
    def timed(self: Any) -> Any:
        before = dict(totals)
        start = time.perf_counter()
        try:
            return method(self)
        finally:
            totals.update(before)
            totals["optimizer"] += time.perf_counter() - start
    return timed


def print_profile(profile: dict[str, float], echo: Callable[[str], None] = print) -> None:
    """Print a profile from :func:`profile_step` as ms per step and percent."""
    total = sum(profile.values()) or 1.0
    echo(f"{'category':<12} {'ms/step':>9} {'share':>7}")
    for cat, sec in profile.items():
        echo(f"{cat:<12} {sec * 1e3:9.1f} {100 * sec / total:6.1f}%")
    echo(f"{'total':<12} {total * 1e3:9.1f}")
