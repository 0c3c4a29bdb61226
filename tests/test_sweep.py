"""glasscnn.sweep and ``glasscnn sweep``: spaces, refinement, local and two-node sweeps, a
killed worker resuming from its checkpoint, and the one-line errors.

The Ray sessions and clusters made here are stopped by the fixtures that start them.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from datasets_helper import load_or_skip

from glasscnn.checkpoint import load_checkpoint
from glasscnn.cli.main import main
from glasscnn.kernels._parallel import single_threaded
from glasscnn.sweep import Param, default_space, parse_param, parse_space, refine_space
from glasscnn.sweep import run as sweep
from glasscnn.train import Recipe, evaluate_checkpoint, train_run

SRC = str(Path(__file__).resolve().parents[1] / "src")
RECIPE = dict(model="lenet_bn", epochs=2, val_size=200, train_limit=300, batch_size=64)


# --- spaces (no Ray needed) ---------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("lr=loguniform(1e-4,1e-2)", Param("lr", "loguniform", (1e-4, 1e-2))),
    (" weight_decay = loguniform( 1e-6 , 1e-3 ) ", Param("weight_decay", "loguniform",
                                                         (1e-6, 1e-3))),
    ("momentum=uniform(0.8,0.99)", Param("momentum", "uniform", (0.8, 0.99))),
    ("batch_size=choice(32,64,128)", Param("batch_size", "choice", (32, 64, 128))),
    ("optimizer=choice(adam,sgd)", Param("optimizer", "choice", ("adam", "sgd"))),
    ("seed=randint(0,4)", Param("seed", "randint", (0, 4))),
    ("model.dropout=uniform(0,0.5)", Param("model.dropout", "uniform", (0.0, 0.5))),
])
def test_parse_param(text: str, expected: Param) -> None:
    param = parse_param(text)
    assert param == expected
    assert parse_param(str(param)).kind == expected.kind


@pytest.mark.parametrize("text, words", [
    ("lr", "expected NAME=KIND(ARGS)"),
    ("lr=loguniform(1e-4)", "two numbers"),
    ("lr=loguniform(1e-2,1e-4)", "low must be below high"),
    ("lr=loguniform(0,1e-2)", "0 < low"),
    ("lr=gaussian(0,1)", "unknown distribution"),
    ("lr=uniform(1e-4,)", "empty argument"),
    ("learning_rate=uniform(0,1)", "not a training option"),
    ("epochs=choice(1,2)", "is fixed for a sweep"),
    ("batch_size=uniform(16,64)", "integer"),
    ("lr=loguniform(1e-4,[1])", "two numbers"),
])
def test_parse_param_rejects(text: str, words: str) -> None:
    with pytest.raises(ValueError, match="--space") as info:
        parse_param(text)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_default_space(optimizer: str) -> None:
    space = default_space(optimizer)
    assert set(space) == {"lr", "weight_decay"}
    assert all(p.kind == "loguniform" and 0 < p.args[0] < p.args[1] for p in space.values())


def test_refine_space_rule() -> None:
    space = parse_space(["lr=loguniform(1e-4,1e-1)", "momentum=uniform(0.5,0.99)",
                         "optimizer=choice(adam,sgd,rmsprop)", "batch_size=randint(16,256)"])
    accuracy = [0.9, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1, math.nan]
    lrs = [1e-3, 1e-2, 1e-4, 1e-1, 5e-4, 5e-2, 2e-4, 3e-3]
    rows = [{"lr": lr, "momentum": 0.6 + 0.01 * i, "optimizer": ["sgd", "adam"][i % 2],
             "batch_size": 32 + i, "best_val_accuracy": a}
            for i, (lr, a) in enumerate(zip(lrs, accuracy, strict=True))]
    refined = refine_space(space, rows)
    # the best quarter of 7 scored trials, at least 2: lr 1e-3 and 1e-2, one decade apart,
    # widened by half a decade on each side
    low, high = refined["lr"].args
    assert math.log10(low) == pytest.approx(-3.5) and math.log10(high) == pytest.approx(-1.5)
    low, high = refined["momentum"].args
    # span 0.01, padded by 5 % of the old width (0.0245) on each side
    assert low == pytest.approx(0.5755) and high == pytest.approx(0.6345)
    assert refined["optimizer"].args == ("adam", "sgd")
    assert refined["batch_size"].args[0] <= 32 and refined["batch_size"].args[1] >= 34
    # a uniform range stays inside the old one; a log range may move past its edge
    edge = refine_space(space, [{**r, "lr": 1e-1, "momentum": 0.99} for r in rows[:2]])
    assert edge["momentum"].args[1] == pytest.approx(0.99)
    assert edge["lr"].args[1] > 1e-1
    with pytest.raises(ValueError, match="no trial"):
        refine_space(space, [{"lr": 1e-3, "best_val_accuracy": math.nan}])


def test_ray_is_imported_only_when_a_sweep_starts() -> None:
    code = ("import sys, glasscnn, glasscnn.sweep, glasscnn.cli.main; "
            "glasscnn.cli.main.build_parser(); print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": SRC}, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


# --- sweeps on a local Ray ----------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def no_ray_auth():
    """The clusters made here are private to the test: no token authentication."""
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    yield
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture(scope="module")
def data():
    train = load_or_skip("fashion-mnist", "train").subset(slice(0, 1000))
    test = load_or_skip("fashion-mnist", "test").subset(slice(0, 100))
    return train, test


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray session (2 CPUs) shared by the sweeps of this module."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def coarse(local_ray, data, tmp_path_factory):
    """A finished 3-trial sweep (lr and a model argument searched)."""
    out = tmp_path_factory.mktemp("coarse") / "sweep"
    lines: list[str] = []
    result = sweep(Recipe(**RECIPE), out, trials=3, datasets=data, log=lines.append,
                   space=["lr=loguniform(1e-3,3e-2)", "weight_decay=loguniform(1e-6,1e-3)"])
    return result, lines


def test_local_sweep_folder(coarse, data) -> None:
    result, lines = coarse
    out = result.out
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["trial", "lr", "weight_decay", "best_val_accuracy", "val_loss",
                             "best_epoch", "epochs", "seconds", "node", "host", "restores",
                             "status"]
    assert len(rows) == 3 and len({r["trial"] for r in rows}) == 3
    assert all(r["status"] == "done" and r["epochs"] == "2" and r["restores"] == "0"
               for r in rows)
    accuracies = [float(r["best_val_accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True) and 0 < accuracies[0] <= 1
    assert all(1e-3 <= float(r["lr"]) <= 3e-2 for r in rows)
    assert sum(line.startswith("trial ") for line in lines) == 3
    assert (out / "sweep.png").stat().st_size > 0
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["space"][0].startswith("lr=loguniform(") and meta["trials"] == 3
    assert "glasscnn train lenet_bn --data fashion-mnist" in result.retrain
    assert f"--lr {float(rows[0]['lr']):.3g}" in result.retrain
    assert "--train-limit" not in result.retrain


def test_best_checkpoint_is_a_train_run(coarse, data) -> None:
    """best/ holds what ``glasscnn train`` writes for the same recipe and seed, bit for bit."""
    result, _ = coarse
    best = result.out / "best"
    ckpt = load_checkpoint(best / "checkpoint.npz")
    assert ckpt.meta["model"] == "lenet_bn" and "best" in ckpt.groups
    history = json.loads((best / "history.json").read_text())
    assert history["best_val_accuracy"] == pytest.approx(result.best["best_val_accuracy"])
    scored = evaluate_checkpoint(best / "checkpoint.npz", weights="best", limit=50)
    assert scored["count"] == 50
    with single_threaded():
        again = train_run(result.best_recipe, best.parent / "retrain", log=lambda _: None,
                          plots=False, datasets=data)
    assert again.best_val_accuracy == result.best["best_val_accuracy"]
    retrained = load_checkpoint(best.parent / "retrain" / "checkpoint.npz")
    for name, value in ckpt.state_dict.items():
        np.testing.assert_array_equal(retrained.state_dict[name], value)


def test_refine_with_asha(coarse, data, tmp_path) -> None:
    result, _ = coarse
    lines: list[str] = []
    refined = sweep(Recipe(**RECIPE), tmp_path / "fine", trials=2, refine=result.out,
                    scheduler="asha", datasets=data, log=lines.append)
    expected = refine_space(result.space, result.rows)
    assert refined.space == expected
    for name in ("lr", "weight_decay"):
        low, high = refined.space[name].args
        assert all(low <= r[name] <= high for r in refined.rows)
    meta = json.loads((tmp_path / "fine" / "sweep.json").read_text())
    assert meta["refined_from"] == str(result.out) and meta["scheduler"] == "asha"
    assert len(refined.rows) == 2


def test_killed_worker_resumes(local_ray, data, tmp_path) -> None:
    """SIGKILL a trial's worker after its first checkpoint: it restarts from that epoch."""
    from ray import tune

    class KillOnce(tune.Callback):
        def __init__(self) -> None:
            self.killed: str | None = None

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
            if self.killed is None:
                self.killed = trial.trial_id
                os.kill(int(trial.last_result["pid"]), signal.SIGKILL)

    killer = KillOnce()
    result = sweep(Recipe(**{**RECIPE, "epochs": 3}), tmp_path / "sweep", trials=2,
                   datasets=data, callbacks=[killer], log=lambda _: None,
                   space=["lr=loguniform(1e-3,1e-2)"])
    assert killer.killed is not None
    rows = {r["trial"]: r for r in result.rows}
    assert len(rows) == 2 and all(r["status"] == "done" and r["epochs"] == 3
                                  for r in rows.values())
    assert rows[killer.killed]["restores"] == 1
    others = [r for t, r in rows.items() if t != killer.killed]
    assert others[0]["restores"] == 0


