"""Where results live: the results folders, run folders, and which run a notebook shows
(notebooks 02-06). A run loaded back for inspection: `qgmrn.analysis.inspection`.

Paths in notebooks are relative to the project root (the folder holding ``pyproject.toml``), so
a notebook opened in JupyterLab (cwd ``notebooks/``) and one run by papermill from the root
read and write the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qgmrn.config import uses_attribute_loss
from qgmrn.fileio import project_root

PathLike = str | os.PathLike


def resolve_path(path: PathLike) -> Path:
    """`path` if absolute, else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def require_dataset(data_path: PathLike, profile: str) -> Path:
    """`data_path`, when it holds a CLEVR-layout data set; else a FileNotFoundError at the
    notebook's first cell naming the one command that makes it (a fresh clone has no data/:
    notebook 01 generates it)."""
    data_path = Path(data_path)
    if (data_path / "questions" / "CLEVR_val_questions.json").exists():
        return data_path
    raise FileNotFoundError(
        f"no data set at {shown(data_path)}: run notebook 01_data_preparation first (profile "
        f"{profile!r}), or `qgmrn generate {shown(data_path)} --profile {profile} --humans` "
        "(real CLEVR: qgmrn download clevr --to data/, then pass data_dir)"
    )


def shown(path: PathLike) -> str:
    """`path` as a notebook prints it: relative to the project root when inside it, so that
    committed outputs carry no machine's absolute paths."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(project_root()))
    except ValueError:
        return str(p)


def fresh_run_dir(runs_dir: PathLike, name: str, *, resume: bool, overwrite: bool) -> Path:
    """The folder a training notebook writes to: `runs_dir/name`, unless a run is already there
    and neither `resume` nor `overwrite` is asked, in which case the first free `name-2`,
    `name-3`, ... so that stepping through a notebook never replaces a committed run."""
    runs_dir = Path(runs_dir)
    run_dir = runs_dir / name
    if resume or overwrite or not (run_dir / "config.json").exists():
        return run_dir
    k = 2
    while (runs_dir / f"{name}-{k}" / "config.json").exists():
        k += 1
    return runs_dir / f"{name}-{k}"


@dataclass(frozen=True)
class ResultDirs:
    """``<results>/<profile>/{runs,notebooks,tables,figures}`` (DESIGN.md, results layout)."""

    root: Path
    runs: Path
    notebooks: Path
    tables: Path
    figures: Path


def result_dirs(results_dir: PathLike, profile: str, *, create: bool = True) -> ResultDirs:
    root = resolve_path(results_dir) / profile
    dirs = ResultDirs(root, root / "runs", root / "notebooks", root / "tables", root / "figures")
    if create:
        for d in (dirs.runs, dirs.notebooks, dirs.tables, dirs.figures):
            d.mkdir(parents=True, exist_ok=True)
    return dirs


def list_runs(runs_dir: PathLike) -> pd.DataFrame:
    """One row per run under `runs_dir` that has an eval.json: name, preset arch, overall, n."""
    rows = []
    runs_dir = Path(runs_dir)
    for ev_path in sorted(runs_dir.glob("*/eval.json")):
        ev = json.loads(ev_path.read_text())
        cfg_path = ev_path.parent / "config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        rows.append(
            {
                "run": ev_path.parent.name,
                "arch": cfg.get("model", {}).get("arch"),
                "split": ev.get("split"),
                "n": ev.get("n"),
                "overall": ev.get("overall"),
                "path": ev_path.parent,
            }
        )
    return pd.DataFrame(rows, columns=["run", "arch", "split", "n", "overall", "path"])


def best_run(
    runs_dir: PathLike, *, arch: str | Sequence[str] | None = None, exclude: str = "_humans"
) -> Path | None:
    """The run with the highest overall accuracy (optionally of `arch`), or None."""
    df = list_runs(runs_dir)
    if len(df) == 0:
        return None
    if arch is not None:
        archs = [arch] if isinstance(arch, str) else list(arch)
        df = df[df["arch"].isin(archs)]
    if exclude:
        df = df[~df["run"].str.contains(exclude, regex=False)]
    if len(df) == 0:
        return None
    return Path(df.sort_values("overall", ascending=False).iloc[0]["path"])


# The reference runs (``<reference_dir>/runs/<preset>/``, trained for longer than a notebook run)
# use the demo profile's data and model sizes, so notebooks use them under that profile only.
REFERENCE_PROFILE = "demo"


def reference_runs_dir(reference_dir: PathLike, profile: str) -> Path | None:
    """``<reference_dir>/runs`` if the reference runs apply: `reference_dir` is not empty,
    `profile` is the reference runs' profile (demo) and the folder exists; else None."""
    if not str(reference_dir) or profile != REFERENCE_PROFILE:
        return None
    d = resolve_path(reference_dir) / "runs"
    return d if d.is_dir() else None


