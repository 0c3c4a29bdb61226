"""Training: the ``Trainer`` loop, checkpoints with resume, recipes, runs and learning curves.

- ``fit(model, "fashion-mnist", epochs=3)``: train from Python in one call, get the
  ``History`` (its curves show in a notebook).
- ``Trainer``: fit / evaluate / predict, history, best weights, L2, clipping, checkpoints.
- ``Recipe`` and ``prepare``: model, optimizer, schedule, loaders and normaliser from names.
- ``train_run``: a whole run into a folder (what ``glasscnn train`` does).
- ``glasscnn.train.plots`` (matplotlib) and ``glasscnn.train.progress`` (tqdm) are imported
  on demand.
"""

from glasscnn.train.fit import fit
from glasscnn.train.history import History
from glasscnn.train.recipes import Recipe, Setup, prepare
from glasscnn.train.run import RunInterrupted, RunResult, evaluate_checkpoint, train_run
from glasscnn.train.trainer import Trainer, TrainingDiverged, confusion_matrix

__all__ = [
    "History",
    "Recipe",
    "RunInterrupted",
    "RunResult",
    "Setup",
    "Trainer",
    "TrainingDiverged",
    "confusion_matrix",
    "evaluate_checkpoint",
    "fit",
    "prepare",
    "train_run",
]
