"""Learning curves (metrics.jsonl) and accuracy-by-type bar charts (eval.json).

``metrics.jsonl`` holds one JSON object per logged training step (``step, epoch, loss,
load_loss, acc, lr, tau, samples_per_s, exec_ratio``) and validation rows marked
``{"kind": "val", ...}`` (docs/internals.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from qgmrn.analysis.tables import best_val, read_eval
from qgmrn.clevr.constants import QUESTION_TYPES, SUBTYPE_LABELS, SUBTYPES, TYPE_LABELS

PathLike = str | os.PathLike


def read_metrics(run_dir: PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, validation rows) of a run's metrics.jsonl (a run directory or the file).

    Rows without a ``kind`` are training steps. Lines that are not valid JSON (a run killed
    mid-write) are skipped.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics.jsonl; has this run started?")
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    df = pd.DataFrame(rows)
    if "kind" not in df.columns:
        df["kind"] = "train"
    df["kind"] = df["kind"].fillna("train")
    train = df[df["kind"] == "train"].reset_index(drop=True)
    val = df[df["kind"] == "val"].reset_index(drop=True)
    return train, val


def throughput(run_dir: PathLike) -> dict:
    """How fast a run trained, from its own metrics.jsonl: ``steps`` and ``samples`` seen (the
    last logged step times the batch size from config.json), the median ``samples_per_s`` over
    the logged intervals (each interval's rate, so pauses for validation do not count), the
    median ``data_wait_frac`` (share of step time spent waiting for the loader) and the
    ``minutes`` those samples take at the median rate."""
    run_dir = Path(run_dir)
    train, _ = read_metrics(run_dir)
    if not len(train) or "samples_per_s" not in train:
        raise ValueError(f"{run_dir / 'metrics.jsonl'}: no training rows with samples_per_s")
    batch = json.loads((run_dir / "config.json").read_text())["train"]["batch_size"]
    steps = int(train["step"].max())
    rate = float(train["samples_per_s"].median())
    wait = train["data_wait_frac"].median() if "data_wait_frac" in train else float("nan")
    return {
        "steps": steps,
        "samples": steps * batch,
        "samples_per_s": rate,
        "data_wait_frac": float(wait),
        "minutes": steps * batch / rate / 60 if rate > 0 else float("nan"),
    }


def run_batch_size(run_dir: PathLike) -> int | None:
    """The batch size in a run's config.json (what turns a step into training samples), or
    None when the config does not say."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    batch = json.loads(path.read_text()).get("train", {}).get("batch_size")
    return int(batch) if batch else None


def _val_accuracy_column(val: pd.DataFrame) -> str | None:
    # metrics.jsonl mixes train rows (acc) and val rows (overall): a column counts only if
    # the validation rows fill it
    for name in ("overall", "acc", "val_acc", "accuracy"):
        if name in val.columns and val[name].notna().any():
            return name
    return None


def plot_learning_curves(
    run_dirs: Mapping[str, PathLike] | PathLike, *, prior: float | None = None
) -> Figure:
    """Training loss (left) and training and validation accuracy in percent (right) against the
    training samples seen (step x the run's batch size, `run_batch_size`), like
    `plot_validation_curves`; `prior` (a fraction): the question-type prior as a dashed black
    line on the accuracy panel.

    The accuracy axis spans the data (`data_ylim`), not 0-100: the validation passes, the prior
    and the training accuracy from the first validation pass on (or from the first tenth of the
    run, if that comes first: a run validated only at its end still shows its training curve),
    so the first near-zero training steps do not squash the curves that matter. The legend sits
    below the panels, off the curves. Runs whose config does not give a batch size put the whole
    figure in steps. `run_dirs` is one run directory or {label: run directory} for several runs
    on shared axes.
    """
    from matplotlib.ticker import EngFormatter

    if not isinstance(run_dirs, Mapping):
        run_dirs = {Path(run_dirs).name: run_dirs}
    batches = {label: run_batch_size(d) for label, d in run_dirs.items()}
    in_samples = all(batches.values())
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    shown = []  # the accuracies (percent) the y range covers
    for i, (label, run_dir) in enumerate(run_dirs.items()):
        color = f"C{i % 10}"
        scale = batches[label] if in_samples else 1
        train, val = read_metrics(run_dir)
        if len(train) and "loss" in train:
            x = train["step"] * scale
            ax_loss.plot(x, train["loss"], color=color, label=f"{label} loss")
            if "load_loss" in train and train["load_loss"].notna().any():
                ax_loss.plot(x, train["load_loss"], color=color, linestyle=":",
                             label=f"{label} load loss")  # fmt: skip
        col = _val_accuracy_column(val)
        first_val = None
        if len(val) and col and "step" in val:
            val = val.drop_duplicates("step", keep="last").sort_values("step")
            y = 100 * val[col].to_numpy(dtype=float)
            shown.append(y)
            first_val = float(val["step"].min())
            ax_acc.plot(val["step"] * scale, y, color=color, marker="o", markersize=4,
                        linestyle="--", label=f"{label} val")  # fmt: skip
        if len(train) and "acc" in train:
            acc = 100 * train["acc"].to_numpy(dtype=float)
            ax_acc.plot(train["step"] * scale, acc, color=color, alpha=0.6,
                        label=f"{label} train")  # fmt: skip
            start = 0.1 * float(train["step"].max())
            if first_val is not None:
                start = min(start, first_val)
            shown.append(acc[train["step"].to_numpy() >= start])
    if prior is not None:
        ax_acc.axhline(100 * prior, color="k", ls="--", lw=1,
                       label=f"question-type prior ({100 * prior:.1f}%)")  # fmt: skip
    if shown:
        ax_acc.set_ylim(*data_ylim(np.concatenate(shown), None if prior is None else 100 * prior))
    xlabel = "training samples (step x batch size)" if in_samples else "step"
    for ax in (ax_loss, ax_acc):
        ax.set_xlim(left=0)
        if in_samples:
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss (dotted: load-balancing term)", fontsize=10)
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("accuracy (solid: training; dashed: validation)", fontsize=10)
    handles, labels = [], []
    for ax in (ax_loss, ax_acc):
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    if handles:  # below the panels: inside either one, the legend covered the curves
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5),
                   fontsize=8, frameon=False)  # fmt: skip
    return fig


