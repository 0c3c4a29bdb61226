"""``glasscnn bench``: glasscnn's fast path timed against PyTorch in one process."""

from __future__ import annotations

import argparse
import os
import sys

from glasscnn.bench import (
    WORKLOADS,
    env_ready,
    print_profile,
    profile_step,
    required_env,
    run_benchmark,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` sub-command."""
    p = sub.add_parser("bench", help="time the fast path (optionally against PyTorch)")
    p.add_argument("--compare", choices=["torch"], default=None,
                   help="time a PyTorch twin of every workload alongside, interleaved")
    p.add_argument("--workload", action="append", choices=WORKLOADS, default=None,
                   help="a workload to run (repeatable; default: all)")
    p.add_argument("--repeat", type=int, default=10, help="timed runs per workload")
    p.add_argument("--epoch-batches", type=int, default=None,
                   help="cut the Fashion-MNIST epoch after this many batches")
    p.add_argument("--profile", action="store_true",
                   help="only profile a vgg_cifar step by category (GEMM, im2col, ...)")
    p.set_defaults(func=run)


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces ``args``."""
    argv = ["bench", "--repeat", str(args.repeat)]
    if args.compare:
        argv += ["--compare", args.compare]
    for w in args.workload or []:
        argv += ["--workload", w]
    if args.epoch_batches is not None:
        argv += ["--epoch-batches", str(args.epoch_batches)]
    if args.profile:
        argv.append("--profile")
    return argv


def run(args: argparse.Namespace) -> int:
    """Re-execute with the thread settings in the environment if needed, then benchmark.

    NumPy is already imported when this runs, and OpenBLAS reads its settings when it
    loads, so a process started without them replaces itself (``os.execve``) by one
    started with them; ``GLASSCNN_BENCH_REEXEC`` stops a second replacement.
    """
    if args.repeat < 1:
        raise ValueError(f"bench: --repeat must be >= 1, got {args.repeat}")
    if not env_ready() and not os.environ.get("GLASSCNN_BENCH_REEXEC"):
        env = {**os.environ, **required_env(), "GLASSCNN_BENCH_REEXEC": "1"}
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "glasscnn.cli.main", *_argv(args)], env)
    if args.profile:
        print(f"vgg_cifar SGD-momentum step, batch 128, one thread, mean of {args.repeat} "
              "steps, NumPy calls timed by category (docs/performance.md):")
        print_profile(profile_step("vgg", 128, args.repeat))
        return 0
    workloads = tuple(args.workload) if args.workload else WORKLOADS
    run_benchmark(workloads, compare_torch=args.compare == "torch", repeat=args.repeat,
                  epoch_batches=args.epoch_batches, echo=lambda s: print(s, flush=True))
    return 0
