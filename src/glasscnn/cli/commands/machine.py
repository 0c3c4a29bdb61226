"""``glasscnn machine``: this machine's sgemm GFLOP/s and copy bandwidth (measured once, cached)."""

from __future__ import annotations

import argparse
import json

from glasscnn.analysis.machine import machine_info, ridge_point


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``machine`` sub-command."""
    p = sub.add_parser("machine", help="measure sgemm GFLOP/s and memory bandwidth (cached)")
    p.add_argument("--refresh", action="store_true", help="measure again, ignoring the cache")
    p.add_argument("--json", action="store_true", help="print the cached record as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the measured limits and where they are cached."""
    info = machine_info(refresh=args.refresh)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    source = "cached" if info["cached"] else "measured now"
    print(f"sgemm {info['gemm_size']}³ float32: {info['sgemm_gflops']:.1f} GFLOP/s (peak)")
    print(f"copy {info['copy_bytes'] / 2**20:.0f} MiB: {info['copy_gbs']:.1f} GB/s "
          "(bytes read + written)")
    print(f"ridge point: {ridge_point(info):.2f} FLOPs per byte")
    print(f"{source} at {info['measured_at']}; cache {info['path']} (--refresh to measure again)")
    return 0
