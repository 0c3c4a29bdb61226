"""The example notebooks run top to bottom in a real Jupyter kernel, with their charts.

Each notebook in examples/ executes in a fresh IPython kernel started from this Python
(a kernel spec written for the test, so no user-level ``python3`` kernel can stand in for
it), with ``src/`` first on its ``PYTHONPATH`` so it runs the code under test. Any cell
error fails the test, and each notebook must show at least one PNG. The committed files
must carry no outputs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from datasets_helper import REQUIRE_DATA

from glasscnn.data import locate

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
KERNEL = "glasscnn-test"

# what each notebook needs besides glasscnn's own extras
NEEDS = {
    "01_inference_alexnet_cifar": {"data": (), "torch": False},
    "02_loop_nests_mnist": {"data": ("mnist",), "torch": False},
    "03_operators_vs_pytorch": {"data": ("fashion-mnist",), "torch": True},
    "04_formulas_batchnorm": {"data": ("fashion-mnist",), "torch": False},
    "05_naive_to_fast": {"data": ("fashion-mnist",), "torch": False},
}


def _require_data(name: str) -> None:
    try:
        locate(name)
    except FileNotFoundError as err:
        if REQUIRE_DATA:
            pytest.fail(f"{name} is not available: {err} [GLASSCNN_REQUIRE_DATA=1]")
        pytest.skip(f"{name} is not available: {err}")


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A folder holding one kernel spec: this interpreter running ipykernel."""
    pytest.importorskip("ipykernel", reason="pip install -e '.[dev]'")
    spec_root = tmp_path_factory.mktemp("kernels")
    spec = spec_root / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "glasscnn (tests)",
        "language": "python",
        "env": {
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        },
    }))
    return [str(spec_root)]


def test_every_notebook_is_listed():
    assert NOTEBOOKS
    assert {p.stem for p in NOTEBOOKS} == set(NEEDS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path: Path):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]'")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs: strip them before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count"
            assert "execution" not in cell.metadata, f"cell {i} has execution timings"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, kernel_dirs: list[str], tmp_path: Path,
                       request: pytest.FixtureRequest):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]'")
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]'")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    needs = NEEDS[path.stem]
    for name in needs["data"]:
        _require_data(name)
    if needs["torch"]:
        request.getfixturevalue("torch")
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name=KERNEL,
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    client = nbclient.NotebookClient(nb, km=km, timeout=600, allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    images = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} showed no chart"
