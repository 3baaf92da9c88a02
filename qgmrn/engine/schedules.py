"""Learning rate and Gumbel-sigmoid temperature as functions of the optimizer step.

The paper's recipe (sec. 4.2): Adam with lr 3e-4, reached by a linear warmup from 3e-6, then
constant; tau = 1.0 throughout. `step` counts optimizer steps from 0 (the step about to be taken).
"""

from __future__ import annotations

import math

from qgmrn.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup from `warmup_start_lr` to `lr` over `warmup_steps` steps, then constant (the
    paper) or, with `lr_schedule="cosine"` (ours), a cosine from `lr` down to `lr *
    min_lr_ratio` at step `decay_steps`, constant after."""
    if step < cfg.warmup_steps and cfg.warmup_steps > 0:
        frac = max(step, 0) / cfg.warmup_steps
        return cfg.warmup_start_lr + frac * (cfg.lr - cfg.warmup_start_lr)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; choose constant or cosine")
    span = cfg.decay_steps - cfg.warmup_steps
    if span <= 0:
        raise ValueError(
            f"lr_schedule='cosine' needs decay_steps ({cfg.decay_steps}) > warmup_steps "
            f"({cfg.warmup_steps})"
        )
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * frac))


def tau_at(step: int, cfg: TrainConfig) -> float:
    """Linear anneal from `tau_start` to `tau_end` over `tau_anneal_steps`, constant after.

    With the defaults (1.0 -> 1.0) this is the paper's constant tau = 1.0.
    """
    if step >= cfg.tau_anneal_steps or cfg.tau_anneal_steps <= 0:
        return cfg.tau_end
    frac = max(step, 0) / cfg.tau_anneal_steps
    return cfg.tau_start + frac * (cfg.tau_end - cfg.tau_start)
