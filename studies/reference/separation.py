"""Table 2 at a budget where its rows separate.

The paper's Table 2 compares BRN variants that differ by 1 to 18 points at convergence (c = 8
< 16 < 32, gn over bn in the third norm, question features to the classifier). Early in training
the seeds of one variant differ by as much, so a table read at a small budget can show any order.
This module asks, at every validation step that the study's runs share, which of the paper's
claims the runs support: Welch's t-test of the arms' means over seeds. A claim is `separated` at
a step when the 95% confidence interval of the difference lies above zero (the paper's
direction), `reversed` when it lies below; it needs two seeds of each arm (one seed has no spread
to weigh it against). With two seeds an arm the test has about two degrees of freedom, so the
interval is wide (t = 4.3 standard errors): a weak claim needs more seeds, not a looser test.
Notebook 04 reads Table 2 itself at the last step the runs share: beside the paper's
(`table2_beside_paper`), with the paper's orderings weighed the same way (`ordering_caption`).

Dimensions: none (tables of accuracies; S seeds per arm).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from qgmrn.analysis import tables
from qgmrn.analysis._io import save_figure
from qgmrn.analysis.compare import CONFIDENCE, samples_text, welch
from studies.reference.seeds import (
    RUNS_ATTR,
    arm_runs,
    mean_over_seeds,
    seeds_frame,
    with_trained_on,
)

# The paper's Table 2 rows (its labels; "gn": GroupNorm as the third norm of every bottleneck,
# the others BatchNorm there; "w/o q" is a BatchNorm row) -> our presets.
TABLE2_ARMS: dict[str, str] = tables.TABLE2_PRESETS

# The paper's claims (Section 4.5, Table 2) as (lower, higher) pairs of its rows, in the order of
# its text. Deeper and wider are left out: the paper itself calls their 0.3-point differences
# from c=32 not significant.
CLAIMS: tuple[tuple[str, str], ...] = (
    ("c=16, w/o q", "c=16, w/ q"),
    ("c=8, w/ q", "c=8, w/ q, gn"),
    ("c=16, w/ q", "c=16, w/ q, gn"),
    ("c=32, w/ q", "c=32, w/ q, gn"),
    ("c=8, w/ q, gn", "c=16, w/ q, gn"),
    ("c=16, w/ q, gn", "c=32, w/ q, gn"),
    ("c=8, w/ q", "c=16, w/ q"),
    ("c=16, w/ q", "c=32, w/ q"),
)
MIN_SEEDS = 2  # seeds of each arm before a claim is weighed (a claim must hold across 2 seeds)


class TooFewArms(ValueError):
    """Fewer than two of Table 2's arms have runs: there is nothing to compare yet."""


def claim_label(low: str, high: str) -> str:
    return f"{low} < {high}"


def arm_curves(
    run_dirs: dict[str, Path], arms: dict[str, str] = TABLE2_ARMS
) -> tuple[pd.DataFrame, int | None]:
    """Overall validation accuracy (percent) of every run of the arms at the validation steps
    that all of them share, and the batch size that turns a step into samples.

    run_dirs: name -> run folder; a preset's runs are the folder named after it (the seed of its
    config) and its `PRESET_sN` folders; runs without a validation pass yet are left out.
    arms: label -> preset; arms without a run are left out.
    Returns (a frame indexed by (arm, seed) in the order of `arms`, one column per common step;
    the batch size, None when the runs' configs disagree). Raises TooFewArms when fewer than two
    arms have runs, ValueError when two runs are the same seed of one arm or the runs share no
    validation step.
    """
    runs = arm_runs(run_dirs, arms)
    rows = {key: 100 * val["overall"] for key, (_, val) in runs.items()}
    batches = {
        json.loads((run_dirs[name] / "config.json").read_text()).get("train", {}).get("batch_size")
        for name, _ in runs.values()
    }
    found = list(dict.fromkeys(arm for arm, _ in rows))
    if len(found) < 2:
        raise TooFewArms(f"runs of fewer than two Table 2 arms ({', '.join(found) or 'none'})")
    common = sorted(set.intersection(*(set(v.index) for v in rows.values())))
    if not common:
        names = ", ".join(sorted(name for name, _ in runs.values()))
        raise ValueError(f"the runs {names} share no validation step")
    frame = pd.DataFrame({k: v.loc[common] for k, v in rows.items()}).T
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["arm", "seed"])
    order = {arm: i for i, arm in enumerate(arms)}  # the paper's row order, then the seed
    frame = frame.iloc[sorted(range(len(frame)), key=lambda i: (order[frame.index[i][0]],
                                                                frame.index[i][1]))]  # fmt: skip
    frame.attrs[RUNS_ATTR] = {key: name for key, (name, _) in runs.items()}  # with_trained_on
    batch = batches.pop() if len(batches) == 1 else None
    return frame, batch


