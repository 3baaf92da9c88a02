"""The full model: every preset builds and trains at the smoke profile; routing contracts."""

import dataclasses

import pytest
import torch
from torch import nn

from qgmrn.config import PRESETS, get_config
from qgmrn.engine.losses import load_balance_loss, vqa_loss
from qgmrn.model import QGMRN, build_model, count_gates, set_tau
from qgmrn.nn.gumbel import GumbelSigmoidGate
from qgmrn.nn.output import VQAOutput

VOCAB, ANSWERS = 30, 28


def batch(cfg, b=2):
    H, W = cfg.data.image_size
    return torch.randn(b, 3, H, W), torch.randint(1, VOCAB, (b, 7)), torch.tensor([7, 4, 6, 5][:b])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_trains_at_smoke(preset):
    """Every trainable tensor gets a finite gradient, and Adam lowers the loss on one batch
    (the Gumbel noise drawn afresh each step, as in training)."""
    torch.manual_seed(0)
    cfg = get_config(preset, "smoke")
    model = build_model(cfg.model, VOCAB, ANSWERS)
    images, questions, lengths = batch(cfg, b=4)
    answers = torch.tensor([0, 3, 5, 3])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(8):
        out = model(images, questions, lengths)
        if step == 0:
            assert isinstance(out, VQAOutput) and out.logits.shape == (4, ANSWERS)
            assert [g.shape[1] for g in out.gates] == [p.shape[1] for p in out.gate_logits]
        loss = vqa_loss(out.logits, answers)
        if out.gates:
            loss = loss + 0.01 * load_balance_loss(out.gates)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            for name, p in model.named_parameters():
                assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize(("preset", "gates"), [("brn_c8", 64), ("brn_c16", 128), ("brn_c32", 256)])
def test_brn_gate_count_is_8c(preset, gates):
    model = build_model(get_config(preset, "smoke").model, VOCAB, ANSWERS)
    assert count_gates(model) == gates and model.gate_sizes == [gates // 8] * 8


def test_frn_paper_has_3776_gates_in_16_layers():
    model = build_model(get_config("frn", "paper").model, VOCAB, ANSWERS)
    assert count_gates(model) == 3776 and len(model.gate_sizes) == 16
    assert model.router.fc.out_features == 3776


def test_brn_uses_groupnorm_third_norm_and_bn_ablation():
    gn = build_model(get_config("brn_c16", "smoke").model, VOCAB, ANSWERS)
    bn = build_model(get_config("brn_c16_bn", "smoke").model, VOCAB, ANSWERS)
    assert all(isinstance(b.bn3, nn.GroupNorm) for b in gn.backbone.blocks)
    assert all(isinstance(b.bn3, nn.BatchNorm2d) for b in bn.backbone.blocks)


def test_static_twin_has_all_gates_open_and_no_router_parameters():
    cfg = get_config("brn_c16_static", "smoke")
    twin = build_model(cfg.model, VOCAB, ANSWERS)
    routed = build_model(get_config("brn_c16", "smoke").model, VOCAB, ANSWERS)
    out = twin(*batch(cfg))
    assert all(torch.equal(g, torch.ones_like(g)) for g in out.gates)
    n_twin = sum(p.numel() for p in twin.parameters())
    n_routed = sum(p.numel() for p in routed.parameters())
    assert n_routed - n_twin == sum(p.numel() for p in routed.router.parameters())


def test_eval_is_deterministic_and_training_is_not():
    torch.manual_seed(0)
    cfg = get_config("brn_c16", "smoke")
    model = build_model(cfg.model, VOCAB, ANSWERS)
    x = batch(cfg)
    model.eval()
    with torch.no_grad():
        a, b = model(*x), model(*x)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(g, h) for g, h in zip(a.gates, b.gates, strict=True))
    model.train()
    g1, g2 = torch.cat(model(*x).gates, 1), torch.cat(model(*x).gates, 1)
    assert not torch.equal(g1, g2)


def test_router_gets_gradients_from_the_answer_loss():
    torch.manual_seed(0)
    cfg = get_config("frn", "smoke")
    model = build_model(cfg.model, VOCAB, ANSWERS)
    vqa_loss(model(*batch(cfg)).logits, torch.tensor([1, 2])).backward()
    assert model.router.fc.weight.grad.abs().sum() > 0


def test_set_tau_reaches_the_gate():
    model = build_model(get_config("brn_c8", "smoke").model, VOCAB, ANSWERS)
    set_tau(model, 0.5)
    assert isinstance(model, QGMRN) and isinstance(model.router.gate, GumbelSigmoidGate)
    assert model.router.gate.tau == 0.5
    model.set_tau(2.0)
    assert model.router.gate.tau == 2.0


def test_no_coordinate_maps_and_soft_gate_compose():
    cfg = get_config("brn_c8", "smoke")
    mc = dataclasses.replace(cfg.model, coord_maps=False, gate="soft")
    model = build_model(mc, VOCAB, ANSWERS)
    out = model(*batch(cfg))
    assert all(((g > 0) & (g < 1)).all() for g in out.gates)
    assert model.head.classifier[0].in_features == mc.brn_widths[-1] + mc.hidden_dim
