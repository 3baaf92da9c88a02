"""The plateau study's table and plots, from the runs' own files (a study of ours).

    python studies/plateau/summarize.py            # writes results/studies/plateau/{summary.md,
                                                   #   curves.png}

Every arm is a routed BRN c=16 on the demo profile, trained on the same stream of fresh
mini-CLEVR scenes (seed 0, scene reuse 4, batch 64) and scored on the same val split (4,991
questions) at the same validation steps (every stream epoch of 781 steps and every 2,000 steps),
so arms compare at equal training samples. The baseline is the paper's recipe: the reference
routed BRN c=16 (results/reference/runs/brn_c16) and its seeds 2 and 3 (to 200k samples), which
give the run-to-run spread. Reported per arm: val accuracy at equal samples (single passes and the
mean of the passes in a window, since single passes jump by about a point), by type and on the
questions of relational depth 0, the training throughput of the run itself (samples/s on its
machine, one thread), and the samples and training time to each milestone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from qgmrn.analysis.curves import read_metrics  # noqa: E402
from qgmrn.engine.history import read_history  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "studies" / "plateau"
REF = ROOT / "results" / "reference"
PRIOR = 0.425  # the question-type prior on val (results/reference/summary.md)
MILESTONES = (0.5, 0.6, 0.7, 0.8, 0.9)
TYPES = ("count", "exist", "compare_numbers", "query_attribute", "compare_attribute")
TYPE_SHORT = ("Count", "Exist", "Cmp.Num", "Query", "Cmp.Attr")


@dataclass(frozen=True)
class Arm:
    name: str
    run: Path
    lever: str  # what differs from the paper's recipe ("" for the baseline)
    paper: bool  # whether the arm stays within the paper's method


ARMS: tuple[Arm, ...] = (
    Arm("paper recipe (reference brn_c16)", REF / "runs" / "brn_c16", "", True),
    Arm("paper recipe, seed 2", REF / "runs" / "brn_c16_s2", "", True),
    Arm("paper recipe, seed 3", REF / "runs" / "brn_c16_s3", "", True),
    Arm("attention head", OUT / "runs" / "attn_head", "head = attention (sec. 3.4)", True),
    Arm("lr 1e-3", OUT / "runs" / "lr1e-3", "lr 1e-3 after the warmup (paper: 3e-4)", False),
    Arm(
        "lr 1e-3 + perception first",
        OUT / "runs" / "lr1e-3_perception",
        "lr 1e-3; visual network pretrained on per-cell attributes (96k images, lr 1e-3), "
        "then the attribute loss kept on (reach visual)",
        False,
    ),
    Arm(
        "the same, warmup 500 steps",
        OUT / "runs" / "perception_warmup500",
        "lr 1e-3 + perception first, a linear warmup of 500 steps instead of the demo "
        "profile's 200",
        False,
    ),
    Arm(
        "the same, y_L 8x12",
        OUT / "runs" / "perception_s8",
        "lr 1e-3 + perception first (pretrained at 8x12), last stage's stride removed: "
        "y_L 8x12 instead of 4x6",
        False,
    ),
    Arm(
        "the same, curriculum 300k",
        OUT / "runs" / "perception_curriculum300k",
        "lr 1e-3 + perception first; relational depth 0 alone to 300k samples, depth <= 1 to "
        "450k, then every family (data.curriculum)",
        False,
    ),
    Arm(
        "the same, curriculum 150k",
        OUT / "runs" / "perception_curriculum150k",
        "lr 1e-3 + perception first; relational depth 0 alone to 150k samples, depth <= 1 to "
        "300k, then every family (data.curriculum)",
        False,
    ),
    Arm(
        "the same, queries first",
        OUT / "runs" / "perception_queries100k",
        "lr 1e-3 + perception first; the zero-hop Query Attribute questions alone to 100k "
        "samples, then the curriculum 150k (data.queries_first)",
        False,
    ),
    Arm(
        "the same, queries first + attention head",
        OUT / "runs" / "attn_queries100k",
        "queries first as above, with the paper's attention head (sec. 3.4)",
        False,
    ),
    Arm(
        "lr 1e-3 + perception first + attention head",
        OUT / "runs" / "recipe",
        "the three levers above together",
        False,
    ),
    Arm(
        "attribute loss, joint (ref_attrv_612k)",
        OUT / "runs" / "ref_attrv_612k",
        "auxiliary per-cell attribute loss from step 0 (ours)",
        False,
    ),
)


def _records(frame) -> list[dict]:
    """A metrics DataFrame's rows as dicts, without the keys a row did not have (NaN)."""
    return [
        {k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}
        for r in frame.to_dict("records")
    ]


