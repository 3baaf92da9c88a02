"""What 04_ablations trains live, and how long that takes (notebook 04).

Table 2's rows differ by 1 to 18 points at convergence. A few CPU-minutes of training leave
every row near or below the question-type prior, where the seeds of one row differ by as much as
the rows do (`studies.reference.separation`), so under the demo profile notebook 04 reads
Table 2 from the reference seed runs and trains live only what its `presets` parameter asks
for. Under smoke (a pipeline check) and paper (a GPU and the real CLEVR) it trains every Table 2
configuration by default, as the table itself.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from qgmrn.analysis.tables import TABLE2_PRESETS, budget_text, read_eval
from qgmrn.config import PRESETS, get_config

PathLike = str | os.PathLike

TABLE2 = "table2"  # the `presets` keyword for every Table 2 configuration
LIVE_BY_DEFAULT: tuple[str, ...] = ("smoke", "paper")  # profiles that train Table 2 by default
# Beyond its training budget, a live run starts a kernel, loads the data and makes a final
# validation pass: 30-38 s beyond the minute of each of the ten 1-minute runs that 04 once
# trained under demo on a 2-core CPU (90-98 s a run in all; docs/results.md).
START_MINUTES = 0.5
# The demonstration a user can afford on a CPU: the w/o q row and its w/ q twin, the same
# network but for the question feature in the classifier. Without it the classifier learns the
# question type only as the router carries it into the visual features, so it starts far below
# its twin: the one Table 2 claim that the reference seed runs separate by 200k samples.
Q_PAIR: tuple[str, ...] = ("brn_c16_noq", "brn_c16_bn")


def table2_presets() -> list[str]:
    """Every Table 2 configuration's preset, in the paper's row order, each once."""
    return list(dict.fromkeys(TABLE2_PRESETS.values()))


def parse_presets(presets: str) -> list[str]:
    """`presets` as a list: comma-separated preset names (each a key of `qgmrn.config.PRESETS`,
    a ValueError naming the unknown ones), or `TABLE2` for every Table 2 configuration."""
    names = [p.strip() for p in presets.split(",") if p.strip()]
    if names == [TABLE2]:
        return table2_presets()
    unknown = [p for p in names if p not in PRESETS]
    if unknown:
        raise ValueError(
            f"unknown preset(s) {', '.join(map(repr, unknown))}: choose {TABLE2!r} or presets "
            f"from {', '.join(PRESETS)}"
        )
    return list(dict.fromkeys(names))


def live_plan(
    presets: str, extra_presets: str, profile: str, reference_runs: PathLike | None = None
) -> tuple[list[str], dict[str, str]]:
    """(the presets to train live, in order; {extra preset left out: why}).

    presets: `parse_presets`; empty means the profile's default: every Table 2 configuration
    under the profiles of `LIVE_BY_DEFAULT`, none under demo. extra_presets (the FRN of 06's
    Figure 3): trained after them, unless `reference_runs` holds an evaluated run named after
    the preset (eval.json and routing_paths.npz), which 06 draws instead.
    """
    if presets.strip():
        chosen = parse_presets(presets)
    else:
        chosen = table2_presets() if profile in LIVE_BY_DEFAULT else []
    skipped = {}
    for extra in parse_presets(extra_presets):
        if extra in chosen:
            continue
        ref = Path(reference_runs) / extra if reference_runs is not None else None
        if ref is not None and all((ref / f).exists() for f in ("eval.json", "routing_paths.npz")):
            skipped[extra] = f"the reference runs hold {extra}: 06 draws that one"
        else:
            chosen.append(extra)
    return chosen, skipped


def run_minutes(preset: str, profile: str, max_minutes: float = 0.0) -> float | None:
    """One live run's wall-clock training budget in minutes: `max_minutes` when positive, else
    the profile's (`TrainConfig.max_minutes`); None when only epochs bound it."""
    if max_minutes > 0:
        return float(max_minutes)
    return get_config(preset, profile).train.max_minutes


def expected_minutes(presets: list[str], profile: str, max_minutes: float = 0.0) -> float | None:
    """Minutes `presets` take to train one after the other: each run's budget (`run_minutes`)
    plus `START_MINUTES`; None when a run has no wall-clock budget (its epochs bound it)."""
    budgets = [run_minutes(p, profile, max_minutes) for p in presets]
    if any(b is None for b in budgets):
        return None
    return sum(b + START_MINUTES for b in budgets)


def plan_text(presets: list[str], profile: str, max_minutes: float = 0.0) -> str:
    """`presets`, their number times the per-run budget and the expected time in all, as one
    line: "2 runs x 6 min budget (+ about 0.5 min each to start and validate): about 13 min"."""
    if not presets:
        return "0 runs"
    n = f"{len(presets)} run" + "s" * (len(presets) != 1)
    total = expected_minutes(presets, profile, max_minutes)
    if total is None:
        epochs = {get_config(p, profile).train.epochs for p in presets}
        each = " / ".join(str(e) for e in sorted(epochs))
        return f"{n}, each bounded by its epochs ({each}), not by time: no time estimate"
    budgets = sorted({run_minutes(p, profile, max_minutes) for p in presets})
    each = " / ".join(f"{b:g}" for b in budgets)
    return (
        f"{n} x {each} min budget (+ about {START_MINUTES:g} min each to start and validate): "
        f"about {math.ceil(total)} min"
    )


def finished_text(run_dir: PathLike) -> str:
    """A finished live run in one line: its validation accuracy and what it trained
    ("val 25.6% (4,991 questions); 6 min budget: 6.0 min, 1,012 steps, ...")."""
    ev = read_eval(run_dir)
    return (
        f"val {100 * ev['overall']:.1f}% ({ev.get('n', 0):,} questions); "
        f"{budget_text(run_dir, short=False)}"
    )
