"""Reference runs beside the profile's runs: budgets, Table 1 groups, run choice, curves.

All run directories here are fabricated test data (tests/analysis/_fake_runs.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest

from qgmrn.analysis import curves, runs, tables
from qgmrn.config import PRESETS

from ._fake_runs import write_fake_run

matplotlib.use("Agg")

BRN = {"arch": "brn", "gate": "gumbel"}
STATIC = {"arch": "brn", "gate": "static"}
FRN = {"arch": "frn", "gate": "gumbel"}


def _done(minutes: float, steps: int, epochs: int, reason: str, budget: float | None) -> dict:
    return {
        "steps": steps,
        "epochs_completed": epochs,
        "stop_reason": reason,
        "epochs_budget": 1000 if reason != "epochs" else epochs,
        "max_minutes": budget,
        "train_minutes": minutes,
    }


def _reference(root: Path) -> Path:
    """<root>/runs with a 40-minute routed BRN, its static twin and a FiLM run still training."""
    ref = root / "runs"
    write_fake_run(
        ref / "brn_c16",
        overall=0.6,
        profile="demo",
        model=BRN,
        train_cfg={"max_minutes": 40.0, "epochs": 1000},
        train_result=_done(40.1, 9000, 11, "max_minutes", 40.0),
    )
    write_fake_run(
        ref / "brn_c16_static",
        overall=0.5,
        profile="demo",
        model=STATIC,
        train_cfg={"max_minutes": 40.0, "epochs": 1000},
        train_result=_done(40.0, 9500, 12, "max_minutes", 40.0),
    )
    write_fake_run(
        ref / "film",
        profile="demo",
        model={"arch": "film", "gate": "gumbel"},
        train_cfg={"max_minutes": 40.0, "epochs": 1000},
        finished=False,
    )
    return ref


def _demo(root: Path) -> Path:
    demo = root / "demo" / "runs"
    write_fake_run(
        demo / "brn_c16",
        overall=0.4,
        profile="demo",
        model=BRN,
        train_cfg={"max_minutes": 6.0, "epochs": 4},
        train_result=_done(6.0, 1500, 2, "max_minutes", 6.0),
    )
    write_fake_run(
        demo / "frn",
        overall=0.45,
        profile="demo",
        model=FRN,
        train_cfg={"max_minutes": 6.0, "epochs": 4},
        train_result=_done(5.2, 2000, 4, "epochs", 6.0),
    )
    return demo


def test_static_twin_labels_map_to_static_presets():
    for label, preset in tables.STATIC_TWIN_PRESETS.items():
        assert preset in PRESETS and preset.endswith("_static")
        assert "static twin (ours)" in label and label not in tables.PAPER_TABLE1
    names = list(tables.table1_names())
    assert names.index("BRN (c=16), static twin (ours)") == names.index("BRN (c=16)") + 1
    assert not any("static" in n for n in tables.table1_names(static_twins=False))


def test_run_budget_from_eval_and_config(tmp_path):
    ref, demo = _reference(tmp_path), _demo(tmp_path)
    b = tables.run_budget(ref / "brn_c16")
    assert b["finished"] and b["stop_reason"] == "max_minutes" and b["steps"] == 9000
    assert tables.budget_text(ref / "brn_c16") == "40 min"
    long = tables.budget_text(ref / "brn_c16", short=False)
    assert long == "40 min budget: 40.1 min, 9,000 steps, 11 epochs, stopped by max_minutes"
    assert tables.budget_text(demo / "frn") == "4 epochs"  # it stopped by its epochs
    # still training: no eval.json, the budget comes from config.json
    b = tables.run_budget(ref / "film")
    assert not b["finished"] and b["max_minutes"] == 40.0 and b["steps"] is None
    assert tables.budget_text(ref / "film", short=False) == "40 min budget: in progress"
    assert tables.run_label(ref / "film", "reference") == "film (reference, 40 min, in progress)"
    # a run from before eval.json had a train block, with no budget in its config either
    old = write_fake_run(tmp_path / "old" / "x")
    assert tables.budget_text(old) == "budget unknown"
    steps = write_fake_run(tmp_path / "s" / "x", train_result=_done(1.0, 120, 0, "max_steps", None))
    assert tables.budget_text(steps) == "120 steps"


def test_table1_groups_side_by_side_with_budgets(tmp_path):
    ref, demo = _reference(tmp_path), _demo(tmp_path)
    t = tables.table1_from_dirs({"demo": demo, "reference": ref})
    sources = list(dict.fromkeys(t.index.get_level_values("source")))
    assert sources == ["paper", "ours (demo, 6 min / 4 epochs)", "ours (reference, 40 min)"]
    demo_rows = t.xs("ours (demo, 6 min / 4 epochs)", level="source")
    assert list(demo_rows.index) == ["BRN (c=16)", "FRN"]
    assert demo_rows.loc["BRN (c=16)", "Overall"] == pytest.approx(40.0)
    refs = t.xs("ours (reference, 40 min)", level="source")
    # routed then static twin; the unfinished FiLM run is left out
    assert list(refs.index) == ["BRN (c=16)", "BRN (c=16), static twin (ours)"]
    gap = refs.loc["BRN (c=16)"] - refs.loc["BRN (c=16), static twin (ours)"]
    assert gap["Count"] == pytest.approx(10.0)
    assert math.isnan(refs.loc["BRN (c=16)", "Humans after FT"])
    assert t.loc[("paper", "BRN (c=16)"), "Overall"] == 94.7  # untouched
    md = tables.to_markdown(t)
    assert "## Ours: ours (reference, 40 min)" in md and "## Ours: ours (demo, " in md
    out = tables.write_table(t, tmp_path / "tables", "table1")
    assert "static twin (ours)" in out["csv"].read_text()
    assert not list((tmp_path / "tables").glob("*.tmp*"))


def test_table1_groups_skip_empty_groups(tmp_path):
    demo = _demo(tmp_path)
    t = tables.table1_from_dirs({"demo": demo, "reference": tmp_path / "nowhere"})
    assert not any("reference" in s for s in t.index.get_level_values("source"))
    humans = {"demo": {"FRN": write_fake_run(tmp_path / "ft", overall=0.3)}}
    t = tables.build_table1_groups(
        {"demo": tables.find_runs(demo, tables.table1_names())}, humans, include_paper=False
    )
    assert t.loc[("ours (demo, 6 min / 4 epochs)", "FRN"), "Humans after FT"] == 30.0
    assert len(tables.build_table1_groups({}, include_paper=False)) == 0


def test_budget_frame_lists_finished_and_running(tmp_path):
    ref = _reference(tmp_path)
    f = tables.budget_frame({"reference": ref, "none": tmp_path / "missing"})
    assert list(f.index) == [("reference", n) for n in ("brn_c16", "brn_c16_static", "film")]
    assert list(f["finished"]) == [True, True, False]
    assert len(tables.budget_frame({})) == 0


def test_reference_runs_dir_only_under_demo(tmp_path):
    _reference(tmp_path)
    assert runs.reference_runs_dir(str(tmp_path), "demo") == tmp_path / "runs"
    assert runs.reference_runs_dir(str(tmp_path), "smoke") is None
    assert runs.reference_runs_dir(str(tmp_path), "paper") is None
    assert runs.reference_runs_dir("", "demo") is None
    assert runs.reference_runs_dir(str(tmp_path / "missing"), "demo") is None


def test_choose_run_prefers_reference_and_skips_static_twins(tmp_path):
    ref, demo = _reference(tmp_path), _demo(tmp_path)
    # the static twin is excluded even when it scores higher
    write_fake_run(demo / "brn_c16_static", overall=0.9, profile="demo", model=STATIC)
    assert runs.routed_runs(demo) == []  # fake runs hold no best.pt
    need = ("eval.json", "routing_paths.npz")
    assert runs.routed_runs(demo, require=need) == [demo / "brn_c16"]
    c = runs.choose_run(demo, "demo", ref, require=need)
    assert c.path == ref / "brn_c16" and c.source == "reference"
    assert c.label == "brn_c16 (reference, 40 min)"
    c = runs.choose_run(demo, "demo", None, require=need)
    assert c == runs.RunChoice(demo / "brn_c16", "demo")
    c = runs.choose_run(demo, "demo", ref, arch="frn", require=need)  # no FRN reference run
    assert c.path == demo / "frn" and c.label == "frn (demo, 4 epochs)"
    # a run still training counts when only its checkpoint is needed, after finished ones
    (ref / "film" / "best.pt").write_bytes(b"")
    assert runs.routed_runs(ref, arch=["brn", "film"], require=()) == [
        ref / "brn_c16",
        ref / "film",
    ]
    # our auxiliary-loss arm is shown only when named, even when it scores higher
    write_fake_run(ref / "brn_c16_attr", overall=0.95, profile="demo", model=BRN,
                   train_cfg={"attribute_loss_weight": 1.0})  # fmt: skip
    assert runs.routed_runs(ref, require=need) == [ref / "brn_c16"]
    assert runs.choose_run(demo, "demo", ref, require=need).path == ref / "brn_c16"
    assert runs.choose_run(demo, "demo", ref, run_name="brn_c16_attr").path == ref / "brn_c16_attr"
    assert runs.choose_run(demo, "demo", ref, run_name="frn").path == demo / "frn"
    assert runs.choose_run(demo, "demo", ref, run_name="film").source == "reference"
    with pytest.raises(FileNotFoundError):
        runs.choose_run(demo, "demo", ref, run_name="nope")
    assert runs.choose_run(tmp_path / "x", "smoke").path is None
    # once the reference has an FRN, 06's Figure 3 takes it over the demo profile's
    write_fake_run(ref / "frn", overall=0.4, profile="demo", model=FRN)
    c = runs.choose_run(demo, "demo", ref, arch="frn", require=need)
    assert c.path == ref / "frn" and c.source == "reference"


def test_reference_validation_curves(tmp_path):
    ref = _reference(tmp_path)
    labelled = runs.labelled_runs(ref, "reference")
    assert list(labelled) == [
        "brn_c16 (reference, 40 min)",
        "brn_c16_static (reference, 40 min)",
        "film (reference, 40 min, in progress)",
    ]
    assert runs.labelled_runs(None, "reference") == {}
    fig = curves.plot_validation_curves({**labelled, "empty": tmp_path / "empty"}, title="t")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    # the configs give no batch size: budgets in steps; the best is eval.json's, as in Table 1
    assert texts[0] == "brn_c16 (reference, 40 min): 5 steps, best.pt 60.0%"
    assert texts[2].endswith(": 5 steps, training (no final evaluation yet)")  # film, running
    assert ax.get_title() == "t"
    plt.close(fig)


def test_validation_column_skips_train_only_columns(tmp_path):
    """Real metrics.jsonl: train rows have acc, val rows overall; the val curve uses overall."""
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "acc": 0.1, "loss": 1.0}\n{"kind": "val", "step": 1, "overall": 0.25}\n'
    )
    _, val = curves.read_metrics(run)
    assert curves._val_accuracy_column(val) == "overall"


def test_budgets_say_the_fraction_of_an_epoch(tmp_path):
    """'0.4 epochs', not '0 epochs': from eval.json's epochs_seen, or derived for older runs."""
    new = {"steps": 300, "epochs_completed": 0, "batch_in_epoch": 300, "epochs_seen": 0.43,
           "stop_reason": "max_minutes", "max_minutes": 5.0, "train_minutes": 5.0}  # fmt: skip
    write_fake_run(tmp_path / "new", train_result=new)
    assert tables.budget_text(tmp_path / "new", short=False) == (
        "5 min budget: 5.0 min, 300 steps, 0.4 epochs, stopped by max_minutes"
    )
    old = {**new, "epochs_seen": None}
    write_fake_run(tmp_path / "old", train_result=old)  # no whole epoch: cannot say how much
    assert "300 steps, less than an epoch," in tables.budget_text(tmp_path / "old", short=False)
    older = {**new, "steps": 2500, "epochs_completed": 2, "batch_in_epoch": 500}
    del older["epochs_seen"]
    write_fake_run(tmp_path / "older", train_result=older)  # 1,000 steps an epoch: 2.5
    assert tables.run_budget(tmp_path / "older")["epochs_seen"] == pytest.approx(2.5)
    assert "2,500 steps, 2.5 epochs," in tables.budget_text(tmp_path / "older", short=False)


