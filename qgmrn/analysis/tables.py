"""Tables 1 and 2: the paper's published numbers beside ours, clearly labelled, never mixed.

`PAPER_TABLE1` and `PAPER_TABLE2` are typed in from the paper (accuracy in percent; ``None``
where the paper prints "–"). `build_table1` / `build_table2` read our runs' ``eval.json`` files
(fractions, see docs/internals.md) and return one DataFrame indexed by ``(source, model)`` in
which the paper's rows and ours are separate blocks: ``source`` is ``"paper"`` for the published
numbers and ``"ours (<profile>)"`` for ours. Nothing is averaged or filled across the two.

Several groups of our runs (the profile's runs, the long reference runs) can stand side by side
(`build_table1_groups`, `table1_from_dirs`); each group's source names its training budget
(`run_budget`, `budget_text`), e.g. ``"ours (demo, 6 min)"`` and ``"ours (reference, 40 min)"``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from qgmrn.clevr.constants import QUESTION_TYPES, TYPE_LABELS
from qgmrn.engine.finetuning import finetuned_from
from qgmrn.fileio import atomic_write_text

PathLike = str | os.PathLike

# Column names, in the paper's order; the first six are CLEVR accuracies, the last CLEVR-Humans
# after fine-tuning. eval.json's by_type is keyed by QUESTION_TYPES, in the same order.
TYPE_KEYS: tuple[str, ...] = tuple(QUESTION_TYPES)
TYPE_COLUMNS: tuple[str, ...] = tuple(TYPE_LABELS[t] for t in TYPE_KEYS)
TABLE1_COLUMNS: tuple[str, ...] = ("Overall", *TYPE_COLUMNS, "Humans after FT")
TABLE2_COLUMNS: tuple[str, ...] = ("Overall", *TYPE_COLUMNS)

Row = tuple[float | None, ...]

# Table 1 of the paper: accuracy (%) on CLEVR (overall and per type) and on CLEVR-Humans after
# fine-tuning. (*) marks methods that use program supervision.
PAPER_TABLE1: dict[str, Row] = {
    "Human (Johnson et al. 2017b)": (92.6, 86.7, 96.6, 86.5, 95.0, 96.0, None),
    "N2NMN* (Hu et al. 2017)": (83.7, 68.5, 85.7, 84.9, 90.0, 88.7, None),
    "PG+EE (18K prog.)* (Johnson et al. 2017b)": (95.4, 90.1, 97.3, 96.5, 97.4, 98.0, 66.6),
    "PG+EE (700K prog.)* (Johnson et al. 2017b)": (96.9, 92.7, 97.1, 98.7, 98.1, 98.9, None),
    "TbD* (Mascharka et al. 2018)": (99.1, 97.6, 99.2, 99.4, 99.5, 99.6, None),
    "LSTM (Johnson et al. 2017b)": (46.8, 41.7, 61.1, 69.8, 36.8, 51.8, 36.5),
    "CNN+LSTM (Johnson et al. 2017b)": (52.3, 43.7, 65.2, 67.1, 49.3, 53.0, 43.2),
    "CNN+LSTM+SA (Johnson et al. 2017b)": (76.6, 64.4, 82.7, 77.4, 82.6, 75.4, 57.6),
    "FiLM (Perez et al. 2018)": (97.6, 94.3, 99.3, 93.4, 99.3, 99.3, 75.9),
    "QGHC (Gao et al. 2018)": (86.3, 78.1, 91.7, 80.7, 89.4, 86.8, None),
    "Relation Network (Santoro et al. 2017)": (95.5, 90.1, 97.8, 93.6, 97.9, 97.1, None),
    "MAC (Hudson and Manning 2018)": (98.9, 97.2, 99.5, 99.4, 99.3, 99.5, 81.5),
    "NS-CL (Mao et al. 2019)": (98.9, 98.2, 98.9, 99.0, 99.3, 99.1, None),
    "BRN (c=8)": (86.8, 79.5, 93.4, 75.1, 90.0, 91.1, None),
    "BRN (c=16)": (94.7, 90.8, 98.1, 82.8, 97.3, 98.4, None),
    "BRN (c=32)": (97.9, 95.4, 98.9, 92.9, 99.4, 99.7, 77.9),
    "BRN (c=32)+Attention": (98.7, 97.4, 99.6, 95.1, 99.7, 99.7, 79.3),
    "FRN": (98.2, 96.6, 99.9, 94.1, 98.7, 99.9, 79.9),
    "FRN+Attention": (98.9, 97.7, 99.9, 94.5, 99.8, 99.9, 81.8),
}

# Table 2 of the paper: ablations of BRN on CLEVR, accuracy (%). Rows are (experiment, model);
# the paper repeats some rows across experiments and so do we. "gn" = GroupNorm as the third
# normalisation of the bottleneck; rows without "gn" use BatchNorm there.
PAPER_TABLE2: dict[tuple[str, str], Row] = {
    ("q to classifier", "c=16, w/o q"): (89.7, 84.7, 95.9, 81.9, 90.2, 94.6),
    ("q to classifier", "c=16, w/ q"): (93.0, 90.8, 98.6, 83.6, 91.7, 98.9),
    ("bn vs gn", "c=8, w/ q"): (75.1, 66.8, 84.7, 75.8, 80.3, 68.4),
    ("bn vs gn", "c=8, w/ q, gn"): (86.8, 79.5, 93.4, 75.1, 90.0, 91.1),
    ("bn vs gn", "c=16, w/ q"): (93.0, 90.8, 98.6, 83.6, 91.7, 98.9),
    ("bn vs gn", "c=16, w/ q, gn"): (94.7, 90.8, 98.1, 82.8, 97.3, 98.4),
    ("bn vs gn", "c=32, w/ q"): (94.0, 93.0, 99.6, 85.9, 91.9, 99.4),
    ("bn vs gn", "c=32, w/ q, gn"): (97.9, 95.4, 98.9, 92.9, 99.4, 99.7),
    ("modules per layer", "c=8, w/ q"): (75.1, 66.8, 84.7, 75.8, 80.3, 68.4),
    ("modules per layer", "c=16, w/ q"): (93.0, 90.8, 98.6, 83.6, 91.7, 98.9),
    ("modules per layer", "c=32, w/ q"): (94.0, 93.0, 99.6, 85.9, 91.9, 99.4),
    ("modules per layer", "c=8, w/ q, gn"): (86.8, 79.5, 93.4, 75.1, 90.0, 91.1),
    ("modules per layer", "c=16, w/ q, gn"): (94.7, 90.8, 98.1, 82.8, 97.3, 98.4),
    ("modules per layer", "c=32, w/ q, gn"): (97.9, 95.4, 98.9, 92.9, 99.4, 99.7),
    ("depth and width", "c=32, w/ q"): (94.0, 93.0, 99.6, 85.9, 91.9, 99.4),
    ("depth and width", "c=32, w/ q, deeper"): (94.3, 94.1, 99.6, 85.4, 92.1, 99.5),
    ("depth and width", "c=32, w/ q, wider"): (93.7, 91.7, 99.0, 83.8, 93.0, 99.1),
}

# Which of our presets (qgmrn.config.PRESETS) stands for which paper row.
TABLE1_PRESETS: dict[str, str] = {
    "LSTM": "lstm",
    "CNN+LSTM": "cnn_lstm",
    "CNN+LSTM+SA": "cnn_lstm_sa",
    "FiLM": "film",
    "BRN (c=8)": "brn_c8",
    "BRN (c=16)": "brn_c16",
    "BRN (c=32)": "brn_c32",
    "BRN (c=32)+Attention": "brn_c32_attn",
    "FRN": "frn",
    "FRN+Attention": "frn_attn",
}
# Table 2 model label -> preset. The paper's "w/o q", "deeper" and "wider" rows use BatchNorm as
# the third norm (they are compared with its BatchNorm rows), and so do those presets.
TABLE2_PRESETS: dict[str, str] = {
    "c=16, w/o q": "brn_c16_noq",
    "c=8, w/ q": "brn_c8_bn",
    "c=8, w/ q, gn": "brn_c8",
    "c=16, w/ q": "brn_c16_bn",
    "c=16, w/ q, gn": "brn_c16",
    "c=32, w/ q": "brn_c32_bn",
    "c=32, w/ q, gn": "brn_c32",
    "c=32, w/ q, deeper": "brn_c32_deeper",
    "c=32, w/ q, wider": "brn_c32_wider",
}

# 04_ablations trains every Table 2 configuration under its own run name, ``ablation_<preset>``,
# so that all rows share one budget: 03_train's longer run of the same preset (brn_c16) is a
# Table 1 row and never stands in for an ablation row.
ABLATION_RUN_PREFIX = "ablation_"


def table2_run_names(prefix: str = ABLATION_RUN_PREFIX) -> dict[str, str]:
    """Table 2 model label -> the run name 04_ablations gives it (``<prefix><preset>``)."""
    return {label: f"{prefix}{preset}" for label, preset in TABLE2_PRESETS.items()}


# Static twins (the same networks with every gate fixed at 1, qgmrn.config): ours only, not rows
# of the paper. In `table1_names` each follows its routed counterpart, so the routed-vs-static gap
# per question type reads off two adjacent rows.
STATIC_TWIN_PRESETS: dict[str, str] = {
    "BRN (c=16), static twin (ours)": "brn_c16_static",
    "BRN (c=32), static twin (ours)": "brn_c32_static",
    "FRN, static twin (ours)": "frn_static",
}
# routed Table 1 label -> the label of its static twin
STATIC_TWIN_OF: dict[str, str] = {
    "BRN (c=16)": "BRN (c=16), static twin (ours)",
    "BRN (c=32)": "BRN (c=32), static twin (ours)",
    "FRN": "FRN, static twin (ours)",
}

PAPER_SOURCE = "paper"


def _paper_frame(rows: Mapping, columns: tuple[str, ...]) -> pd.DataFrame:
    data = [[math.nan if v is None else v for v in values] for values in rows.values()]
    return pd.DataFrame(data, columns=list(columns))


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1 as a DataFrame indexed by (source="paper", model)."""
    df = _paper_frame(PAPER_TABLE1, TABLE1_COLUMNS)
    df.index = pd.MultiIndex.from_product(
        [[PAPER_SOURCE], list(PAPER_TABLE1)], names=["source", "model"]
    )
    df.insert(0, "n", math.nan)
    return df


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 indexed by (source="paper", experiment, model)."""
    df = _paper_frame(PAPER_TABLE2, TABLE2_COLUMNS)
    df.index = pd.MultiIndex.from_tuples(
        [(PAPER_SOURCE, exp, model) for exp, model in PAPER_TABLE2],
        names=["source", "experiment", "model"],
    )
    df.insert(0, "n", math.nan)
    return df


def read_eval(run_dir: PathLike) -> dict:
    """The ``eval.json`` of a run directory (or the file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "eval.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no eval.json; has this run been evaluated?")
    try:
        ev = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        ev = e
    if not isinstance(ev, dict) or "overall" not in ev:
        # every version writes `overall`: a file without it is damaged, not old
        what = "is not JSON" if isinstance(ev, Exception) else "has no 'overall'"
        raise ValueError(
            f"{path} {what}: not an evaluation file; rewrite it with `qgmrn evaluate {path.parent}`"
        )
    return ev


