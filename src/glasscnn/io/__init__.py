"""Weights in and out: ``.npz``, PyTorch ``.pth`` (read without torch) and safetensors.

``load_state_dict(path)`` and ``save_state_dict(state_dict, path)`` choose the format by
extension; ``load_into(model, path)`` fills a Module, with key remapping and a report of
unmatched keys and shapes. Every reader raises ``CheckpointError`` (a ``ValueError``, in
``glasscnn.io.errors``) for a file it cannot read safely, and ``FileNotFoundError`` for a
missing one.
"""

from glasscnn.io.api import (
    FORMATS,
    CheckpointMismatchError,
    format_of,
    load_into,
    load_state_dict,
    save_state_dict,
)
from glasscnn.io.errors import CheckpointError, UnsafePickleError
from glasscnn.io.mapping import MatchReport, match_report, remap_keys
from glasscnn.io.npz import load_npz, save_npz
from glasscnn.io.onnx_export import export_onnx
from glasscnn.io.safetensors import load_safetensors, safetensors_metadata, save_safetensors
from glasscnn.io.torch_pickle import (
    extract_state_dict,
    load_torch,
    read_torch_checkpoint,
    save_torch,
)
from glasscnn.io.torch_twin import to_torch

__all__ = [
    "FORMATS",
    "CheckpointError",
    "CheckpointMismatchError",
    "MatchReport",
    "UnsafePickleError",
    "export_onnx",
    "extract_state_dict",
    "format_of",
    "load_into",
    "load_npz",
    "load_safetensors",
    "load_state_dict",
    "load_torch",
    "match_report",
    "read_torch_checkpoint",
    "remap_keys",
    "safetensors_metadata",
    "save_npz",
    "save_safetensors",
    "save_state_dict",
    "save_torch",
    "to_torch",
]
