"""`python -m studies.reference`: the summary written beside the reference runs.

The run directories are fabricated test data (tests/analysis/_fake_runs.py).
"""

from __future__ import annotations

import json
import math

import pytest

from qgmrn.analysis import compare
from studies.reference import naming, seeds, summary
from studies.reference.ours import ours_caption, ours_comparison

from ..analysis.test_compare import with_history
from ..analysis.test_reference_runs import _reference


def test_summary_names_budgets_and_the_routed_static_gap(tmp_path):
    ref = tmp_path / "reference"
    _reference(ref)  # brn_c16 (60%), brn_c16_static (50%), film still training
    assert summary.main([str(ref)]) == 0
    text = (ref / "summary.md").read_text()
    assert (ref / "curves.png").stat().st_size > 0 and (ref / "by_type.png").exists()
    assert "Ours: ours (reference, 40 min)" in text
    assert "| film | 40 min budget: in progress |" in text
    assert "## Routed vs static twin (brn_c16 vs brn_c16_static)" in text
    gap = compare.routed_static_gap(ref / "runs" / "brn_c16", ref / "runs" / "brn_c16_static")
    assert gap.loc["routed - static", "Overall"] == pytest.approx(10.0)


def test_twin_pairs_lists_every_routed_run_with_a_finished_twin():
    finished = dict.fromkeys(["brn_c32", "brn_c16_static", "brn_c32_static", "brn_c16", "film"])
    assert naming.twin_pairs(finished) == ["brn_c16", "brn_c32"]  # the --routed one first
    assert naming.twin_pairs(finished, routed="brn_c32") == ["brn_c32", "brn_c16"]
    assert naming.twin_pairs({"brn_c32": None, "brn_c16_static": None}) == []


def test_summary_says_where_each_stretch_of_steps_was_trained(tmp_path):
    """summary.md lists the segments of the runs that keep a history (history.jsonl)."""
    ref = tmp_path / "reference"
    with_history(ref)
    assert summary.main([str(ref)]) == 0
    text = (ref / "summary.md").read_text()
    assert "## Where the steps were trained" in text and "| brn_c16 | 3 | 1,500-2,000 |" in text


def test_summary_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs"):
        summary.summarize(tmp_path)


def _seed_run(path, seed, points, by_type_shift=0.0, batch=64):
    """A run folder (config seed `seed`) whose validation passes are (step, overall) `points`,
    each type at overall + `by_type_shift`."""
    path.mkdir(parents=True)
    cfg = {"train": {"batch_size": batch, "seed": seed}}
    (path / "config.json").write_text(json.dumps(cfg))
    rows = [{"kind": "val", "step": s, "overall": a,
             "by_type": {"count": a + by_type_shift, "exist": a - by_type_shift}}
            for s, a in points]  # fmt: skip
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_seeds_are_compared_at_the_largest_common_step(tmp_path):
    runs = {
        # the default-seed runs go on longer: the common step is the seed runs' last (2,000)
        "brn_c16": _seed_run(tmp_path / "brn_c16", 0, [(1000, 0.40), (2000, 0.50), (9000, 0.7)]),
        "brn_c16_s2": _seed_run(tmp_path / "brn_c16_s2", 2, [(1000, 0.41), (2000, 0.54)]),
        "brn_c16_s3": _seed_run(tmp_path / "brn_c16_s3", 3, [(2000, 0.46)]),
        "brn_c16_static": _seed_run(tmp_path / "brn_c16_static", 0, [(2000, 0.48), (9000, 0.6)]),
        "brn_c16_static_s2": _seed_run(tmp_path / "brn_c16_static_s2", 2, [(2000, 0.50)]),
        "brn_c16_static_s3": _seed_run(tmp_path / "brn_c16_static_s3", 3, [(2000, 0.48)]),
        "film": _seed_run(tmp_path / "film", 0, [(1500, 0.9)]),  # not an arm: ignored
    }
    frame, step = seeds.seeds_frame(runs, {"routed": "brn_c16", "static": "brn_c16_static"})
    assert step == 2000
    assert frame.loc[("routed", 2), "Overall"] == pytest.approx(54.0)
    assert frame.loc[("static", 0), "Count"] == pytest.approx(48.0)
    assert list(frame.xs("routed", level="arm").index) == [0, 2, 3]
    gap = seeds.seeds_gap(frame, "routed", "static")
    assert gap.loc["routed mean", "Overall"] == pytest.approx(50.0)
    assert gap.loc["routed std", "Overall"] == pytest.approx(4.0)
    # routed 50, 54, 46 (std 4); static 48, 50, 48 (std 1.155): gap 4/3, s.e. sqrt(16/3 + 4/9)
    assert gap.loc["routed - static", "Overall"] == pytest.approx(4 / 3)
    assert gap.loc["routed - static s.e.", "Overall"] == pytest.approx((16 / 3 + 4 / 9) ** 0.5)
    seeds.plot_seeds(frame, step, frame.mean())  # a prior line per column
    with pytest.raises(ValueError, match="no run of 'brn_c32'"):
        seeds.seeds_frame(runs, {"routed": "brn_c32", "static": "brn_c16_static"})
    no_common = {"brn_c16": runs["brn_c16"], "brn_c16_static": _seed_run(
        tmp_path / "other", 0, [(1234, 0.5)])}  # fmt: skip
    with pytest.raises(ValueError, match="share no validation step"):
        seeds.seeds_frame(no_common, {"routed": "brn_c16", "static": "brn_c16_static"})


