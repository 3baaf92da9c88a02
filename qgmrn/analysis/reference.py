"""Summaries of the longer reference runs (`results/reference/`), written next to them.

    python -m qgmrn.analysis.reference results/reference

writes `results/reference/summary.md` (Table 1 rows of the reference runs with their budgets,
accuracy by type, the routed-vs-static gap), `curves.png` (validation accuracy against the step)
and `by_type.png` (accuracy by question type), from the runs' eval.json and metrics.jsonl only.
Where extra-seed runs `PRESET_sN` exist, summary.md adds the routed-vs-static comparison over
seeds at a common step, and `seeds.png`; they stay out of the tables and curves of the reference
budget. So do the runs of our labelled arm (trained with the auxiliary attribute loss,
`TrainConfig.attribute_loss_weight` > 0, named `PRESET_attr` or `PRESET_attrv` after the loss's
reach): a section of their own compares them with their paper-faithful twins `PRESET` at equal
samples (`ours_section`, `ours.png`). Seed runs of two or more of Table 2's arms (`brn_c8_sN`,
`brn_c16_bn_sN`, ...) add the question of the budget at which its rows separate
(`qgmrn.analysis.separation`, `table2.png`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from qgmrn.analysis import curves, tables
from qgmrn.analysis._io import save_figure
from qgmrn.config import upgrade_config_dict, uses_attribute_loss
from qgmrn.fileio import atomic_write_text, locate
from qgmrn.history import read_history

PathLike = str | os.PathLike

# Common training-sample budgets at which the runs are compared, and the validation accuracies
# whose sample cost is reported (the samples it took to reach 60/70/80%).
# (200k and 400k: 4 and 8 stream epochs of 781 steps = 199,936 and 399,872 samples, where the
# seed runs and our arm's CPU runs validate; 2M: 31,250 steps, the routed BRN and its static twin
# continued on the CPU)
EQUAL_SAMPLE_BUDGETS: tuple[int, ...] = (100_000, 200_000, 400_000, 1_000_000, 2_000_000)
BUDGET_SLACK = 0.01  # a last pass within 1% below a budget counts as reaching it
MILESTONES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
EXTRAPOLATION_LIMIT = 100  # a fit asked for more than this many times the run's samples says so
# Seed runs (`benchmarks/reference_gpu.sh PRESET@SEED`, or `qgmrn train --seed N --out
# runs/PRESET_sN`): PRESET_sN is PRESET trained with seed N; PRESET itself is the default seed.
SEED_RUN = re.compile(r"^(?P<preset>.+)_s(?P<seed>\d+)$")


# Our labelled arm (not the paper's method): PRESET + suffix is PRESET trained with the auxiliary
# attribute loss of that reach (`TrainConfig.attribute_loss_reach`); PRESET is its paper-faithful
# twin. A static twin has no router for the loss to reach: its one run `PRESET_static_attr` is
# the static arm of both reaches.
OURS_SUFFIXES: dict[str, str] = {"_attrv": "visual", "_attr": "all"}
OURS_SUFFIX = "_attr"  # the first runs' (reach "all"), and the static arm's


def is_ours(run_dir: Path) -> bool:
    """Whether the run trained with the auxiliary attribute loss (our arm, not the paper's)."""
    return uses_attribute_loss(json.loads((Path(run_dir) / "config.json").read_text()))


def split_ours(run_dirs: dict[str, Path]) -> tuple[dict[str, Path], dict[str, Path]]:
    """(the paper-faithful runs, the runs of our auxiliary-loss arm): ours never enter the
    paper's tables, only their own section."""
    ours = {k: v for k, v in run_dirs.items() if is_ours(v)}
    return {k: v for k, v in run_dirs.items() if k not in ours}, ours


def split_seed_runs(run_dirs: dict[str, Path]) -> tuple[dict[str, Path], dict[str, Path]]:
    """(the reference runs, the extra-seed runs `PRESET_sN`): the seed runs are shorter and feed
    the seeds comparison only, not the tables and curves of the reference budget."""
    seeds = {k: v for k, v in run_dirs.items() if SEED_RUN.match(k)}
    return {k: v for k, v in run_dirs.items() if k not in seeds}, seeds


def is_run_of(name: str, preset: str) -> bool:
    """Whether run `name` trained `preset`: the folder named after it, or a seed run
    `PRESET_sN` of it."""
    m = SEED_RUN.match(name)
    return name == preset or bool(m and m["preset"] == preset)


def seed_of(name: str, run_dir: Path) -> int:
    """The training seed of run `name`: N of a seed run `PRESET_sN`, else its config's."""
    m = SEED_RUN.match(name)
    if m:
        return int(m["seed"])
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    return cfg.get("train", {}).get("seed", 0)  # TrainConfig's default seed


def val_rows(run_dir: Path) -> pd.DataFrame:
    """The run's validation rows indexed by step, in step order; repeated passes at one step (a
    resume re-validating) keep the last. Empty without scored passes, or before the run's
    first log line (no metrics.jsonl yet)."""
    try:
        _, val = curves.read_metrics(run_dir)
    except FileNotFoundError:  # a run just started: nothing to read yet
        return pd.DataFrame()
    if not len(val) or "overall" not in val:
        return pd.DataFrame()
    return val.drop_duplicates("step", keep="last").set_index("step").sort_index()


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


CONFIDENCE = 0.95  # the two-sided interval a difference over seeds is read against
CI = f"{CONFIDENCE:.0%} c.i."  # the label of its half-width's row


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(b) - mean(a), its standard error, the half-width of its `CONFIDENCE` interval):
    Welch's unequal-variance t interval with the Welch-Satterthwaite degrees of freedom (with
    two or three seeds an arm, some 2-4 degrees of freedom: 4.3-2.8 standard errors). Seeds
    that agree exactly (zero spread) give a zero-width interval; fewer than two seeds in an arm,
    NaN for both."""
    from scipy import stats

    diff = float(np.mean(b) - np.mean(a))
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se == 0:
        return diff, 0.0, 0.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return diff, se, float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * se)


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


def routed_static_gap(routed: PathLike, static: PathLike) -> pd.DataFrame:
    """Accuracy by type of a routed run and its static twin, and routed minus static (points)."""
    frame = tables.build_table1(
        {"routed": routed, "static twin": static}, source="ours", include_paper=False
    )
    frame = frame.droplevel(0).drop(columns=[c for c in frame.columns if "Humans" in c or c == "n"])
    frame.loc["routed - static"] = frame.loc["routed"] - frame.loc["static twin"]
    return frame


def _prior_of(run_dirs) -> dict | None:
    """The question-type prior of the data set the runs trained on (their config.json), or None
    when that data set is not on this machine."""
    from qgmrn.analysis.prior import data_set_prior

    for run_dir in run_dirs:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
        data_dir = cfg.get("data", {}).get("data_dir")
        if data_dir is None:
            continue
        try:
            located = locate(data_dir)  # recorded relative to the project root when inside it
            return {**data_set_prior(located), "data_dir": located}
        except FileNotFoundError:
            return None
    return None


DEFAULT_ABOUT = """# Reference runs

