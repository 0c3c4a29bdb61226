"""Run a sweep on Ray Tune: connect or start Ray, run the trials, write the sweep folder."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glasscnn.checkpoint import atomic_write
from glasscnn.data import Dataset, load
from glasscnn.sweep.report import plot_sweep, read_csv, retrain_command, top_table, write_csv
from glasscnn.sweep.space import (
    Param,
    apply,
    default_space,
    parse_space,
    refine_space,
    space_to_json,
    to_tune,
)
from glasscnn.sweep.trial import CHECKPOINT, HISTORY, train_trial
from glasscnn.train import Recipe

RESULTS, META, PLOT, BEST, TUNE_DIR = "results.csv", "sweep.json", "sweep.png", "best", "tune"
CONNECT_TIMEOUT = 5.0
JOIN_ENV, JOIN_ATTEMPTS = "RAY_gcs_server_port_wait_time_s", 5
ASHA_REDUCTION = 3


@dataclass
class SweepResult:
    """What a finished sweep produced.

    Attributes:
        out: the sweep folder.
        rows: one dict per trial, best first (the columns of results.csv).
        space: the space that was searched.
        best: the best trial's row (highest best validation accuracy), or None.
        best_recipe: the recipe of the best trial, or None.
        retrain: the ``glasscnn train`` command that trains the best trial in full.
        seconds: wall-clock time of the trials (Tune's run), and ``total_seconds``
            including Ray's start and the data loading.
        cpus: the CPUs Ray had; nodes: the nodes the trials ran on.
        files: the files written.
    """

    out: Path
    rows: list[dict[str, Any]]
    space: dict[str, Param]
    best: dict[str, Any] | None
    best_recipe: Recipe | None
    retrain: str
    seconds: float
    total_seconds: float
    cpus: int
    nodes: list[str]
    files: list[Path] = field(default_factory=list)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out}: {'not a folder' if not out.is_dir() else 'not empty'}; "
                         "a sweep writes into a new or empty folder")


def load_previous(folder: str | os.PathLike) -> tuple[dict[str, Param], list[dict[str, Any]]]:
    """The space and the trials of a finished sweep folder.

    Raises:
        ValueError: the folder has no ``results.csv`` and ``sweep.json`` of a sweep.
    """
    folder = Path(folder)
    if not (folder / RESULTS).is_file() or not (folder / META).is_file():
        raise ValueError(f"--refine {folder}: no finished sweep there ({RESULTS} and {META} "
                         "are missing); pass the --out folder of an earlier glasscnn sweep")
    meta = json.loads((folder / META).read_text())
    return parse_space(meta["space"]), read_csv(folder / RESULTS)


def _check_address(address: str) -> None:
    """Fail fast on an address that nothing answers on."""
    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379) "
                         "or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"--address {address}: no Ray cluster answers there ({reason}); "
                         f"start one with `ray start --head --port {port}` on {host}, or leave "
                         "--address out to run on this machine") from None


@contextlib.contextmanager
def _bounded_quiet_join() -> Iterator[None]:
    """While joining a cluster: at most ``JOIN_ATTEMPTS`` attempts (about a second each), and
    stderr set aside, where Ray's C++ client writes a warning per failed attempt."""
    before = os.environ.get(JOIN_ENV)
    os.environ.setdefault(JOIN_ENV, str(JOIN_ATTEMPTS))
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
        if before is None:
            os.environ.pop(JOIN_ENV, None)


def _start_ray(address: str | None, cpus: int | None, log: Callable[[str], None]) -> bool:
    """Join ``address`` or start Ray here; False when Ray was already running in-process."""
    import ray

    if ray.is_initialized():
        log("using the Ray session already running in this process")
        return False
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address is None:
            ray.init(num_cpus=cpus, include_dashboard=False, **options)
        else:
            with _bounded_quiet_join():
                ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        where = f"--address {address}" if address else "ray.init"
        if "auth" in f"{err!r} {err.__cause__!r}".lower():
            raise ValueError(f"{where}: the cluster uses token authentication; set "
                             "RAY_AUTH_MODE=token and give this machine the cluster's token "
                             "(~/.ray/auth_token, or RAY_AUTH_TOKEN)") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{where}: could not start or join Ray ({first})") from None
    return True


def _progress(log: Callable[[str], None], total: int) -> Any:
    from ray import tune

    class Progress(tune.Callback):
        """One line per finished, failed or restarted trial."""

        def __init__(self) -> None:
            self.done = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any
                              ) -> None:
            self.done += 1
            m = trial.last_result or {}
            values = " ".join(f"{k}={_short(v)}" for k, v in trial.config.items())
            acc = m.get("best_val_accuracy", math.nan)
            log(f"trial {self.done}/{total} {trial.trial_id} {values}: best val acc "
                f"{100 * acc:.2f}% after {_count(m.get('epoch', 0), 'epoch')}, "
                f"{m.get('seconds', 0):.0f} s on node {m.get('node', '?')}"
                + (" (diverged)" if m.get("diverged") else ""))

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any
                             ) -> None:
            log(f"trial {trial.trial_id}: its worker failed; restarting it from its last "
                f"checkpoint (epoch {(trial.last_result or {}).get('epoch', 0)})")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any
                           ) -> None:
            self.done += 1
            log(f"trial {self.done}/{total} {trial.trial_id}: failed for good "
                f"(see {trial.local_path})")

    return Progress()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _trial_rows(grid: Any, space: Mapping[str, Param], epochs: int, work: Path
                ) -> tuple[list[dict[str, Any]], dict[str, list[float]], dict[str, Path]]:
    """Rows, validation curves and local copies of each trial's last checkpoint folder."""
    rows, curves, folders = [], {}, {}
    for result in grid:
        m = dict(result.metrics or {})
        trial = str(m.get("trial_id") or Path(result.path).name)
        history: dict[str, Any] = {}
        if result.checkpoint is not None:
            folder = Path(result.checkpoint.to_directory(str(work / trial)))
            folders[trial] = folder
            history = json.loads((folder / HISTORY).read_text())
        h = history.get("history", {})
        curves[trial] = list(h.get("val_accuracy", []))
        best_epoch = int(history.get("best_epoch", 0))
        val_losses = h.get("val_loss", [])
        status = ("error" if result.error is not None else "diverged" if m.get("diverged")
                  else "stopped" if len(curves[trial]) < epochs else "done")
        config = result.config or {}
        row = {"trial": trial, **{k: config.get(k) for k in space},
               "best_val_accuracy": float(m.get("best_val_accuracy", math.nan)),
               "val_loss": float(val_losses[best_epoch - 1]) if best_epoch else math.nan,
               "best_epoch": best_epoch, "epochs": len(curves[trial]),
               "seconds": float(m.get("seconds", math.nan)), "node": m.get("node", ""),
               "host": m.get("host", ""), "restores": int(m.get("restores", 0)),
               "status": status}
        rows.append(row)
    rows.sort(key=lambda r: (-r["best_val_accuracy"] if math.isfinite(r["best_val_accuracy"])
                             else math.inf, r["trial"]))
    return rows, curves, folders