def best_val(run_dir: PathLike) -> tuple[float, int | None] | None:
    """A run's best validation accuracy as every table, caption and legend here reports it:
    (eval.json's `overall`, its `checkpoint_step`), i.e. best.pt (the weights of the run's
    highest validation pass) scored again by the final evaluation on val, the number Table 1
    shows. None for a run without that evaluation yet (no eval.json, or one of another split).

    Not the highest pass of metrics.jsonl: that pass ran at the training run's precision (bf16
    autocast on a GPU), the final evaluation in the evaluating machine's, so the same weights can
    differ by a few questions (the reference FiLM: 54.5% at its step-20,000 pass on an H200,
    54.3% for best.pt in fp32 on the CPU)."""
    path = Path(run_dir) / "eval.json"
    if not path.exists():
        return None
    ev = json.loads(path.read_text())
    if ev.get("split", "val") != "val" or ev.get("overall") is None:
        return None
    step = ev.get("checkpoint_step")
    return float(ev["overall"]), (int(step) if step is not None else None)


def read_run_profile(run_dir: PathLike) -> str | None:
    """The profile recorded in a run's ``config.json``, or None if there is none."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("profile")


def eval_row(ev: Mapping, columns: tuple[str, ...] = TABLE2_COLUMNS) -> list[float]:
    """Overall and per-type accuracy of one eval.json, in percent, in `columns` order."""
    by_type = ev.get("by_type", {})
    values = {"Overall": ev["overall"]}
    for col, key in zip(TYPE_COLUMNS, TYPE_KEYS, strict=True):
        values[col] = by_type.get(key, math.nan)
    # a type with no questions in the evaluated split is null in eval.json: no number (nan)
    return [100.0 * float(_or_nan(values.get(col))) for col in columns]


def _or_nan(v) -> float:
    return math.nan if v is None else v


def _ours_source(run_dirs: Mapping[str, PathLike], source: str | None, budget: bool = False) -> str:
    """`source` if given, else ``"ours (<profiles>)"``; with `budget` also the runs' budget,
    ``"ours (<profiles>, <budget>)"`` (`group_budget`)."""
    if source is not None:
        return source
    profiles = sorted({p for d in run_dirs.values() if (p := read_run_profile(d)) is not None})
    parts = [", ".join(profiles)] if profiles else []
    if budget and run_dirs:
        parts.append(group_budget(run_dirs.values()))
    return f"ours ({', '.join(parts)})" if parts else "ours"


def build_table1(
    run_dirs: Mapping[str, PathLike],
    humans_run_dirs: Mapping[str, PathLike] | None = None,
    *,
    source: str | None = None,
    include_paper: bool = True,
) -> pd.DataFrame:
    """Table 1: the paper's rows, then ours (one row per entry of `run_dirs`).

    run_dirs:        model label -> run directory holding eval.json (CLEVR-style test split).
    humans_run_dirs: model label -> fine-tuned run directory whose eval.json gives the
                     "Humans after FT" column; labels absent here get NaN there.
    source:          label of our block (default "ours (<profiles of the runs>)").
    Accuracies are percentages; column ``n`` is the number of questions we evaluated.
    """
    humans_run_dirs = dict(humans_run_dirs or {})
    src = _ours_source(run_dirs, source)
    rows, index = [], []
    for label, run_dir in run_dirs.items():
        ev = read_eval(run_dir)
        values = eval_row(ev, TABLE2_COLUMNS)
        humans = math.nan
        if label in humans_run_dirs:
            humans = 100.0 * float(read_eval(humans_run_dirs[label])["overall"])
        rows.append([float(ev.get("n", math.nan)), *values, humans])
        index.append((src, label))
    ours = pd.DataFrame(
        rows,
        columns=["n", *TABLE1_COLUMNS],
        index=pd.MultiIndex.from_tuples(index, names=["source", "model"]),
    )
    return pd.concat([paper_table1(), ours]) if include_paper else ours


def build_table1_groups(
    groups: Mapping[str, Mapping[str, PathLike]],
    humans: Mapping[str, Mapping[str, PathLike]] | None = None,
    *,
    include_paper: bool = True,
    budget: bool = True,
) -> pd.DataFrame:
    """Table 1 with several labelled blocks of ours: the paper's rows, then one block per group.

    groups: group name (e.g. the profile, or ``"reference"``) -> {model label: run directory}.
    humans: group name -> {model label: fine-tuned run directory} ("Humans after FT").
    budget: name each block ``"ours (<group>, <budget>)"`` (`group_budget`), else
            ``"ours (<group>)"``. Empty groups are left out.
    """
    humans = dict(humans or {})
    blocks = [paper_table1()] if include_paper else []
    for name, run_dirs in groups.items():
        if not run_dirs:
            continue
        src = f"ours ({name}, {group_budget(run_dirs.values())})" if budget else f"ours ({name})"
        blocks.append(build_table1(run_dirs, humans.get(name), source=src, include_paper=False))
    if not blocks:
        return paper_table1().iloc[:0]
    return pd.concat(blocks)


def table1_names(*, static_twins: bool = True) -> dict[str, str]:
    """Table 1 label -> preset, in the paper's order, each static twin after its routed model."""
    names: dict[str, str] = {}
    for label, preset in TABLE1_PRESETS.items():
        names[label] = preset
        if static_twins and label in STATIC_TWIN_OF:
            twin = STATIC_TWIN_OF[label]
            names[twin] = STATIC_TWIN_PRESETS[twin]
    return names