Longer runs of the demo presets on the demo mini-CLEVR (`data/mini-clevr`, made by
`qgmrn generate data/mini-clevr --profile demo --humans`), each with the same wall-clock
budget, trained one per core (`OMP_NUM_THREADS=1`, two at a time) on a 2-core CPU:

```
qgmrn train --preset P --profile demo --data data/mini-clevr \\
    --out results/reference/runs/P --epochs 1000 --max-minutes M --workers 1
```

A stopped run continues with `--resume` (a longer budget: raise `--max-minutes`).
The faint lines in curves.png are training accuracy: a run whose training accuracy
climbs far above its validation accuracy is memorising the training images (more
scenes help: `DataConfig.train_scenes`); one where both stay together needs more steps.
Accuracies are on the mini-CLEVR validation split, in percent.
"""


def _read_json_or_none(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def honest_frame(run_dirs: dict[str, Path]) -> pd.DataFrame:
    """Per run: samples seen, the best validation accuracy and its step (what eval.json and
    best.pt hold: chosen on val, so optimistic), the last validation pass, and the last
    checkpoint on the test split (`qgmrn evaluate RUN --split test --checkpoint latest`, whose
    eval_test_latest.json this reads; NaN where it was not run). Accuracies in percent."""
    rows = {}
    for name, run_dir in run_dirs.items():
        cfg = json.loads((run_dir / "config.json").read_text())
        batch = cfg.get("train", {}).get("batch_size", 1)
        _, val = curves.read_metrics(run_dir)
        col = "overall" if "overall" in val.columns else None
        test = _read_json_or_none(run_dir / "eval_test_latest.json")
        row = {"samples": float("nan"), "best val": float("nan"), "best at step": float("nan")}
        if col and len(val):
            best = val.loc[val[col].idxmax()]
            row.update(
                {
                    "samples": int(val["step"].max()) * batch,
                    "best val": 100 * best[col],
                    "best at step": int(best["step"]),
                    "last val": 100 * val[col].iloc[-1],
                }
            )
        row["last checkpoint, test"] = 100 * test["overall"] if test else float("nan")
        row["test n"] = test["n"] if test else float("nan")
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _val_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(training samples seen, validation accuracy) at each validation pass, in sample order;
    repeated passes at one step (a resume re-validating) keep the last."""
    cfg = json.loads((run_dir / "config.json").read_text())
    batch = cfg.get("train", {}).get("batch_size", 1)
    val = val_rows(run_dir)
    if not len(val):
        return np.zeros(0), np.zeros(0)
    return val.index.to_numpy() * batch, val["overall"].to_numpy(dtype=float)


