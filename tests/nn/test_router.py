"""Routing network (sec. 3.3, 4.2): one linear layer, ragged split, initial rate 0.7."""

import pytest
import torch

from qgmrn.nn.gumbel import GumbelSigmoidGate
from qgmrn.nn.router import Router, StaticRouter
from qgmrn.nn.text import QuestionEncoder


def test_router_splits_into_ragged_layers():
    router = Router(16, [3, 5, 2], GumbelSigmoidGate())
    gates, logits = router(torch.randn(4, 16))
    assert [g.shape for g in gates] == [(4, 3), (4, 5), (4, 2)]
    assert [p.shape for p in logits] == [(4, 3), (4, 5), (4, 2)]
    assert sum(isinstance(m, torch.nn.Linear) for m in router.modules()) == 1


def test_initial_execution_rate_is_init_exec_prob():
    """Bias log(0.7/0.3) and small weights: every module starts executing 70% of the time."""
    torch.manual_seed(0)
    encoder = QuestionEncoder(50, 16, 32)
    router = Router(32, [64] * 8, GumbelSigmoidGate(), init_exec_prob=0.7)
    questions = torch.randint(1, 50, (256, 10))
    lengths = torch.randint(3, 11, (256,))
    gates, _ = router(encoder(questions, lengths))
    assert torch.cat(gates, 1).mean().item() == pytest.approx(0.7, abs=0.01)
    router.eval()
    assert torch.cat(router(encoder(questions, lengths))[0], 1).mean().item() == 1.0


def test_gradients_reach_router_through_straight_through():
    torch.manual_seed(0)
    router = Router(8, [4, 4], GumbelSigmoidGate())
    gates, _ = router(torch.randn(5, 8))
    (torch.cat(gates, 1) * torch.randn(5, 8)).sum().backward()
    assert router.fc.weight.grad is not None and router.fc.weight.grad.abs().sum() > 0


def test_static_router_opens_everything_without_parameters():
    router = StaticRouter([3, 2])
    gates, logits = router(torch.randn(2, 8))
    assert all(torch.equal(g, torch.ones_like(g)) for g in gates)
    assert all(torch.isinf(p).all() for p in logits)
    assert sum(p.numel() for p in router.parameters()) == 0


def test_question_encoder_uses_true_lengths():
    """Padding after a question's length does not change q."""
    torch.manual_seed(0)
    enc = QuestionEncoder(20, 8, 16)
    q = torch.randint(1, 20, (3, 7))
    lengths = torch.tensor([7, 3, 5])
    padded = q.clone()
    padded[1, 3:] = 0
    padded[2, 5:] = 0
    assert torch.allclose(enc(q, lengths), enc(padded, lengths))
    assert enc(q, lengths).shape == (3, 16)