def routed_runs(
    runs_dir: PathLike | None,
    *,
    arch: str | Sequence[str] = "brn",
    require: Sequence[str] = ("best.pt",),
    exclude: str = "_humans",
) -> list[Path]:
    """Runs under `runs_dir` of `arch` whose gates are routed (not a static twin), trained by the
    paper's method (not our auxiliary-loss arm, which a notebook shows only when named) and that
    hold every file of `require`, best first: by eval.json's overall accuracy, runs without one
    (still training) after those with, then by name."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    archs = {arch} if isinstance(arch, str) else set(arch)
    found = []
    for cfg_path in sorted(Path(runs_dir).glob("*/config.json")):
        run = cfg_path.parent
        if exclude and exclude in run.name:
            continue
        try:
            cfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            continue
        model = cfg.get("model", {})
        if model.get("arch") not in archs or model.get("gate") == "static":
            continue
        if uses_attribute_loss(cfg):
            continue
        if not all((run / name).exists() for name in require):
            continue
        ev_path = run / "eval.json"
        overall = json.loads(ev_path.read_text()).get("overall") if ev_path.exists() else None
        found.append((overall is None, -(overall or 0.0), run.name, run))
    return [run for *_, run in sorted(found)]


@dataclass(frozen=True)
class RunChoice:
    """A run picked for a figure, and where it came from (``"reference"`` or the profile)."""

    path: Path | None
    source: str

    @property
    def label(self) -> str:
        """``"brn_c16 (reference, 40 min)"``, or ``"no run"``."""
        from qgmrn.analysis.tables import run_label

        return run_label(self.path, self.source) if self.path is not None else "no run"


def reference_run(
    reference_runs: PathLike | None, name: str, require: Sequence[str] = ("best.pt",)
) -> RunChoice:
    """The reference run `name` (e.g. ``"brn_c32"``, the BRN the paper's Figure 3b draws) if
    `reference_runs` holds it with every file of `require`; else a choice whose ``path`` is None.
    Unlike `choose_run(..., run_name=name)` it never falls back to a profile's run of that name."""
    if reference_runs is not None:
        run = Path(reference_runs) / name
        if all((run / f).exists() for f in require):
            return RunChoice(run, "reference")
    return RunChoice(None, "reference")


def labelled_runs(runs_dir: PathLike | None, source: str) -> dict[str, Path]:
    """{`RunChoice.label`: run directory} of every run under `runs_dir` with a metrics.jsonl
    (finished or still training), by name; {} if `runs_dir` is None or missing."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return {}
    found = sorted(p.parent for p in Path(runs_dir).glob("*/metrics.jsonl"))
    return {RunChoice(run, source).label: run for run in found}


def choose_run(
    runs_dir: PathLike,
    profile: str,
    reference_runs: PathLike | None = None,
    *,
    run_name: str = "",
    arch: str | Sequence[str] = "brn",
    require: Sequence[str] = ("best.pt",),
) -> RunChoice:
    """The run a notebook shows: `run_name` if given (looked up in `runs_dir`, then in
    `reference_runs`), else the best routed run of `arch` in `reference_runs` (when given: see
    `reference_runs_dir`), else the best in `runs_dir` (`routed_runs`). ``path`` is None when
    there is none."""
    places = [(Path(runs_dir), profile)]
    if reference_runs is not None:
        places.insert(0, (Path(reference_runs), "reference"))
    if run_name:
        for folder, source in sorted(places, key=lambda p: p[1] == "reference"):
            if (folder / run_name).is_dir():
                return RunChoice(folder / run_name, source)
        raise FileNotFoundError(f"no run {run_name!r} in {', '.join(str(f) for f, _ in places)}")
    for folder, source in places:
        found = routed_runs(folder, arch=arch, require=require)
        if found:
            return RunChoice(found[0], source)
    return RunChoice(None, profile)
