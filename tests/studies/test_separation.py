"""`studies.reference.separation`: at which budget Table 2's rows separate over seeds.

The run directories are fabricated test data (`_seed_run`: validation passes only).
"""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from qgmrn.analysis import tables
from studies.reference import separation, summary

from ..analysis.test_reference_runs import _reference
from .test_reference_summary import _seed_run

C8, C16, C32 = "c=8, w/ q, gn", "c=16, w/ q, gn", "c=32, w/ q, gn"
T2 = stats.t.ppf(0.975, 2)  # two seeds an arm, equal spread: 2 degrees of freedom


def _runs(tmp_path, curves: dict[str, dict[int, list[tuple[int, float]]]], batch=64):
    """{preset: {seed: points}} -> {name: run folder}, seed 0 named after the preset."""
    runs = {}
    for preset, seeds in curves.items():
        for seed, points in seeds.items():
            name = preset if seed == 0 else f"{preset}_s{seed}"
            runs[name] = _seed_run(tmp_path / name, seed, points, batch=batch)
    return runs


def test_every_claim_is_a_pair_of_rows_the_paper_compares():
    experiments = {}
    for exp, model in tables.PAPER_TABLE2:
        experiments.setdefault(exp, set()).add(model)
    for low, high in separation.CLAIMS:
        assert {low, high} <= set(separation.TABLE2_ARMS)
        assert any({low, high} <= rows for rows in experiments.values()), (low, high)
        assert separation.paper_difference(low, high) > 0  # the paper's order


def test_curves_keep_the_common_steps_and_the_papers_row_order(tmp_path):
    runs = _runs(
        tmp_path,
        {
            # c=32 first and with an extra step: rows follow Table 2, columns the shared steps
            "brn_c32": {3: [(100, 0.52), (200, 0.62)], 2: [(100, 0.50), (200, 0.60), (300, 0.7)]},
            "brn_c8": {2: [(100, 0.40), (200, 0.50)]},
            "film": {0: [(100, 0.9), (200, 0.9)]},  # not a Table 2 arm: ignored
        },
    )
    runs["brn_c8_s3"] = tmp_path / "brn_c8_s3"  # just started: no metrics.jsonl yet
    runs["brn_c8_s3"].mkdir()
    (runs["brn_c8_s3"] / "config.json").write_text(json.dumps({"train": {"batch_size": 64}}))
    frame, batch = separation.arm_curves(runs)
    assert batch == 64
    assert list(frame.columns) == [100, 200]
    assert list(frame.index) == [(C8, 2), (C32, 2), (C32, 3)]
    assert frame.loc[(C32, 3), 200] == pytest.approx(62.0)
    with pytest.raises(separation.TooFewArms):
        separation.arm_curves({"brn_c8": runs["brn_c8_s2"]})
    with pytest.raises(ValueError, match="share no validation step"):
        separation.arm_curves(runs | _runs(tmp_path / "x", {"brn_c16": {0: [(150, 0.5)]}}))
    twin = _seed_run(tmp_path / "brn_c8", 2, [(100, 0.4), (200, 0.5)])  # config seed 2 as well
    with pytest.raises(ValueError, match="brn_c8 and brn_c8_s2 are both seed 2 of brn_c8"):
        separation.arm_curves({"brn_c8": twin} | runs)
    other = _runs(tmp_path / "b", {"brn_c16": {2: [(100, 0.4), (200, 0.5)]}}, batch=32)
    assert separation.arm_curves(runs | other)[1] is None  # batch sizes differ: steps only


