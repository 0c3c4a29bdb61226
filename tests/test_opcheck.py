"""The operator proofs of ``glasscnn ops``: naive vs fast vs PyTorch for every case.

The cases come from ``opcheck.cases()`` itself, so a newly added operator is covered here
without a change. ``check_ops`` runs once, in float64 (its naive kernels take seconds);
the CLI tests run a cheap subset of the cases.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from glasscnn import opcheck
from glasscnn.cli.main import main

CASES = opcheck.cases()
IDS = [f"{i}-{c.name}" for i, c in enumerate(CASES)]
CHEAP = ("flatten", "softmax_cross_entropy", "dropout", "adaptive_avg_pool2d")
KEYS = {"op", "size", "naive_vs_fast", "fast_vs_torch", "forward_speedup", "backward_speedup"}
TOL64 = 1e-8


@pytest.fixture(scope="module")
def rows(request):
    """``check_ops`` in float64, with torch when it is installed."""
    try:
        torch = request.getfixturevalue("torch")
    except pytest.skip.Exception:
        torch = None
    return opcheck.check_ops(np.float64, repeat=1, torch=torch)


@pytest.fixture
def cheap(monkeypatch):
    """``cases()`` cut to a few operators whose naive kernels are fast."""
    subset = [c for c in CASES if c.name in CHEAP]
    assert {c.name for c in subset} == set(CHEAP)
    monkeypatch.setattr(opcheck, "cases", lambda: list(subset))
    return subset


def test_cases_are_named_uniquely():
    assert len(CASES) > 0
    names = [(c.name, c.size) for c in CASES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_case_inputs_and_gradients(case, dtype, rng):
    arrays = case.inputs(rng, dtype)
    assert 1 <= case.n_diff <= len(arrays)
    assert all(a.dtype == dtype for a in arrays[: case.n_diff])
    out, cache = case.forward(*arrays, **case.kwargs, impl="fast")
    assert np.asarray(out).dtype == dtype
    grads = case.backward(np.ones_like(out), cache)[: case.n_diff]
    assert len(grads) == case.n_diff
    for a, g in zip(arrays, grads, strict=False):
        assert g.shape == a.shape


def test_check_ops_one_row_per_case(rows):
    assert [(r["op"], r["size"]) for r in rows] == [(c.name, c.size) for c in CASES]
    assert all(set(r) == KEYS for r in rows)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_naive_matches_fast(rows, index):
    row = rows[index]
    assert row["naive_vs_fast"] < TOL64
    for key in ("forward_speedup", "backward_speedup"):
        assert math.isfinite(row[key]) and row[key] > 0


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_fast_matches_torch(rows, torch, index):
    row, case = rows[index], CASES[index]
    if case.torch_fn is None:
        assert row["fast_vs_torch"] is None
    else:
        assert row["fast_vs_torch"] < TOL64


@pytest.mark.usefixtures("cheap")
def test_check_ops_without_torch_float32():
    rows = opcheck.check_ops(repeat=1, torch=None)
    assert [r["op"] for r in rows] == [c.name for c in opcheck.cases()]
    for r in rows:
        assert r["fast_vs_torch"] is None
        assert r["naive_vs_fast"] < 1e-5


@pytest.mark.usefixtures("cheap")
def test_check_ops_is_seeded():
    first, second = (opcheck.check_ops(np.float64, repeat=1, seed=5) for _ in range(2))
    assert [r["naive_vs_fast"] for r in first] == [r["naive_vs_fast"] for r in second]


def _table(out: str) -> tuple[list[str], list[str]]:
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("dtype "))
    assert lines[i + 1].split()[:2] == ["op", "size"]
    assert set(lines[i + 2]) == {"-"}
    return lines[:i], lines[i + 3:]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cli_ops_with_torch(cheap, torch, capsys, dtype):
    assert main(["ops", "--repeat", "1", "--dtype", dtype]) == 0
    before, table = _table(capsys.readouterr().out)
    assert before == []
    assert [line.split()[0] for line in table] == [c.name for c in cheap]
    for line, case in zip(table, cheap, strict=True):
        assert line.endswith("x") and line.count("x") >= 2
        assert ("—" in line) is (case.torch_fn is None)


@pytest.mark.parametrize("torch_missing", [False, True])
def test_cli_ops_without_torch(cheap, monkeypatch, capsys, torch_missing):
    argv = ["ops", "--repeat", "1"]
    if torch_missing:
        monkeypatch.setitem(sys.modules, "torch", None)
    else:
        argv.append("--no-torch")
    assert main(argv) == 0
    before, table = _table(capsys.readouterr().out)
    assert before == (["(torch is not installed: the fast-vs-torch column is empty)"]
                      if torch_missing else [])
    assert len(table) == len(cheap)
    assert all(line.split()[-3] == "—" for line in table)


def test_cli_ops_help_lists_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["ops", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--dtype", "--repeat", "--no-torch"))


@pytest.mark.parametrize("repeat", [0, -1])
def test_check_ops_rejects_a_repeat_below_one(repeat):
    with pytest.raises(ValueError, match=f"check_ops: repeat must be >= 1, got {repeat}"):
        opcheck.check_ops(repeat=repeat)
