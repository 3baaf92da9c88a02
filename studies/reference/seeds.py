"""Runs of one preset over seeds: each arm's seeds at one common step, their means, spreads and
the difference of two arms (Welch's t), the routed BRN against its static twin.

An arm is a label for a preset (e.g. {"routed": "brn_c16", "static": "brn_c16_static"}); its
runs are the folder named after the preset (the seed of its config) and its `PRESET_sN` folders
(`studies.reference.naming`). Every comparison is read at a fixed step that all the runs share,
not at each run's best: nothing is chosen on val, so val is a fair score here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from qgmrn.analysis import tables
from qgmrn.analysis._io import save_figure
from qgmrn.analysis.compare import CI, CONFIDENCE, trained_on, val_rows, welch
from qgmrn.analysis.prior import runs_prior
from studies.reference.naming import is_run_of, seed_of


def arm_runs(
    run_dirs: dict[str, Path], arms: dict[str, str]
) -> dict[tuple[str, int], tuple[str, pd.DataFrame]]:
    """(arm, seed) -> (run name, its `val_rows`) for every run of each arm (label -> preset: the
    folder named after the preset and its `PRESET_sN` folders) with a validation pass, in the
    order of `arms`. Raises ValueError when two runs are the same seed of one arm."""
    found: dict[tuple[str, int], tuple[str, pd.DataFrame]] = {}
    for arm, preset in arms.items():
        for name, run_dir in run_dirs.items():
            if not is_run_of(name, preset) or not len(val := val_rows(run_dir)):
                continue
            key = (arm, seed_of(name, run_dir))
            if key in found:
                raise ValueError(
                    f"{found[key][0]} and {name} are both seed {key[1]} of {preset}: keep one"
                )
            found[key] = (name, val)
    return found


# a seed frame's attrs key: (arm, seed) -> the run folder's name (seeds_frame, arm_curves)
RUNS_ATTR = "runs"


def seeds_frame(run_dirs: dict[str, Path], arms: dict[str, str]) -> tuple[pd.DataFrame, int]:
    """Validation accuracy (percent, overall and by type) of every seed of each arm at one common
    step: the largest step at which every run of the arms has a validation pass (a fixed step,
    not each run's best: nothing is chosen on val, so val is a fair score here).

    arms: label -> preset (e.g. {"routed": "brn_c16", "static": "brn_c16_static"}); the runs of
    a preset are the folder named after it (seed of its config) and its `PRESET_sN` folders.
    Returns (rows indexed by (arm, seed), the common step; `attrs[RUNS_ATTR]` names each row's
    run, for `with_trained_on`). Raises ValueError when an arm has no run, or the runs share no
    validation step.
    """
    from qgmrn.clevr.constants import TYPE_LABELS

    runs = arm_runs(run_dirs, arms)
    found = {key: val for key, (_, val) in runs.items()}
    for arm, preset in arms.items():
        if not any(a == arm for a, _ in found):
            raise ValueError(f"no run of {preset!r} ({arm}) with a validation pass")
    common = set.intersection(*(set(v.index) for v in found.values()))
    if not common:
        raise ValueError(f"the runs {sorted(found)} share no validation step")
    step = max(common)
    rows = {}
    for key, val in sorted(found.items()):
        row = val.loc[step]
        rows[key] = {"Overall": 100 * row["overall"]} | {
            TYPE_LABELS[t]: (100 * a if a is not None else float("nan"))
            for t, a in (row.get("by_type") or {}).items()
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["arm", "seed"])
    frame.attrs[RUNS_ATTR] = {key: name for key, (name, _) in runs.items()}
    return frame, step


def mean_over_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Each arm's mean over its seeds of `seeds_frame`'s rows (a first column `seeds` counts
    them), then, below, the standard deviation (ddof=1) of each arm with more than one seed."""
    grouped = frame.groupby(level="arm", sort=False)
    std = grouped.std(ddof=1).dropna(how="all")
    std.index = [f"{arm} std" for arm in std.index]
    both = pd.concat([grouped.mean(), std])
    # a count, not a measurement: whole numbers, none on the spread's rows
    both.insert(0, "seeds", pd.Series(grouped.size().to_dict(), dtype=object).reindex(both.index))
    return both


def seeds_gap(frame: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """Mean and standard deviation (over seeds, ddof=1) of each arm, and `first - second`: the
    difference of the means with its standard error (Welch: sqrt(s1^2/n1 + s2^2/n2)) and the
    half-width of its `CONFIDENCE` interval (`welch`; row `... 95% c.i.`). The seeds are not
    paired: a training seed fixes the initialisation and the Gumbel noise, while every seed sees
    the same stream of scenes (the data set's seed)."""
    out = {}
    a, b = frame.xs(first, level="arm"), frame.xs(second, level="arm")
    for arm, part in ((first, a), (second, b)):
        out[f"{arm} mean"] = part.mean()
        out[f"{arm} std"] = part.std(ddof=1)
    tests = {c: welch(b[c].to_numpy(), a[c].to_numpy()) for c in frame.columns}
    out[f"{first} - {second}"] = pd.Series({c: t[0] for c, t in tests.items()})
    out[f"{first} - {second} s.e."] = pd.Series({c: t[1] for c, t in tests.items()})
    out[f"{first} - {second} {CI}"] = pd.Series({c: t[2] for c, t in tests.items()})
    result = pd.DataFrame(out).T[list(frame.columns)]
    result.attrs["seeds"] = {first: list(a.index), second: list(b.index)}
    return result


def with_trained_on(
    frame: pd.DataFrame, run_dirs: dict[str, Path], up_to_step: int | None = None
) -> pd.DataFrame:
    """`frame` (rows (arm, seed) of `seeds_frame` or `arm_curves`, which name their runs in
    `attrs[RUNS_ATTR]`) with a last column "trained on" (`trained_on` of each row's run, up to
    `up_to_step`: the last step the frame shows)."""
    names = frame.attrs[RUNS_ATTR]
    where = [trained_on(run_dirs[names[k]], up_to_step) for k in frame.index]
    return frame.assign(**{"trained on": where})


def plot_seeds(frame: pd.DataFrame, step: int | None = None, prior: pd.Series | None = None):
    """Accuracy by type of each arm of `seeds_frame`: one dot per seed, a bar at the mean with
    the standard deviation as its error bar; `prior` (percent, by the frame's columns): a black
    line per type, the question-type prior. Returns the figure."""
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(frame.index.get_level_values("arm")))
    cols = list(frame.columns)
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 4.0, 3.6))  # + the legend, right
    width = 0.8 / len(arms)
    x = np.arange(len(cols))
    for i, arm in enumerate(arms):
        part = frame.xs(arm, level="arm")
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, part.mean(), width * 0.9, yerr=part.std(ddof=1).fillna(0), capsize=3,
               alpha=0.45, label=f"{arm} (mean, std; {len(part)} seeds)")  # fmt: skip
        for _, row in part.iterrows():
            ax.plot(pos, row.to_numpy(), "k.", ms=4)
    if prior is not None:
        for j, c in enumerate(cols):
            if c in prior and np.isfinite(prior[c]):
                ax.hlines(prior[c], j - 0.45, j + 0.45, colors="k", lw=1.5,
                          label="question-type prior" if j == 0 else None)  # fmt: skip
    ax.set_xticks(x, [c.replace(" ", "\n") for c in cols])
    ax.set_ylabel("val accuracy (%)")
    ax.set_title("routed vs static over seeds" + (f" at step {step:,}" if step else ""))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the bars
    fig.tight_layout()
    return fig


