"""`qgmrn.analysis.ablations`: what notebook 04 trains live, and how long that takes."""

from __future__ import annotations

import pytest

from qgmrn.analysis import ablations, tables

from ._fake_runs import write_fake_run


def test_table2_keyword_is_every_configuration_once_in_the_papers_order():
    every = ablations.parse_presets("table2")
    assert every == list(dict.fromkeys(tables.TABLE2_PRESETS.values()))
    assert len(every) == 9 and every[0] == "brn_c16_noq"
    assert ablations.parse_presets(" brn_c8, brn_c8 ,frn") == ["brn_c8", "frn"]
    assert ablations.parse_presets("") == []
    with pytest.raises(ValueError, match="unknown preset.*'brn_c7'"):
        ablations.parse_presets("brn_c8,brn_c7")


def test_the_demo_trains_nothing_live_unless_asked(tmp_path):
    assert ablations.live_plan("", "", "demo") == ([], {})
    for profile in ablations.LIVE_BY_DEFAULT:  # smoke: a pipeline check; paper: the real table
        assert ablations.live_plan("", "", profile)[0] == ablations.table2_presets()
    pair = ",".join(ablations.Q_PAIR)
    assert ablations.live_plan(pair, "", "demo") == (list(ablations.Q_PAIR), {})


def test_an_extra_preset_is_left_to_an_evaluated_reference_run(tmp_path):
    reference = tmp_path / "reference" / "runs"
    assert ablations.live_plan("", "frn", "demo", reference) == (["frn"], {})
    write_fake_run(reference / "frn", finished=False)  # still training: not drawn by 06 yet
    assert ablations.live_plan("", "frn", "demo", reference) == (["frn"], {})
    write_fake_run(reference / "frn")
    live, skipped = ablations.live_plan("brn_c8", "frn", "demo", reference)
    assert live == ["brn_c8"] and "06 draws that one" in skipped["frn"]
    assert ablations.live_plan("brn_c8,frn", "frn", "demo", reference)[0] == ["brn_c8", "frn"]


def test_expected_time_is_the_runs_times_their_budget_plus_the_start():
    pair = list(ablations.Q_PAIR)
    demo = ablations.run_minutes("brn_c16_bn", "demo")
    assert demo == 6.0  # the demo profile's TrainConfig.max_minutes
    assert ablations.run_minutes("brn_c16_bn", "demo", max_minutes=1.5) == 1.5
    assert ablations.expected_minutes(pair, "demo") == pytest.approx(
        2 * (6.0 + ablations.START_MINUTES)
    )
    text = ablations.plan_text(pair, "demo", max_minutes=2.0)
    assert text.startswith("2 runs x 2 min budget")
    assert text.endswith(f"about {round(2 * (2.0 + ablations.START_MINUTES))} min")
    assert ablations.plan_text(["brn_c8"], "demo").startswith("1 run x 6 min budget")
    assert ablations.plan_text([], "demo") == "0 runs"
    # smoke bounds its runs by epochs, not by minutes: no estimate rather than a wrong one
    assert ablations.expected_minutes(pair, "smoke") is None
    assert "no time estimate" in ablations.plan_text(pair, "smoke")


def test_a_finished_run_in_one_line(tmp_path):
    run = write_fake_run(
        tmp_path / "ablation_brn_c8",
        overall=0.256,
        n=4991,
        train_cfg={"max_minutes": 6.0, "epochs": 4},
        train_result={"stop_reason": "max_minutes", "max_minutes": 6.0, "steps": 1012,
                      "train_minutes": 6.0},
    )  # fmt: skip
    assert ablations.finished_text(run) == (
        "val 25.6% (4,991 questions); 6 min budget: 6.0 min, 1,012 steps, stopped by max_minutes"
    )