def run(
    recipe: Recipe, out: str | os.PathLike, trials: int = 8,
    space: Mapping[str, Param] | Iterable[str] | None = None, scheduler: str | None = None,
    address: str | None = None, cpus: int | None = None,
    refine: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
    datasets: tuple[Dataset, Dataset] | None = None, max_failures: int = 3,
    storage: str | None = None, callbacks: Sequence[Any] = (),
    log: Callable[[str], None] = print, plots: bool = True,
) -> SweepResult:
    """Run a random-search sweep of ``recipe`` on Ray Tune and write the sweep folder.

    Each trial is a ``glasscnn train`` run of ``recipe`` with the sampled values, on one
    CPU, reporting validation accuracy and loss each epoch and checkpointing after each
    epoch; a trial whose worker dies restarts from its last checkpoint (up to
    ``max_failures`` times). The data set is put into Ray's object store once and shared.
    On this machine the trial workers are reused from trial to trial; on a cluster
    (``address``) each trial gets a fresh worker, so that Ray places it on whichever node
    has a free CPU.

    Writes into ``out``: ``results.csv`` (a row per trial, best first), ``sweep.json`` (the
    recipe, the space and the timings), ``best/checkpoint.npz`` and ``best/history.json``
    (the best trial's last checkpoint; its best-validation weights are the ``best`` group),
    ``sweep.png`` (with matplotlib) and ``tune/`` (Ray Tune's own records).

    Args:
        recipe: the base run; ``epochs`` is each trial's length, ``seed`` its seed.
        out: a new or empty folder.
        trials: the number of trials sampled.
        space: ``{name: Param}`` or ``NAME=KIND(ARGS)`` strings; default: the
            optimizer's ``default_space`` (or, with ``refine``, the refined space).
            With ``refine``, the entries given replace the refined ones.
        scheduler: None (every trial runs all its epochs) or ``"asha"`` (ASHA stops the
            weaker trials early, after 1, 3, 9 … epochs).
        address: ``HOST:PORT`` of a running Ray cluster's head, or ``"auto"``; None starts
            Ray on this machine. Ignored when Ray is already initialised in this process.
        cpus: CPUs for a Ray started here (default: all); one trial runs per CPU.
        refine: the folder of a finished sweep whose ranges are narrowed around its best
            trials (``refine_space``) for this sweep.
        root: data folder.
        datasets: ``(train, test)`` uint8 data sets instead of loading ``recipe.data``.
        max_failures: restarts allowed per trial after its worker dies.
        storage: where Tune keeps its records and the trials' checkpoints, in
            ``storage/<out's name>`` (a folder every node can reach, or a cloud URI);
            default ``out/tune``.
        callbacks: extra ``ray.tune.Callback`` objects.
        log: receives the progress lines.
        plots: draw ``sweep.png``.

    Returns:
        A ``SweepResult``.

    Raises:
        ValueError: a malformed space, a non-empty ``out``, a ``refine`` folder without a
            sweep, an unreachable ``address``, or a recipe without validation data.
        ImportError: Ray Tune is not installed (``pip install 'glasscnn[sweep]'``).
    """
    start = time.perf_counter()
    out = Path(out).absolute()
    _check_out(out)
    if trials < 1:
        raise ValueError(f"sweep: trials must be >= 1, got {trials}")
    if cpus is not None and cpus < 1:
        raise ValueError(f"sweep: cpus must be >= 1, got {cpus}")
    if scheduler not in (None, "asha"):
        raise ValueError(f"sweep: scheduler must be None or 'asha', got {scheduler!r}")
    if recipe.resolved_val_size() == 0:
        raise ValueError("sweep: trials are compared on validation data; val_size must be > 0")
    given = dict(space) if isinstance(space, Mapping) else parse_space(space or ())
    if refine is not None:
        previous, previous_rows = load_previous(refine)
        searched = {**refine_space(previous, previous_rows), **given}
    else:
        searched = given or default_space(recipe.optimizer)
    for name, p in searched.items():
        for value in p.args:
            apply(recipe, {name: value})
    if address is not None:
        _check_address(address)
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
    except ImportError:
        raise ImportError("glasscnn sweep needs Ray Tune: pip install 'glasscnn[sweep]'") from None
    if datasets is None:
        datasets = (load(recipe.data, root, "train"), load(recipe.data, root, "test"))
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = _start_ray(address, cpus, log)
    try:
        cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
        log(f"sweep: {_count(trials, 'trial')} of {recipe.model} on {recipe.data}, "
            f"{_count(recipe.epochs, 'epoch')} each, on {_count(cluster_cpus, 'CPU')}; space: "
            + ", ".join(str(p) for p in searched.values()))
        out.mkdir(parents=True, exist_ok=True)
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, recipe=recipe.to_dict(), datasets=datasets),
            {"cpu": 1})
        asha = (ASHAScheduler(time_attr="epoch", max_t=recipe.epochs, grace_period=1,
                              reduction_factor=ASHA_REDUCTION) if scheduler == "asha" else None)
        tuner = tune.Tuner(
            trainable, param_space=to_tune(searched),
            tune_config=tune.TuneConfig(num_samples=trials, metric="val_accuracy", mode="max",
                                        scheduler=asha, reuse_actors=address is None),
            run_config=tune.RunConfig(
                name=TUNE_DIR if storage is None else out.name,
                storage_path=storage or str(out), verbose=0,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[_progress(log, trials), *callbacks]),
        )
        tune_logger = logging.getLogger("ray.tune")
        level = tune_logger.level
        tune_logger.setLevel(logging.CRITICAL)
        fit_start = time.perf_counter()
        try:
            grid = tuner.fit()
        finally:
            tune_logger.setLevel(level)
        seconds = time.perf_counter() - fit_start
        with tempfile.TemporaryDirectory(prefix="glasscnn-sweep-") as tmp:
            rows, curves, folders = _trial_rows(grid, searched, recipe.epochs, Path(tmp))
            files = [write_csv(rows, searched, out / RESULTS)]
            best = rows[0] if rows and math.isfinite(rows[0]["best_val_accuracy"]) else None
            best_recipe = None
            retrain = ""
            if best is not None and best["trial"] in folders:
                (out / BEST).mkdir(exist_ok=True)
                for name in (CHECKPOINT, HISTORY):
                    shutil.copy(folders[best["trial"]] / name, out / BEST / name)
                    files.append(out / BEST / name)
                best_recipe = apply(recipe, {k: best[k] for k in searched})
                retrain = retrain_command(best_recipe, f"runs/{recipe.model}_best")
        nodes = sorted({str(r["node"]) for r in rows if r["node"]})
        total = time.perf_counter() - start
        _write_meta(out / META, recipe, searched, trials, scheduler, refine, seconds, total,
                    cluster_cpus, nodes, retrain)
        files.append(out / META)
        if plots and rows:
            files.append(plot_sweep(rows, curves, searched, out / PLOT,
                                    f"{recipe.model} on {recipe.data}: {len(rows)} trials"))
        return SweepResult(out, rows, searched, best, best_recipe, retrain, seconds, total,
                           cluster_cpus, nodes, files)
    finally:
        if started:
            ray.shutdown()


