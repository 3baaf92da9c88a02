"""Where results live, and loading a trained run back for inspection (notebooks 02, 05, 06).

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

import numpy as np
import pandas as pd

from qgmrn.fileio import project_root

PathLike = str | os.PathLike


def resolve_path(path: PathLike) -> Path:
    """`path` if absolute, else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


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
    """Runs under `runs_dir` of `arch` whose gates are routed (not a static twin) and that hold
    every file of `require`, best first: by eval.json's overall accuracy, runs without one (still
    training) after those with, then by name."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    archs = {arch} if isinstance(arch, str) else set(arch)
    found = []
    for cfg_path in sorted(Path(runs_dir).glob("*/config.json")):
        run = cfg_path.parent
        if exclude and exclude in run.name:
            continue
        try:
            model = json.loads(cfg_path.read_text()).get("model", {})
        except json.JSONDecodeError:
            continue
        if model.get("arch") not in archs or model.get("gate") == "static":
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


@dataclass
class TrainedRun:
    model: object  # torch.nn.Module, in eval mode
    vocab: object  # qgmrn.data.Vocab
    cfg: object  # qgmrn.config.ExperimentConfig
    path: Path


def load_trained(run_dir: PathLike, *, device: str = "cpu", which: str = "best") -> TrainedRun:
    """The model of a run directory with its weights (``best`` or ``latest``), in eval mode,
    through `qgmrn.evaluate.load_run` (safe loading, config and vocabulary checked)."""
    from qgmrn.evaluate import load_run

    cfg, vocab, model, _ = load_run(run_dir, which, device)
    return TrainedRun(model, vocab, cfg, Path(run_dir))


def untrained_model(preset: str, profile: str, vocab, *, seed: int = 0, device: str = "cpu"):
    """A freshly initialised model of `preset` (for the walkthrough when no run exists yet)."""
    import torch

    from qgmrn.config import get_config
    from qgmrn.model import build_model

    cfg = get_config(preset, profile)
    torch.manual_seed(seed)
    model = build_model(cfg.model, len(vocab), vocab.num_answers).to(device).eval()
    return TrainedRun(model, vocab, cfg, Path())


def answer(run: TrainedRun, image: np.ndarray, questions: Sequence[str], *, device: str = "cpu"):
    """Answers, routing paths and saliency maps of one uint8 image (3, H, W) for `questions`.

    Returns a DataFrame (question, answer, score, executed: fraction of gates open) and the
    dict of `qgmrn.analysis.saliency.saliency_maps` (maps, predictions, gates).
    """
    from qgmrn.analysis.saliency import saliency_maps

    tokens = [run.vocab.encode_question(q) for q in questions]
    out = saliency_maps(run.model, image, tokens, device=device)
    gates = out["gates"]
    df = pd.DataFrame(
        {
            "question": list(questions),
            "answer": [run.vocab.decode_answer(int(p)) for p in out["predictions"]],
            "max logit": out["scores"].round(3),
            "gates open": gates.mean(axis=1).round(3) if gates.shape[1] else np.nan,
        }
    )
    return df, out


def model_gate_table(presets: Sequence[str], profile: str = "paper") -> pd.DataFrame:
    """Routed layers, gates and parameters of each preset's model (built, not trained)."""
    from qgmrn.config import get_config
    from qgmrn.model import build_model

    rows = []
    for preset in presets:
        cfg = get_config(preset, profile)
        model = build_model(cfg.model, 100, 28)
        sizes = list(getattr(model, "gate_sizes", []))
        rows.append(
            {
                "preset": preset,
                "arch": cfg.model.arch,
                "routed layers L": len(sizes),
                "gates (sum of M_l)": sum(sizes),
                "modules per layer M_l": " ".join(str(s) for s in sizes),
                "parameters (M)": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            }
        )
    return pd.DataFrame(rows).set_index("preset")


def preset_table(profile: str) -> pd.DataFrame:
    """The presets (models) of `profile` with the fields that tell them apart."""
    from qgmrn.config import PRESETS, get_config

    rows = []
    for name in PRESETS:
        m = get_config(name, profile).model
        rows.append(
            {
                "preset": name,
                "arch": m.arch,
                "gate": m.gate,
                "cardinality": m.cardinality if m.arch == "brn" else None,
                "depths": m.stage_depths if m.arch == "brn" else None,
                "widths": m.stage_widths if m.arch == "brn" else None,
                "third norm": m.third_norm if m.arch == "brn" else None,
                "head": m.head,
                "q to classifier": m.head_uses_q,
            }
        )
    return pd.DataFrame(rows).set_index("preset")


def block_switch_effects(run: TrainedRun, image: np.ndarray, question: str, layer: int = 0):
    """What the switches of routed layer `layer` do, for one image and question.

    Runs the model once, captures the input x of the layer's block, then re-runs that block
    with all modules on and with each module m switched off alone. Returns a DataFrame with one
    row per module: ``gate`` (the router's decision for this question) and ``change`` =
    ||y(all on) - y(m off)|| / ||y(all on)||.
    """
    import torch

    from qgmrn.analysis.saliency import _as_float_image, pad_questions

    model = run.model
    block = model.backbone.blocks[layer]
    captured = {}

    def keep_input(module, args) -> None:  # returning None leaves the arguments unchanged
        captured.setdefault("x", args[0])

    handle = block.register_forward_pre_hook(keep_input)
    try:
        q, lengths = pad_questions([run.vocab.encode_question(question)])
        device = next(model.parameters()).device
        with torch.no_grad():
            out = model(_as_float_image(image, None).to(device), q.to(device), lengths)
            x = captured["x"]
            m = out.gates[layer].shape[1]
            ones = torch.ones(1, m, device=device)
            y_on = block(x, ones)
            changes = []
            for i in range(m):
                g = ones.clone()
                g[0, i] = 0
                changes.append(float((block(x, g) - y_on).norm() / y_on.norm().clamp_min(1e-12)))
    finally:
        handle.remove()
    return pd.DataFrame(
        {"gate": out.gates[layer][0].cpu().numpy().astype(int), "change": np.round(changes, 4)}
    ).rename_axis("module")