def table1_from_dirs(
    runs_dirs: Mapping[str, PathLike],
    *,
    static_twins: bool = True,
    include_paper: bool = True,
) -> pd.DataFrame:
    """Table 1 from folders of runs: group name -> ``runs/`` folder holding one run per preset
    (named as the preset; ``<preset>_humans`` for the CLEVR-Humans fine-tune). Runs without an
    eval.json are left out; each group's source names its budget."""
    names = table1_names(static_twins=static_twins)
    humans_names = {label: f"{preset}_humans" for label, preset in names.items()}
    groups = {name: find_runs(d, names) for name, d in runs_dirs.items()}
    humans: dict[str, dict[str, Path]] = {name: {} for name in runs_dirs}
    folders = {name: Path(d).resolve() for name, d in runs_dirs.items()}
    for name, d in runs_dirs.items():
        for label, run in find_runs(d, humans_names).items():
            # a fine-tune's number belongs on the row of the run it started from, which may
            # sit in another group's folder (05 fine-tunes the reference BRN under demo)
            source = finetuned_from(run)
            owner = (
                name
                if source is None
                else next((n for n, f in folders.items() if f == source.resolve().parent), None)
            )
            if owner is not None:
                humans[owner][label] = run
    return build_table1_groups(groups, humans, include_paper=include_paper)