def test_a_claim_separates_when_its_interval_excludes_zero_and_needs_two_seeds(tmp_path):
    runs = _runs(
        tmp_path,
        {
            # step 100: c8 40/42, c16 41/43: diff 1, interval +- T2 * sqrt(2) = 6.1: no
            # step 200: c8 40/42, c16 50/52: diff 10: separated; step 300: c16 below: reversed
            "brn_c8": {2: [(100, 0.40), (200, 0.40), (300, 0.50)],
                       3: [(100, 0.42), (200, 0.42), (300, 0.52)]},
            "brn_c16": {0: [(100, 0.41), (200, 0.50), (300, 0.40)],
                        2: [(100, 0.43), (200, 0.52), (300, 0.42)]},
            "brn_c32": {2: [(100, 0.60), (200, 0.60), (300, 0.60)]},  # one seed
        },
    )  # fmt: skip
    curves, _ = separation.arm_curves(runs)
    sep = separation.separation_frame(curves)
    c8_c16 = sep.xs(f"{C8} < {C16}", level="claim")
    assert c8_c16["verdict"].tolist() == ["not separated", "separated", "reversed"]
    assert c8_c16.loc[200, "diff"] == pytest.approx(10.0)
    assert c8_c16.loc[200, "se"] == pytest.approx(math.sqrt(2))
    assert c8_c16.loc[200, "ci"] == pytest.approx(T2 * math.sqrt(2))
    assert c8_c16.loc[100, "seeds"] == "2 / 2"
    assert c8_c16.loc[100, "paper"] == pytest.approx(94.7 - 86.8)  # the paper's, converged
    c16_c32 = sep.xs(f"{C16} < {C32}", level="claim")
    assert set(c16_c32["verdict"]) == {"one seed"} and c16_c32["ci"].isna().all()
    # claims without runs of both arms are left out; the others in the order of CLAIMS
    assert list(dict.fromkeys(sep.index.get_level_values("claim"))) == [
        f"{C8} < {C16}",
        f"{C16} < {C32}",
    ]
    assert separation.separating_step(sep) is None  # separated at 200, reversed at 300
    assert separation.claim_steps(sep).to_dict() == {f"{C8} < {C16}": None}
    caption = separation.separation_caption(sep, 64, curves)
    assert "Of 1 claim(s) weighed (2+ seeds an arm), 0 separate(s)" in caption
    assert "No budget up to 19,200 samples separates them all" in caption
    # pooled std at step 300: sqrt(2) (c8 50/52, c16 40/42): T2 * sqrt(2) * sqrt(2 / 2)
    assert separation.resolvable_difference(curves, 300) == pytest.approx(T2 * math.sqrt(2))
    assert f"difference of {T2 * math.sqrt(2):.1f} points with 2 seeds an arm" in caption
    # the definition stated beside the number: the pooled spread, and what a third seed buys
    assert separation.pooled_std(curves, 300) == (pytest.approx(math.sqrt(2)), 2)
    three = stats.t.ppf(0.975, 4) * math.sqrt(2) * math.sqrt(2 / 3)
    assert separation.resolvable_difference(curves, 300, 3) == pytest.approx(three)
    assert "pooled standard deviation 1.4 points over the 2 arms with 2+ seeds" in caption
    assert f"and {three:.1f} with 3" in caption and "t * s * sqrt(2 / seeds)" in caption
    assert "+7.9 to +7.9" in caption  # the weighed claim's only; c16 < c32 has one seed
    one = separation.separation_caption(
        sep.xs(f"{C16} < {C32}", level="claim", drop_level=False), 64, curves
    )
    assert one.startswith("Every claim with runs has one seed in an arm: no verdict")
    assert "edge of separation" in one and "+3.2 to +3.2" in one  # still says what 2 seeds buy


