"""The numbers the committed notebooks show agree with the results files they come from.

`make reproduce` executes the notebooks and commits their outputs; the runs, tables and eval files
are committed beside them. When one changes without the other (a run retrained, a notebook not
re-executed), a student reads numbers that no file supports. Each check below reads a number from
a committed notebook's output (or a table a notebook wrote) and recomputes it from the raw file
it comes from: an `eval.json`, a run's `metrics.jsonl`. docs/notebooks.md lists the checks.

| notebook | number | compared with |
|---|---|---|
| 00 | every demo run listed, its split, n and overall | each run's `eval.json` |
| 03 | best val, the overall and by-type accuracy it prints | its run's `eval.json` |
| 05 | accuracy after fine-tuning | the fine-tuned run's `eval.json` |
| 06 | Table 1's rows of ours (`tables/table1.csv`) | the runs' `eval.json` |
| 06 | routed BRN vs its static twin in Table 1's caption | their `eval.json` |
| 04, 06 | Table 2 of the reference seeds (`tables/table2_seeds.csv`, 04's output) | the seed |
|  | | runs' `metrics.jsonl` at the step they share |
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEMO = ROOT / "results" / "demo"
REF_RUNS = ROOT / "results" / "reference" / "runs"
TYPES = ("count", "exist", "compare_numbers", "query_attribute", "compare_attribute")
TYPE_LABELS = ("Count", "Exist", "Compare Numbers", "Query Attribute", "Compare Attribute")


def _text(name: str) -> str:
    """Every text output of notebook `name` (streams and text/plain), in cell order."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            parts.append("".join(text))
    return "\n".join(parts)


def _eval(run: Path) -> dict:
    return json.loads((run / "eval.json").read_text())


def _rounds_to(value: float, shown: str) -> bool:
    """Whether `value` printed with the digits of `shown` gives `shown`."""
    digits = len(shown.split(".")[1]) if "." in shown else 0
    return f"{value:.{digits}f}" == shown


def test_00_lists_every_demo_run_with_its_eval():
    rows = re.findall(r"^\s*\d+\s+(\S+)\s+(\w+)\s+(val|test)\s+(\d+)\s+(\d\.\d+)\s*$",
                      _text("00_overview"), flags=re.M)  # fmt: skip
    listed = {run for run, *_ in rows}
    evaluated = {p.parent.name for p in (DEMO / "runs").glob("*/eval.json")}
    assert listed == evaluated
    for run, _, split, n, overall in rows:
        ev = _eval(DEMO / "runs" / run)
        assert (ev["split"], ev["n"]) == (split, int(n)), run
        assert _rounds_to(ev["overall"], overall), (run, ev["overall"], overall)


def test_03_prints_its_runs_eval():
    text, ev = _text("03_train"), _eval(DEMO / "runs" / "brn_c16")
    best = re.search(r"best val (\d\.\d+) at step", text)
    assert best and _rounds_to(ev["overall"], best.group(1))
    overall = re.search(r"overall (\d\.\d+) on (\d+) questions \((\w+)\)", text)
    assert overall and _rounds_to(ev["overall"], overall.group(1))
    assert (int(overall.group(2)), overall.group(3)) == (ev["n"], ev["split"])
    for label, key in zip(TYPE_LABELS, TYPES, strict=True):
        shown = re.search(rf"^{label}\s+(\d\.\d+)\s*$", text, flags=re.M)
        assert shown and _rounds_to(ev["by_type"][key], shown.group(1)), label


def test_05_prints_the_fine_tuned_runs_eval():
    after = re.search(r"after:\s+(\d\.\d+) on (\d+) questions", _text("05_clevr_humans"))
    ev = _eval(DEMO / "runs" / "brn_c16_humans")
    assert after and _rounds_to(ev["overall"], after.group(1)) and int(after.group(2)) == ev["n"]


def _table1_rows() -> list[dict]:
    with (DEMO / "tables" / "table1.csv").open() as f:
        return [r for r in csv.DictReader(f) if r["source"].startswith("ours")]


def test_06_table1_rows_of_ours_are_the_runs_eval_files():
    evals = [_eval(p.parent) for p in [*(DEMO / "runs").glob("*/eval.json"),
                                       *REF_RUNS.glob("*/eval.json")]]  # fmt: skip
    evals = [ev for ev in evals if set(TYPES) <= set(ev.get("by_type", {}))]  # CLEVR's types
    rows = _table1_rows()
    assert rows
    for row in rows:  # each row is some run's eval.json, overall and every type
        shown = [row["Overall"], *(row[label] for label in TYPE_LABELS)]
        assert any(
            all(_rounds_to(100 * v, s) for v, s in
                zip([ev["overall"], *(ev["by_type"][t] for t in TYPES)], shown, strict=True))
            for ev in evals
        ), row["model"]  # fmt: skip
        if row["Humans after FT"]:  # the CLEVR-Humans fine-tune 05 made
            humans = _eval(DEMO / "runs" / "brn_c16_humans")["overall"]
            assert _rounds_to(100 * humans, row["Humans after FT"]), row["model"]


def test_06_routed_against_static_caption_is_their_eval_files():
    found = re.search(r"Routed BRN \(c=16\) (\d+\.\d) vs its static twin (\d+\.\d)",
                      _text("06_figures"))  # fmt: skip
    if found is None:
        pytest.skip("06 shows no routed-vs-static comparison")
    assert _rounds_to(100 * _eval(REF_RUNS / "brn_c16")["overall"], found.group(1))
    assert _rounds_to(100 * _eval(REF_RUNS / "brn_c16_static")["overall"], found.group(2))


def _val_overall(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "overall" in row:
            out[int(row["step"])] = float(row["overall"])
    return out


def test_04_and_06_table2_of_the_seeds_is_the_seed_runs_metrics():
    with (DEMO / "tables" / "table2_seeds.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["runs"] not in ("", "none")]
    assert rows
    curves = {r["model"]: [_val_overall(REF_RUNS / n) for n in r["runs"].split(", ")] for r in rows}
    step = max(set.intersection(*(set(c) for runs in curves.values() for c in runs)))
    shown_04 = _text("04_ablations")
    for r in rows:  # the mean over the seeds at the last validation step every run shares
        seeds = [100 * c[step] for c in curves[r["model"]]]
        assert float(r["ours"]) == pytest.approx(np.mean(seeds), abs=0.006), r["model"]
        assert r["per seed"] == " / ".join(f"{s:.1f}" for s in seeds), r["model"]
        assert r["per seed"] in shown_04, r["model"]  # 04 shows the table it wrote
