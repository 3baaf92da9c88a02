import math

import pandas as pd
import pytest

from qgmrn.analysis import tables
from qgmrn.config import PRESETS

from ._fake_runs import write_fake_run


def test_paper_tables_typed_in_as_published():
    """Spot checks against the paper: rows, columns and a few cells of Tables 1 and 2."""
    t1 = tables.paper_table1()
    assert len(t1) == 19
    assert list(t1.columns) == ["n", *tables.TABLE1_COLUMNS]
    assert t1.loc[("paper", "FRN+Attention"), "Overall"] == 98.9
    assert t1.loc[("paper", "MAC (Hudson and Manning 2018)"), "Humans after FT"] == 81.5
    assert math.isnan(t1.loc[("paper", "BRN (c=8)"), "Humans after FT"])
    t2 = tables.paper_table2()
    assert len(t2) == 17
    assert t2.loc[("paper", "depth and width", "c=32, w/ q, wider"), "Compare Numbers"] == 83.8


def test_paper_tables_agree_with_each_other():
    """The BRN gn rows of Table 2 are the BRN rows of Table 1; repeated Table 2 rows agree."""
    for c in (8, 16, 32):
        t1 = tables.PAPER_TABLE1[f"BRN (c={c})"][:6]
        assert tables.PAPER_TABLE2[("bn vs gn", f"c={c}, w/ q, gn")] == t1
    by_model: dict = {}
    for (_, model), row in tables.PAPER_TABLE2.items():
        assert by_model.setdefault(model, row) == row


def test_every_mapped_preset_exists():
    for preset in [*tables.TABLE1_PRESETS.values(), *tables.TABLE2_PRESETS.values()]:
        assert preset in PRESETS


def test_build_table1_keeps_paper_and_ours_apart(tmp_path):
    runs = {"FRN": write_fake_run(tmp_path / "frn", overall=0.25)}
    humans = {"FRN": write_fake_run(tmp_path / "frn_ft", overall=0.125)}
    t = tables.build_table1(runs, humans)
    assert set(t.index.get_level_values("source")) == {"paper", "ours (smoke)"}
    ours = t.loc[("ours (smoke)", "FRN")]
    assert ours["Overall"] == pytest.approx(25.0)
    assert ours["Count"] == pytest.approx(25.0)
    assert ours["Compare Attribute"] == pytest.approx(29.0)
    assert ours["Humans after FT"] == pytest.approx(12.5)
    assert ours["n"] == 100
    assert t.loc[("paper", "FRN"), "Overall"] == 98.2  # untouched


def test_build_table2_places_rows_in_every_experiment(tmp_path):
    runs = {"c=32, w/ q": write_fake_run(tmp_path / "a"), "mine": write_fake_run(tmp_path / "b")}
    t = tables.build_table2(runs, source="ours", include_paper=False)
    exps = list(t.index.get_level_values("experiment"))
    assert exps == ["bn vs gn", "modules per layer", "depth and width", "other"]


def test_missing_eval_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="eval.json"):
        tables.build_table1({"x": tmp_path})


def test_write_table_csv_and_markdown(tmp_path):
    t = tables.build_table1({"FRN": write_fake_run(tmp_path / "frn", overall=0.5)})
    paths = tables.write_table(t, tmp_path / "tables", "table1", title="Table 1")
    back = pd.read_csv(paths["csv"], index_col=[0, 1])
    assert back.loc[("ours (smoke)", "FRN"), "Overall"] == pytest.approx(50.0)
    md = paths["md"].read_text()
    assert "## Published in the paper" in md and "## Ours: ours (smoke)" in md
    assert md.index("Published") < md.index("Ours")
    assert not list((tmp_path / "tables").glob(".*tmp"))  # no temporary files left


