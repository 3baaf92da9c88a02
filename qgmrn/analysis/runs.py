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

import qgmrn

PathLike = str | os.PathLike


def project_root() -> Path:
    """The checkout the package is imported from (parent of the ``qgmrn`` package folder)."""
    return Path(qgmrn.__file__).resolve().parents[1]


def resolve_path(path: PathLike) -> Path:
    """`path` if absolute, else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


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


@dataclass
class TrainedRun:
    model: object  # torch.nn.Module, in eval mode
    vocab: object  # qgmrn.data.Vocab
    cfg: object  # qgmrn.config.ExperimentConfig
    path: Path


def load_trained(run_dir: PathLike, *, device: str = "cpu", which: str = "best") -> TrainedRun:
    """The model of a run directory with its weights (``best`` or ``latest``), in eval mode,
    through `qgmrn.train.load_run` (safe loading, config and vocabulary checked)."""
    from qgmrn.train import load_run

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