def paper_overall() -> dict[str, float]:
    """The paper's overall accuracy (percent, Table 2) of each of its rows, by model label."""
    return {model: row[0] for (_, model), row in tables.PAPER_TABLE2.items()}


def paper_difference(low: str, high: str) -> float:
    """The paper's overall accuracy of row `high` minus row `low` (points, Table 2)."""
    overall = paper_overall()
    return overall[high] - overall[low]


def separation_frame(
    curves: pd.DataFrame, claims: tuple[tuple[str, str], ...] = CLAIMS
) -> pd.DataFrame:
    """Each claim (lower, higher) whose two arms are in `curves` (`arm_curves`), at each step,
    in the order of `claims`: the difference of the means (higher - lower, points), its standard
    error and the half-width of its `CONFIDENCE` interval (`welch`; NaN with fewer than
    `MIN_SEEDS` seeds in an arm), and the verdict.

    Returns a frame indexed by (claim, step) with columns diff, se, ci, seeds (e.g. "2 / 3"),
    verdict ("separated": diff - ci > 0; "reversed": diff + ci < 0; "not separated"; "one
    seed": too few seeds to weigh) and paper (the paper's difference at convergence,
    `paper_difference`).
    """
    arms = set(curves.index.get_level_values("arm"))
    rows = {}
    for low, high in claims:
        if low not in arms or high not in arms:
            continue
        a, b = curves.xs(low, level="arm"), curves.xs(high, level="arm")
        enough = len(a) >= MIN_SEEDS and len(b) >= MIN_SEEDS
        for step in curves.columns:
            diff, se, ci = welch(a[step].to_numpy(), b[step].to_numpy())
            if not enough:
                verdict = "one seed"
            elif diff - ci > 0:
                verdict = "separated"
            elif diff + ci < 0:
                verdict = "reversed"
            else:
                verdict = "not separated"
            rows[(claim_label(low, high), int(step))] = {
                "diff": diff,
                "se": se,
                "ci": ci,
                "seeds": f"{len(a)} / {len(b)}",
                "verdict": verdict,
                "paper": paper_difference(low, high),
            }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if len(frame):
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["claim", "step"])
    return frame


def _first_lasting(ok: pd.Series) -> int | None:
    """The first step (ok's index, sorted) from which ok holds at every later step, or None."""
    ok = ok.sort_index()
    for step in ok.index:
        if ok.loc[step:].all():
            return int(step)
    return None


def claim_steps(separation: pd.DataFrame) -> pd.Series:
    """Per weighed claim (in `separation_frame`'s order): the step from which it is separated
    at every later step, or None."""
    weighed = separation[separation["verdict"] != "one seed"]
    claims = list(dict.fromkeys(weighed.index.get_level_values("claim")))
    return pd.Series(
        {c: _first_lasting(weighed.xs(c, level="claim")["verdict"] == "separated") for c in claims},
        dtype=object,
    )


