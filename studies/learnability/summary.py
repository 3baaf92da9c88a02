"""The learnability study's summary (runs made by `python -m studies.learnability.run`).

    python -m studies.learnability results/learnability

reads `STUDY/runs/<preset>__<arm>/` (metrics.jsonl, config.json, eval.json) and writes into
STUDY: `summary.md` (one row per run: budget, samples seen, throughput, loader wait, validation
at equal sample counts, best and last validation, training accuracy and the memorisation gap),
`curves.png` (validation accuracy against samples seen, training accuracy faint, the question-type
prior as a line) and `by_type.png` (the last validation by question type, one panel per preset,
each run's samples at that pass in its legend, prior marked).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from qgmrn.analysis._io import save_figure
from qgmrn.analysis.compare import samples_text
from qgmrn.analysis.curves import data_ylim, read_metrics
from qgmrn.analysis.tables import best_val, plain_markdown
from qgmrn.clevr.constants import QUESTION_TYPES, TYPE_LABELS
from qgmrn.fileio import atomic_write_text

PathLike = str | os.PathLike
CHECKPOINTS = (100_000, 200_000, 400_000)  # samples at which runs are compared side by side


def study_runs(study_dir: PathLike) -> dict[str, Path]:
    """`<preset>__<arm>` -> run folder, for the runs that have logged anything."""
    runs = Path(study_dir) / "runs"
    return {p.name: p for p in sorted(runs.glob("*__*")) if (p / "metrics.jsonl").exists()}


def _val_at(val: pd.DataFrame, samples: int) -> float | None:
    """Validation accuracy of the last validation at or before `samples` (None if none, or if
    the run has not reached `samples`)."""
    if val.empty or val["samples"].max() < samples:
        return None
    return float(val[val["samples"] <= samples]["overall"].iloc[-1])


def run_frame(run_dir: PathLike) -> dict:
    """One row of the summary for a run folder."""
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    train, val = read_metrics(run_dir)
    batch = cfg["train"]["batch_size"]
    train = train.assign(samples=train["step"] * batch)
    val = val.assign(samples=val["step"] * batch) if not val.empty else val
    preset, arm = run_dir.name.split("__", 1)
    last = train.tail(max(len(train) // 10, 1))  # the last tenth of the logged steps
    row = {
        "preset": preset,
        "arm": arm,
        "source": cfg["data"].get("train_source", "fixed"),
        "input HxW": "x".join(map(str, cfg["data"]["image_size"])),
        "minutes": float(cfg["train"].get("max_minutes") or 0.0),
        "samples seen": int(train["samples"].max()) if len(train) else 0,
        "samples/s": float(train["samples_per_s"].median()) if len(train) else None,
        "loader wait %": 100 * float(train["data_wait_frac"].mean())
        if "data_wait_frac" in train
        else None,
    }
    for n in CHECKPOINTS:
        v = _val_at(val, n)
        row[f"val @{n // 1000}k"] = None if v is None else 100 * v
    if (best := best_val(run_dir)) is not None:  # best.pt on val, as Table 1 gives it
        row["val best"] = 100 * best[0]
    if not val.empty:
        row["val last"] = 100 * float(val["overall"].iloc[-1])
    row["train last"] = 100 * float(last["acc"].mean()) if len(train) else None
    if row.get("val last") is not None and row["train last"] is not None:
        row["gap"] = row["train last"] - row["val last"]
    if (run_dir / "eval.json").exists():
        ev = json.loads((run_dir / "eval.json").read_text())
        row["train minutes"] = ev["train"]["train_minutes"]
    return row


def summary_frame(runs: Mapping[str, PathLike]) -> pd.DataFrame:
    return pd.DataFrame([run_frame(p) for p in runs.values()]).set_index(["preset", "arm"])


def plot_curves(runs: Mapping[str, PathLike], prior: float | None) -> Figure:
    """Validation accuracy (solid) and training accuracy (faint) against samples seen, one panel
    per preset, the question-type prior dashed; each panel's y axis spans its curves from the
    first validation pass on and the prior (`data_ylim`): the first steps, near zero, are
    clipped."""
    presets = sorted({name.split("__")[0] for name in runs})
    fig, axes = plt.subplots(1, len(presets), figsize=(6.5 * len(presets), 4.2), squeeze=False)
    for ax, preset in zip(axes[0], presets, strict=True):
        shown = []
        for i, (name, path) in enumerate(sorted(runs.items())):
            if not name.startswith(preset + "__"):
                continue
            batch = json.loads((Path(path) / "config.json").read_text())["train"]["batch_size"]
            train, val = read_metrics(path)
            color = f"C{i % 10}"
            arm = name.split("__", 1)[1]
            if len(train):
                smooth = train["acc"].rolling(10, min_periods=1).mean()
                ax.plot(train["step"] * batch, 100 * smooth, color=color, alpha=0.3, lw=1)
                if not val.empty:  # the y range: from the first validation pass on
                    shown.append(100 * smooth[train["step"] >= val["step"].min()].to_numpy())
            if not val.empty:
                shown.append(100 * val["overall"].to_numpy(dtype=float))
                ax.plot(val["step"] * batch, 100 * val["overall"], "o-", color=color, label=arm)
        if prior is not None:
            ax.axhline(100 * prior, color="k", ls="--", lw=1, label="question-type prior")
        if shown:
            ax.set_ylim(*data_ylim(np.concatenate(shown), None if prior is None else 100 * prior))
        ax.set_xlim(left=0)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_title(f"{preset}: validation (solid) and training (faint) accuracy")
        ax.set_xlabel("training samples seen")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_by_type(runs: Mapping[str, PathLike], prior: Mapping | None) -> Figure:
    """The last validation accuracy by question type of every run, one panel per preset (the
    runs had equal minutes, not equal samples: a CNN+LSTM sees 3-6 times the samples of a BRN
    in them), each bar's legend entry with the samples at that pass; prior as black ticks."""
    rows, seen = {}, {}
    for name, path in sorted(runs.items()):
        _, val = read_metrics(path)
        if not val.empty:
            batch = json.loads((Path(path) / "config.json").read_text())["train"]["batch_size"]
            rows[name] = {
                TYPE_LABELS[t]: 100 * (val["by_type"].iloc[-1][t] or 0) for t in QUESTION_TYPES
            }
            seen[name] = int(val["step"].iloc[-1]) * batch
    labels = [TYPE_LABELS[t] for t in QUESTION_TYPES]
    frame = pd.DataFrame(rows, index=labels).T
    presets = sorted({name.split("__")[0] for name in frame.index})
    fig, axes = plt.subplots(
        1, len(presets), figsize=(7.5 * len(presets), 4.2), squeeze=False, sharey=True
    )
    x = np.arange(len(labels))
    colors = {name: f"C{i % 10}" for i, name in enumerate(sorted(runs))}  # as in curves.png
    for ax, preset in zip(axes[0], presets, strict=True):
        part = frame[[name.split("__")[0] == preset for name in frame.index]]
        width = 0.8 / max(len(part), 1)
        for i, (name, row) in enumerate(part.iterrows()):
            arm = name.split("__", 1)[1]
            ax.bar(x + i * width, row.to_numpy(), width, color=colors[name],
                   label=f"{arm} (at {samples_text(seen[name])} samples)")  # fmt: skip
        if prior is not None:  # a tick across each group of bars
            ys = [100 * (prior["by_type"][t] or 0) for t in QUESTION_TYPES]
            left = x - width / 2 - 0.05
            ax.hlines(ys, left, left + 0.9, colors="k", lw=2, label="question-type prior")
        ax.set_xticks(x + 0.4 - width / 2)
        ax.set_xticklabels(["\n".join(n.split()) for n in labels], fontsize=8)
        span = ", ".join(samples_text(seen[n]) for n in part.index)
        ax.set_title(f"{preset}: last validation pass by type ({span} samples)", fontsize=10)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("last validation accuracy (%)")
    fig.tight_layout()
    return fig