def test_paths_are_shown_relative_to_the_project_root(tmp_path):
    inside = runs.resolve_path("results/demo/runs/brn_c16")
    assert inside.is_absolute()
    assert runs.shown(inside) == str(Path("results/demo/runs/brn_c16"))
    assert runs.shown(tmp_path / "x") == str(tmp_path / "x")  # outside: as it is


def test_reference_run_names_a_reference_run_and_never_a_profile_one(tmp_path):
    ref, demo = _reference(tmp_path), _demo(tmp_path)
    need = ("eval.json", "routing_paths.npz")
    # 06's Figure 3b (BRN c=32, as the paper draws it): none in the reference yet, and the demo
    # profile's run of that name is not taken in its place
    write_fake_run(demo / "brn_c32", overall=0.5, profile="demo", model=BRN)
    assert runs.reference_run(ref, "brn_c32", require=need) == runs.RunChoice(None, "reference")
    assert runs.reference_run(None, "brn_c32").path is None
    write_fake_run(ref / "brn_c32", overall=0.4, profile="demo", model=BRN)
    c = runs.reference_run(ref, "brn_c32", require=need)
    assert c == runs.RunChoice(ref / "brn_c32", "reference")
    assert runs.reference_run(ref, "brn_c32", require=("best.pt",)).path is None  # no checkpoint
