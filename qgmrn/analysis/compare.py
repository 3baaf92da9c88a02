"""Comparing a set of runs: at equal training samples, by the samples to a target accuracy,
best-on-val beside the honest scores, where their steps were trained, what their routers
learned, and a difference of means over seeds.

Every function takes run folders (name -> path: what `qgmrn train` writes) and reads only their
files (config.json, metrics.jsonl, eval.json, history.jsonl, routing_paths.npz); none depends
on how the folders are named. The reference study (`studies/reference`) and notebook 06 build
their tables from these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from qgmrn.analysis import curves, tables
from qgmrn.analysis.routing import PER_SUBTYPE
from qgmrn.engine.history import read_history

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


def routed_static_gap(routed: PathLike, static: PathLike) -> pd.DataFrame:
    """Accuracy by type of a routed run and its static twin, and routed minus static (points)."""
    frame = tables.build_table1(
        {"routed": routed, "static twin": static}, source="ours", include_paper=False
    )
    frame = frame.droplevel(0).drop(columns=[c for c in frame.columns if "Humans" in c or c == "n"])
    frame.loc["routed - static"] = frame.loc["routed"] - frame.loc["static twin"]
    return frame


def _read_json_or_none(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def honest_frame(run_dirs: dict[str, Path]) -> pd.DataFrame:
    """Per run: samples seen, the best validation accuracy and its step (`tables.best_val`:
    best.pt scored by the final evaluation, eval.json, as Table 1 shows it; chosen on val, so
    optimistic; NaN before that evaluation), the last validation pass, and the last checkpoint
    on the test split (`qgmrn evaluate RUN --split test --checkpoint latest`, whose
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
            row.update(
                {
                    "samples": int(val["step"].max()) * batch,
                    "last val": 100 * val[col].iloc[-1],
                }
            )
        if (best := tables.best_val(run_dir)) is not None:
            row["best val"] = 100 * best[0]
            row["best at step"] = float("nan") if best[1] is None else best[1]
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


def segments_frame(run_dirs: dict[str, Path]) -> pd.DataFrame:
    """Where and how each run's steps were trained: one row per segment of the runs that keep
    a history.jsonl (`qgmrn.engine.history`; one segment per call of fit), in run order.

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


def routing_frame(
    run_dirs: dict[str, Path], per_subtype: int = PER_SUBTYPE, seed: int = 0
) -> pd.DataFrame:
    """What the routers learned, per routed run with a routing_paths.npz (its best.pt's paths on
    val, written by the run's final evaluation): Figure 2's number (nearest-neighbour subtype
    accuracy of the paths, per stage 1-4, in percent; `captions.subtype_separation` on at most
    `per_subtype` questions a subtype drawn with `seed`, by default Figure 2's 500; chance
    beside) and Figure 3's (the median execution ratio of the first and last routed layer and
    its slope per layer; `captions.execution_trend`), with the step of the weights. Runs without
    paths are left out."""
    from qgmrn.analysis import captions, routing

    rows = {}
    for name, run_dir in run_dirs.items():
        try:
            rp = routing.load_routing_paths(run_dir)
        except FileNotFoundError:
            continue
        sep = captions.subtype_separation(
            rp.paths, rp.layer_sizes, rp.stage_of_layer, rp.subtypes,
            per_subtype=per_subtype, seed=seed,
        )  # fmt: skip
        trend = captions.execution_trend(
            routing.execution_ratio_per_layer(rp.paths, rp.layer_sizes)
        )
        ev = _read_json_or_none(run_dir / "eval.json") or {}
        row = {"step": ev.get("checkpoint_step", float("nan"))}
        row |= {f"NN subtype acc., stage {k}": 100 * v for k, v in sep["nn_accuracy"].items()}
        row["chance"] = 100 * float(sep["chance"].iloc[0])
        row |= {
            "exec. ratio, first layer": trend["first"],
            "exec. ratio, last layer": trend["last"],
            "slope per layer": trend["slope_per_layer"],
        }
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