# --- the command line ---------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line_error(capsys, argv: list[str], words: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("glasscnn sweep: error:") and words in err
    assert "\n" not in err and "Traceback" not in err


def test_cli_malformed_space(capsys, tmp_path) -> None:
    _one_line_error(capsys, ["sweep", "lenet_bn", "--space", "lr=loguniform(1e-2)",
                             "--out", str(tmp_path / "s")], "two numbers")


def test_cli_unreachable_address(capsys, tmp_path) -> None:
    start = time.monotonic()
    _one_line_error(capsys, ["sweep", "lenet_bn", "--address", f"127.0.0.1:{_free_port()}",
                             "--out", str(tmp_path / "s")], "no Ray cluster answers")
    assert time.monotonic() - start < 60
    _one_line_error(capsys, ["sweep", "lenet_bn", "--address", "nowhere",
                             "--out", str(tmp_path / "s")], "expected HOST:PORT")


def test_cli_refine_without_results(capsys, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["sweep", "lenet_bn", "--refine", str(tmp_path / "empty"),
                             "--out", str(tmp_path / "s")], "no finished sweep there")


def test_cli_full_out(capsys, tmp_path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "results.csv").write_text("trial\n")
    _one_line_error(capsys, ["sweep", "lenet_bn", "--out", str(tmp_path / "full")],
                    "not empty")