def write_summary(study_dir: PathLike, data_dir: PathLike = "data/mini-clevr") -> Path:
    """Write summary.md, curves.png and by_type.png into `study_dir`; returns summary.md."""
    from qgmrn.analysis.prior import data_set_prior

    study = Path(study_dir)
    runs = study_runs(study)
    if not runs:
        raise FileNotFoundError(f"{study / 'runs'}: no study runs (<preset>__<arm> folders)")
    try:
        prior = data_set_prior(data_dir)
    except FileNotFoundError:
        prior = None
    save_figure(plot_curves(runs, prior["overall"] if prior else None), study / "curves.png")
    save_figure(plot_by_type(runs, prior), study / "by_type.png")
    frame = summary_frame(runs)
    lines = [
        "# Learnability study: tables generated by studies.learnability",
        "",
        "Each run: one demo preset, one thread (`OMP_NUM_THREADS=1`), one DataLoader worker, two",
        "runs at a time on the 2-core CPU, the wall-clock budget in `minutes`, validated every",
        "50k samples on the same fixed val split (`data/mini-clevr`, 4,991 questions).",
        "Accuracies in percent; `val best` is best.pt (the highest validation pass) scored by",
        "the run's final evaluation (eval.json), as Table 1 gives it; `train last` is the mean",
        "training accuracy (Gumbel noise on) over the last tenth of the logged steps and `gap` =",
        "train last - val last (memorisation).",
        "",
        plain_markdown(frame),
        "",
    ]
    if prior is not None:
        by = ", ".join(
            f"{TYPE_LABELS[t]} {100 * (prior['by_type'][t] or 0):.1f}" for t in QUESTION_TYPES
        )
        lines += [
            f"Question-type prior (majority answer per subtype of the train split, on val): "
            f"{100 * prior['overall']:.1f} ({by}).",
            "",
        ]
    lines += ["![curves](curves.png)", "", "![by type](by_type.png)", ""]
    atomic_write_text(study / "summary.md", "\n".join(lines))
    return study / "summary.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", nargs="?", default="results/learnability")
    parser.add_argument("--data", default="data/mini-clevr", help="the data set of the prior")
    args = parser.parse_args(argv)
    print(write_summary(args.study_dir, args.data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