def equal_samples_frame(run_dirs: dict[str, Path], budgets=EQUAL_SAMPLE_BUDGETS) -> pd.DataFrame:
    """Validation accuracy (percent) of each run at common sample budgets: the last validation
    pass at or before each budget (NaN where the run has not reached it; a run whose last pass
    falls within `BUDGET_SLACK` of a budget reaches it: the stream's 4 and 8 epochs of 781 steps
    are 199,936 and 399,872 samples). Runs trained on machines of different speeds for the same
    time saw different sample counts; this compares them at equal data instead."""
    rows = {}
    for name, run_dir in run_dirs.items():
        samples, acc = _val_curve(run_dir)
        row = {}
        for b in budgets:
            seen = samples <= b
            reached = len(samples) and samples.max() >= b * (1 - BUDGET_SLACK)
            row[f"{b / 1e6:g}M" if b >= 1e6 else f"{b / 1e3:g}k"] = (
                100 * acc[seen][-1] if reached and seen.any() else float("nan")
            )
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def milestones_frame(run_dirs: dict[str, Path], targets=MILESTONES) -> pd.DataFrame:
    """Training samples each run took to first reach each validation accuracy in `targets`,
    and, for a target not reached, a log-linear extrapolation (ours, crude): accuracy = a + b
    log10(samples) fitted to the validation passes in the later half of the run's samples,
    solved for the target. Cells: "412k" (measured), "~2.6M (extrapolated)", "not rising"
    (b <= 0), "> 100x its samples" (a fit that far out means nothing) or "-" (too few passes
    to fit)."""
    rows = {}
    for name, run_dir in run_dirs.items():
        samples, acc = _val_curve(run_dir)
        row = {}
        fit = None
        late = samples >= samples.max() / 2 if len(samples) else samples.astype(bool)
        if late.sum() >= 3:
            b, a = np.polyfit(np.log10(samples[late]), acc[late], 1)
            fit = (a, b)
        for t in targets:
            hit = np.nonzero(acc >= t)[0]
            if len(hit):
                row[f"{100 * t:g}%"] = samples_text(samples[hit[0]])
            elif fit is None:
                row[f"{100 * t:g}%"] = "-"
            elif fit[1] <= 0:
                row[f"{100 * t:g}%"] = "not rising"
            else:
                need = 10 ** ((t - fit[0]) / fit[1])
                far = need > EXTRAPOLATION_LIMIT * samples.max()
                row[f"{100 * t:g}%"] = (
                    f"> {EXTRAPOLATION_LIMIT}x its samples"
                    if far
                    else f"~{samples_text(need)} (extrapolated)"
                )
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def trained_on(run_dir: Path, up_to_step: int | None = None) -> str:
    """Where a run's steps were trained, in a table's words: "CPU" or "GPU (its name)", from its
    history (history.jsonl; segments that trained no step left out; several joined by " + " in
    order), else from the device of eval.json's last call, else "?". `up_to_step`: only the
    segments that trained some of the first `up_to_step` steps (a table that reads the run at
    that step: a GPU run continued on the CPU was still the GPU's at its early steps)."""

    def words(device: str, name: str | None = None) -> str:
        if device.startswith("cuda"):
            return f"GPU ({name})" if name else "GPU"
        return "CPU" if device == "cpu" else device

    names = [
        words(str(seg.get("device") or "?"), seg.get("device_name"))
        for seg in read_history(run_dir)
        if int(seg.get("end_step") or 0) > int(seg.get("start_step") or 0)
        and (up_to_step is None or int(seg.get("start_step") or 0) < up_to_step)
    ]
    if names:
        return " + ".join(dict.fromkeys(names))
    ev = _read_json_or_none(run_dir / "eval.json") or {}
    device = (ev.get("train") or {}).get("device")
    return words(str(device)) if device else "?"


