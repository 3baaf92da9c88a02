"""`qgmrn.analysis.separation`: at which budget Table 2's rows separate over seeds.

The run directories are fabricated test data (`_seed_run`: validation passes only).
"""

from __future__ import annotations

import math

import matplotlib
import pytest

from qgmrn.analysis import reference, separation

from .test_reference_runs import _reference
from .test_reference_summary import _seed_run

matplotlib.use("Agg")


def _runs(tmp_path, curves: dict[str, dict[int, list[tuple[int, float]]]]):
    """{preset: {seed: points}} -> {name: run folder}, seed 0 named after the preset."""
    runs = {}
    for preset, seeds in curves.items():
        for seed, points in seeds.items():
            name = preset if seed == 0 else f"{preset}_s{seed}"
            runs[name] = _seed_run(tmp_path / name, seed, points)
    return runs


def test_curves_keep_the_common_steps_and_the_papers_row_order(tmp_path):
    runs = _runs(
        tmp_path,
        {
            # c=32 first and with an extra step: rows follow Table 2, columns the shared steps
            "brn_c32": {2: [(100, 0.50), (200, 0.60), (300, 0.7)], 3: [(100, 0.52), (200, 0.62)]},
            "brn_c8": {2: [(100, 0.40), (200, 0.50)]},
            "film": {0: [(100, 0.9), (200, 0.9)]},  # not a Table 2 arm: ignored
        },
    )
    frame, batch = separation.arm_curves(runs)
    assert batch == 64
    assert list(frame.columns) == [100, 200]
    assert list(frame.index) == [("c=8, w/ q, gn", 2), ("c=32, w/ q, gn", 2), ("c=32, w/ q, gn", 3)]
    assert frame.loc[("c=32, w/ q, gn", 3), 200] == pytest.approx(62.0)
    with pytest.raises(ValueError, match="fewer than two Table 2 arms"):
        separation.arm_curves({"brn_c8": runs["brn_c8_s2"]})
    with pytest.raises(ValueError, match="share no validation step"):
        separation.arm_curves(runs | _runs(tmp_path / "x", {"brn_c16": {0: [(150, 0.5)]}}))


def test_a_claim_separates_beyond_two_standard_errors_and_needs_two_seeds(tmp_path):
    runs = _runs(
        tmp_path,
        {
            # step 100: c8 40/42, c16 41/43 (diff 1, s.e. 1.41): not separated
            # step 200: c8 40/42, c16 50/52 (diff 10, s.e. 1.41): separated
            # step 300: c8 50/52, c16 40/42: reversed
            "brn_c8": {2: [(100, 0.40), (200, 0.40), (300, 0.50)],
                       3: [(100, 0.42), (200, 0.42), (300, 0.52)]},
            "brn_c16": {0: [(100, 0.41), (200, 0.50), (300, 0.40)],
                        2: [(100, 0.43), (200, 0.52), (300, 0.42)]},
            "brn_c32": {2: [(100, 0.60), (200, 0.60), (300, 0.60)]},  # one seed
        },
    )  # fmt: skip
    curves, _ = separation.arm_curves(runs)
    sep = separation.separation_frame(curves)
    c8_c16 = sep.xs("c=8, w/ q, gn < c=16, w/ q, gn", level="claim")
    assert c8_c16["verdict"].tolist() == ["not separated", "separated", "reversed"]
    assert c8_c16.loc[200, "diff"] == pytest.approx(10.0)
    assert c8_c16.loc[200, "se"] == pytest.approx(math.sqrt(2 / 2 + 2 / 2))
    assert c8_c16.loc[100, "seeds"] == "2 / 2"
    c16_c32 = sep.xs("c=16, w/ q, gn < c=32, w/ q, gn", level="claim")
    assert set(c16_c32["verdict"]) == {"one seed"} and c16_c32["se"].isna().all()
    # claims without runs of both arms are left out
    claims = set(sep.index.get_level_values("claim"))
    assert claims == {"c=8, w/ q, gn < c=16, w/ q, gn", "c=16, w/ q, gn < c=32, w/ q, gn"}
    assert c8_c16.loc[100, "paper"] == pytest.approx(94.7 - 86.8)  # the paper's, converged
    assert separation.separating_step(sep) is None  # separated at 200, reversed at 300
    caption = separation.separation_caption(sep, 64, curves)
    assert "No budget up to 19,200 samples" in caption
    # pooled std at step 300: sqrt(2) (c8 50/52, c16 40/42): 2 * sqrt(2) * sqrt(2 / 2) = 2.8
    assert separation.resolvable_difference(curves, 300) == pytest.approx(2 * math.sqrt(2))
    assert "separate differences above 2.8 points" in caption and "+3.2 to +7.9" in caption


def test_the_separating_step_is_the_first_from_which_it_holds(tmp_path):
    runs = _runs(
        tmp_path,
        {
            "brn_c8": {2: [(100, 0.40), (200, 0.40), (300, 0.40)],
                       3: [(100, 0.42), (200, 0.42), (300, 0.42)]},
            "brn_c16": {2: [(100, 0.50), (200, 0.41), (300, 0.50)],
                        3: [(100, 0.52), (200, 0.43), (300, 0.52)]},
        },
    )  # fmt: skip
    sep = separation.separation_frame(separation.arm_curves(runs)[0])
    # separated at 100, not at 200, again at 300: the budget is 300, not 100
    assert separation.separating_step(sep) == 300
    assert "From 19,200 samples every weighed claim" in separation.separation_caption(sep, 64)


def test_summary_adds_the_section_once_two_arms_have_runs(tmp_path):
    ref = tmp_path / "reference"
    _reference(ref)  # brn_c16 (60%), brn_c16_static (50%), film still training
    runs = ref / "runs"
    _seed_run(runs / "brn_c16_s2", 2, [(5, 0.45)])
    _seed_run(runs / "brn_c16_static_s2", 2, [(5, 0.45)])
    assert reference.main([str(ref)]) == 0
    assert "Table 2 over seeds" not in (ref / "summary.md").read_text()  # one arm: c=16, w/ q, gn
    _seed_run(runs / "brn_c8_s2", 2, [(5, 0.40)])
    assert reference.main([str(ref)]) == 0
    text = (ref / "summary.md").read_text()
    assert "## Table 2 over seeds: at which budget do its rows separate?" in text
    assert "c=8, w/ q, gn < c=16, w/ q, gn" in text and "one seed" in text
    assert "By type at step 5, the last they share" in text
    assert (ref / "table2.png").stat().st_size > 0