def build_table2(
    run_dirs: Mapping[str, PathLike],
    *,
    source: str | None = None,
    include_paper: bool = True,
    budget: bool = True,
) -> pd.DataFrame:
    """Table 2: the paper's ablation rows, then ours, each placed in every experiment that the
    paper lists its model label under (labels as in `TABLE2_PRESETS`; an unknown label goes under
    experiment "other"). With `budget`, our block is named ``"ours (<profile>, <budget>)"``
    (`group_budget`: one budget, or the distinct ones joined by " / " when the rows differ)."""
    src = _ours_source(run_dirs, source, budget)
    rows, index = [], []
    for label, run_dir in run_dirs.items():
        ev = read_eval(run_dir)
        experiments = [exp for exp, model in PAPER_TABLE2 if model == label] or ["other"]
        for exp in experiments:
            rows.append([float(ev.get("n", math.nan)), *eval_row(ev, TABLE2_COLUMNS)])
            index.append((src, exp, label))
    ours = pd.DataFrame(
        rows,
        columns=["n", *TABLE2_COLUMNS],
        index=pd.MultiIndex.from_tuples(index, names=["source", "experiment", "model"]),
    )
    return pd.concat([paper_table2(), ours]) if include_paper else ours


PRIOR_LABEL = "question-type prior"