def test_summary_keeps_seed_runs_out_of_the_reference_tables(tmp_path):
    ref = tmp_path / "reference"
    _reference(ref)  # brn_c16 (60%), brn_c16_static (50%), film still training
    runs = ref / "runs"
    for name in ("brn_c16_s2", "brn_c16_static_s2"):
        _seed_run(runs / name, 2, [(5, 0.45)])
    assert summary.main([str(ref)]) == 0
    text = (ref / "summary.md").read_text()
    assert "## Routed vs static over seeds (brn_c16 vs brn_c16_static)" in text
    assert (ref / "seeds.png").stat().st_size > 0
    equal = text.split("## At equal training samples")[1].split("##")[0]
    assert "brn_c16_s2" not in equal


def test_seeds_caption_says_whether_the_gap_is_outside_its_95_percent_interval():
    import pandas as pd
    from scipy import stats

    frame = pd.DataFrame(
        {"Overall": [50.0, 52.0, 51.0, 44.0, 45.0, 46.0], "Count": [40.0, 41, 42, 40, 41, 42]},
        index=pd.MultiIndex.from_tuples(
            [("routed", s) for s in (0, 2, 3)] + [("static", s) for s in (0, 2, 3)],
            names=["arm", "seed"],
        ),
    )
    gap = seeds.seeds_gap(frame, "routed", "static")
    text = seeds.seeds_caption(gap, 3124)
    assert text.startswith("At step 3,124 (3 routed, 3 static seeds), routed minus static: +6.0")
    # routed 50/52/51, static 44/45/46: +6.0 +- t(4 dof) * sqrt(1/3 + 1/3)
    half = stats.t.ppf(0.975, 4) * (2 / 3) ** 0.5
    assert gap.loc["routed - static 95% c.i.", "Overall"] == pytest.approx(half)
    assert f"+6.0 ± {half:.1f} points overall (95% interval" in text
    assert "routed ahead" in text and "Outside the interval: Count" not in text  # Count: 0
    one = seeds.seeds_gap(frame.xs(0, level="seed", drop_level=False), "routed", "static")
    assert "no spread yet" in seeds.seeds_caption(one, 781)


