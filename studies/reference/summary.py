"""The reference study's summary, written beside its runs (`results/reference/`).

    python -m studies.reference results/reference

writes `results/reference/summary.md` (Table 1 rows of the reference runs with their budgets,
accuracy by type, the routed-vs-static gap), `curves.png` (validation accuracy against the step)
and `by_type.png` (accuracy by question type), from the runs' eval.json and metrics.jsonl only.
Where extra-seed runs `PRESET_sN` exist, summary.md adds the routed-vs-static comparison over
seeds at a common step (`studies.reference.seeds`), and `seeds.png`; they stay out of the tables
and curves of the reference budget. So do the runs of our labelled arm (trained with the
auxiliary attribute loss, `TrainConfig.attribute_loss_weight` > 0, named `PRESET_attr` or
`PRESET_attrv` after the loss's reach): a section of their own compares them with their
paper-faithful twins `PRESET` at equal samples (`studies.reference.ours`, `ours.png`). Seed runs
of two or more of Table 2's arms (`brn_c8_sN`, `brn_c16_bn_sN`, ...) add the question of the
budget at which its rows separate (`studies.reference.separation`, `table2.png`). The folder
names it reads are those of `studies.reference.naming`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from qgmrn.analysis import curves, tables
from qgmrn.analysis._io import save_figure
from qgmrn.analysis.compare import (
    equal_samples_frame,
    honest_frame,
    milestones_frame,
    routed_static_gap,
    segments_frame,
)
from qgmrn.analysis.prior import runs_prior
from qgmrn.fileio import atomic_write_text
from studies.reference.naming import split_ours, split_seed_runs, twin_pairs
from studies.reference.ours import ours_section
from studies.reference.seeds import seeds_section
from studies.reference.separation import table2_section

PathLike = str | os.PathLike

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
    prior = runs_prior(run_dirs.values())
    save_figure(
        curves.plot_validation_curves(
            run_dirs,
            title="reference runs: validation accuracy",
            prior=None if prior is None else prior["overall"],
        ),
        out["curves"],
    )
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
        "Best val is the table above's number: best.pt (the run's highest validation pass)",
        "scored by its final evaluation (eval.json), chosen on val, so optimistic. Here beside",
        "it: the last validation pass and the last checkpoint scored on the test split, which",
        "nothing was chosen on.",
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
        lines += seeds_section(paper_runs, routed, ref / "seeds.png")
        floor = 100 * prior["overall"] if prior is not None else None
        lines += table2_section(paper_runs, ref / "table2.png", floor)
    if ours:
        floor = prior["overall"] if prior is not None else None
        lines += ours_section(ours, paper_runs, routed, ref / "ours.png", floor)
    lines += ["![validation curves](curves.png)", ""]
    if finished:
        lines += ["![accuracy by type](by_type.png)", ""]
    atomic_write_text(out["summary"], "\n".join(lines))
    return out


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
