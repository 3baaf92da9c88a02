"""The learning rate and temperature schedules (paper sec. 4.2)."""

from __future__ import annotations

import pytest

from qgmrn.config import TrainConfig
from qgmrn.schedules import lr_at, tau_at


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