def with_trained_on(
    frame: pd.DataFrame, run_dirs: dict[str, Path], up_to_step: int | None = None
) -> pd.DataFrame:
    """`frame` (rows (arm, seed) of `seeds_frame` or `arm_curves`, which name their runs in
    `attrs[RUNS_ATTR]`) with a last column "trained on" (`trained_on` of each row's run, up to
    `up_to_step`: the last step the frame shows)."""
    names = frame.attrs[RUNS_ATTR]
    where = [trained_on(run_dirs[names[k]], up_to_step) for k in frame.index]
    return frame.assign(**{"trained on": where})


def segments_frame(run_dirs: dict[str, Path]) -> pd.DataFrame:
    """Where and how each run's steps were trained: one row per segment of the runs that keep
    a history.jsonl (`qgmrn.history`; one segment per call of fit), in run order.

    Columns: steps ("0-15,731"), samples (that segment's), where (device name, precision,
    workers), minutes (its own training minutes), samples/s, stopped (its stop reason; "killed"
    when the call did not finish, "running" for the last segment of a run without eval.json
    that has not stopped). Empty when no run has a history.
    """
    rows = []
    for name, run_dir in run_dirs.items():
        segments = read_history(run_dir)
        for seg in segments:
            start, end = int(seg["start_step"]), int(seg["end_step"])
            batch = int(seg.get("global_batch") or 64)
            minutes = float(seg.get("train_minutes") or 0.0)
            where = [str(seg.get("device_name") or seg.get("device") or "?")]
            where.append(str(seg.get("precision") or "?"))
            if seg.get("threads") is not None and str(seg.get("device")) == "cpu":
                where.append(f"{seg['threads']} thread{'s' if seg['threads'] != 1 else ''}")
            if seg.get("workers") is not None:
                workers = int(seg["workers"])
                where.append(f"{workers} data worker{'s' if workers != 1 else ''}")
            stopped = seg.get("stop_reason")
            if stopped is None:
                last = seg is segments[-1] and not (run_dir / "eval.json").exists()
                stopped = "running" if last else "killed"
            rows.append(
                {
                    "run": name,
                    "segment": int(seg["segment"]),
                    "steps": f"{start:,}-{end:,}",
                    "samples": samples_text((end - start) * batch),
                    "where": ", ".join(where),
                    "minutes": round(minutes, 1),
                    "samples/s": round((end - start) * batch / (60 * minutes))
                    if minutes > 0
                    else None,
                    "stopped": stopped,
                }
            )
    columns = ["run", "segment", "steps", "samples", "where", "minutes", "samples/s", "stopped"]
    return pd.DataFrame(rows, columns=columns).set_index(["run", "segment"])


def samples_text(n: float) -> str:
    """A sample count in a table's words: 320, 200k, 1.01M."""
    if n < 999.5:
        return f"{n:.0f}"
    if n >= 1e9:
        return f"{n / 1e9:.1f}G"
    if n >= 999_500:  # rounds to a million or more: say so in millions, not "1000k"
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.0f}k"


