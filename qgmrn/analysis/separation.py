"""Table 2 at a budget where its rows separate (issue 11).

The paper's Table 2 compares BRN variants that differ by a few points at convergence (c = 8 <
16 < 32, gn over bn in the third norm, question features to the classifier). Early in training
the seeds of one variant differ by as much, so a table read at a small budget can show any order.
This module asks, at every validation step that the study's runs share, which of the paper's
claims the runs support: the difference of the arms' means against its standard error over
seeds. A claim is `separated` at a step when the difference is more than two standard errors in
the paper's direction, `reversed` when it is as far the other way; it needs two seeds of each arm
(one seed has no spread to weigh it against).

Dimensions: none (tables of accuracies; S seeds per arm).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from qgmrn.analysis import tables
from qgmrn.analysis._io import save_figure
from qgmrn.analysis.reference import (
    is_run_of,
    mean_over_seeds,
    samples_text,
    seed_of,
    seeds_frame,
    val_rows,
)

# The paper's Table 2 rows (its labels; "gn": GroupNorm as the third norm of every bottleneck,
# the others BatchNorm there) -> our presets.
TABLE2_ARMS: dict[str, str] = tables.TABLE2_PRESETS

# The paper's claims (Section 4.5, Table 2) as (lower, higher) pairs of its rows. Deeper and
# wider are left out: the paper finds them within 0.3 points of c=32, a difference no seed count
# here could resolve.
CLAIMS: tuple[tuple[str, str], ...] = (
    ("c=8, w/ q, gn", "c=16, w/ q, gn"),
    ("c=16, w/ q, gn", "c=32, w/ q, gn"),
    ("c=8, w/ q", "c=16, w/ q"),
    ("c=16, w/ q", "c=32, w/ q"),
    ("c=8, w/ q", "c=8, w/ q, gn"),
    ("c=16, w/ q", "c=16, w/ q, gn"),
    ("c=32, w/ q", "c=32, w/ q, gn"),
    ("c=16, w/o q", "c=16, w/ q"),
)
SEPARATION_SE = 2.0  # a difference beyond this many standard errors counts
MIN_SEEDS = 2  # seeds of each arm before a claim is weighed (issue 11: "stable across 2 seeds")


def arm_curves(
    run_dirs: dict[str, Path], arms: dict[str, str] = TABLE2_ARMS
) -> tuple[pd.DataFrame, int | None]:
    """Overall validation accuracy (percent) of every run of the arms at the validation steps
    that all of them share, and the batch size that turns a step into samples.

    run_dirs: name -> run folder; a preset's runs are the folder named after it (the seed of its
    config) and its `PRESET_sN` folders. arms: label -> preset; arms without a run are left out.
    Returns (a frame indexed by (arm, seed), one column per common step; the batch size, None
    when the runs' configs disagree). Raises ValueError when fewer than two arms have runs, or
    the runs share no validation step.
    """
    rows: dict[tuple[str, int], pd.Series] = {}
    batches = set()
    for arm, preset in arms.items():
        for name, run_dir in run_dirs.items():
            if not is_run_of(name, preset):
                continue
            val = val_rows(run_dir)
            if not len(val):
                continue
            rows[(arm, seed_of(name, run_dir))] = 100 * val["overall"]
            cfg = json.loads((run_dir / "config.json").read_text())
            batches.add(cfg.get("train", {}).get("batch_size"))
    found = list(dict.fromkeys(arm for arm, _ in rows))
    if len(found) < 2:
        raise ValueError(f"runs of fewer than two Table 2 arms ({', '.join(found) or 'none'})")
    common = sorted(set.intersection(*(set(v.index) for v in rows.values())))
    if not common:
        raise ValueError(f"the runs {sorted(rows)} share no validation step")
    frame = pd.DataFrame({k: v.loc[common] for k, v in rows.items()}).T
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["arm", "seed"])
    order = {arm: i for i, arm in enumerate(arms)}  # the paper's row order
    frame = frame.iloc[sorted(range(len(frame)), key=lambda i: order[frame.index[i][0]])]
    batch = batches.pop() if len(batches) == 1 else None
    return frame, batch


def paper_difference(low: str, high: str) -> float:
    """The paper's overall accuracy of row `high` minus row `low` (points, Table 2)."""
    overall = {model: row[0] for (_, model), row in tables.PAPER_TABLE2.items()}
    return overall[high] - overall[low]


def separation_frame(
    curves: pd.DataFrame, claims: tuple[tuple[str, str], ...] = CLAIMS
) -> pd.DataFrame:
    """Each claim (lower, higher) whose two arms are in `curves` (`arm_curves`), at each step:
    the difference of the means (higher - lower, points), its standard error (Welch, over
    seeds; NaN with fewer than `MIN_SEEDS` seeds in an arm) and the verdict.

    Returns a frame indexed by (claim, step) with columns diff, se, seeds (e.g. "2 / 3"),
    verdict ("separated": diff > SEPARATION_SE * se; "reversed": diff < -SEPARATION_SE * se;
    "not separated"; "one seed": too few seeds to weigh) and paper (the paper's difference at
    convergence, `paper_difference`).
    """
    arms = set(curves.index.get_level_values("arm"))
    rows = {}
    for low, high in claims:
        if low not in arms or high not in arms:
            continue
        a, b = curves.xs(low, level="arm"), curves.xs(high, level="arm")
        for step in curves.columns:
            diff = b[step].mean() - a[step].mean()
            enough = len(a) >= MIN_SEEDS and len(b) >= MIN_SEEDS
            se = (
                float(np.sqrt(a[step].var(ddof=1) / len(a) + b[step].var(ddof=1) / len(b)))
                if enough
                else float("nan")
            )
            if not enough:
                verdict = "one seed"
            elif diff > SEPARATION_SE * se:
                verdict = "separated"
            elif diff < -SEPARATION_SE * se:
                verdict = "reversed"
            else:
                verdict = "not separated"
            rows[(f"{low} < {high}", int(step))] = {
                "diff": diff,
                "se": se,
                "seeds": f"{len(a)} / {len(b)}",
                "verdict": verdict,
                "paper": paper_difference(low, high),
            }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if len(frame):
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["claim", "step"])
    return frame


