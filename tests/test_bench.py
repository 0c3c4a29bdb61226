"""The benchmark against PyTorch: environment, timing, cases, memory, report, profile, CLI.

Nothing here asserts on a time or a speed ratio; the sizes are cut down (through
monkeypatch where the benchmark fixes them) so that the whole file runs in seconds.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest
from datasets_helper import load_or_skip

from glasscnn import bench
from glasscnn.analysis import analyze
from glasscnn.cli.commands import bench as bench_cmd
from glasscnn.cli.main import build_parser, main
from glasscnn.models import zoo
from glasscnn.optim.optimizer import Optimizer

LENET_MACS = 6 * 75 * 28 * 28 + 16 * 150 * 10 * 10 + 400 * 120 + 120 * 84 + 84 * 10
STEP_WORKLOADS = ("alexnet_b1", "alexnet_b64", "three_layer", "vgg", "lenet_bn", "depthwise",
                  "grouped", "resnet18_b1", "resnet18_b16", "resnet50_b1", "mobilenet_v2_b1")
HEADER = "threads 2; OPENBLAS_THREAD_TIMEOUT=4 OMP_WAIT_POLICY=PASSIVE"
WARNING = "warning: thread settings not in the environment"


class Reexec(Exception):
    """Raised instead of ``os.execve``, so that no test replaces the pytest process."""


@pytest.fixture
def execs(monkeypatch):
    """Records every ``os.execve`` call of ``glasscnn bench`` and stops it."""
    calls = []

    def execve(path, argv, env):
        calls.append((path, argv, env))
        raise Reexec

    monkeypatch.setattr(os, "execve", execve)
    return calls


@pytest.fixture
def ready_env(monkeypatch):
    for key, value in bench.required_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GLASSCNN_BENCH_REEXEC", raising=False)


@pytest.fixture
def quick(monkeypatch):
    """The benchmark at tiny sizes: no sgemm run, small batches, two cheap kernel cases."""
    cases = {"training": bench.training_case, "inference": bench.inference_case,
             "kernels": bench.kernel_cases}
    monkeypatch.setattr(bench, "measure_sgemm", lambda: 100.0)
    monkeypatch.setattr(bench, "training_case",
                        lambda name, batch, torch: cases["training"](name, 2, torch))
    monkeypatch.setattr(bench, "inference_case",
                        lambda batch, torch: cases["inference"](1, torch))
    monkeypatch.setattr(bench, "kernel_cases", lambda: [
        c for c in cases["kernels"]() if c[0].startswith("max_pool2d 4x")])


def test_required_env_is_a_copy():
    env = bench.required_env()
    assert env == {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert bench.required_env()["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize(("env", "ready"), [
    ({"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}, True),
    ({"OPENBLAS_THREAD_TIMEOUT": "4"}, False),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, False),
    ({"OPENBLAS_THREAD_TIMEOUT": "1", "OMP_WAIT_POLICY": "PASSIVE"}, False),
    ({"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "passive"}, False),
    ({}, False),
])
def test_env_ready(monkeypatch, env, ready):
    for key in bench.required_env():
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert bench.env_ready() is ready


def test_timing_ratio():
    t = bench.Timing("w", [3.0, 1.0, 2.0], [1.0, 4.0, 0.5])
    assert t.ratio() == 2.0
    assert (t.flops, t.unit) == (0.0, "ms")
    assert bench.Timing("w", [1.0]).ratio() is None


@pytest.mark.parametrize("with_theirs", [False, True])
@pytest.mark.parametrize(("repeat", "warmup"), [(1, 0), (3, 2), (4, 1)])
def test_interleave_alternates_after_warmup(with_theirs, repeat, warmup):
    calls = []
    theirs = (lambda: calls.append("t")) if with_theirs else None
    ours, their_times = bench.interleave(lambda: calls.append("o"), theirs, repeat,
                                         warmup=warmup)
    assert len(ours) == repeat
    if with_theirs:
        assert calls == ["o"] * warmup + ["t"] * warmup + ["o", "t"] * repeat
        assert len(their_times) == repeat
    else:
        assert calls == ["o"] * (warmup + repeat)
        assert their_times == []
    for times in (ours, their_times):
        if times:
            assert all(s >= 0 for s in times)
            assert min(times) <= statistics.median(times) <= max(times)


def test_interleave_default_warmup_is_two():
    calls = []
    bench.interleave(lambda: calls.append(1), None, 1)
    assert len(calls) == 3


@pytest.mark.parametrize(("model", "shape", "macs"), [
    (zoo.lenet_bn, (1, 3, 32, 32), LENET_MACS),
    (zoo.lenet_bn, (4, 3, 32, 32), 4 * LENET_MACS),
    (zoo.mnist_net, (2, 1, 28, 28), 2 * 338_112),
])
def test_model_macs_hand_count(model, shape, macs):
    assert bench.model_macs(model(), shape) == macs


def test_model_macs_agrees_with_analysis():
    model = zoo.three_layer_convnet()
    expected = analyze(model, (3, 32, 32), batch_size=5).totals["macs"]
    assert bench.model_macs(model, (5, 3, 32, 32)) == expected > 0


def test_training_case_flops_count_a_step():
    case = bench.training_case("lenet_bn", 8, None)
    assert case.flops == 6.0 * 8 * LENET_MACS
    assert case.theirs is None
    assert not case.model.input_grad


@pytest.mark.parametrize("name", ["three_layer", "vgg", "lenet_bn"])
def test_training_case_without_torch(name):
    case = bench.training_case(name, 2, None)
    assert case.theirs is None and case.model.training
    before = [p.data.copy() for p in case.model.parameters()]
    losses = [float(case.ours()) for _ in range(2)]
    assert all(math.isfinite(v) for v in losses)
    assert any(not np.array_equal(b, p.data) for b, p in zip(before, case.model.parameters(),
                                                             strict=True))


@pytest.mark.parametrize("name", ["three_layer", "vgg"])
def test_training_case_twin_takes_the_same_steps(torch, name):
    """No dropout in these: the first loss agrees, and so does the loss after one update."""
    case = bench.training_case(name, 4, torch)
    for _ in range(2):
        ours, theirs = float(case.ours()), float(case.theirs().item())
        assert ours == pytest.approx(theirs, rel=1e-4)


def test_training_case_twin_is_a_copy(torch):
    """lenet_bn has dropout, so the losses differ; the torch step leaves glasscnn's weights."""
    case = bench.training_case("lenet_bn", 4, torch)
    before = [p.data.copy() for p in case.model.parameters()]
    for _ in range(2):
        assert math.isfinite(float(case.theirs().item()))
    for b, p in zip(before, case.model.parameters(), strict=True):
        np.testing.assert_array_equal(b, p.data)
    assert math.isfinite(float(case.ours()))