def separating_step(separation: pd.DataFrame) -> int | None:
    """The smallest step from which every weighed claim stays separated in the paper's order at
    every later step of `separation_frame`, or None (no such step, or nothing weighed)."""
    weighed = separation[separation["verdict"] != "one seed"]
    if not len(weighed):
        return None
    return _first_lasting((weighed["verdict"] == "separated").groupby(level="step").all())


def plot_arm_curves(curves: pd.DataFrame, batch: int | None = None, prior: float | None = None):
    """Each arm's mean validation accuracy against the budget (samples when `batch` is known,
    else steps) with its seeds as dots and a band of +- one standard deviation; `prior`
    (percent): the question-type prior as a dashed line. The legend stands right of the axes,
    off the bands. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, ax = plt.subplots(figsize=(9.5, 4.0))
    x = np.asarray(curves.columns, dtype=float) * (batch or 1)
    for i, arm in enumerate(dict.fromkeys(curves.index.get_level_values("arm"))):
        part = curves.xs(arm, level="arm")
        mean, std = part.mean(), part.std(ddof=1).fillna(0)
        color = f"C{i}"
        seeds = f"{len(part)} seed" + "s" * (len(part) != 1)
        ax.plot(x, mean, color=color, marker="o", ms=3, label=f"{arm} ({seeds})")
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        for _, row in part.iterrows():
            ax.plot(x, row.to_numpy(), ".", color=color, ms=3, alpha=0.6)
    if prior is not None:
        ax.axhline(prior, color="k", ls="--", lw=1, label="question-type prior")
    if batch:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("training samples" if batch else "step")
    ax.set_ylabel("val accuracy (%)")
    ax.set_title("Table 2's arms over seeds (mean, +- std)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def _cell(row: pd.Series) -> str:
    return f"{_difference(row)} {row['verdict']}"


def pooled_std(curves: pd.DataFrame, step: int) -> tuple[float, int]:
    """The seeds' pooled standard deviation (points) at `step` of `arm_curves`, over the arms
    with two or more seeds (each arm's variance weighted by its degrees of freedom), and how
    many arms it pools; (NaN, 0) without such an arm."""
    col = curves[step]
    groups = [g for _, g in col.groupby(level="arm") if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    if not dof:
        return float("nan"), 0
    return float(np.sqrt(sum(g.var(ddof=1) * (len(g) - 1) for g in groups) / dof)), len(groups)


def resolvable_difference(curves: pd.DataFrame, step: int, seeds: int = MIN_SEEDS) -> float:
    """The difference of two arms' means (points) at which `seeds` seeds an arm reach the edge
    of separation at `step`: t * s * sqrt(2 / seeds), with s the seeds' pooled standard
    deviation there (`pooled_std`; NaN without an arm of two seeds) and t the `CONFIDENCE`
    quantile at 2 (seeds - 1) degrees of freedom. A true difference of that size is separated
    about half the time; one of twice that size, nearly always."""
    pooled, _ = pooled_std(curves, step)
    t = stats.t.ppf(0.5 + CONFIDENCE / 2, 2 * (seeds - 1))
    return float(t * pooled * np.sqrt(2 / seeds))


def separation_caption(
    separation: pd.DataFrame, batch: int | None, curves: pd.DataFrame | None = None
) -> str:
    """The verdict in words: which claims separate and from which budget, whether one budget
    separates them all; with `curves` (`arm_curves`), the seeds' pooled spread at the last step
    and the difference two and three seeds an arm can resolve there (`resolvable_difference`,
    its definition stated) beside the paper's differences."""
    if not len(separation):
        return "No claim of Table 2 has runs of both its arms yet."
    unit = (lambda s: f"{s * batch:,} samples") if batch else (lambda s: f"step {s:,}")
    last = max(separation.index.get_level_values("step"))
    weighed = separation[separation["verdict"] != "one seed"]
    if not len(weighed):
        words = f"Every claim with runs has one seed in an arm: no verdict (up to {unit(last)})."
    else:
        steps = claim_steps(separation)
        held = steps.dropna()
        words = (
            f"Of {len(steps)} claim(s) weighed ({MIN_SEEDS}+ seeds an arm), {len(held)} "
            "separate(s) in the paper's order and stay(s) so to "
            f"{unit(last)}" + (": " + "; ".join(f"{c} from {unit(s)}" for c, s in held.items())
                               if len(held) else "") + "."
        )  # fmt: skip
        final = weighed.xs(last, level="step")["verdict"].value_counts().to_dict()
        words += f" At {unit(last)}: " + ", ".join(f"{n} {v}" for v, n in final.items()) + "."
        step = separating_step(separation)
        if step is None:
            words += f" No budget up to {unit(last)} separates them all: Table 2 there is noise."
        elif step == last:
            words += f" All of them separate only at the last step, {unit(last)}: not yet lasting."
        else:
            words += f" All of them separate from {unit(step)} on: Table 2's smallest such budget."
    if curves is not None and np.isfinite(least := resolvable_difference(curves, last)):
        paper = (weighed if len(weighed) else separation)["paper"]
        which = "weighed" if len(weighed) else "compared"
        spread, arms = pooled_std(curves, last)
        more = resolvable_difference(curves, last, MIN_SEEDS + 1)
        words += (
            f" At {unit(last)} the seeds' spread (pooled standard deviation {spread:.1f} points "
            f"over the {arms} arms with 2+ seeds) puts the edge of separation at a difference "
            f"of {least:.1f} points with {MIN_SEEDS} seeds an arm and {more:.1f} with "
            f"{MIN_SEEDS + 1} (`resolvable_difference`: t * s * sqrt(2 / seeds), t the "
            f"{CONFIDENCE:.0%} quantile at 2 (seeds - 1) degrees of freedom); the paper's "
            f"differences for the {which} claims, at convergence, are {paper.min():+.1f} to "
            f"{paper.max():+.1f}."
        )
    return words


def table2_beside_paper(
    curves: pd.DataFrame, batch: int | None, prior: float | None = None
) -> pd.DataFrame:
    """Table 2 read at the last step of `curves` (`arm_curves`), one row per row of the paper
    (`TABLE2_ARMS`, its order): the paper's overall accuracy (converged, real CLEVR) beside ours,
    the mean over seeds, their standard deviation (ddof=1; NaN with one seed), the number of
    seeds and each seed's value, the budget the runs are read at (samples when `batch` is known,
    else the step) and their folders. A row without runs: NaN and 0 seeds. `prior` (percent):
    the question-type prior of our data as a last row."""
    step = max(curves.columns)
    names = curves.attrs.get(RUNS_ATTR, {})
    read_at = samples_text(step * batch) if batch else f"step {step:,}"
    paper = paper_overall()
    rows = {}
    for arm in TABLE2_ARMS:
        row = {"paper": paper[arm], "ours": np.nan, "std": np.nan, "seeds": 0}
        row |= {"per seed": "", "read at": "", "runs": "none"}
        if arm in curves.index.get_level_values("arm"):
            part = curves.xs(arm, level="arm")[step]
            row |= {
                "ours": part.mean(),
                "std": part.std(ddof=1) if len(part) > 1 else np.nan,
                "seeds": len(part),
                "per seed": " / ".join(f"{v:.1f}" for v in part),
                "read at": read_at,
                "runs": ", ".join(names.get((arm, seed), f"seed {seed}") for seed in part.index),
            }
        rows[arm] = row
    if prior is not None:
        rows[tables.PRIOR_LABEL] = {"paper": np.nan, "ours": prior, "std": np.nan, "seeds": "",
                                    "per seed": "", "read at": "", "runs": ""}  # fmt: skip
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "model"
    return frame


# The paper's orderings, as its text groups Table 2's claims (`CLAIMS`): a heading, then each
# claim with a short name for the difference (higher minus lower) it weighs.
ORDERINGS: tuple[tuple[str, tuple[tuple[tuple[str, str], str], ...]], ...] = (
    ("Question features to the classifier, w/ q - w/o q", ((CLAIMS[0], "c=16"),)),
    ("GroupNorm - BatchNorm as the third norm",
     ((CLAIMS[1], "c=8"), (CLAIMS[2], "c=16"), (CLAIMS[3], "c=32"))),
    ("More modules per layer (gn)", ((CLAIMS[4], "c=16 - c=8"), (CLAIMS[5], "c=32 - c=16"))),
    ("More modules per layer (bn)", ((CLAIMS[6], "c=16 - c=8"), (CLAIMS[7], "c=32 - c=16"))),
)  # fmt: skip
VERDICT_WORDS: dict[str, str] = {
    "separated": "in the paper's order",
    "reversed": "reversed, against the paper's order",
    "not separated": "not separable at this budget",
    "one seed": "one seed in an arm: no interval",
}


def ordering_caption(
    curves: pd.DataFrame, claims: pd.DataFrame, batch: int | None, prior: float | None = None
) -> str:
    """Table 2 at the last step of `curves` in words, as `qgmrn.analysis.captions.table_caption`
    says a table of single runs, but with the seeds' intervals: each arm's mean against the
    question-type `prior` (percent), then each of the paper's orderings (`ORDERINGS`) as the
    difference of the means +- the half-width of its 95% interval (`separation_frame`'s
    `claims`) and its verdict: in the paper's order, reversed, or not separable at this budget
    (the interval holds zero)."""
    step = max(curves.columns)
    budget = f"{step * batch:,} samples (step {step:,})" if batch else f"step {step:,}"
    col = curves[step]
    means = col.groupby(level="arm", sort=False).mean()
    counts = col.groupby(level="arm", sort=False).size()
    seeds = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}-{counts.max()}"
    best = means.idxmax()
    parts = [f"Question-type prior {prior:.1f}."] if prior is not None else []
    text = f"Ours, the reference seed runs at {budget}, {seeds} seeds an arm: best {best} at "
    text += f"{means[best]:.1f}"
    if prior is not None:
        above = int((means > prior).sum())
        text += f" ({means[best] - prior:+.1f} against the prior); {above} of {len(means)} rows "
        text += "above the prior"
    parts.append(text + ".")
    at_step = claims.xs(step, level="step") if len(claims) else claims
    for heading, pairs in ORDERINGS:
        found = [(at_step.loc[claim_label(*c)], name) for c, name in pairs
                 if claim_label(*c) in at_step.index]  # fmt: skip
        if not found:
            continue
        verdicts = {row["verdict"] for row, _ in found}
        same = len(verdicts) == 1
        items = [
            f"{name} {_difference(row)}" + ("" if same else f" ({VERDICT_WORDS[row['verdict']]})")
            for row, name in found
        ]
        paper = ", ".join(f"{row['paper']:+.1f}" for row, _ in found)
        verdict = f": {VERDICT_WORDS[verdicts.pop()]}" if same else ""
        parts.append(
            f"{heading}: {', '.join(items)} points{verdict} (the paper, converged: {paper})."
        )
    if len(at_step):
        parts.append(
            f"(Differences of the means ± the half-width of their {CONFIDENCE:.0%} interval, "
            "Welch's t over seeds; not separable where the interval holds zero.)"
        )
    return " ".join(parts)


