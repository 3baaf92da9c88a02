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
