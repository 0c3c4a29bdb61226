"""Training: the ``Trainer`` loop, checkpoints with resume, and learning curves."""

from glasscnn.train.trainer import Trainer, TrainingDiverged

__all__ = ["Trainer", "TrainingDiverged"]