def test_write_plain_table_titles_the_table_and_captions_it(tmp_path):
    frame = pd.DataFrame({"paper": [86.8, float("nan")], "ours": [42.91, 44.6]},
                         index=pd.Index(["c=8, w/ q, gn", "prior"], name="model"))  # fmt: skip
    paths = tables.write_plain_table(frame, tmp_path, "t2", title="Table 2", note="A caption.")
    assert pd.read_csv(paths["csv"], index_col=0).loc["c=8, w/ q, gn", "ours"] == 42.91
    lines = paths["md"].read_text().splitlines()
    assert lines[0] == "# Table 2" and lines[2] == "| model | paper | ours |"
    assert "| c=8, w/ q, gn | 86.8 | 42.9 |" in lines and "| prior | – | 44.6 |" in lines
    assert lines[-1] == "A caption."
    untitled = tables.write_plain_table(frame, tmp_path, "bare")["md"].read_text()
    assert untitled.startswith("| model |") and untitled.endswith("|\n")


def test_find_runs_skips_missing(tmp_path):
    write_fake_run(tmp_path / "frn")
    assert tables.find_runs(tmp_path, {"FRN": "frn", "BRN": "brn"}) == {"FRN": tmp_path / "frn"}


def test_side_by_side(tmp_path):
    t = tables.build_table1({"FRN": write_fake_run(tmp_path / "frn", overall=0.5)})
    s = tables.side_by_side(t)
    assert s.loc["FRN", "paper"] == 98.2 and s.loc["FRN", "ours (smoke)"] == pytest.approx(50.0)


def test_table2_runs_have_their_own_names():
    """04_ablations' runs never collide with 03_train's run of the same preset (brn_c16)."""
    names = tables.table2_run_names()
    assert names.keys() == tables.TABLE2_PRESETS.keys()
    assert names["c=16, w/ q, gn"] == "ablation_brn_c16"
    for label, preset in tables.TABLE2_PRESETS.items():
        assert names[label] == f"ablation_{preset}"


def test_table2_block_names_its_budget(tmp_path):
    minute = {"max_minutes": 1.0, "epochs": 4}
    done = {"stop_reason": "max_minutes", "max_minutes": 1.0, "train_minutes": 1.0}
    runs = {
        label: write_fake_run(tmp_path / name, profile="demo", train_cfg=minute, train_result=done)
        for label, name in list(tables.table2_run_names().items())[:2]
    }
    t = tables.build_table2(runs, include_paper=False)
    assert set(t.index.get_level_values("source")) == {"ours (demo, 1 min)"}
    longer = {**done, "max_minutes": 5.0, "train_minutes": 5.0}
    runs["c=16, w/ q, gn"] = write_fake_run(
        tmp_path / "brn_c16", profile="demo", train_cfg={**minute, "max_minutes": 5.0},
        train_result=longer,
    )  # fmt: skip
    t = tables.build_table2(runs, include_paper=False)
    assert set(t.index.get_level_values("source")) == {"ours (demo, 1 min / 5 min)"}


def test_eval_row_gives_nan_for_a_type_without_questions():
    """A small split may hold no question of some type: eval.json has null there."""
    import math

    from qgmrn.analysis.tables import TABLE2_COLUMNS, eval_row

    ev = {"overall": 0.5, "by_type": {"count": None, "exist": 0.25}}
    row = dict(zip(TABLE2_COLUMNS, eval_row(ev), strict=True))
    assert row["Overall"] == 50.0
    assert any(math.isnan(v) for v in row.values())


def test_with_prior_appends_the_question_type_prior(mini_clevr_dir, tmp_path):
    from qgmrn.analysis.prior import data_set_prior
    from qgmrn.analysis.tables import PRIOR_LABEL, paper_table1, paper_table2, with_prior

    ev = data_set_prior(mini_clevr_dir)
    for table in (paper_table1(), paper_table2()):
        out = with_prior(table, mini_clevr_dir)
        assert len(out) == len(table) + 1 and out.index[-1][-1] == PRIOR_LABEL
        assert out.iloc[-1]["Overall"] == pytest.approx(100 * ev["overall"])