def with_prior(table: pd.DataFrame, data_dir: PathLike, split: str = "val") -> pd.DataFrame:
    """`table` (the Table 1 or Table 2 layout) with the question-type prior of `data_dir` as its
    last row: the majority answer of each subtype among the train questions, scored on `split`
    (`qgmrn.analysis.prior`), the floor a model that ignores the image reaches."""
    from qgmrn.analysis.prior import data_set_prior

    ev = data_set_prior(data_dir, split)
    values = dict(zip(TABLE2_COLUMNS, eval_row(ev, TABLE2_COLUMNS), strict=True))
    row = [float(ev["n"]) if c == "n" else values.get(c, math.nan) for c in table.columns]
    source = f"prior ({Path(data_dir).name}, {split})"
    middle = ("all",) * (table.index.nlevels - 2)
    key = (source, *middle, PRIOR_LABEL)
    prior = pd.DataFrame([row], columns=table.columns, index=pd.MultiIndex.from_tuples([key]))
    prior.index.names = table.index.names
    return pd.concat([table, prior])


def side_by_side(table: pd.DataFrame, column: str = "Overall") -> pd.DataFrame:
    """One metric with one column per source (paper, ours ...), rows = model labels."""
    df = table[column].reset_index()
    keys = [c for c in df.columns if c not in ("source", column)]
    return df.pivot_table(index=keys, columns="source", values=column, sort=False)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.0f}" if v.is_integer() and v > 100 else f"{v:.1f}"
    return str(v)