def test_the_separating_step_is_the_first_from_which_it_holds(tmp_path):
    runs = _runs(
        tmp_path,
        {
            "brn_c8": {2: [(100, 0.40), (200, 0.40), (300, 0.40), (400, 0.40)],
                       3: [(100, 0.42), (200, 0.42), (300, 0.42), (400, 0.42)]},
            "brn_c16": {2: [(100, 0.50), (200, 0.41), (300, 0.50), (400, 0.50)],
                        3: [(100, 0.52), (200, 0.43), (300, 0.52), (400, 0.52)]},
        },
    )  # fmt: skip
    t = separation.table2_over_seeds(runs, prior=42.0)
    # separated at 100, not at 200, again from 300: the budget is 300, not 100
    assert separation.separating_step(t["claims"]) == 300
    assert "All of them separate from 19,200 samples on" in t["caption"]
    assert "from 19,200 samples" in t["caption"].split(".")[0]
    claim = f"{C8} < {C16}"
    assert list(t["table"].columns) == ["6k", "13k", "19k", "26k", "separated from",
                                        "paper, converged"]  # fmt: skip
    assert t["table"].loc[claim, "separated from"] == "19k"
    assert t["table"].loc[claim, "paper, converged"] == "+7.9"
    assert t["table"].loc[claim, "6k"] == f"+10.0 ± {T2 * math.sqrt(2):.1f} separated"
    assert t["by_type"].loc[C16, "seeds"] == 2 and t["step"] == 400
    assert list(t["by_type"].index) == [C8, C16, f"{C8} std", f"{C16} std"]  # the paper's order
    last_only = separation.separation_frame(t["curves"].drop(columns=[300]))
    assert separation.separating_step(last_only) == 400
    assert "only at the last step" in separation.separation_caption(last_only, 64)


def test_budget_labels_fall_back_to_steps_where_samples_would_repeat():
    assert separation._budget_labels([15620, 15624], 64) == {15620: "step 15,620",
                                                              15624: "step 15,624"}  # fmt: skip
    assert separation._budget_labels([781, 3124], 64) == {781: "50k", 3124: "200k"}


def test_summary_adds_the_section_once_two_arms_have_runs(tmp_path):
    ref = tmp_path / "reference"
    _reference(ref)  # brn_c16 (60%), brn_c16_static (50%), film still training
    runs = ref / "runs"
    _seed_run(runs / "brn_c16_s2", 2, [(5, 0.45)])
    _seed_run(runs / "brn_c16_static_s2", 2, [(5, 0.45)])
    assert summary.main([str(ref)]) == 0
    assert "Table 2 over seeds" not in (ref / "summary.md").read_text()  # one arm: c=16, gn
    _seed_run(runs / "brn_c8_s2", 2, [(5, 0.40)])
    (runs / "brn_c32_s2").mkdir()  # started a moment ago: config, no metrics yet
    (runs / "brn_c32_s2" / "config.json").write_text(json.dumps({"train": {"batch_size": 64}}))
    assert summary.main([str(ref)]) == 0
    text = (ref / "summary.md").read_text()
    assert "## Table 2 over seeds: at which budget do its rows separate?" in text
    assert f"{C8} < {C16}" in text and "one seed" in text
    assert "By type at step 5, the last they share" in text
    assert (ref / "table2.png").stat().st_size > 0
    _seed_run(runs / "brn_c8_s3", 3, [(7, 0.40)])  # shares no step with the others
    assert summary.main([str(ref)]) == 0
    assert "Not available: the runs " in (ref / "summary.md").read_text()


def _table2_runs(tmp_path):
    """Runs of five arms at steps 50 and 100; at 100 (the last): w/o q 30/32 vs w/ q 40/42
    (+10, separated), c=8 gn 40/42 vs c=16 gn 41/43 (+1, not separable), c=32 gn one seed."""
    return _runs(
        tmp_path,
        {
            "brn_c16_noq": {2: [(50, 0.2), (100, 0.30)], 3: [(50, 0.2), (100, 0.32)]},
            "brn_c16_bn": {2: [(50, 0.3), (100, 0.40)], 3: [(50, 0.3), (100, 0.42)]},
            "brn_c8": {2: [(50, 0.3), (100, 0.40)], 3: [(50, 0.3), (100, 0.42)]},
            "brn_c16": {0: [(50, 0.3), (100, 0.41)], 2: [(50, 0.3), (100, 0.43)]},
            "brn_c32": {2: [(50, 0.4), (100, 0.50)]},
        },
    )


