"""`python -m qgmrn.analysis.reference`: the summary written beside the reference runs.

The run directories are fabricated test data (tests/analysis/_fake_runs.py).
"""

from __future__ import annotations

import matplotlib
import pytest

from qgmrn.analysis import reference

from .test_reference_runs import _reference

matplotlib.use("Agg")


def test_summary_names_budgets_and_the_routed_static_gap(tmp_path):
    ref = tmp_path / "reference"
    _reference(ref)  # brn_c16 (60%), brn_c16_static (50%), film still training
    assert reference.main([str(ref)]) == 0
    text = (ref / "summary.md").read_text()
    assert (ref / "curves.png").stat().st_size > 0 and (ref / "by_type.png").exists()
    assert "Ours: ours (reference, 40 min)" in text
    assert "| film | 40 min budget: in progress |" in text
    assert "## Routed vs static twin (brn_c16 vs brn_c16_static)" in text
    gap = reference.routed_static_gap(ref / "runs" / "brn_c16", ref / "runs" / "brn_c16_static")
    assert gap.loc["routed - static", "Overall"] == pytest.approx(10.0)


def test_summary_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs"):
        reference.summarize(tmp_path)