def test_our_arm_gets_its_own_section_beside_its_paper_twins(tmp_path):
    ref = tmp_path / "reference"
    _reference(ref)  # brn_c16 (60%), brn_c16_static (50%), film still training
    runs = ref / "runs"
    ours = {"train": {"batch_size": 100, "attribute_loss_weight": 1.0}}
    for name, points in (("brn_c16_attr", [(5, 0.55), (1000, 0.7)]),
                         ("brn_c16_static_attr", [(5, 0.52), (1000, 0.66)])):  # fmt: skip
        _seed_run(runs / name, 0, points)
        cfg = json.loads((runs / name / "config.json").read_text())
        (runs / name / "config.json").write_text(json.dumps(cfg | ours))
    paper, arm = naming.split_ours({p.name: p for p in runs.iterdir()})
    assert sorted(arm) == ["brn_c16_attr", "brn_c16_static_attr"] and "brn_c16" in paper
    assert naming.ours_twins(arm, paper) == {
        "brn_c16_attr": "brn_c16", "brn_c16_static_attr": "brn_c16_static"}  # fmt: skip
    assert summary.main([str(ref)]) == 0
    text = (ref / "summary.md").read_text()
    section = text.split("## Our labelled arm")[1]
    assert "ours, not the paper's method" in section and "weight 1)" in section
    # the fabricated twins have no scored validation pass: no budget in common
    assert "brn_c16_attr: no common budget with brn_c16 yet" in section
    assert "By type at step" not in section  # the fabricated twins share no validation step
    assert (ref / "ours.png").stat().st_size > 0
    before = text.split("## Our labelled arm")[0]
    assert "brn_c16_attr" not in before.split("## Budgets")[0]  # not a Table 1 row
    assert "brn_c16_attr" not in before.split("## At equal training samples")[1]


def test_ours_caption_compares_at_the_largest_common_budget():
    import pandas as pd

    equal = pd.DataFrame(
        {"100k": [50.0, 48.0], "250k": [60.0, 51.5], "500k": [70.0, float("nan")]},
        index=["brn_c16_attr", "brn_c16"],
    )
    words = ours_caption(equal, {"brn_c16_attr": "brn_c16"})
    assert words.endswith("brn_c16_attr 60.0 vs brn_c16 51.5 at 250k samples (+8.5).")


def test_ours_comparison_by_type_at_the_step_all_four_runs_share(tmp_path):
    ours_cfg = {"train": {"batch_size": 64, "attribute_loss_weight": 0.5}}
    runs = {}
    for name, points in (("brn_c16", [(500, 0.40), (1000, 0.45)]),
                         ("brn_c16_static", [(500, 0.41), (1000, 0.44), (2000, 0.5)]),
                         ("brn_c16_attr", [(500, 0.5), (1000, 0.60)]),
                         ("brn_c16_static_attr", [(1000, 0.55), (1500, 0.6)])):  # fmt: skip
        runs[name] = _seed_run(tmp_path / name, 0, points)
        if name.endswith("_attr"):
            cfg = json.loads((runs[name] / "config.json").read_text())
            (runs[name] / "config.json").write_text(json.dumps(cfg | ours_cfg))
    paper, ours = naming.split_ours(runs)
    c = ours_comparison(ours, paper)
    assert c["step"] == 1000
    assert c["over_seeds"].loc["paper routed", "seeds"] == 1  # no seed runs yet
    for name, acc in (("brn_c16_s2", 0.47), ("brn_c16_static_s2", 0.46)):
        paper[name] = _seed_run(tmp_path / name, 2, [(1000, acc)])
    seeded = ours_comparison(ours, paper)
    assert seeded["seeds_step"] == 1000 and seeded["step"] == 1000
    table = seeded["over_seeds"]
    assert table.loc["paper routed", "seeds"] == 2
    assert table.loc["ours routed, reach all", "seeds"] == 1
    assert table.loc["paper routed", "Overall"] == pytest.approx(46.0)
    assert table.loc["paper routed std", "Overall"] == pytest.approx(2**0.5)
    assert "ours routed, reach all std" not in table.index  # one seed: no spread
    gaps = seeded["gaps"]
    assert gaps.loc["paper routed - paper static", "Overall"] == pytest.approx(46.0 - 45.0)
    # routed 45/47, static 44/46: std sqrt(2) each, s.e. sqrt(2), 2 degrees of freedom
    assert gaps.loc["paper routed - paper static 95% c.i.", "Overall"] == pytest.approx(
        4.302653 * 2**0.5
    )
    assert gaps.loc["ours routed, reach all - paper routed", "Overall"] == pytest.approx(14.0)
    assert math.isnan(gaps.loc["ours routed, reach all - ours static 95% c.i.", "Overall"])
    assert c["by_type"].loc["ours (reach all): routed - static", "Overall"] == pytest.approx(5.0)
    assert c["by_type"].loc["routed: ours (reach all) - paper", "Overall"] == pytest.approx(15.0)
    # 1,000 steps of 64 = 64k samples: short of the first common budget (100k)
    assert "brn_c16_attr: no common budget with brn_c16 yet" in c["caption"]
    # the figure compares to our arm's longest run (1,500 steps = 96k samples): the static twin,
    # trained to 2,000 steps, is drawn to there and says so
    ax = c["figure"].axes[0]
    assert "to 96k samples (the longest run of our arm)" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "brn_c16_static (paper): first 96k of its 128k samples" in labels
    assert max(max(ln.get_xdata()) for ln in ax.get_lines() if ln.get_marker() == "o") == 96_000