def _difference(row: pd.Series) -> str:
    ci = f" ± {row['ci']:.1f}" if np.isfinite(row["ci"]) else ""
    return f"{round(row['diff'], 1) + 0.0:+.1f}{ci}"  # + 0.0: no "-0.0"


def _budget_labels(steps, batch: int | None) -> dict[int, str]:
    """Column labels: the budget in samples, or the step where samples would repeat a label."""
    labels = {s: samples_text(s * batch) if batch else f"step {s:,}" for s in steps}
    if len(set(labels.values())) < len(labels):
        labels = {s: f"step {s:,}" for s in steps}
    return labels


def table2_over_seeds(run_dirs: dict[str, Path], prior: float | None = None) -> dict:
    """Everything the study shows, for summary.md and 06: a dict with `curves` and `batch`
    (`arm_curves`; `shown`: the same with the budgets as column labels), `claims`
    (`separation_frame`), `table` (the claims as text, one column per budget, then the step each
    separates from and the paper's converged difference; None without a claim), `by_type` and
    `step` (each arm's mean over seeds by type at the last common step, then the spread:
    `mean_over_seeds`), `caption` (`separation_caption`), `figure` (`plot_arm_curves`;
    `prior`, percent: its dashed line), and Table 2 at the last common step: `beside_paper`
    (`table2_beside_paper`) and `orderings` (`ordering_caption`). Raises TooFewArms and
    ValueError as `arm_curves`."""
    curves, batch = arm_curves(run_dirs)
    claims = separation_frame(curves)
    labels = _budget_labels(curves.columns, batch)
    table = None
    if len(claims):
        order = list(dict.fromkeys(claims.index.get_level_values("claim")))
        table = claims.apply(_cell, axis=1).unstack("step").loc[order].rename(columns=labels)
        steps = claim_steps(claims)
        table["separated from"] = [
            labels[steps[c]] if c in steps and steps[c] is not None else "-" for c in order
        ]
        paper = claims["paper"].groupby(level="claim").first()
        table["paper, converged"] = [f"{paper[c]:+.1f}" for c in order]
    present = dict.fromkeys(curves.index.get_level_values("arm"))
    by_type, step = seeds_frame(run_dirs, {arm: TABLE2_ARMS[arm] for arm in present})
    rank = {arm: i for i, arm in enumerate(present)}  # the paper's row order, not the alphabet's
    by_type = by_type.iloc[sorted(range(len(by_type)), key=lambda i: rank[by_type.index[i][0]])]
    return {
        "curves": curves,
        "batch": batch,
        # with the machine that trained each seed run up to the last step shown (one arm's seeds
        # may come from a GPU and this CPU; a GPU run may have been continued on the CPU since)
        "shown": with_trained_on(curves.rename(columns=labels), run_dirs, max(curves.columns)),
        "claims": claims,
        "table": table,
        "by_type": mean_over_seeds(by_type),
        "step": step,
        "caption": separation_caption(claims, batch, curves),
        "figure": plot_arm_curves(curves, batch, prior),
        "beside_paper": table2_beside_paper(curves, batch, prior),
        "orderings": ordering_caption(curves, claims, batch, prior),
    }


