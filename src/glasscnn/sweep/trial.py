"""One trial of a sweep: a ``glasscnn train`` run inside a Ray Tune worker, on one CPU.

The trial builds its run with ``glasscnn.train.prepare`` and trains it with the ``Trainer``
exactly as ``glasscnn train`` does (same recipe, same seed, hence the same split,
initialisation and shuffling). After every epoch the Trainer writes its checkpoint
atomically into the trial's folder; the folder (``checkpoint.npz``, ``history.json``,
``trial.json``) is then reported to Tune with the epoch's numbers. A trial whose worker
dies is started again by Tune from the last reported folder and resumes after its epoch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from glasscnn.checkpoint import atomic_write
from glasscnn.data import Dataset
from glasscnn.kernels._parallel import single_threaded
from glasscnn.sweep.space import apply
from glasscnn.train import Recipe, Trainer, TrainingDiverged, prepare
from glasscnn.train.run import make_trainer

CHECKPOINT, HISTORY, STATE = "checkpoint.npz", "history.json", "trial.json"


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, allow_nan=True)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _node() -> tuple[str, str]:
    import ray

    return ray.get_runtime_context().get_node_id()[:12], socket.gethostname()


def train_trial(config: dict[str, Any], recipe: dict[str, Any],
                datasets: tuple[Dataset, Dataset]) -> None:
    """Train one sampled configuration, reporting to Ray Tune after every epoch.

    Called by Ray Tune in a worker (through ``tune.with_parameters``); glasscnn's kernel
    thread pool is off and OpenBLAS at one thread while it runs, so each trial uses the one
    CPU it was given.

    Args:
        config: the sampled values (``lr``, ``weight_decay``, ``model.dropout`` …).
        recipe: the sweep's base recipe (``Recipe.to_dict()``).
        datasets: ``(train, test)`` uint8 data sets, shared through Ray's object store.

    Reports per epoch: ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``, ``best_val_accuracy``, ``lr``, ``seconds`` (the trial's wall time
    over all its attempts), ``restores``, ``node``, ``host``, ``pid`` and ``diverged``.
    """
    from ray import tune

    run = apply(Recipe.from_dict(recipe), config)
    work = Path(tempfile.mkdtemp(prefix="glasscnn-trial-"))
    try:
        with single_threaded():
            _train(run, datasets, work, tune)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train(run: Recipe, datasets: tuple[Dataset, Dataset], work: Path, tune: Any) -> None:
    start = time.perf_counter()
    state = {"seconds": 0.0, "restores": 0}
    resume = None
    previous = tune.get_checkpoint()
    if previous is not None:
        with previous.as_directory() as folder:
            shutil.copy(Path(folder) / CHECKPOINT, work / CHECKPOINT)
            state.update(json.loads((Path(folder) / STATE).read_text()))
        state["restores"] += 1
        resume = work / CHECKPOINT
    setup = prepare(run, datasets=datasets)
    node, host = _node()
    doc = {"recipe": run.to_dict(), "model_kwargs": setup.model_kwargs,
           "classes": setup.meta["classes"]}

    def metrics(trainer: Trainer, record: dict[str, float], diverged: bool) -> dict[str, Any]:
        best = trainer.best_accuracy if trainer.best_state is not None else math.nan
        return {**record, "best_val_accuracy": best,
                "seconds": state["seconds"] + time.perf_counter() - start,
                "restores": state["restores"], "node": node, "host": host, "pid": os.getpid(),
                "diverged": diverged}

    def on_epoch(trainer: Trainer, record: dict[str, float]) -> None:
        report = metrics(trainer, record, False)
        _write_json(work / HISTORY, {**doc, "history": trainer.history,
                                     "best_epoch": trainer.best_epoch,
                                     "best_val_accuracy": report["best_val_accuracy"]})
        _write_json(work / STATE, {"seconds": report["seconds"],
                                   "restores": state["restores"]})
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(work))

    trainer = make_trainer(setup, run, work / CHECKPOINT, on_epoch=on_epoch)
    try:
        trainer.fit(run.epochs, resume=resume)
    except TrainingDiverged:
        last = {"epoch": trainer.epoch, "val_loss": math.nan, "val_accuracy": 0.0}
        tune.report(metrics(trainer, last, True))
