"""Hyperparameter sweeps on Ray Tune: coarse-to-fine random search over ``glasscnn train`` runs.

- ``run``: sample N configurations of a recipe, train each as a trial on one CPU (here or on
  a Ray cluster), and write the sweep folder (results.csv, best/checkpoint.npz, sweep.png).
- ``parse_space``, ``default_space``, ``refine_space``: the search space, its defaults per
  optimizer, and the coarse-to-fine narrowing around the best trials.

Ray is imported when a sweep starts (``pip install 'glasscnn[sweep]'``), never by
``import glasscnn``.
"""

from glasscnn.sweep.runner import SweepResult, format_summary, load_previous, run
from glasscnn.sweep.space import Param, default_space, parse_param, parse_space, refine_space

__all__ = [
    "Param",
    "SweepResult",
    "default_space",
    "format_summary",
    "load_previous",
    "parse_param",
    "parse_space",
    "refine_space",
    "run",
]