def summarize(reference_dir: PathLike, *, routed: str = "brn_c16") -> dict[str, Path]:
    """Write summary.md, curves.png and by_type.png into `reference_dir`; returns their paths."""
    ref = Path(reference_dir)
    runs_dir = ref / "runs"
    all_runs = {p.name: p for p in sorted(runs_dir.glob("*")) if (p / "config.json").exists()}
    if not all_runs:
        raise FileNotFoundError(f"{runs_dir}: no runs (folders with a config.json)")
    paper_runs, ours = split_ours(all_runs)
    run_dirs, seed_runs = split_seed_runs(paper_runs)
    finished = {k: v for k, v in run_dirs.items() if (v / "eval.json").exists()}
    out = {
        "curves": ref / "curves.png",
        "by_type": ref / "by_type.png",
        "summary": ref / "summary.md",
    }
    save_figure(
        curves.plot_validation_curves(run_dirs, title="reference runs: validation accuracy"),
        out["curves"],
    )
    prior = _prior_of(run_dirs.values())
    if finished:
        save_figure(curves.plot_accuracy_by_type(finished, prior=prior), out["by_type"])
    table = tables.table1_from_dirs({"reference": runs_dir}, include_paper=False)
    if prior is not None:
        table = tables.with_prior(table, prior["data_dir"])
    about = ref / "about.md"  # how these runs were made; the default describes results/reference
    lines = [
        (about.read_text() if about.exists() else DEFAULT_ABOUT).rstrip(),
        "",
        tables.to_markdown(table, title="Table 1 rows (ours, reference)"),
        "",
        "## Budgets",
        "",
        tables.plain_markdown(
            tables.budget_frame({"reference": runs_dir})[["budget"]].droplevel(0)
        ),
        "",
        *_segments_section(all_runs),
        "## Best on val beside the last checkpoint (val and test)",
        "",
        "The table above is each run's best validation pass (its best.pt): chosen on val, so",
        "optimistic. Here beside it: the last validation pass and the last checkpoint scored on",
        "the test split, which nothing was chosen on.",
        "",
        tables.plain_markdown(honest_frame(run_dirs)),
        "",
        "## At equal training samples (validation accuracy, percent)",
        "",
        "The last validation pass at or before each budget; blank (nan) where the run has not",
        "reached it. The runs trained for equal time on machines of different speed, so this is",
        "the fair comparison.",
        "",
        tables.plain_markdown(equal_samples_frame(run_dirs).round(1)),
        "",
        "## Samples to reach a validation accuracy",
        "",
        "Measured where the run got there; otherwise a log-linear fit (accuracy against",
        "log10 samples, over the later half of the run's validation passes) solved for the",
        "target: a crude guide, not a result (a curve can bend down, or jump when a skill is",
        "learned; a long way out it can be wrong either way).",
        "",
        tables.plain_markdown(milestones_frame(run_dirs)),
        "",
    ]
    for name in twin_pairs(finished, routed):  # `routed` first, then e.g. brn_c32
        static = f"{name}_static"
        gap = routed_static_gap(finished[name], finished[static])
        lines += [
            f"## Routed vs static twin ({name} vs {static})",
            "",
            tables.plain_markdown(gap),
            "",
        ]
    if seed_runs:
        lines += _seeds_section(paper_runs, routed, ref / "seeds.png")
        from qgmrn.analysis.separation import table2_section  # it imports this module

        floor = 100 * prior["overall"] if prior is not None else None
        lines += table2_section(paper_runs, ref / "table2.png", floor)
    if ours:
        lines += ours_section(ours, paper_runs, routed, ref / "ours.png")
    lines += ["![validation curves](curves.png)", ""]
    if finished:
        lines += ["![accuracy by type](by_type.png)", ""]
    atomic_write_text(out["summary"], "\n".join(lines))
    return out


def twin_pairs(finished: dict[str, Path], routed: str = "brn_c16") -> list[str]:
    """The routed runs among `finished` whose static twin (`NAME_static`) finished too:
    `routed` first, then the others by name (best.pt against best.pt, each pair at its own
    budget)."""
    names = [n for n in finished if not n.endswith("_static") and f"{n}_static" in finished]
    return sorted(names, key=lambda n: (n != routed, n))


