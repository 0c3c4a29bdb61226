"""``glasscnn ops``: every operator's naive-vs-fast and fast-vs-torch differences and speed-ups."""

from __future__ import annotations

import argparse

import numpy as np

from glasscnn.opcheck import check_ops


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ops`` sub-command."""
    p = sub.add_parser("ops", help="prove every operator: naive vs fast vs PyTorch, speed-ups")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeat", type=int, default=3, help="timing repeats of the fast kernels")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    p.set_defaults(func=run)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2e}"


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("(torch is not installed: the fast-vs-torch column is empty)")
    rows = check_ops(dtype=np.dtype(args.dtype), repeat=args.repeat, torch=torch)
    w_op = max(22, *(len(r["op"]) for r in rows))
    w_size = max(20, *(len(r["size"]) for r in rows))
    header = (f"{'op':<{w_op}} {'size':<{w_size}} {'|naive-fast|':>13} {'|fast-torch|':>13} "
              f"{'fwd x':>8} {'bwd x':>8}")
    print(f"dtype {args.dtype}; max absolute differences over output and all gradients "
          "(random upstream gradient); speed-up = naive time / fast time")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['op']:<{w_op}} {r['size']:<{w_size}} {_fmt(r['naive_vs_fast']):>13} "
              f"{_fmt(r['fast_vs_torch']):>13} {r['forward_speedup']:>7.1f}x "
              f"{r['backward_speedup']:>7.1f}x")
    return 0
