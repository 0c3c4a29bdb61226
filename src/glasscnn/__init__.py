"""glasscnn: convolutional networks in NumPy in which nothing is a black box.

``import glasscnn`` gives ``glasscnn.predict``, ``glasscnn.load_model`` and, imported on
first use, the sub-packages ``nn``, ``kernels``, ``optim``, ``data``, ``models``, ``io``,
``analysis``, ``train`` and ``gradcheck`` (``glasscnn.gradcheck.check_module(...)`` works
without importing it first).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from glasscnn.inference import predict
from glasscnn.loading import load_model

__version__ = "0.1.0"

SUBPACKAGES = ("analysis", "data", "gradcheck", "io", "kernels", "models", "nn", "optim",
               "train")


def __getattr__(name: str) -> ModuleType:
    if name in SUBPACKAGES:
        return importlib.import_module(f"glasscnn.{name}")
    raise AttributeError(f"module 'glasscnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *SUBPACKAGES})


__all__ = ["__version__", "load_model", "predict", *SUBPACKAGES]
