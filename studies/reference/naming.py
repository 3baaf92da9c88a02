"""The naming rules of the reference runs' folder (`results/reference/runs/`).

A run folder is named after its preset (`brn_c16`), with suffixes that say how it differs:

- `PRESET_sN`: the preset trained with seed N (extra-seed runs; `PRESET` is the default seed);
- `PRESET_static`: the static twin of a routed preset (every gate fixed at 1), a preset itself;
- `PRESET_attr`, `PRESET_attrv`: our labelled arm, the preset trained with the auxiliary
  attribute loss of reach "all" or "visual" (`TrainConfig.attribute_loss_reach`), beside its
  paper-faithful twin `PRESET`.

Only the study reads these names; what a run *is* (its seed, whether it trained with the
attribute loss) its config.json says, and the rules below fall back on it where they can.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from qgmrn.config import uses_attribute_loss

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


def twin_pairs(finished: dict[str, Path], routed: str = "brn_c16") -> list[str]:
    """The routed runs among `finished` whose static twin (`NAME_static`) finished too:
    `routed` first, then the others by name (best.pt against best.pt, each pair at its own
    budget)."""
    names = [n for n in finished if not n.endswith("_static") and f"{n}_static" in finished]
    return sorted(names, key=lambda n: (n != routed, n))


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
