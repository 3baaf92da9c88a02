"""A trained run loaded back for inspection: its model answering questions about an image, and
what the switches of one modular layer do (notebooks 02, 06 and the explorer).

Shapes: an image is uint8 (3, H, W); questions are strings, encoded with the run's vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PathLike = str | os.PathLike


@dataclass
class TrainedRun:
    model: object  # torch.nn.Module, in eval mode
    vocab: object  # qgmrn.data.Vocab
    cfg: object  # qgmrn.config.ExperimentConfig
    path: Path


def load_trained(run_dir: PathLike, *, device: str = "cpu", checkpoint: str = "best") -> TrainedRun:
    """The model of a run directory with its weights (`checkpoint`: ``best`` or ``latest``, as
    `qgmrn evaluate --checkpoint`), in eval mode, through `qgmrn.engine.evaluate.load_run` (safe
    loading, config and vocabulary checked)."""
    from qgmrn.engine.evaluate import load_run

    cfg, vocab, model, _ = load_run(run_dir, checkpoint, device)
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


def answer(
    run: TrainedRun,
    image: np.ndarray,
    questions: Sequence[str],
    *,
    device: str = "cpu",
    sparse: bool = False,
):
    """Answers, routing paths and saliency maps of one uint8 image (3, H, W) for `questions`;
    `sparse`: skip the closed modules (`saliency_maps`).

    Returns a DataFrame (question, answer, max logit, gates open: the fraction of gates open)
    and the dict of `qgmrn.analysis.saliency.saliency_maps` (maps, predictions, gates).
    """
    from qgmrn.analysis.saliency import saliency_maps

    tokens = [run.vocab.encode_question(q) for q in questions]
    out = saliency_maps(run.model, image, tokens, device=device, sparse=sparse)
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
