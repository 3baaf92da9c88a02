"""`qgmrn.analysis.runs.require_dataset`: a notebook on a fresh clone stops at its first cell."""

from __future__ import annotations

import pytest

from qgmrn.analysis.runs import require_dataset


def test_a_missing_data_set_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        require_dataset(tmp_path / "mini-clevr", "demo")
    text = str(err.value)
    assert "01_data_preparation" in text
    assert f"qgmrn generate {tmp_path / 'mini-clevr'} --profile demo --humans" in text
    (tmp_path / "mini-clevr" / "questions").mkdir(parents=True)
    (tmp_path / "mini-clevr" / "questions" / "CLEVR_val_questions.json").write_text("{}")
    assert require_dataset(tmp_path / "mini-clevr", "demo") == tmp_path / "mini-clevr"