def read_run(run: Path) -> dict:
    """Validation rows and cumulative training seconds of a run's metrics.jsonl."""
    train_rows, val_rows = read_metrics(run)  # skips a line being written
    cfg = json.loads((run / "config.json").read_text())
    batch = cfg["train"]["batch_size"]
    train = [r for r in _records(train_rows) if "samples_per_s" in r]
    val = {int(r["step"]): r for r in _records(val_rows)}
    # training seconds up to each logged step: each row covers the steps since the previous one
    seconds, t, prev = {}, 0.0, 0
    for r in train:
        if r["samples_per_s"] > 0:
            t += (r["step"] - prev) * batch / r["samples_per_s"]
        prev = r["step"]
        seconds[r["step"]] = t
    steps = np.array(sorted(seconds))
    rate = float(np.median([r["samples_per_s"] for r in train])) if train else math.nan
    history = read_history(run)
    devices = sorted({h.get("device_name") or h.get("device", "?") for h in history}) or ["?"]

    def seconds_at(step: int) -> float:
        i = np.searchsorted(steps, step, side="right") - 1
        return float(seconds[int(steps[i])]) if i >= 0 else 0.0

    return {
        "batch": batch,
        "val": val,
        "seconds_at": seconds_at,
        "rate": rate,
        "devices": devices,
        "last_step": max([r["step"] for r in train] + [0]),
    }


def window_mean(val: dict, lo: int, hi: int, key=lambda r: r["overall"]) -> tuple[float, int]:
    """Mean of `key` over the validation passes with lo < step <= hi, and their number."""
    vals = [key(r) for s, r in val.items() if lo < s <= hi and key(r) is not None]
    return (float(np.mean(vals)) if vals else math.nan), len(vals)


