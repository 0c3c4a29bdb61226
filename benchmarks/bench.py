"""Benchmark glasscnn against PyTorch: ``python benchmarks/bench.py [glasscnn bench options]``.

A thin wrapper over ``glasscnn bench`` (the code is in ``glasscnn.bench``); it re-executes
itself with the thread settings of ``glasscnn.bench.required_env()`` when they are missing.
"""

from __future__ import annotations

import sys

from glasscnn.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
