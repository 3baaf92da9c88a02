"""Heads (sec. 3.4) and coordinate maps (sec. 4.2)."""

import torch

from qgmrn.nn.coords import AddCoords, coordinate_maps
from qgmrn.nn.heads import AttentionHead, GMPHead, GMPQuestionHead


def test_coordinate_maps_span_minus_one_to_one():
    c = coordinate_maps(torch.zeros(2, 5, 3, 4))
    assert c.shape == (2, 2, 3, 4)
    assert torch.allclose(c[0, 0, 0], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))  # x along W
    assert torch.allclose(c[0, 1, :, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert AddCoords()(torch.zeros(2, 5, 3, 4)).shape == (2, 7, 3, 4)


def test_gmp_heads_with_and_without_q():
    torch.manual_seed(0)
    y, q = torch.randn(3, 10, 4, 4), torch.randn(3, 6)
    with_q, without_q = GMPQuestionHead(10, 6, 16, 5), GMPHead(10, 6, 16, 5)
    assert with_q(y, q).shape == without_q(y, q).shape == (3, 5)
    assert with_q.classifier[0].in_features == 16
    assert without_q.classifier[0].in_features == 10
    # w/o q: the question does not change the answer
    assert torch.equal(without_q(y, q), without_q(y, torch.randn(3, 6)))


def test_gmp_is_max_pooling():
    head = GMPHead(4, 0, 8, 3)
    y = torch.randn(2, 4, 3, 3)
    assert torch.equal(head.pool(y, None), y.flatten(2).max(-1).values)


def test_attention_head_shapes_and_question_dependence():
    torch.manual_seed(0)
    head = AttentionHead(10, 6, d_model=16, nhead=2, num_layers=1, hidden=16, num_answers=5)
    y, q = torch.randn(3, 10, 4, 4), torch.randn(3, 6)
    out = head(y, q)
    assert out.shape == (3, 5)
    assert not torch.allclose(out, head(y, torch.randn(3, 6)))
    out.sum().backward()
    assert head.score.weight.grad is not None
