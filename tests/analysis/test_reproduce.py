import pytest

from qgmrn.commands import reproduce
from qgmrn.fileio import project_root


def test_select_in_pipeline_order():
    assert reproduce.select(None) == list(reproduce.NOTEBOOKS)
    assert reproduce.select("06,1,03_train") == ["01_data_preparation", "03_train", "06_figures"]
    with pytest.raises(ValueError, match="no notebook '09'"):
        reproduce.select("09")


def test_every_pipeline_notebook_exists():
    root = project_root()
    assert all((root / "notebooks" / f"{n}.ipynb").exists() for n in reproduce.NOTEBOOKS)


def test_fresh_run_dir_never_replaces_a_run_unless_asked(tmp_path):
    from qgmrn.analysis.runs import fresh_run_dir

    assert fresh_run_dir(tmp_path, "brn", resume=False, overwrite=False) == tmp_path / "brn"
    (tmp_path / "brn").mkdir()
    (tmp_path / "brn" / "config.json").write_text("{}")
    assert fresh_run_dir(tmp_path, "brn", resume=False, overwrite=False) == tmp_path / "brn-2"
    (tmp_path / "brn-2").mkdir()
    (tmp_path / "brn-2" / "config.json").write_text("{}")
    assert fresh_run_dir(tmp_path, "brn", resume=False, overwrite=False) == tmp_path / "brn-3"
    assert fresh_run_dir(tmp_path, "brn", resume=True, overwrite=False) == tmp_path / "brn"
    assert fresh_run_dir(tmp_path, "brn", resume=False, overwrite=True) == tmp_path / "brn"


def test_child_processes_write_their_stderr_to_the_log(tmp_path, capfd):
    """The kernels a notebook starts (04 runs 03 once per row) must not print their log lines
    into the calling notebook: their standard error goes to a file."""
    import subprocess
    import sys

    from qgmrn.commands.reproduce import stderr_of_children_to

    log = tmp_path / "x.kernel.log"
    with stderr_of_children_to(log):
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('kernel says hi')"],
                       check=True)  # fmt: skip
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('after')"], check=True)
    assert log.read_text() == "kernel says hi"
    assert capfd.readouterr().err == "after"  # fd 2 is restored


def test_updated_notebooks_keep_the_injected_cell_and_lose_the_machines_path(tmp_path):
    import json

    executed, target = tmp_path / "executed.ipynb", tmp_path / "target.ipynb"
    cells = [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "source": "a = 1"},
        {"cell_type": "code", "id": "i", "metadata": {"tags": ["injected-parameters"]},
         "source": "a = 2"},
    ]  # fmt: skip
    where = str(project_root() / "notebooks" / "03_train.ipynb")
    meta = {"papermill": {"input_path": where, "output_path": "out.ipynb"}}
    executed.write_text(json.dumps({"cells": cells, "metadata": meta}))
    reproduce.update_committed_notebook(executed, target)
    nb = json.loads(target.read_text())
    assert [c["id"] for c in nb["cells"]] == ["p", "i"]  # what the run used stays visible
    assert nb["metadata"]["papermill"]["input_path"] == "notebooks/03_train.ipynb"
    elsewhere = {"papermill": {"input_path": "/elsewhere/x.ipynb"}}  # outside: kept as it was
    executed.write_text(json.dumps({"cells": [], "metadata": elsewhere}))
    reproduce.update_committed_notebook(executed, target)
    assert json.loads(target.read_text())["metadata"] == elsewhere


def test_step_parameters_name_parameters_the_notebooks_declare():
    """Papermill injects a misspelt parameter without complaint (a new variable nothing reads):
    every step budget must name a parameter of the notebook's parameters cell."""
    import json

    root = project_root()
    for profile, steps in reproduce.STEP_PARAMETERS.items():
        for name, params in steps.items():
            nb = json.loads((root / "notebooks" / f"{name}.ipynb").read_text())
            (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
            declared = {line.split(":")[0].strip() for line in "".join(cell["source"]).splitlines()}
            assert set(params) <= declared, (profile, name, set(params) - declared)


def test_demo_03_trains_for_steps_and_smoke_keeps_its_own_budget():
    """Under demo 03 stops at a step budget (what it reaches does not depend on the machine's
    load), with minutes as a cap only; the smoke profile, which the notebook tests run, gets no
    budget from reproduce."""
    demo = reproduce.STEP_PARAMETERS["demo"]["03_train"]
    assert demo["max_steps"] == 800 and demo["max_minutes"] >= 20
    assert "smoke" not in reproduce.STEP_PARAMETERS
