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