def plain_markdown(frame: pd.DataFrame) -> str:
    """A plain Markdown table of any frame: its index level(s) first, numbers as `_fmt` writes
    them (one decimal, "–" for a missing value)."""
    flat = frame.reset_index()
    head = ["" if c == "index" else str(c) for c in flat.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in flat.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def to_markdown(table: pd.DataFrame, title: str = "") -> str:
    """A Markdown rendering with one section per source, so paper and ours are never mixed."""
    lines = [f"# {title}", ""] if title else []
    for src, block in table.groupby(level="source", sort=False):
        heading = "Published in the paper" if src == PAPER_SOURCE else f"Ours: {src}"
        block = block.droplevel("source")
        names = list(block.index.names)
        cols = [c for c in block.columns if not (c == "n" and block[c].isna().all())]
        lines += [f"## {heading}", ""]
        lines.append("| " + " | ".join([*names, *cols]) + " |")
        lines.append("|" + "---|" * (len(names) + len(cols)))
        for key, row in block.iterrows():
            key = key if isinstance(key, tuple) else (key,)
            cells = [str(k) for k in key] + [_fmt(row[c]) for c in cols]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Accuracy in percent; n = number of questions we evaluated; – = not reported.")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, out_dir: PathLike, name: str, title: str = "") -> dict:
    """Write `table` as ``<out_dir>/<name>.csv`` and ``<name>.md`` atomically; returns the paths."""
    out_dir = Path(out_dir)
    csv_text = table.to_csv(float_format="%.2f")
    csv_path = atomic_write_text(out_dir / f"{name}.csv", csv_text, fsync=False)
    md_path = atomic_write_text(out_dir / f"{name}.md", to_markdown(table, title), fsync=False)
    return {"csv": csv_path, "md": md_path}


def write_plain_table(
    frame: pd.DataFrame, out_dir: PathLike, name: str, title: str = "", note: str = ""
) -> dict:
    """Write any `frame` as ``<out_dir>/<name>.csv`` and ``<name>.md`` atomically: the Markdown
    is `title` as a heading, the table (`plain_markdown`) and `note` below it (a caption).
    Returns the paths. (`write_table` is for the paper-and-ours layout of Tables 1 and 2.)"""
    out_dir = Path(out_dir)
    csv_text = frame.to_csv(float_format="%.2f")
    csv_path = atomic_write_text(out_dir / f"{name}.csv", csv_text, fsync=False)
    parts = ([f"# {title}", ""] if title else []) + [plain_markdown(frame), ""]
    parts += [note, ""] if note else []
    md_path = atomic_write_text(out_dir / f"{name}.md", "\n".join(parts), fsync=False)
    return {"csv": csv_path, "md": md_path}


def find_runs(runs_dir: PathLike, names: Mapping[str, str]) -> dict[str, Path]:
    """label -> run directory for each ``names[label]`` under `runs_dir` that has an eval.json.

    Runs that are missing are left out, so a table can be built from what has been trained.
    """
    runs_dir = Path(runs_dir)
    found = {}
    for label, run_name in names.items():
        if (runs_dir / run_name / "eval.json").exists():
            found[label] = runs_dir / run_name
    return found


# --------------------------------------------------------------------------------------------
# training budgets


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def run_budget(run_dir: PathLike) -> dict:
    """How long a run was allowed to train, and how long it did.

    From the ``train`` block of eval.json (written when training ends; docs/internals.md) and,
    for a run without one (still training, or evaluated by an older version), from config.json.
    Keys: ``profile, finished`` (eval.json exists), ``stop_reason`` (max_minutes | max_steps |
    epochs | None), ``max_minutes, epochs_budget, train_minutes, steps, epochs_completed,
    epochs_seen`` (the fraction included; None where unknown).
    """
    run_dir = Path(run_dir)
    cfg = _read_json(run_dir / "config.json")
    ev = _read_json(run_dir / "eval.json")
    tc = cfg.get("train", {}) if isinstance(cfg.get("train"), dict) else {}
    tr = ev.get("train", {}) if isinstance(ev.get("train"), dict) else {}
    return {
        "profile": cfg.get("profile"),
        "finished": bool(ev),
        "stop_reason": tr.get("stop_reason"),
        "max_minutes": tr.get("max_minutes", tc.get("max_minutes")),
        "epochs_budget": tr.get("epochs_budget", tc.get("epochs")),
        "train_minutes": tr.get("train_minutes"),
        "steps": tr.get("steps"),
        "epochs_completed": tr.get("epochs_completed"),
        "epochs_seen": _epochs_seen(tr),
    }


def _epochs_seen(tr: Mapping) -> float | None:
    """Epochs trained, fraction included: eval.json's `epochs_seen`, else (older runs) derived
    from the whole epochs' steps; None where it cannot be known (no whole epoch yet)."""
    if tr.get("epochs_seen") is not None:
        return float(tr["epochs_seen"])
    done, steps, part = tr.get("epochs_completed"), tr.get("steps"), tr.get("batch_in_epoch")
    if not done or steps is None or part is None:
        return None
    return done + part / ((steps - part) / done)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def budget_text(run_dir: PathLike, *, short: bool = True) -> str:
    """The budget that bounded a run: ``"40 min"``, ``"1,200 steps"`` or ``"4 epochs"``.

    A run stopped by its step limit shows steps, one stopped by its epochs shows epochs, others
    (stopped by, or still running under, a wall-clock limit) show minutes. ``short=False`` adds
    what was trained: ``"40 min budget: 39.9 min, 12,345 steps, 15 epochs, stopped by
    max_minutes"`` (``"in progress"`` for a run without eval.json).
    """
    b = run_budget(run_dir)
    reason, minutes, epochs = b["stop_reason"], b["max_minutes"], b["epochs_budget"]
    if reason == "max_steps" and b["steps"] is not None:
        head = _plural(int(b["steps"]), "step")
    elif reason == "epochs" and epochs is not None:
        head = _plural(int(epochs), "epoch")
    elif minutes:
        head = f"{float(minutes):g} min"
    elif epochs is not None:
        head = _plural(int(epochs), "epoch")
    else:
        head = "budget unknown"
    if short:
        return head
    if not b["finished"]:
        return f"{head} budget: in progress"
    done = []
    if b["train_minutes"] is not None:
        done.append(f"{float(b['train_minutes']):.1f} min")
    if b["steps"] is not None:
        done.append(_plural(int(b["steps"]), "step"))
    if b["epochs_seen"] is not None:
        seen = b["epochs_seen"]
        done.append(f"{seen:.1f} epochs" if seen < 10 else f"{seen:,.0f} epochs")
    elif b["epochs_completed"] == 0:
        done.append("less than an epoch")
    elif b["epochs_completed"] is not None:
        done.append(_plural(int(b["epochs_completed"]), "epoch"))
    if reason:
        done.append(f"stopped by {reason}")
    return f"{head} budget: {', '.join(done)}" if done else f"{head} budget"


def group_budget(run_dirs) -> str:
    """The short budget shared by `run_dirs`, or the distinct ones joined by " / "."""
    seen: list[str] = []
    for d in run_dirs:
        text = budget_text(d)
        if text not in seen:
            seen.append(text)
    return " / ".join(seen) if seen else "no runs"


def run_label(run_dir: PathLike, source: str) -> str:
    """``"<run name> (<source>, <budget>)"``, e.g. ``"brn_c16 (reference, 40 min)"``; a run
    without eval.json is marked ``in progress``."""
    run_dir = Path(run_dir)
    progress = "" if (run_dir / "eval.json").exists() else ", in progress"
    return f"{run_dir.name} ({source}, {budget_text(run_dir)}{progress})"


def budget_frame(runs_dirs: Mapping[str, PathLike]) -> pd.DataFrame:
    """One row per run (a folder with config.json) under each group's ``runs/`` folder: its
    profile, whether it finished, and its budget (`run_budget`), indexed by (group, run)."""
    rows, index = [], []
    for name, runs_dir in runs_dirs.items():
        for cfg_path in sorted(Path(runs_dir).glob("*/config.json")):
            b = run_budget(cfg_path.parent)
            rows.append({"budget": budget_text(cfg_path.parent, short=False), **b})
            index.append((name, cfg_path.parent.name))
    cols = [
        "budget",
        "profile",
        "finished",
        "stop_reason",
        "max_minutes",
        "epochs_budget",
        "train_minutes",
        "steps",
        "epochs_completed",
    ]
    names = ["group", "run"]
    idx = (
        pd.MultiIndex.from_tuples(index, names=names)
        if index
        else pd.MultiIndex.from_arrays([[], []], names=names)
    )
    return pd.DataFrame(rows, columns=cols, index=idx)