def _write_meta(path: Path, recipe: Recipe, space: Mapping[str, Param], trials: int,
                scheduler: str | None, refine: Any, seconds: float, total: float, cpus: int,
                nodes: list[str], retrain: str) -> None:
    doc = {"recipe": recipe.to_dict(), "space": space_to_json(space), "trials": trials,
           "scheduler": scheduler, "refined_from": None if refine is None else str(refine),
           "seconds": seconds, "total_seconds": total, "cpus": cpus, "nodes": nodes,
           "retrain": retrain}
    text = json.dumps(doc, indent=1, allow_nan=True)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def format_summary(result: SweepResult, top: int = 5) -> str:
    """The printed end of a sweep: the top trials, the best accuracy, the retrain command."""
    lines = [f"top {min(top, len(result.rows))} of {len(result.rows)} trials "
             f"(best validation accuracy):", top_table(result.rows, result.space, top)]
    if result.best is not None:
        lines.append(f"best: trial {result.best['trial']}, validation accuracy "
                     f"{100 * result.best['best_val_accuracy']:.2f}% at epoch "
                     f"{result.best['best_epoch']}; checkpoint {result.out / BEST / CHECKPOINT}")
        lines.append(f"retrain it in full: {result.retrain}")
    lines.append(f"time: {result.seconds:.0f} s for the trials on {_count(result.cpus, 'CPU')} "
                 f"({_count(len(result.nodes), 'node')}), "
                 f"{result.total_seconds:.0f} s in all")
    return "\n".join(lines)