def accuracy_frame(run_dirs: Mapping[str, PathLike], *, by: str = "type") -> pd.DataFrame:
    """Accuracy (fractions) per question type (`by="type"`) or subtype (`by="subtype"`):
    rows = display names in the paper's order, columns = run labels."""
    if by == "type":
        field, keys, labels = "by_type", QUESTION_TYPES, TYPE_LABELS
    elif by == "subtype":
        field, keys, labels = "by_subtype", SUBTYPES, SUBTYPE_LABELS
    else:
        raise ValueError(f"by must be 'type' or 'subtype', not {by!r}")
    data = {}
    for label, run_dir in run_dirs.items():
        ev = read_eval(run_dir)
        data[label] = [ev.get(field, {}).get(k, np.nan) for k in keys]
    return pd.DataFrame(data, index=[labels[k] for k in keys])


def _bar_label(label: str, run_dir: PathLike) -> str:
    """A bar's legend entry: the run, its overall accuracy and, where the run says, the
    training samples of the weights scored (eval.json's checkpoint step x the batch size), so
    that runs of different budgets side by side say so."""
    from qgmrn.analysis.compare import samples_text  # compare imports this module

    ev = read_eval(run_dir)
    text = f"{label} (overall {ev['overall']:.1%}"
    step, batch = ev.get("checkpoint_step"), run_batch_size(run_dir)
    if step is not None and batch:
        text += f", weights at {samples_text(int(step) * batch)} samples"
    return text + ")"