def fmt(x: float, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def summarize(arms=ARMS) -> str:
    data = {a.name: read_run(a.run) for a in arms if (a.run / "metrics.jsonl").exists()}
    lines = [
        "# The plateau study: levers at equal training samples",
        "",
        "Generated by `python studies/plateau/summarize.py` from the runs' metrics.jsonl. All",
        "arms: routed BRN c=16, demo profile, the same stream (seed 0, reuse 4, batch 64), the",
        "same val split (4,991 questions). Val accuracy in %; `d0`: the val questions of",
        'relational depth 0 ("What color is the large cube?"); the question-type prior is '
        f"{100 * PRIOR:.1f}.",
        "",
        "## Val accuracy at equal samples (single passes)",
        "",
    ]
    points = (781, 1562, 2000, 3124, 4000, 4686, 6000, 7810, 9372, 12496, 15620)
    head = "| arm | " + " | ".join(f"{s * 64 / 1000:.0f}k" for s in points) + " |"
    lines += [head, "|---|" + "---|" * len(points)]
    for a in arms:
        if a.name not in data:
            continue
        val = data[a.name]["val"]
        cells = [fmt(val[s]["overall"]) if s in val else "" for s in points]
        lines.append(f"| {a.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Window means (mean of the passes in the window) by type and on depth 0",
        "",
        "| arm | window (samples) | passes | overall | "
        + " | ".join(TYPE_SHORT)
        + " | d0 | d0 QA | train samples/s (device) |",
        "|---|---|---|---|" + "---|" * len(TYPES) + "---|---|---|",
    ]
    for lo, hi in ((0, 3124), (3124, 6248), (6248, 9375), (9375, 12500), (12500, 15625)):
        for a in arms:
            if a.name not in data:
                continue
            d = data[a.name]
            m, n = window_mean(d["val"], lo, hi)
            if not n:
                continue
            types = [
                fmt(window_mean(d["val"], lo, hi, lambda r, t=t: r["by_type"].get(t))[0])
                for t in TYPES
            ]
            d0 = window_mean(d["val"], lo, hi, lambda r: r.get("by_depth", {}).get("0"))[0]
            # selection shows first on the zero-hop Query Attribute questions (by_type_depth0:
            # logged by the runs started after it existed)
            q0 = window_mean(
                d["val"], lo, hi, lambda r: r.get("by_type_depth0", {}).get("query_attribute")
            )[0]
            lines.append(
                f"| {a.name} | {lo * 64 // 1000}k-{hi * 64 // 1000}k | {n} | {fmt(m)} | "
                + " | ".join(types)
                + f" | {fmt(d0)} | {fmt(q0)} | {d['rate']:.0f} ({', '.join(d['devices'])}) |"
            )
    lines += [
        "",
        "## Samples and training time to each milestone (first val pass at or above it)",
        "",
        "| arm | last step (samples) | "
        + " | ".join(f"{int(100 * m)}%" for m in MILESTONES)
        + " |",
        "|---|---|" + "---|" * len(MILESTONES),
    ]
    for a in arms:
        if a.name not in data:
            continue
        d = data[a.name]
        cells = []
        for m in MILESTONES:
            hit = [s for s, r in sorted(d["val"].items()) if r["overall"] >= m]
            if hit:
                s = hit[0]
                cells.append(f"{s * d['batch'] / 1e3:.0f}k, {d['seconds_at'](s) / 3600:.2f} h")
            else:
                cells.append("not yet")
        lines.append(
            f"| {a.name} | {d['last_step']} ({d['last_step'] * d['batch'] / 1e3:.0f}k) | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "Levers (departures from the paper's recipe):", ""]
    for a in arms:
        if a.lever:
            lines.append(f"- {a.name}: {a.lever}{'' if a.paper else ' (not the paper)'}")
    return "\n".join(lines) + "\n"


def probe_table() -> str:
    """The perception probes (`perception_probe.py`): val accuracy per attribute on the cells an
    object covers, after the same numbers of training images."""
    lines = [
        "## Perception probe: how fast a visual network learns to see (attributes only)",
        "",
        "`studies/plateau/perception_probe.py`: the visual network alone (all gates open) and a",
        "1x1 head trained on the per-cell attributes of the train split's 5,000 images (batch 64),",
        "scored on the val split's 500 (accuracy on the cells an object covers; 3,978 cells).",
        "",
        "| visual network | lr | images | colour | shape | size | material | s / 250 steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted((OUT / "probe").glob("*.json")):
        d = json.loads(path.read_text())
        name = d["variant"] + "".join(f" {o.split('.', 1)[1]}" for o in d.get("overrides", []))
        prev = 0.0
        for r in d["rows"]:
            if r["images"] not in (16000, 32000, 48000, 96000):
                prev = r["train_s"]
                continue
            per = r["train_s"] - prev  # the probes score every 250 steps
            prev = r["train_s"]
            lines.append(
                f"| {name} | {d['lr']:g} | {r['images'] // 1000}k | {fmt(r['color'])} | "
                f"{fmt(r['shape'])} | {fmt(r['size'])} | {fmt(r['material'])} | {per:.0f} |"
            )
    return "\n".join(lines) + "\n"


def plot(arms=ARMS) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    reach = 0.0  # the study arms' longest budget (the reference runs go on to 2M)
    for i, a in enumerate(arms):
        if not (a.run / "metrics.jsonl").exists():
            continue
        d = read_run(a.run)
        steps = sorted(d["val"])
        samples = [s * d["batch"] / 1e3 for s in steps]
        acc = [100 * d["val"][s]["overall"] for s in steps]
        # more arms than the 10 colours of the cycle: the next ten dashed, so no two look alike
        line = "-" if i < 10 else "--"
        style = dict(color=f"C{i % 10}", linestyle=line, marker="o", markersize=3, label=a.name)
        axes[0].plot(samples, acc, **style)
        if not a.paper and samples:
            reach = max(reach, samples[-1])
        if not any("NVIDIA" in dev for dev in d["devices"]):  # CPU time only, like for like
            axes[1].plot([d["seconds_at"](s) / 3600 for s in steps], acc, **style)
        d0 = [
            (x, d["val"][s].get("by_depth", {}).get("0"))
            for x, s in zip(samples, steps, strict=True)
        ]
        d0 = [(x, 100 * y) for x, y in d0 if y is not None]
        if d0:
            axes[2].plot([x for x, _ in d0], [y for _, y in d0], **style)
    for ax, xlabel, title in (
        (axes[0], "training samples (thousands)", "val accuracy at equal samples"),
        (axes[1], "training hours (one CPU thread)", "at equal CPU time (runs trained on a CPU)"),
        (axes[2], "training samples (thousands)", "val questions of relational depth 0"),
    ):
        ax.axhline(100 * PRIOR, color="gray", linestyle=":", label="question-type prior")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("val accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_xlim(0, 1.05 * reach if reach else None)
    # below the panels: inside, the legend covered the curves
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, fontsize=7, loc="lower center", ncol=4, frameon=False, handlelength=4
    )
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.md").write_text(summarize() + "\n" + probe_table())
    plot().savefig(OUT / "curves.png", dpi=110)
    print((OUT / "summary.md").read_text())


if __name__ == "__main__":
    main()
