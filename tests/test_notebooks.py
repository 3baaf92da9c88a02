"""Every notebook runs under the smoke profile, and its profile-independent outputs match.

Design: for each notebook, in pipeline order, papermill *prepares* (does not execute) a copy of
the committed notebook with the smoke parameters injected after its ``parameters`` cell; the
copy keeps the committed outputs. nbval then executes the copy once (``--nbval-lax``): every
cell must run without error, and cells marked ``# NBVAL_CHECK_OUTPUT`` (seeded, profile-
independent values: answer sets, Gumbel-sigmoid frequencies, gate counts) must reproduce their
committed output after `tests/nbval_sanitize.cfg`. The notebooks share one temporary data and
results folder, so 01 generates the data that 03 trains on and 06 plots. docs/notebooks.md lists
the checked cells.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
ORDER = (
    "00_overview",
    "01_data_preparation",
    "02_model_walkthrough",
    "03_train",
    "04_ablations",
    "05_clevr_humans",
    "06_figures",
)
# Smoke-sized extras per notebook (every notebook still runs every cell).
EXTRA: dict[str, dict] = {
    "01_data_preparation": {"workers": 1, "num_examples": 2},
    "02_model_walkthrough": {"interactive": False, "reference_dir": ""},
    "04_ablations": {"presets": "brn_c16_noq", "extra_presets": "", "reference_dir": ""},
    "05_clevr_humans": {"reference_dir": ""},
    "06_figures": {
        "per_subtype": 50,
        "tsne_iter": 250,
        "saliency_questions": 2,
        "reference_dir": "",
    },
}
# reference_dir: the reference runs are used under the demo profile only; "" keeps the smoke
# runs from ever reading the checkout's results/reference, whatever the profile rule.

pytest.importorskip("nbval")
pm = pytest.importorskip("papermill")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Data and results shared by the notebooks of one test session."""
    return tmp_path_factory.mktemp("notebooks")


def test_notebook_list_is_complete():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(ORDER)


@pytest.mark.slow
@pytest.mark.parametrize("name", ORDER)
def test_notebook_runs_under_smoke(name: str, workdir: Path) -> None:
    params = {
        "profile": "smoke",
        "device": "cpu",
        "seed": 0,
        "data_dir": str(workdir / "data"),
        "results_dir": str(workdir / "results"),
        **EXTRA.get(name, {}),
    }
    prepared = workdir / f"{name}.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(prepared),
        parameters=params,
        prepare_only=True,
        kernel_name="python3",
        progress_bar=False,
    )
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        f"--nbval-sanitize-with={SANITIZE}",
        "--nbval-kernel-name=python3",
        "--nbval-cell-timeout=600",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        f"--rootdir={workdir}",
        "-q",
        str(prepared),
    ]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, f"{name} failed under smoke:\n{proc.stdout[-8000:]}"