def _segments_section(run_dirs: dict[str, Path]) -> list[str]:
    """summary.md's "Where the steps were trained" (runs with a history.jsonl), or nothing."""
    frame = segments_frame(run_dirs)
    if frame.empty:
        return []
    return [
        "## Where the steps were trained",
        "",
        "Runs that kept a history (history.jsonl, one row per call of `fit`): a run resumed",
        "on another machine lists each stretch of steps with the machine that trained it.",
        "",
        tables.plain_markdown(frame),
        "",
    ]


def plot_seeds(frame: pd.DataFrame, step: int | None = None, prior: pd.Series | None = None):
    """Accuracy by type of each arm of `seeds_frame`: one dot per seed, a bar at the mean with
    the standard deviation as its error bar; `prior` (percent, by the frame's columns): a black
    line per type, the question-type prior. Returns the figure."""
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(frame.index.get_level_values("arm")))
    cols = list(frame.columns)
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 1.5, 3.6))
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
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


PRIOR_ROW = "question-type prior"


def seeds_comparison(run_dirs: dict[str, Path], routed: str = "brn_c16"):
    """(per-seed frame, common step, gap table) of `routed` and its static twin over the seeds in
    `run_dirs` (name -> run folder): `seeds_frame`, then `seeds_gap` with the question-type prior
    as its last row when the data set is on this machine. Raises ValueError as `seeds_frame`."""
    frame, step = seeds_frame(run_dirs, {"routed": routed, "static": f"{routed}_static"})
    gap = seeds_gap(frame, "routed", "static")
    prior = _prior_of([run_dirs[routed]]) if routed in run_dirs else None
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


def _seeds_section(run_dirs: dict[str, Path], routed: str, figure: Path) -> list[str]:
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


def ours_twins(ours: dict[str, Path], paper: dict[str, Path]) -> dict[str, str]:
    """Each run of our arm -> its paper-faithful twin's name (`PRESET_attr` and `PRESET_attrv`
    -> `PRESET`), where that twin is among `paper`."""
    twins = {}
    for name in ours:
        for suffix in OURS_SUFFIXES:
            twin = name.removesuffix(suffix)
            if twin != name:
                if twin in paper:
                    twins[name] = twin
                break
    return twins


def ours_arms(routed: str, names) -> dict[str, str]:
    """The arms of the comparison (label -> preset run name) that have a run among `names` (a
    run named after the preset, or one of its seed runs `PRESET_sN`): our routed run of each
    reach, our static run, and the paper's two."""
    arms = {f"ours routed, reach {reach}": f"{routed}{suffix}"
            for suffix, reach in OURS_SUFFIXES.items()}  # fmt: skip
    arms |= {
        "ours static": f"{routed}_static{OURS_SUFFIX}",
        "paper routed": routed,
        "paper static": f"{routed}_static",
    }
    presets = {m["preset"] if (m := SEED_RUN.match(n)) else n for n in names}
    return {label: preset for label, preset in arms.items() if preset in presets}


def ours_caption(equal: pd.DataFrame, twins: dict[str, str]) -> str:
    """Each run of our arm against its paper-faithful twin at the largest sample budget both
    reached (`equal_samples_frame`'s columns), in points."""
    parts = []
    for name, twin in twins.items():
        both = equal.loc[[name, twin]].dropna(axis=1)
        if both.empty:
            parts.append(f"{name}: no common budget with {twin} yet")
            continue
        budget = both.columns[-1]
        a, b = both.loc[name, budget], both.loc[twin, budget]
        parts.append(f"{name} {a:.1f} vs {twin} {b:.1f} at {budget} samples ({a - b:+.1f})")
    return "At equal training samples (val, percent): " + "; ".join(parts) + "."