PRIOR_ROW = "question-type prior"


def seeds_comparison(run_dirs: dict[str, Path], routed: str = "brn_c16"):
    """(per-seed frame, common step, gap table) of `routed` and its static twin over the seeds in
    `run_dirs` (name -> run folder): `seeds_frame`, then `seeds_gap` with the question-type prior
    as its last row when the data set is on this machine. Raises ValueError as `seeds_frame`."""
    frame, step = seeds_frame(run_dirs, {"routed": routed, "static": f"{routed}_static"})
    gap = seeds_gap(frame, "routed", "static")
    prior = runs_prior([run_dirs[routed]]) if routed in run_dirs else None
    if prior is not None:  # the floor, as in every table
        from qgmrn.clevr.constants import TYPE_LABELS

        by_type = {TYPE_LABELS[t]: 100 * a for t, a in prior["by_type"].items() if a is not None}
        gap.loc[PRIOR_ROW] = pd.Series({"Overall": 100 * prior["overall"], **by_type})
    return frame, step, gap


def seeds_caption(gap: pd.DataFrame, step: int) -> str:
    """`seeds_gap`'s table in words: the overall gap with the half-width of its 95% interval,
    whether the interval excludes zero, and the types where it does."""
    seeds = gap.attrs.get("seeds", {})
    n = ", ".join(f"{len(v)} {k}" for k, v in seeds.items())
    d, ci = gap.loc["routed - static"], gap.loc[f"routed - static {CI}"]

    def verdict(col: str) -> str:
        if not np.isfinite(ci[col]):
            return "no spread yet (one seed an arm)"
        if abs(d[col]) > ci[col]:
            return "routed ahead" if d[col] > 0 else "static ahead"
        return f"inside its {CONFIDENCE:.0%} interval: no difference shown"

    words = (
        f"At step {step:,} ({n} seeds), routed minus static: {d['Overall']:+.1f} ± "
        f"{ci['Overall']:.1f} points overall ({CONFIDENCE:.0%} interval, Welch's t over seeds), "
        f"{verdict('Overall')}."
    )
    apart = [f"{c} {d[c]:+.1f} ± {ci[c]:.1f}" for c in gap.columns[1:]
             if np.isfinite(ci[c]) and abs(d[c]) > ci[c]]  # fmt: skip
    words += (" Outside the interval: " + "; ".join(apart) + ".") if apart else ""
    if PRIOR_ROW in gap.index:
        best = max(gap.loc["routed mean", "Overall"], gap.loc["static mean", "Overall"])
        words += (
            f" Both arms against the question-type prior ({gap.loc[PRIOR_ROW, 'Overall']:.1f}):"
            f" {best - gap.loc[PRIOR_ROW, 'Overall']:+.1f} points for the better mean."
        )
    return words