# --- a two-node cluster on this machine ---------------------------------------------------

@pytest.fixture
def two_node_cluster():
    """``ray start --head`` and a second ``ray start --address``, one CPU each, each in its
    own temp dir; both are stopped (SIGTERM to the processes started here) at the end."""
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("the ray command is not installed")
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    common = ["--block", "--num-cpus", "1", "--disable-usage-stats"]
    started: list[subprocess.Popen] = []
    dirs = [tempfile.mkdtemp(prefix="gh", dir="/tmp"), tempfile.mkdtemp(prefix="gw", dir="/tmp")]
    try:
        started.append(subprocess.Popen(
            [str(ray_cli), "start", "--head", "--port", str(port), "--temp-dir", dirs[0],
             "--include-dashboard", "false", *common], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_for_port(port, started[0])
        started.append(subprocess.Popen(
            [str(ray_cli), "start", "--address", f"127.0.0.1:{port}", "--temp-dir", dirs[1],
             *common], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        yield f"127.0.0.1:{port}", env
    finally:
        for proc in reversed(started):
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        for folder in dirs:  # Ray's processes may still be writing logs as they exit
            for _ in range(40):
                shutil.rmtree(folder, ignore_errors=True)
                if not os.path.exists(folder):
                    break
                time.sleep(0.5)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start --head exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(1)
    pytest.fail(f"ray start --head did not listen on port {port} within {timeout} s")


def test_two_node_cluster(two_node_cluster, data, tmp_path) -> None:
    """The CLI joins the cluster with --address; the trials spread over both nodes."""
    address, env = two_node_cluster
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "glasscnn.cli.main", "sweep", "lenet_bn", "--trials", "4",
           "--epochs", "2", "--train-limit", "300", "--val-size", "200", "--batch-size", "64",
           "--address", address, "--no-plots", "--out", str(out)]
    deadline = time.monotonic() + 120
    while True:  # the second node needs a moment to join
        probe = subprocess.run(
            [sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], "
             "logging_level='ERROR'); print(len([n for n in ray.nodes() if n['Alive']]))",
             address], env=env, capture_output=True, text=True, timeout=120)
        if probe.stdout.strip() == "2" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert probe.stdout.strip() == "2", probe.stderr[-2000:]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "retrain it in full: glasscnn train lenet_bn" in done.stdout
    assert "on 2 CPUs (2 nodes)" in done.stdout, (out / "results.csv").read_text()
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    assert len({r["node"] for r in rows}) == 2