@pytest.mark.parametrize("name", ["depthwise", "grouped"])
def test_conv_layer_case_runs_both_libraries_alike(torch, name):
    """The depthwise and grouped conv rows: the layer's shape, MACs, and glasscnn's input
    gradient equal to the twin's (the same weights and upstream gradient)."""
    case = bench.conv_layer_case(name, torch, batch=1)
    shape, kwargs = bench.CONV_LAYERS[name]
    assert case.model.groups == kwargs["groups"] and shape[0] == 16
    c_in_g = kwargs["in_channels"] // kwargs["groups"]
    out_shape = case.model.output_shape((1, *shape[1:]))
    assert case.flops == 6.0 * np.prod(out_shape) * c_in_g * kwargs["kernel_size"] ** 2
    dx = case.ours()
    np.testing.assert_allclose(dx, case.theirs().numpy(), rtol=1e-4, atol=1e-4)


def test_training_case_rejects_unknown_model():
    with pytest.raises(KeyError):
        bench.training_case("resnet", 2, None)


@pytest.mark.parametrize("batch", [1, 3])
def test_inference_case_without_torch(batch):
    case = bench.inference_case(batch, None)
    assert case.theirs is None and not case.model.training
    assert case.ours().shape == (batch, 10)
    assert case.flops == 2.0 * bench.model_macs(case.model, (batch, 3, 33, 33))


def test_inference_case_twin_gives_the_same_logits(torch):
    case = bench.inference_case(2, torch)
    ours, theirs = case.ours(), case.theirs().numpy()
    assert ours.shape == theirs.shape == (2, 10)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.fixture
def fashion_mnist():
    load_or_skip("fashion-mnist", "train")


@pytest.mark.usefixtures("fashion_mnist")
def test_epoch_case_stops_after_max_batches(torch):
    ours, theirs, images = bench.epoch_case(torch, batch=16, max_batches=2)
    assert images == 32
    assert ours > 0 and theirs is not None and theirs > 0
    ours, theirs, images = bench.epoch_case(None, batch=8, max_batches=1)
    assert images == 8 and ours > 0 and theirs is None


