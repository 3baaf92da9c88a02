"""The learning rate and temperature schedules (paper sec. 4.2)."""

from __future__ import annotations

import pytest

from qgmrn.config import TrainConfig
from qgmrn.engine.schedules import lr_at, tau_at


def test_linear_warmup_then_constant():
    """lr goes linearly from 3e-6 to 3e-4 over the warmup, then stays at 3e-4."""
    cfg = TrainConfig(lr=3e-4, warmup_start_lr=3e-6, warmup_steps=100)
    assert lr_at(0, cfg) == pytest.approx(3e-6)
    assert lr_at(50, cfg) == pytest.approx(3e-6 + 0.5 * (3e-4 - 3e-6))
    assert lr_at(100, cfg) == pytest.approx(3e-4)
    assert lr_at(10_000, cfg) == pytest.approx(3e-4)
    values = [lr_at(s, cfg) for s in range(101)]
    assert values == sorted(values)


def test_no_warmup_is_constant():
    cfg = TrainConfig(lr=1e-3, warmup_steps=0)
    assert lr_at(0, cfg) == lr_at(7, cfg) == 1e-3


def test_tau_constant_by_default_and_annealed_on_request():
    """The paper keeps tau = 1.0; an optional linear anneal goes tau_start -> tau_end."""
    assert {tau_at(s, TrainConfig()) for s in (0, 10, 10**6)} == {1.0}
    cfg = TrainConfig(tau_start=2.0, tau_end=0.5, tau_anneal_steps=10)
    assert tau_at(0, cfg) == pytest.approx(2.0)
    assert tau_at(5, cfg) == pytest.approx(1.25)
    assert tau_at(10, cfg) == tau_at(99, cfg) == pytest.approx(0.5)


def test_cosine_decay_after_the_warmup_reaches_its_floor_and_stays():
    """Ours: from lr at the end of the warmup down a half cosine to lr * min_lr_ratio."""
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, lr_schedule="cosine", decay_steps=110,
                      min_lr_ratio=0.1)  # fmt: skip
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # half way
    assert lr_at(110, cfg) == lr_at(10_000, cfg) == pytest.approx(1e-4)
    values = [lr_at(s, cfg) for s in range(10, 111)]
    assert values == sorted(values, reverse=True)
    assert lr_at(5, cfg) == lr_at(5, TrainConfig(lr=1e-3, warmup_steps=10))  # same warmup


def test_an_unusable_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown lr_schedule 'step'"):
        lr_at(0, TrainConfig(warmup_steps=0, lr_schedule="step"))
    with pytest.raises(ValueError, match="needs decay_steps"):
        lr_at(20, TrainConfig(warmup_steps=10, lr_schedule="cosine", decay_steps=5))