def test_ours_comparison_sets_the_two_reaches_side_by_side(tmp_path):
    ours_cfg = {"train": {"batch_size": 64, "attribute_loss_weight": 1.0}}
    runs = {}
    for name, seed, points in (("brn_c16", 0, [(500, 0.40), (1000, 0.45)]),
                               ("brn_c16_static", 0, [(1000, 0.44)]),
                               ("brn_c16_attr", 0, [(1000, 0.60), (2000, 0.7)]),
                               ("brn_c16_attrv", 0, [(500, 0.5), (1000, 0.58)]),
                               ("brn_c16_attrv_s2", 2, [(1000, 0.54)]),
                               ("brn_c16_static_attr", 0, [(1000, 0.55)])):  # fmt: skip
        runs[name] = _seed_run(tmp_path / name, seed, points)
        if "_attr" in name:  # the config says what the run was: its reach, a static gate
            cfg = json.loads((runs[name] / "config.json").read_text()) | ours_cfg
            if "_attrv" in name:
                cfg["train"] = cfg["train"] | {"attribute_loss_reach": "visual"}
            if "_static" in name:
                cfg["model"] = {"gate": "static"}
            (runs[name] / "config.json").write_text(json.dumps(cfg))
    paper, ours = naming.split_ours(runs)
    assert set(ours) == {"brn_c16_attr", "brn_c16_attrv", "brn_c16_attrv_s2", "brn_c16_static_attr"}
    assert naming.ours_twins(ours, paper) == {
        "brn_c16_attr": "brn_c16", "brn_c16_attrv": "brn_c16",
        "brn_c16_static_attr": "brn_c16_static"}  # fmt: skip
    c = ours_comparison(ours, paper)
    assert c["step"] == c["seeds_step"] == 1000
    table = c["over_seeds"]
    assert table.loc["ours routed, reach visual", "seeds"] == 2
    assert table.loc["ours routed, reach visual", "Overall"] == pytest.approx(56.0)
    assert table.loc["ours routed, reach all", "seeds"] == 1
    assert c["by_type"].loc["routed: ours (reach visual) - paper", "Overall"] == pytest.approx(13.0)
    assert c["by_type"].loc["ours (reach all): routed - static", "Overall"] == pytest.approx(5.0)
    labels = [t.get_text() for t in c["figure"].axes[0].get_legend().get_texts()]
    assert any(t.startswith("brn_c16_attrv (ours: + attribute loss, reach visual)") for t in labels)
    assert any(t.startswith("brn_c16_static_attr (ours: + attribute loss): ") for t in labels)