def plot_accuracy_by_type(
    run_dirs: Mapping[str, PathLike] | PathLike,
    *,
    by: str = "type",
    chance: bool = True,
    prior: Mapping | None = None,
) -> Figure:
    """Grouped bars of accuracy per question type (or subtype), one bar per run, its legend entry
    with the samples the scored weights had trained on (`_bar_label`); `prior` (the scores of
    `qgmrn.analysis.prior`) draws the question-type prior as a black line per group."""
    if not isinstance(run_dirs, Mapping):
        run_dirs = {Path(run_dirs).name: run_dirs}
    df = accuracy_frame(run_dirs, by=by)
    # the legend goes right of the axes (3 inches more): inside, with a run per bar, it hid the
    # last groups' bars
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(df) + 2) + 3.0, 3.8))
    width = 0.8 / max(1, df.shape[1])
    x = np.arange(len(df))
    for i, label in enumerate(df.columns):
        ax.bar(x + i * width, df[label], width, label=_bar_label(label, run_dirs[label]))
    if prior is not None:
        keys = QUESTION_TYPES if by == "type" else SUBTYPES
        ys = [prior[f"by_{by}"].get(k) for k in keys]
        ys = [np.nan if y is None else y for y in ys]
        label = f"question-type prior (overall {prior['overall']:.1%})"
        # over the whole group: its bars span x - width / 2 to x + 0.8 - width / 2
        left = x - width / 2 - 0.03
        ax.hlines(ys, left, left + 0.8 + 0.06, colors="k", lw=2, label=label)
    ax.set_xticks(x + width * (df.shape[1] - 1) / 2)
    # one word a line ("Compare\nNumbers"), centred under its group: side by side, the
    # one-line labels ran into each other ("Exist" into "Compare Numbers")
    ax.set_xticklabels(["\n".join(str(n).split()) for n in df.index], ha="center", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"accuracy by question {by}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def data_ylim(values, prior: float | None = None, pad: float = 0.08) -> tuple[float, float]:
    """Axis limits around the finite `values` and the `prior` (same units): their range with
    `pad` of it (at least one unit's hundredth, `pad` of the largest value, when all are equal)
    on both sides, so a figure shows where its data lies, not a fixed 0-100."""
    v = np.asarray([x for x in np.ravel(values) if np.isfinite(x)], dtype=float)
    if prior is not None:
        v = np.append(v, prior)
    if not len(v):
        return 0.0, 1.0
    low, high = float(v.min()), float(v.max())
    margin = pad * (high - low) or pad * max(abs(high), 1e-2)
    return low - margin, high + margin


def plot_validation_curves(
    run_dirs: Mapping[str, PathLike],
    *,
    title: str = "",
    train: bool = True,
    prior: float | None = None,
    max_samples: float | None = None,
) -> Figure:
    """Validation accuracy (percent) against the training samples seen (step x the run's batch
    size), one line per run, with the training accuracy as a faint line of the same colour when
    `train`; `prior` (a fraction): the question-type prior as a dashed black line; `max_samples`:
    draw each run only up to this budget (the region a figure compares).

    The legend, right of the axes, gives each run's budget (the samples at its last validation
    pass) and its best validation accuracy as Table 1 gives it (`tables.best_val`: best.pt
    scored by the final evaluation); a run still training says so, and one cut at `max_samples`
    says how much of it is drawn. The y axis spans the curves from each run's first validation
    pass on, and the prior (`data_ylim`), not 0-100: the training lines' first steps, near zero,
    are clipped. Runs whose config does not give a batch size put the whole figure in steps.
    `run_dirs` is {label: run directory}; a run with no metrics.jsonl yet is left out.
    """
    from matplotlib.ticker import EngFormatter

    from qgmrn.analysis.compare import samples_text  # compare imports this module

    batches = {label: run_batch_size(d) for label, d in run_dirs.items()}
    in_samples = all(batches.values())
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    shown = []  # the validation accuracies drawn, for the y range
    for i, (label, run_dir) in enumerate(run_dirs.items()):
        try:
            tr, val = read_metrics(run_dir)
        except FileNotFoundError:
            continue
        color = f"C{i % 10}"
        scale = batches[label] if in_samples else 1
        limit = np.inf if max_samples is None else max_samples / scale  # in steps
        col = _val_accuracy_column(val)
        if len(val) and col and "step" in val:
            val = val.drop_duplicates("step", keep="last").sort_values("step")
            last = float(val["step"].max()) * scale
            part = val[val["step"] <= limit]
            y = 100 * part[col].to_numpy(dtype=float)
            shown.append(y)
            budget = samples_text(last) + " samples" if in_samples else f"{int(last):,} steps"
            best = best_val(run_dir)
            if val["step"].max() > limit * (1 + 0.01):  # cut: say how much of it is drawn
                cut = samples_text(max_samples) if in_samples else f"{int(max_samples):,} steps"
                text = f"{label}: first {cut} of its {budget}"
            elif best is None:
                text = f"{label}: {budget}, training (no final evaluation yet)"
            else:
                text = f"{label}: {budget}, best.pt {100 * best[0]:.1f}%"
            ax.plot(part["step"] * scale, y, color=color, marker="o", markersize=3, label=text)
        if train and len(tr) and "acc" in tr:
            t = tr[tr["step"] <= limit]
            ax.plot(t["step"] * scale, 100 * t["acc"], color=color, alpha=0.25, linewidth=0.8)
            if len(val) and "step" in val:  # the y range: from the first validation pass on
                shown.append(100 * t.loc[t["step"] >= val["step"].min(), "acc"].to_numpy(float))
    if prior is not None:
        ax.axhline(100 * prior, color="k", ls="--", lw=1,
                   label=f"question-type prior ({100 * prior:.1f}%)")  # fmt: skip
    if shown:
        ax.set_ylim(*data_ylim(np.concatenate(shown), None if prior is None else 100 * prior))
    ax.set_xlim(left=0)
    if in_samples:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("training samples (step x batch size)" if in_samples else "step")
    ax.set_ylabel("val accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title or "validation accuracy (faint: training accuracy)", fontsize=10)
    entries = ax.get_legend_handles_labels()[1]
    if entries:
        legend_title = "run: budget, best val (Table 1)"
        ax.legend(fontsize=8, title=legend_title, title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))  # fmt: skip
        # the axes keep about 7 inches whatever the legend's width (8 pt: ~0.06 inch a character)
        fig.set_size_inches(7.5 + 0.06 * max(map(len, entries)), fig.get_figheight())
    fig.tight_layout()
    return fig