def seeds_section(run_dirs: dict[str, Path], routed: str, figure: Path) -> list[str]:
    """summary.md's seeds comparison of `routed` and its static twin, and its `figure`."""
    try:
        frame, step, gap = seeds_comparison(run_dirs, routed)
    except ValueError as err:
        return ["## Routed vs static over seeds", "", f"Not available: {err}.", ""]
    cfg = json.loads((run_dirs[routed] / "config.json").read_text())
    batch = cfg.get("train", {}).get("batch_size")
    samples = f" ({step * batch:,} training samples)" if batch else ""
    seeds = gap.attrs["seeds"]
    prior_row = gap.loc[PRIOR_ROW] if PRIOR_ROW in gap.index else None
    save_figure(plot_seeds(frame, step, prior_row), figure)
    return [
        f"## Routed vs static over seeds ({routed} vs {routed}_static)",
        "",
        f"Validation accuracy (percent) of every seed at step {step:,}{samples}, the largest",
        "step at which every seed run has a validation pass; a fixed step, not each run's best,",
        f"so nothing here was chosen on val. Seeds: routed {seeds['routed']}, static",
        f"{seeds['static']} (a seed sets the initialisation and the Gumbel noise; all see the",
        "same stream of scenes); the gap is the difference of the means with its standard",
        "error (s.e.) and the half-width of its 95% confidence interval (c.i.; Welch's t).",
        "",
        tables.plain_markdown(with_trained_on(frame.round(1), run_dirs, step)),
        "",
        tables.plain_markdown(gap.round(1)),
        "",
        seeds_caption(gap, step),
        "",
        f"![routed vs static over seeds]({figure.name})",
        "",
    ]