def table2_section(run_dirs: dict[str, Path], figure: Path, prior: float | None) -> list[str]:
    """summary.md's section (`table2_over_seeds`) and its `figure`; none while fewer than two
    arms have runs, and a line saying why when the runs cannot be compared."""
    heading = "## Table 2 over seeds: at which budget do its rows separate?"
    try:
        t = table2_over_seeds(run_dirs, prior)
    except TooFewArms:
        return []
    except ValueError as err:
        return [heading, "", f"Not available: {err}.", ""]
    save_figure(t["figure"], figure)
    budgets = "training samples" if t["batch"] else "steps (the runs' batch sizes differ)"
    lines = [
        heading,
        "",
        "Validation accuracy (percent, overall) of every seed run of a Table 2 arm at the",
        f"validation steps all of them share (columns: {budgets}; fixed steps, nothing chosen",
        "on val). `studies.reference.separation`.",
        "",
        tables.plain_markdown(t["shown"].round(1)),
        "",
    ]
    if t["table"] is not None:
        lines += [
            "The paper's claims (lower < higher): the difference of the means in points +- the",
            f"half-width of its {CONFIDENCE:.0%} confidence interval (Welch's t over seeds);",
            "`separated` when the interval lies above zero, `reversed` below; `one seed` where an",
            f"arm has fewer than {MIN_SEEDS} seeds. Then the budget from which each stays",
            "separated, and the paper's difference (its Table 2, overall, at convergence).",
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