def ours_comparison(ours: dict[str, Path], paper: dict[str, Path], routed: str = "brn_c16"):
    """Our labelled arm beside its paper-faithful twins: a dict with
    `equal` (validation accuracy, percent, at common sample budgets: `equal_samples_frame`),
    `caption` (`ours_caption`), `twins` (`ours_twins`), `by_type` and `step` (accuracy by type of
    the routed and static runs of both arms at the largest step all four validated, with the
    differences routed - static and ours - paper; None where one of the four is missing),
    `over_seeds` and `seeds_step` (the same by type at the largest step that every run of the
    four arms shares, the paper's arms over all their seeds `PRESET_sN` in `paper`: each arm's
    mean and standard deviation; None without such a step), `gaps` (at that step: each of our
    routed arms minus our static one and minus the paper's routed one, ours static minus the
    paper's, the paper's routed minus static; the difference of the means and the half-width of
    its 95% interval over seeds, `seeds_gap`, NaN for an arm of one seed) and `figure` (their
    validation curves)."""
    twins = ours_twins(ours, paper)
    both = ours | {t: paper[t] for t in twins.values()}
    arms = ours_arms(routed, ours | paper)
    routed_arms = [a for a in arms if a.startswith("ours routed")]
    complete = routed_arms and {"ours static", "paper routed", "paper static"} <= set(arms)
    over_seeds, seeds_step, gaps = None, None, None
    if complete:
        with contextlib.suppress(ValueError):
            frame, seeds_step = seeds_frame(ours | paper, arms)
            over_seeds = mean_over_seeds(frame)
            pairs = [(a, b) for a in routed_arms for b in ("ours static", "paper routed")]
            pairs += [("ours static", "paper static"), ("paper routed", "paper static")]
            gaps = pd.concat(
                seeds_gap(frame, a, b).loc[[f"{a} - {b}", f"{a} - {b} {CI}"]] for a, b in pairs
            )
    equal = equal_samples_frame(both)
    labels = {n: f"{n} (ours: + attribute loss{_reach_words(p)})" for n, p in ours.items()}
    labels |= {t: f"{t} (paper)" for t in twins.values()}
    figure = curves.plot_validation_curves(
        {labels[n]: p for n, p in both.items()}, title="our arm beside the paper's"
    )
    by_type, step = None, None
    default_seed = {label: name for label, name in arms.items() if name in both}
    if complete and set(default_seed) == set(arms):
        with contextlib.suppress(ValueError):  # no common validation step yet
            frame, step = seeds_frame({n: both[n] for n in arms.values()}, arms)  # one seed each
            by_type = frame.droplevel("seed")
            for arm in routed_arms:
                reach = arm.removeprefix("ours routed, ")
                by_type.loc[f"ours ({reach}): routed - static"] = (
                    by_type.loc[arm] - by_type.loc["ours static"]
                )
                by_type.loc[f"routed: ours ({reach}) - paper"] = (
                    by_type.loc[arm] - by_type.loc["paper routed"]
                )
    return {
        "equal": equal,
        "caption": ours_caption(equal, twins),
        "twins": twins,
        "by_type": by_type,
        "step": step,
        "over_seeds": over_seeds,
        "gaps": gaps,
        "seeds_step": seeds_step,
        "figure": figure,
    }


def _reach_words(run_dir: Path) -> str:
    """The words ", reach R" for a routed run of our arm, from its config (an old one's reach
    upgraded to "all"); none for a static one (no router to reach)."""
    cfg = upgrade_config_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    if cfg.get("model", {}).get("gate") == "static":
        return ""
    return f", reach {cfg['train']['attribute_loss_reach']}"


