"""Training recipes beyond the paper's (ours; each departure measured at equal samples in
results/studies/plateau/README.md, "The demo recipe so far").

Every preset and profile keeps the paper's recipe (Adam at 3e-4 after a linear warmup, the VQA
loss plus load balancing, sec. 4.2). `plateau_recipe` applies the departures of the plateau
study that paid on mini-CLEVR:

- lr 1e-3 after the warmup: +3.8, +2.9, +3.4 points over 0-200k, 200k-400k, 400k-600k samples;
- "perception first": the visual network starts from `qgmrn pretrain-visual` (per-cell colour,
  shape, size and material of the objects), and the auxiliary attribute loss stays on, reaching
  the visual network only (the router learns from the VQA loss alone, as in the paper): +2.8,
  +3.0, +1.8 more in the same windows.

The attribute loss is labelled from the renderer's object buffer, so the recipe trains on the
stream of fresh mini-CLEVR scenes (`data.train_source = "stream"`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qgmrn.config import ExperimentConfig

RECIPES: tuple[str, ...] = ("paper", "plateau")
PLATEAU_LR = 1e-3
# the visual network the plateau study pretrained (1,500 steps of 64 images at lr 1e-3): brn_c16
# and its static twin at the demo profile's input, 64x96
PLATEAU_VISUAL: dict[tuple[str, str], str] = {
    ("brn_c16", "demo"): "results/studies/plateau/visual/brn_c16_lr1e-3/visual.pt",
    ("brn_c16_static", "demo"): "results/studies/plateau/visual/brn_c16_lr1e-3/visual.pt",
}
ROUTED_ARCHS = ("brn", "frn")


def pretrained_visual(preset: str, profile: str, root: str | Path = ".") -> Path | None:
    """The plateau study's pretrained visual network for `preset` under `profile`, when it
    exists under `root` (None for every other preset and profile: those start from scratch)."""
    rel = PLATEAU_VISUAL.get((preset, profile))
    path = Path(root) / rel if rel else None
    return path if path is not None and path.exists() else None


def plateau_recipe(cfg: ExperimentConfig, visual_init: str | Path | None) -> ExperimentConfig:
    """`cfg` with the plateau study's departures (module docstring): lr 1e-3, the attribute loss
    (weight 1, reach "visual"), the stream, and `visual_init` (None: from scratch)."""
    if cfg.model.arch not in ROUTED_ARCHS:
        raise ValueError(
            f"the plateau recipe trains the routed models ({', '.join(ROUTED_ARCHS)}), not "
            f"{cfg.model.arch!r}: use the paper's recipe"
        )
    train = dataclasses.replace(
        cfg.train,
        lr=PLATEAU_LR,
        attribute_loss_weight=1.0,
        attribute_loss_reach="visual",
        visual_init=None if visual_init is None else str(visual_init),
    )
    data = dataclasses.replace(cfg.data, train_source="stream")
    return dataclasses.replace(cfg, train=train, data=data)


def apply_recipe(
    cfg: ExperimentConfig, recipe: str, preset: str, root: str | Path = "."
) -> ExperimentConfig:
    """`cfg` under `recipe` ("paper": as it is; "plateau": `plateau_recipe` with the pretrained
    visual network of `pretrained_visual`, when there is one)."""
    if recipe == "paper":
        return cfg
    if recipe == "plateau":
        return plateau_recipe(cfg, pretrained_visual(preset, cfg.profile, root))
    raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