def separating_step(separation: pd.DataFrame) -> int | None:
    """The smallest step from which every weighed claim stays separated in the paper's order at
    every later step of `separation_frame`, or None (no such step, or nothing weighed)."""
    weighed = separation[separation["verdict"] != "one seed"]
    if not len(weighed):
        return None
    ok = (weighed["verdict"] == "separated").groupby(level="step").all().sort_index()
    for step in ok.index:
        if ok.loc[step:].all():
            return int(step)
    return None


def plot_arm_curves(curves: pd.DataFrame, batch: int | None = None, prior: float | None = None):
    """Each arm's mean validation accuracy against the budget (samples when `batch` is known,
    else steps) with its seeds as dots and a band of +- one standard deviation; `prior`
    (percent): the question-type prior as a dashed line. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    x = np.asarray(curves.columns, dtype=float) * (batch or 1)
    for i, arm in enumerate(dict.fromkeys(curves.index.get_level_values("arm"))):
        part = curves.xs(arm, level="arm")
        mean, std = part.mean(), part.std(ddof=1).fillna(0)
        color = f"C{i}"
        ax.plot(x, mean, color=color, marker="o", ms=3, label=f"{arm} ({len(part)} seeds)")
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        for _, row in part.iterrows():
            ax.plot(x, row.to_numpy(), ".", color=color, ms=3, alpha=0.6)
    if prior is not None:
        ax.axhline(prior, color="k", ls="--", lw=1, label="question-type prior")
    ax.set_xlabel("training samples" if batch else "step")
    ax.set_ylabel("val accuracy (%)")
    ax.set_title("Table 2's arms over seeds (mean, +- std)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _cell(row: pd.Series) -> str:
    se = f" ± {row['se']:.1f}" if np.isfinite(row["se"]) else ""
    return f"{row['diff']:+.1f}{se} {row['verdict']}"


def resolvable_difference(curves: pd.DataFrame, step: int, seeds: int = MIN_SEEDS) -> float:
    """The smallest difference of two arms' means (points) that `seeds` seeds an arm can
    separate at `step`: SEPARATION_SE * s * sqrt(2 / seeds), with s the seeds' pooled standard
    deviation there (over the arms with two or more seeds; NaN without such an arm)."""
    col = curves[step]
    groups = [g for _, g in col.groupby(level="arm") if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    if not dof:
        return float("nan")
    pooled = np.sqrt(sum(g.var(ddof=1) * (len(g) - 1) for g in groups) / dof)
    return float(SEPARATION_SE * pooled * np.sqrt(2 / seeds))


def separation_caption(
    separation: pd.DataFrame, batch: int | None, curves: pd.DataFrame | None = None
) -> str:
    """The verdict in words: the smallest separating budget, or that none within the runs';
    with `curves` (`arm_curves`), the difference two seeds an arm could resolve at the last
    step (`resolvable_difference`)."""
    if not len(separation):
        return "No claim of Table 2 has runs of both its arms yet."
    unit = (lambda s: f"{s * batch:,} samples") if batch else (lambda s: f"step {s:,}")
    last = max(separation.index.get_level_values("step"))
    step = separating_step(separation)
    weighed = separation[separation["verdict"] != "one seed"]
    if not len(weighed):
        words = f"Every claim with runs has one seed in an arm: no verdict (up to {unit(last)})."
    elif step is None:
        final = weighed.xs(last, level="step")["verdict"].value_counts().to_dict()
        counts = ", ".join(f"{n} {v}" for v, n in final.items())
        words = (
            f"No budget up to {unit(last)} separates the weighed claims in the paper's order "
            f"(at {unit(last)}: {counts}); Table 2 at this budget would show noise."
        )
    else:
        words = (
            f"From {unit(step)} every weighed claim is separated in the paper's order and stays "
            f"so to {unit(last)}: Table 2's smallest separating budget among these runs."
        )
    if curves is not None and np.isfinite(least := resolvable_difference(curves, last)):
        paper = separation["paper"]
        words += (
            f" At {unit(last)} the seeds' spread lets {MIN_SEEDS} seeds an arm separate "
            f"differences above {least:.1f} points; the paper's differences for these claims, at "
            f"convergence, are {paper.min():+.1f} to {paper.max():+.1f}."
        )
    return words


def table2_over_seeds(run_dirs: dict[str, Path], prior: float | None = None) -> dict:
    """Everything the study shows, for summary.md and 06: a dict with `curves` and `batch`
    (`arm_curves`; `shown`: the same with the columns in samples), `claims` (`separation_frame`),
    `table` (the claims as text, one column per budget), `by_type` and `step` (each arm's mean
    over seeds by type at the last common step, then the spread: `mean_over_seeds`), `caption`
    (`separation_caption`) and `figure` (`plot_arm_curves`; `prior`, percent: its dashed line).
    Raises ValueError as `arm_curves`."""
    curves, batch = arm_curves(run_dirs)
    claims = separation_frame(curves)
    budget = (lambda s: samples_text(s * batch)) if batch else (lambda s: f"step {s:,}")
    shown = curves.rename(columns=budget)
    table = None
    if len(claims):
        table = claims.apply(_cell, axis=1).unstack("step").rename(columns=budget)
        paper = claims["paper"].groupby(level="claim").first()
        table["paper, converged"] = paper.loc[table.index].map("{:+.1f}".format)
    present = dict.fromkeys(curves.index.get_level_values("arm"))
    by_type, step = seeds_frame(run_dirs, {arm: TABLE2_ARMS[arm] for arm in present})
    return {
        "curves": curves,
        "batch": batch,
        "shown": shown,
        "claims": claims,
        "table": table,
        "by_type": mean_over_seeds(by_type),
        "step": step,
        "caption": separation_caption(claims, batch, curves),
        "figure": plot_arm_curves(curves, batch, prior),
    }


def table2_section(run_dirs: dict[str, Path], figure: Path, prior: float | None) -> list[str]:
    """summary.md's section (`table2_over_seeds`) and its `figure`; empty when fewer than two
    arms have runs."""
    try:
        t = table2_over_seeds(run_dirs, prior)
    except ValueError:
        return []
    save_figure(t["figure"], figure)
    lines = [
        "## Table 2 over seeds: at which budget do its rows separate?",
        "",
        "Validation accuracy (percent, overall) of every seed run of a Table 2 arm at the",
        "validation steps all of them share (columns: training samples; fixed steps, nothing",
        "chosen on val). `qgmrn.analysis.separation`.",
        "",
        tables.plain_markdown(t["shown"].round(1)),
        "",
    ]
    if t["table"] is not None:
        lines += [
            "The paper's claims (lower < higher): the difference of the means in points, +- its",
            f"standard error over seeds (Welch), `separated` beyond {SEPARATION_SE:g} standard",
            "errors in the paper's order, `reversed` as far the other way; `one seed` where an",
            f"arm has fewer than {MIN_SEEDS} seeds. Last column: the paper's difference (its",
            "Table 2, overall, at convergence).",
            "",
            tables.plain_markdown(t["table"]),
            "",
        ]
    lines += [
        f"By type at step {t['step']:,}, the last they share: each arm's mean over its seeds,",
        "then the standard deviation of those with more than one (Table 2's columns):",
        "",
        tables.plain_markdown(t["by_type"].round(1)),
        "",
        t["caption"],
        "",
        f"![Table 2's arms over seeds]({figure.name})",
        "",
    ]
    return lines