def routing_frame(run_dirs: dict[str, Path], per_subtype: int = 200) -> pd.DataFrame:
    """What the routers learned, per routed run with a routing_paths.npz (its best.pt's paths on
    val, written by the run's final evaluation): Figure 2's number (nearest-neighbour subtype
    accuracy of the paths, per stage, in percent; `captions.subtype_separation`, chance beside)
    and Figure 3's (the median execution ratio of the first and last routed layer and its slope
    per layer; `captions.execution_trend`), with the step of the weights. Runs without paths are
    left out."""
    from qgmrn.analysis import captions, routing

    rows = {}
    for name, run_dir in run_dirs.items():
        try:
            rp = routing.load_routing_paths(run_dir)
        except FileNotFoundError:
            continue
        sep = captions.subtype_separation(
            rp.paths, rp.layer_sizes, rp.stage_of_layer, rp.subtypes, per_subtype=per_subtype
        )
        trend = captions.execution_trend(
            routing.execution_ratio_per_layer(rp.paths, rp.layer_sizes)
        )
        ev = _read_json_or_none(run_dir / "eval.json") or {}
        row = {"step": ev.get("checkpoint_step", float("nan"))}
        row |= {f"NN subtype acc., stage {k + 1}": 100 * v for k, v in sep["nn_accuracy"].items()}
        row["chance"] = 100 * float(sep["chance"].iloc[0])
        row |= {
            "exec. ratio, first layer": trend["first"],
            "exec. ratio, last layer": trend["last"],
            "slope per layer": trend["slope_per_layer"],
        }
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def ours_section(
    ours: dict[str, Path], paper: dict[str, Path], routed: str, figure: Path
) -> list[str]:
    """summary.md's section on our labelled arm (`ours_comparison`), its honest scores, and
    `figure` (the validation curves of the arm and its twins)."""
    c = ours_comparison(ours, paper, routed)
    save_figure(c["figure"], figure)
    weights = sorted(
        {json.loads((p / "config.json").read_text())["train"]["attribute_loss_weight"]
         for p in ours.values()}
    )  # fmt: skip
    lines = [
        "## Our labelled arm: + an auxiliary attribute loss (ours, not the paper's method)",
        "",
        "One arm outside the paper's method is kept, apart, because the paper-faithful runs cannot",
        "approach the paper's accuracy within reach. These runs add a loss on a 1x1 head that",
        "reads y_L and predicts, per cell, the colour, shape, size and material of the object",
        "covering it (or none), labelled from the stream renderer's object buffer",
        f"(`qgmrn.data.attributes`; weight {', '.join(f'{w:g}' for w in weights)}). The head",
        "exists only in training: the model evaluated is the paper's. Everything else is the",
        "recipe of their paper-faithful twins; they stay out of every table above.",
        "",
        'Two reaches of the loss (`TrainConfig.attribute_loss_reach`): `PRESET_attr` ("all",',
        "the first runs) adds it to the VQA loss, so its gradient also reaches the router",
        'through the straight-through gates; `PRESET_attrv` ("visual") backpropagates it on',
        "its own into the visual network and the head only, so the router learns from the VQA",
        "loss alone. A static twin has no router to reach: `PRESET_static_attr` is the static",
        "arm of both.",
        "",
        "Validation accuracy (percent) at equal training samples:",
        "",
        tables.plain_markdown(c["equal"].round(1)),
        "",
        c["caption"],
        "",
        "Best on val beside the last validation pass and the last checkpoint on test:",
        "",
        tables.plain_markdown(honest_frame(ours)),
        "",
    ]
    if c["over_seeds"] is not None:
        lines += [
            f"By type at step {c['seeds_step']:,}, the last validation step every seed run shares",
            "(a fixed step, nothing chosen on val): each arm's mean over its seeds, and the",
            "standard deviation where it has more than one:",
            "",
            tables.plain_markdown(c["over_seeds"].round(1)),
            "",
            "The differences at that step, each beside the half-width of its 95% confidence",
            "interval (Welch's t over seeds, `welch`): a difference larger than it is one the",
            "seeds support; nan: an arm of one seed.",
            "",
            tables.plain_markdown(c["gaps"].round(1)),
            "",
        ]
    if c["by_type"] is not None:
        lines += [
            f"By type at step {c['step']:,}, the last validation step the default-seed runs of",
            "every arm share (a fixed step, nothing chosen on val; one seed each, no error bar):",
            "",
            tables.plain_markdown(c["by_type"].round(1)),
            "",
        ]

    routed_presets = {routed} | {f"{routed}{suffix}" for suffix in OURS_SUFFIXES}

    def is_routed(name: str) -> bool:  # the routed preset, our runs of it, and their seed runs
        m = SEED_RUN.match(name)
        return name in routed_presets or bool(m and m["preset"] in routed_presets)

    routes = routing_frame({n: p for n, p in (ours | paper).items() if is_routed(n)})
    if routes.index.isin(list(ours)).any() and len(routes) > 1:
        lines += [
            "What the routed BRNs' routers learned (their best.pt's routing paths on val;",
            "Figure 2's and Figure 3's numbers; `routing_frame`). Mind the budgets: `step`.",
            "",
            tables.plain_markdown(routes.round(3)),
            "",
        ]
    lines += [f"![our arm beside the paper's]({figure.name})", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference_dir", nargs="?", default="results/reference")
    parser.add_argument("--routed", default="brn_c16", help="routed preset with a static twin")
    args = parser.parse_args(argv)
    for name, path in summarize(args.reference_dir, routed=args.routed).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
