"""Fabricated run directories for the analysis tests (test data only, never shown as results)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qgmrn.clevr.constants import QUESTION_TYPES, SUBTYPES


def write_fake_run(
    run_dir: Path,
    *,
    overall: float = 0.5,
    profile: str = "smoke",
    n: int = 100,
    layer_sizes: tuple[int, ...] = (4, 4, 8, 8),
    stage_of_layer: tuple[int, ...] = (0, 0, 1, 1),
    num_paths: int = 130,
    seed: int = 0,
    model: dict | None = None,
    train_cfg: dict | None = None,
    train_result: dict | None = None,
    finished: bool = True,
) -> Path:
    """A run directory with config.json, eval.json, metrics.jsonl and routing_paths.npz.

    model / train_cfg: config.json's ``model`` / ``train`` blocks (left out when None);
    train_result: eval.json's ``train`` block; finished=False: no eval.json nor routing paths
    (a run still training).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg: dict = {"name": run_dir.name, "profile": profile}
    if model is not None:
        cfg["model"] = model
    if train_cfg is not None:
        cfg["train"] = train_cfg
    (run_dir / "config.json").write_text(json.dumps(cfg))
    ev = {
        "split": "val",
        "n": n,
        "overall": overall,
        "by_type": {t: overall + 0.01 * i for i, t in enumerate(QUESTION_TYPES)},
        "by_subtype": {s: overall for s in SUBTYPES},
    }
    if train_result is not None:
        ev["train"] = train_result
    if finished:
        (run_dir / "eval.json").write_text(json.dumps(ev))
    rows = [
        {
            "step": s,
            "epoch": 0,
            "loss": 3.0 / (s + 1),
            "load_loss": 0.1,
            "acc": 0.1 * s,
            "lr": 1e-3,
            "tau": 1.0,
            "samples_per_s": 10.0,
            "exec_ratio": [0.7] * len(layer_sizes),
        }
        for s in range(1, 6)
    ]
    rows.append({"kind": "val", "step": 5, "epoch": 0, "acc": overall})
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{trunc")
    if not finished:
        return run_dir
    rng = np.random.default_rng(seed)
    subtypes = np.arange(num_paths) % len(SUBTYPES)
    # each layer's execution probability falls with depth, as in the paper's Fig. 3
    probs = np.concatenate([np.full(m, 0.9 - 0.15 * i) for i, m in enumerate(layer_sizes)])
    paths = (rng.random((num_paths, sum(layer_sizes))) < probs).astype(np.uint8)
    np.savez(
        run_dir / "routing_paths.npz",
        paths=paths,
        layer_sizes=np.array(layer_sizes),
        stage_of_layer=np.array(stage_of_layer),
        subtypes=subtypes,
        question_index=np.arange(num_paths),
        answers=np.zeros(num_paths, int),
        predictions=np.zeros(num_paths, int),
    )
    return run_dir