def test_kernel_cases_fast_matches_naive():
    cases = bench.kernel_cases()
    labels = [label for label, _ in cases]
    assert len(set(labels)) == len(labels) == 8
    assert [label.rsplit(" ", 1)[1] for label in labels] == ["fwd", "bwd"] * 4
    for label, fn in cases:
        if label.endswith("fwd"):
            np.testing.assert_allclose(fn("naive")[0], fn("fast")[0], rtol=1e-4, atol=1e-3)
        elif label.startswith("max_pool2d"):  # both impls get the same upstream gradient
            np.testing.assert_allclose(fn("naive")[0], fn("fast")[0], rtol=1e-5, atol=1e-5)
        else:
            assert all(g is None or np.isfinite(g).all() for g in fn("fast"))


def test_peak_traced_sees_an_allocation():
    nbytes = 8 * 2**20
    assert bench.peak_traced(lambda: np.ones(nbytes // 8)) >= nbytes
    assert bench.peak_traced(lambda: None) < nbytes


def test_peak_traced_stops_tracing_after_an_error():
    def fail():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        bench.peak_traced(fail)
    import tracemalloc

    assert not tracemalloc.is_tracing()


def test_peak_rss_delta_sees_touched_pages():
    nbytes = 32 * 2**20
    delta = bench.peak_rss_delta(lambda: np.ones(nbytes // 8))
    if delta is None:
        pytest.skip("no /proc/self/clear_refs here: RSS high-water mark not measurable")
    assert delta >= nbytes // 2


def test_peak_rss_delta_none_without_proc(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "_reset_peak_rss", lambda: False)
    assert bench.peak_rss_delta(lambda: calls.append(1)) is None
    monkeypatch.setattr(bench, "_reset_peak_rss", lambda: True)
    monkeypatch.setattr(bench, "_proc_kib", lambda name: None)
    assert bench.peak_rss_delta(lambda: calls.append(1)) is None
    assert calls == [1]


def test_measure_memory_at_small_batches(monkeypatch, torch):
    """measure_memory with its vgg batches 128 and 1,024 cut to lenet_bn at 2 and 16."""
    real = bench.training_case
    monkeypatch.setattr(bench, "training_case",
                        lambda name, batch, torch: real("lenet_bn", batch // 64, torch))
    mem = bench.measure_memory(torch)
    assert set(mem) == {"ours_traced_128", "ours_rss_128", "torch_rss_128", "ours_traced_1024",
                        "ours_rss_1024"}
    assert mem["ours_traced_1024"] > mem["ours_traced_128"] > 0
    for key in ("ours_rss_128", "torch_rss_128", "ours_rss_1024"):
        assert mem[key] is None or mem[key] >= 0


def test_run_benchmark_rejects_unknown_workloads():
    with pytest.raises(ValueError, match="unknown workloads"):
        bench.run_benchmark(("lenet_bn", "nope"), compare_torch=False, echo=print)


@pytest.mark.usefixtures("quick", "ready_env")
def test_run_benchmark_without_torch():
    lines = []
    report = bench.run_benchmark(("lenet_bn", "alexnet_b1", "kernels"), compare_torch=False,
                                 repeat=2, echo=lines.append)
    assert lines[0] == HEADER
    assert not any(WARNING in line for line in lines)
    assert lines[1].startswith("glasscnn kernel threads")
    assert lines[2] == f"numpy {np.__version__}"
    assert "100.0 GFLOP/s" in lines[3]
    assert report["sgemm_gflops"] == 100.0 and report["memory"] is None
    lenet, alexnet = report["timings"]
    assert (lenet.name, alexnet.name) == ("lenet_bn SGD-m step b128", "alexnet_cifar33 infer b1")
    assert (len(lenet.ours), len(alexnet.ours)) == (2, 6)
    assert lenet.theirs == alexnet.theirs == [] and lenet.ratio() is None
    assert lenet.flops == 6.0 * 2 * LENET_MACS
    rows = [line for line in lines if line.startswith(("lenet_bn", "alexnet"))]
    assert len(rows) == 2 and all("—" in row for row in rows)
    assert [k[0] for k in report["kernels"]] == ["max_pool2d 4x32x32x32 k2 s2 fwd",
                                                 "max_pool2d 4x32x32x32 k2 s2 bwd"]
    assert lines.count("-" * len(lines[lines.index(rows[0]) - 2])) == 1
    assert sum(line.startswith("max_pool2d") for line in lines) == 2
    assert "epoch" not in report


@pytest.mark.usefixtures("quick")
def test_run_benchmark_with_torch_warns_without_env(monkeypatch, torch):
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    for key in bench.required_env():
        monkeypatch.delenv(key, raising=False)
    lines = []
    report = bench.run_benchmark(("three_layer",), repeat=1, echo=lines.append)
    assert threads == [bench.THREADS]
    assert lines[0].startswith(WARNING)
    assert lines[1] == "threads 2; OPENBLAS_THREAD_TIMEOUT= OMP_WAIT_POLICY="
    assert lines[3] == f"numpy {np.__version__}, torch {torch.__version__}"
    (timing,) = report["timings"]
    assert len(timing.ours) == len(timing.theirs) == 1 and timing.ratio() > 0
    (row,) = [line for line in lines if line.startswith("three_layer Adam step b50")]
    assert "—" not in row and f"{bench.TARGETS['three_layer']:.1f}" in row


MEMORY = {"ours_traced_128": 2**20, "ours_rss_128": 3 * 2**20, "torch_rss_128": 2**21,
          "ours_traced_1024": 6 * 2**20, "ours_rss_1024": None}


@pytest.mark.usefixtures("quick", "ready_env")
@pytest.mark.parametrize("torch_rss", [True, False])
def test_run_benchmark_memory_report(monkeypatch, torch_rss):
    mem = dict(MEMORY) if torch_rss else {k: v for k, v in MEMORY.items() if "torch" not in k}
    monkeypatch.setattr(bench, "measure_memory", lambda torch: mem)
    lines = []
    report = bench.run_benchmark(("memory",), compare_torch=False, echo=lines.append)
    assert report["memory"] is mem and report["timings"] == []
    i = next(i for i, line in enumerate(lines) if line.startswith("peak extra memory"))
    torch_part = "torch 2.0 MiB RSS" if torch_rss else "torch n/a RSS"
    assert lines[i + 1] == f"  batch 128:  glasscnn 1.0 MiB traced, 3.0 MiB RSS;  {torch_part}"
    assert lines[i + 2] == "  batch 1024: glasscnn 6.0 MiB traced, n/a RSS"
    assert any("RSS ÷ RSS 1.50" in line for line in lines) is torch_rss
    assert lines[-1] == "  batch 1024 ÷ batch 128 (traced): 6.00  (target ≤ 8)"


@pytest.mark.usefixtures("quick", "ready_env")
def test_run_benchmark_epoch_line():
    lines = []
    report = bench.run_benchmark(("epoch",), compare_torch=False, epoch_batches=1,
                                 echo=lines.append)
    assert report["timings"] == []
    assert not any(line.startswith("workload") for line in lines)
    (line,) = [line for line in lines if line.startswith("lenet_bn Fashion-MNIST epoch")]
    if "skipped" in line:
        assert "epoch" not in report
    else:
        assert report["epoch"]["images"] == 128 and report["epoch"]["torch_s"] is None


def test_profile_step_categories():
    matmul, step = np.matmul, Optimizer.step
    profile = bench.profile_step("lenet_bn", batch=8, steps=1)
    assert isinstance(profile, dict)
    assert tuple(profile) == bench.CATEGORIES
    assert all(v >= 0 for v in profile.values())
    assert sum(profile.values()) > 0
    assert np.matmul is matmul and Optimizer.step is step


def test_profile_step_restores_numpy_after_an_error(monkeypatch):
    real = bench.training_case("lenet_bn", 2, None)
    calls = []

    def ours():
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("step failed")
        return real.ours()

    monkeypatch.setattr(bench, "training_case", lambda name, batch, torch: bench.StepCase(
        real.model, ours, None, real.flops))
    originals = {n: getattr(np, n) for n in bench._PROFILED}
    opt = {m: getattr(Optimizer, m) for m in ("step", "zero_grad")}
    with pytest.raises(RuntimeError, match="step failed"):
        bench.profile_step("lenet_bn", 2, 1)
    assert all(getattr(np, n) is fn for n, fn in originals.items())
    assert all(getattr(Optimizer, m) is fn for m, fn in opt.items())


def test_print_profile_lines():
    profile = dict.fromkeys(bench.CATEGORIES, 0.001)
    profile["GEMM"] = 0.003
    lines = []
    bench.print_profile(profile, echo=lines.append)
    assert len(lines) == len(bench.CATEGORIES) + 2
    assert lines[0].split() == ["category", "ms/step", "share"]
    assert [line.split()[0] for line in lines[1:-1]] == list(bench.CATEGORIES)
    assert lines[1].split() == ["GEMM", "3.0", "33.3%"]
    assert lines[-1].split() == ["total", "9.0"]


def test_cli_bench_help_lists_workloads(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "{" + ",".join(bench.WORKLOADS) + "}" in out.replace("\n", "").replace(" ", "")
    for option in ("--compare", "--workload", "--repeat", "--epoch-batches", "--profile"):
        assert option in out


@pytest.mark.usefixtures("execs")
def test_cli_bench_rejects_repeat_below_one(capsys):
    assert main(["bench", "--repeat", "0"]) == 1
    assert "--repeat must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["bench"],
    ["bench", "--repeat", "3", "--compare", "torch"],
    ["bench", "--workload", "vgg", "--workload", "epoch", "--epoch-batches", "2"],
    ["bench", "--profile", "--repeat", "1"],
])
def test_cli_bench_argv_reproduces_the_arguments(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    assert parser.parse_args(bench_cmd._argv(args)) == args


def test_cli_bench_reexecutes_with_the_thread_settings(monkeypatch, execs):
    for key in [*bench.required_env(), "GLASSCNN_BENCH_REEXEC"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GLASSCNN_TEST_MARKER", "kept")
    with pytest.raises(Reexec):
        main(["bench", "--workload", "kernels", "--repeat", "2"])
    ((path, argv, env),) = execs
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "glasscnn.cli.main", "bench", "--repeat", "2",
                    "--workload", "kernels"]
    assert env["GLASSCNN_BENCH_REEXEC"] == "1" and env["GLASSCNN_TEST_MARKER"] == "kept"
    assert all(env[k] == v for k, v in bench.required_env().items())


@pytest.mark.usefixtures("quick")
@pytest.mark.parametrize("settings", ["ready", "marker_only"])
def test_cli_bench_runs_in_process(monkeypatch, capsys, execs, settings):
    """With the settings, or after one re-execution (marker set), no second re-execution."""
    for key, value in bench.required_env().items():
        if settings == "ready":
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
    if settings == "marker_only":
        monkeypatch.setenv("GLASSCNN_BENCH_REEXEC", "1")
    assert main(["bench", "--workload", "kernels", "--repeat", "1"]) == 0
    assert execs == []
    out = capsys.readouterr().out
    assert (WARNING in out) is (settings == "marker_only")
    assert (HEADER in out) is (settings == "ready")
    assert "fast vs naive" in out and "max_pool2d 4x32x32x32 k2 s2 bwd" in out


@pytest.mark.usefixtures("ready_env")
def test_cli_bench_profile(monkeypatch, capsys, execs):
    seen = []

    def profile_step(name, batch, steps):
        seen.append((name, batch, steps))
        return bench.profile_step("lenet_bn", 4, 1)

    monkeypatch.setattr(bench_cmd, "profile_step", profile_step)
    assert main(["bench", "--profile", "--repeat", "2"]) == 0
    assert seen == [("vgg", 128, 2)] and execs == []
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("vgg_cifar SGD-momentum step, batch 128")
    assert len(lines) == len(bench.CATEGORIES) + 3 and lines[-1].startswith("total")


@pytest.mark.parametrize("settings", ["ready", "missing"])
def test_cli_bench_subprocess(settings):
    """A real ``glasscnn bench``; without the settings it re-executes itself with them."""
    env = {k: v for k, v in os.environ.items() if k != "GLASSCNN_BENCH_REEXEC"}
    for key, value in bench.required_env().items():
        if settings == "ready":
            env[key] = value
        else:
            env.pop(key, None)
    argv = [sys.executable, "-m", "glasscnn.cli.main", "bench", "--workload", "epoch",
            "--epoch-batches", "1", "--repeat", "1"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert HEADER in out.stdout.splitlines()
    assert WARNING not in out.stdout
    assert "lenet_bn Fashion-MNIST epoch" in out.stdout


def test_workloads_and_targets():
    assert set(bench.TARGETS) == set(STEP_WORKLOADS) <= set(bench.WORKLOADS)
    assert set(bench.WORKLOADS) - set(STEP_WORKLOADS) == {"epoch", "kernels", "memory",
                                                          "resnet50_memory"}
