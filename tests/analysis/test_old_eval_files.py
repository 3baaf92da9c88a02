"""Evaluation files written by an older version of the package: every reader of eval.json and
eval_*.json in `qgmrn.analysis` reads them, taking defaults for the fields added since.

The old files are made from a run's real files (the committed reference BRN, written by the
code) by keeping only the fields the package's first version wrote: `by_depth`, `sparse`,
`data_dir`, `questions_file` and the `train` block's `steps_per_epoch` and `epochs_seen` came
later. No reader needs one of them; each reader is run on the new files and on the old ones and
must give the same answer (`epochs_seen` is derived from the steps where it is missing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from qgmrn.analysis import ablations, compare, curves, runs, tables

REFERENCE_RUN = Path(__file__).resolve().parents[2] / "results" / "reference" / "runs" / "brn_c16"
# what the first version wrote into eval.json (final evaluation) and eval_<split>_<ckpt>.json
# (qgmrn evaluate, which writes no train block)
FIRST_FIELDS = (
    "split", "n", "overall", "by_type", "by_subtype", "count_by_type", "count_by_subtype",
    "checkpoint", "checkpoint_step", "train",
)  # fmt: skip
FIRST_TRAIN_FIELDS = (
    "steps", "epochs_completed", "batch_in_epoch", "stop_reason", "epochs_budget", "max_minutes",
    "train_minutes", "wall_minutes_this_call", "global_batch", "world_size", "device", "torch",
)  # fmt: skip
LATER_FIELDS = ("by_depth", "sparse", "data_dir", "questions_file")
EVAL_FILES = ("eval.json", "eval_test_latest.json")
RUN_FILES = ("config.json", "metrics.jsonl", "history.jsonl", "routing_paths.npz", *EVAL_FILES)


def as_first_version(ev: dict) -> dict:
    old = {k: v for k, v in ev.items() if k in FIRST_FIELDS}
    if "train" in old:
        old["train"] = {k: v for k, v in old["train"].items() if k in FIRST_TRAIN_FIELDS}
    return old


@pytest.fixture(scope="module")
def new_and_old(tmp_path_factory) -> tuple[Path, Path]:
    """The reference BRN's files twice, under new/runs/brn_c16 and old/runs/brn_c16; the old
    run's eval files hold only the first version's fields."""
    root = tmp_path_factory.mktemp("eval_versions")
    made = []
    for version in ("new", "old"):
        run = root / version / "runs" / REFERENCE_RUN.name
        run.mkdir(parents=True)
        for name in RUN_FILES:
            shutil.copy(REFERENCE_RUN / name, run / name)
        ev = json.loads((REFERENCE_RUN / "eval.json").read_text())
        ev["by_depth"] = {"0": 0.7, "1": 0.5}  # as today's final evaluation writes it
        (run / "eval.json").write_text(json.dumps(ev))
        if version == "old":
            for name in EVAL_FILES:
                ev = json.loads((run / name).read_text())
                (run / name).write_text(json.dumps(as_first_version(ev)))
        made.append(run)
    return made[0], made[1]


def test_the_old_files_lack_the_fields_added_since(new_and_old):
    new, old = new_and_old
    for name in EVAL_FILES:
        ev_new, ev_old = (json.loads((run / name).read_text()) for run in (new, old))
        gone = set(ev_new) - set(ev_old)
        assert gone and gone <= set(LATER_FIELDS), name
    train_new = json.loads((new / "eval.json").read_text())["train"]
    train_old = json.loads((old / "eval.json").read_text())["train"]
    assert {"steps_per_epoch", "epochs_seen"} <= set(train_new) - set(train_old)


def test_every_reader_of_eval_files_reads_an_older_versions_as_the_new(new_and_old, tmp_path):
    new, old = new_and_old

    def without_history(run: Path) -> Path:
        """The run as the versions before history.jsonl left it: trained_on reads eval.json."""
        bare = tmp_path / run.parent.parent.name / run.name
        shutil.copytree(run, bare, ignore=shutil.ignore_patterns("history.jsonl"))
        return bare

    def read(run: Path) -> dict:
        return {
            "best_val": tables.best_val(run),
            "eval_row": tables.eval_row(tables.read_eval(run)),
            "run_budget": tables.run_budget(run),
            "budget": tables.budget_text(run, short=False),
            "label": tables.run_label(run, "reference"),
            "bar label": curves._bar_label("BRN", run),
            "finished": ablations.finished_text(run),
            "trained on": compare.trained_on(run),
            "trained on, no history": compare.trained_on(without_history(run)),
            "routed": [p.name for p in runs.routed_runs(run.parent, require=("eval.json",))],
        }

    a, b = read(new), read(old)
    epochs_new, epochs_old = a["run_budget"].pop("epochs_seen"), b["run_budget"].pop("epochs_seen")
    assert epochs_old == pytest.approx(epochs_new)  # derived from steps and batch_in_epoch
    assert b == a
    assert b["routed"] == [REFERENCE_RUN.name] and b["best_val"] is not None
    assert b["trained on, no history"] in ("CPU", "GPU")  # the device eval.json's train names

    frames = {
        "Table 1": lambda run: tables.build_table1({"BRN": run}, {"BRN": run}, source="ours"),
        "Table 1 from folders": lambda run: tables.table1_from_dirs({"ours": run.parent}),
        "Table 2": lambda run: tables.build_table2({"BRN": run}, source="ours"),
        "by type": lambda run: curves.accuracy_frame({"BRN": run}),
        "by subtype": lambda run: curves.accuracy_frame({"BRN": run}, by="subtype"),
        "honest": lambda run: compare.honest_frame({"BRN": run}),  # eval_test_latest.json too
        "routing": lambda run: compare.routing_frame({"BRN": run}, per_subtype=20),
        "runs": lambda run: runs.list_runs(run.parent).drop(columns="path"),
        "budgets": lambda run: tables.budget_frame({"ours": run.parent}),
    }
    for what, frame in frames.items():
        pd.testing.assert_frame_equal(frame(old), frame(new), obj=what)
    curves.plot_accuracy_by_type({"BRN": old})


@pytest.mark.parametrize("text", ['{"split": "val", "n": 10}', '{"overall": 0.5', "[1, 2]"])
def test_a_damaged_eval_file_is_refused_naming_it_and_the_command(tmp_path, text):
    (tmp_path / "eval.json").write_text(text)
    with pytest.raises(ValueError, match=r"eval\.json .*qgmrn evaluate"):
        tables.read_eval(tmp_path)
