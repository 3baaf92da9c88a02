"""Losses (sec. 3.5, eq. 13)."""

import pytest
import torch

from qgmrn.engine.losses import load_balance_loss, vqa_loss


def test_load_loss_matches_hand_computation():
    """Loads A = (2, 1, 0): mean 1, population variance 2/3 -> CV^2 = 2/3; second layer 0."""
    layer1 = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    layer2 = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert load_balance_loss([layer1, layer2]).item() == pytest.approx(2 / 3, rel=1e-6)


def test_load_loss_zero_for_equal_loads_and_finite_when_all_off():
    assert load_balance_loss([torch.ones(4, 8), torch.ones(4, 3)]).item() == 0.0
    assert load_balance_loss([torch.zeros(4, 8)]).item() == 0.0
    assert load_balance_loss([]).item() == 0.0


def test_load_loss_gradient_flows_to_gates():
    gates = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]], requires_grad=True)
    load_balance_loss([gates]).backward()
    assert gates.grad[0, 0] > 0 and gates.grad[0, 1] < 0  # pushes the busy module down


def test_vqa_loss_ignores_unknown_answers():
    logits = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    full = vqa_loss(logits[:1], torch.tensor([0]))
    assert vqa_loss(logits, torch.tensor([0, -1])).item() == pytest.approx(full.item())
