"""``glasscnn export``: write a zoo model with its checkpoint's weights as an ONNX file."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from glasscnn import models
from glasscnn.cli.commands.predict import parse_model_args
from glasscnn.inference import LoadedModel, load_predictor
from glasscnn.io.onnx_export import DEFAULT_OPSET, export_onnx


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    p = sub.add_parser(
        "export", help="export a zoo model and its weights to ONNX",
        description="CHECKPOINT is a glasscnn checkpoint (it names its model) or a plain "
                    "state_dict (.npz, .pth/.pt, .safetensors) with the model named before it "
                    "or by --model. The graph is the model in evaluation mode "
                    "(batch norm with running statistics, no dropout), batch axis symbolic. "
                    "Needs the onnx package (pip install 'glasscnn[onnx]').",
    )
    p.add_argument("first", metavar="[MODEL] CHECKPOINT",
                   help="checkpoint or state_dict file, optionally after the zoo model name")
    p.add_argument("second", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--model", choices=list(models.REGISTRY),
                   help="zoo model (default: the one the checkpoint names)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="file to write")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model builder argument, e.g. depth=8 (repeatable)")
    p.add_argument("--strip-prefix", help="remove this prefix from every key (e.g. module.)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset ({DEFAULT_OPSET})")
    p.add_argument("--verify", action="store_true",
                   help="run the file in onnxruntime on random input and compare the logits")
    p.set_defaults(func=run)


def _verify(loaded: LoadedModel, path: str, input_shape: tuple[int, int, int]) -> float:
    """Max |ONNX − glasscnn| / max |glasscnn| over two random inputs."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("--verify needs onnxruntime: pip install 'glasscnn[onnx]' (or pip "
                          "install onnxruntime)") from None

    x = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    want = loaded.model(x)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def run(args: argparse.Namespace) -> int:
    """Load the weights, export, optionally verify; 1 when onnx(runtime) is missing."""
    model, checkpoint = args.model, args.first
    if args.second is not None:
        if args.first not in models.REGISTRY:
            raise ValueError(f"export: {args.first!r} is not a zoo model (one of "
                             f"{', '.join(models.REGISTRY)}); give CHECKPOINT alone or "
                             "MODEL CHECKPOINT")
        model, checkpoint = args.first, args.second
    loaded = load_predictor(checkpoint, model, parse_model_args(args.model_arg),
                            args.strip_prefix)
    shape = loaded.preprocessing.input_shape
    meta = {"model": loaded.name, "model_kwargs": json.dumps(loaded.model_kwargs),
            "classes": json.dumps(list(loaded.classes)),
            "preprocessing": json.dumps(loaded.preprocessing.to_dict())}
    try:
        path = export_onnx(loaded.model, args.onnx, shape, opset=args.opset, metadata=meta)
        print(f"wrote {path}: {loaded.name}, input (batch, {', '.join(map(str, shape))}), "
              f"opset {args.opset}")
        if args.verify:
            rel = _verify(loaded, str(path), shape)
            print(f"onnxruntime vs glasscnn: max relative logit difference {rel:.2e}")
            if rel > 1e-4:
                print("glasscnn export: error: the exported model disagrees", file=sys.stderr)
                return 1
    except ImportError as err:
        print(f"glasscnn export: error: {err}", file=sys.stderr)
        return 1
    return 0
