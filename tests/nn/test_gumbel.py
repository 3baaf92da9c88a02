"""Gumbel-sigmoid estimator and gates (paper sec. 3.3, eqs. 9-11)."""

import math

import pytest
import torch

from qgmrn.nn.gumbel import GumbelSigmoidGate, SoftGate, StaticGate, gumbel_sigmoid

LOGIT_07 = math.log(0.7 / 0.3)


def test_hard_samples_are_exactly_binary():
    torch.manual_seed(0)
    g = gumbel_sigmoid(torch.randn(1000) * 3, hard=True)
    assert set(g.unique().tolist()) <= {0.0, 1.0}


def test_gate_rate_matches_probability():
    """Hard Gumbel-sigmoid gates open with probability sigmoid(logit) (eq. 9)."""
    torch.manual_seed(0)
    logits = torch.full((100_000,), LOGIT_07)
    assert gumbel_sigmoid(logits).mean().item() == pytest.approx(0.7, abs=0.01)


def test_rate_does_not_depend_on_tau():
    """[sigmoid((t + P~)/tau) > 0.5] = [t + P~ > 0]: tau changes gradients, not the rate."""
    torch.manual_seed(0)
    logits = torch.full((100_000,), LOGIT_07)
    assert gumbel_sigmoid(logits, tau=0.3).mean().item() == pytest.approx(0.7, abs=0.01)


def test_soft_sample_in_unit_interval():
    torch.manual_seed(0)
    s = gumbel_sigmoid(torch.randn(1000), hard=False)
    assert ((s > 0) & (s < 1)).all()


def test_straight_through_gradient_is_the_soft_one():
    """Backward treats the threshold as identity: the gradient is d soft / d logits (> 0)."""
    torch.manual_seed(0)
    logits = torch.zeros(64, requires_grad=True)
    gumbel_sigmoid(logits).sum().backward()
    assert (logits.grad > 0).all()


def test_gumbel_gate_eval_is_deterministic_threshold():
    gate = GumbelSigmoidGate().eval()
    logits = torch.tensor([[-2.0, -0.1, 0.1, 3.0]])
    assert gate(logits).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert torch.equal(gate(logits), gate(logits))


def test_gumbel_gate_training_is_stochastic():
    torch.manual_seed(0)
    gate = GumbelSigmoidGate().train()
    logits = torch.zeros(1000)
    assert not torch.equal(gate(logits), gate(logits))


def test_static_and_soft_gates():
    logits = torch.tensor([[-5.0, 0.0, 5.0]])
    assert StaticGate()(logits).tolist() == [[1.0, 1.0, 1.0]]
    assert SoftGate(tau=1.0)(logits) == pytest.approx(torch.sigmoid(logits))
    assert "tau=0.5" in repr(SoftGate(tau=0.5))
