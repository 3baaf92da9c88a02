"""Learning rate and Gumbel-sigmoid temperature as functions of the optimizer step.

The paper's recipe (sec. 4.2): Adam with lr 3e-4, reached by a linear warmup from 3e-6, then
constant; tau = 1.0 throughout. `step` counts optimizer steps from 0 (the step about to be taken).
"""

from __future__ import annotations

from qgmrn.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup from `warmup_start_lr` to `lr` over `warmup_steps` steps, constant after."""
    if step >= cfg.warmup_steps or cfg.warmup_steps <= 0:
        return cfg.lr
    frac = max(step, 0) / cfg.warmup_steps
    return cfg.warmup_start_lr + frac * (cfg.lr - cfg.warmup_start_lr)


def tau_at(step: int, cfg: TrainConfig) -> float:
    """Linear anneal from `tau_start` to `tau_end` over `tau_anneal_steps`, constant after.

    With the defaults (1.0 -> 1.0) this is the paper's constant tau = 1.0.
    """
    if step >= cfg.tau_anneal_steps or cfg.tau_anneal_steps <= 0:
        return cfg.tau_end
    frac = max(step, 0) / cfg.tau_anneal_steps
    return cfg.tau_start + frac * (cfg.tau_end - cfg.tau_start)