def test_table2_beside_the_paper_reads_every_arm_at_the_last_common_step(tmp_path):
    curves, batch = separation.arm_curves(_table2_runs(tmp_path))
    t = separation.table2_beside_paper(curves, batch, prior=42.0)
    assert list(t.index) == [*separation.TABLE2_ARMS, tables.PRIOR_LABEL]  # the paper's order
    noq = t.loc["c=16, w/o q"]
    assert noq["paper"] == 89.7 and noq["ours"] == pytest.approx(31.0)
    assert noq["std"] == pytest.approx(math.sqrt(2)) and noq["seeds"] == 2
    assert noq["per seed"] == "30.0 / 32.0" and noq["read at"] == "6k"  # 100 steps x 64
    assert noq["runs"] == "brn_c16_noq_s2, brn_c16_noq_s3"
    assert t.loc[C16, "runs"] == "brn_c16, brn_c16_s2"  # seed 0 is the folder named after it
    assert math.isnan(t.loc[C32, "std"]) and t.loc[C32, "seeds"] == 1  # one seed: no spread
    deeper = t.loc["c=32, w/ q, deeper"]
    assert math.isnan(deeper["ours"]) and deeper["seeds"] == 0 and deeper["runs"] == "none"
    assert t.loc[tables.PRIOR_LABEL, "ours"] == 42.0 and t.loc[tables.PRIOR_LABEL, "seeds"] == ""
    assert math.isnan(t.loc[tables.PRIOR_LABEL, "paper"])
    no_batch = separation.table2_beside_paper(curves, None)
    assert no_batch.loc[C8, "read at"] == "step 100" and tables.PRIOR_LABEL not in no_batch.index


def test_the_orderings_caption_says_where_the_intervals_hold_zero(tmp_path):
    t = separation.table2_over_seeds(_table2_runs(tmp_path), prior=42.0)
    text = t["orderings"]
    ci = f"{T2 * math.sqrt(2):.1f}"  # two seeds an arm, spread 1.4 each
    assert text.startswith("Question-type prior 42.0. Ours, the reference seed runs at 6,400 "
                           "samples (step 100), 1-2 seeds an arm: best c=32, w/ q, gn at 50.0 "
                           "(+8.0 against the prior); 1 of 5 rows above the prior.")  # fmt: skip
    assert (
        f"Question features to the classifier, w/ q - w/o q: c=16 +10.0 ± {ci} points: in the "
        "paper's order (the paper, converged: +3.3)." in text
    )
    assert (
        f"GroupNorm - BatchNorm as the third norm: c=16 +1.0 ± {ci} points: not separable at "
        "this budget (the paper, converged: +1.7)." in text
    )
    # mixed verdicts: each difference says its own
    assert (
        f"More modules per layer (gn): c=16 - c=8 +1.0 ± {ci} (not separable at this budget), "
        "c=32 - c=16 +8.0 (one seed in an arm: no interval) points (the paper, converged: "
        "+7.9, +3.2)." in text
    )
    assert "More modules per layer (bn)" not in text  # no runs of c=8 or c=32 with bn
    assert text.endswith("not separable where the interval holds zero.)")
    assert separation.ordering_caption(t["curves"], t["claims"], None).startswith(
        "Ours, the reference seed runs at step 100, 1-2 seeds an arm: best"
    )


def test_table2_figure_keeps_its_legend_off_the_bands(tmp_path):
    """The legend stands right of the axes: inside, it covered the arms' bands."""
    runs = _runs(
        tmp_path,
        {
            "brn_c8": {2: [(100, 0.40), (200, 0.45)], 3: [(100, 0.42), (200, 0.44)]},
            "brn_c16": {2: [(100, 0.41), (200, 0.46)]},
        },
    )
    curves, batch = separation.arm_curves(runs)
    fig = separation.plot_arm_curves(curves, batch, prior=42.0)
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert ax.xaxis.get_major_formatter()(12800, 0) == "12.8k"  # budgets in samples
