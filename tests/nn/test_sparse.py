"""Sparse inference (qgmrn.nn.sparse): the same outputs as the dense masked forward, computing
only the modules some sample opens."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qgmrn.config import get_config
from qgmrn.model import build_model

VOCAB, ANSWERS = 30, 28
ROUTED = ["brn_c8", "brn_c16", "brn_c32", "brn_c16_bn", "brn_c32_deeper", "brn_c32_attn", "frn",
          "frn_attn", "brn_c16_noq"]  # fmt: skip


def _randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial eval statistics and affine parameters, so that a slicing error shows."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)


def _model(preset: str):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cfg = get_config(preset, "smoke")
    model = build_model(cfg.model, VOCAB, ANSWERS).eval()
    with torch.no_grad():
        _randomise_norms(model, gen)
    return cfg, model


def _gates(sizes, batch: int, p_open: float, gen, closed_layers=()):
    gates = []
    for layer, m in enumerate(sizes):
        g = (torch.rand(batch, m, generator=gen) < p_open).float()
        if layer in closed_layers:
            g.zero_()
        gates.append(g)
    return gates


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("preset", ROUTED)
@pytest.mark.parametrize(("batch", "p_open"), [(1, 0.5), (4, 0.3), (3, 0.9)])
def test_sparse_backbone_equals_dense_masked(preset, batch, p_open, layout):
    """Images NCHW or channels-last (the loaders' layout, which `qgmrn evaluate` feeds)."""
    cfg, model = _model(preset)
    gen = torch.Generator().manual_seed(batch)
    H, W = cfg.data.image_size
    x = torch.randn(batch, 3, H, W, generator=gen).contiguous(memory_format=layout)
    gates = _gates(model.gate_sizes, batch, p_open, gen, closed_layers=(1,))
    with torch.no_grad():
        dense = model.backbone(x, gates)
        sparse = model.backbone.forward_sparse(x, gates)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["brn_c16", "frn"])
def test_sparse_model_gives_the_dense_logits_and_paths(preset):
    cfg, model = _model(preset)
    with torch.no_grad():  # push the router towards closing about half of the modules
        model.router.fc.bias.normal_(0.0, 2.0, generator=torch.Generator().manual_seed(1))
    H, W = cfg.data.image_size
    x = torch.randn(5, 3, H, W)
    q, lengths = torch.randint(1, VOCAB, (5, 7)), torch.tensor([7, 5, 6, 3, 7])
    with torch.no_grad():
        dense = model(x, q, lengths)
        sparse = model(x, q, lengths, sparse=True)
    ratio = torch.cat([g.flatten() for g in dense.gates]).mean()
    assert 0.2 < ratio < 0.8  # a real mix of open and closed modules
    torch.testing.assert_close(sparse.logits, dense.logits, rtol=1e-5, atol=1e-5)
    for a, b in zip(sparse.gates, dense.gates, strict=True):
        assert torch.equal(a, b)


def test_all_closed_layer_costs_only_its_shortcut():
    """A BRN block with every gate closed runs no conv of its branches."""
    _, model = _model("brn_c16")
    block = model.backbone.blocks[1]
    calls = []
    hook = block.conv2.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, block.conv1.in_channels, 8, 12)
    from qgmrn.nn.sparse import block_sparse

    with torch.no_grad():
        dense = block(x, torch.zeros(2, block.num_gates))
        sparse = block_sparse(block, x, torch.zeros(2, block.num_gates))
    hook.remove()
    torch.testing.assert_close(sparse, dense, rtol=1e-6, atol=1e-6)
    assert len(calls) == 1  # the dense call only


def test_sparse_is_refused_in_training_mode():
    cfg, model = _model("brn_c8")
    model.train()
    H, W = cfg.data.image_size
    with pytest.raises(RuntimeError, match="eval mode"):
        model(torch.randn(1, 3, H, W), torch.ones(1, 3, dtype=torch.long), torch.tensor([3]),
              sparse=True)  # fmt: skip


def test_sparse_refolds_after_the_weights_change():
    """The folded weights are cached per block; an in-place change (load_state_dict, an optimiser
    step, new running statistics) must be seen by the next sparse call."""
    cfg, model = _model("brn_c16")
    gen = torch.Generator().manual_seed(3)
    H, W = cfg.data.image_size
    x = torch.randn(2, 3, H, W, generator=gen)
    gates = _gates(model.gate_sizes, 2, 0.5, gen)
    with torch.no_grad():
        model.backbone.forward_sparse(x, gates)  # builds the cache
        state = {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}  # fmt: skip
        model.load_state_dict(state)
        dense = model.backbone(x, gates)
        sparse = model.backbone.forward_sparse(x, gates)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["brn_c16", "frn"])
def test_sparse_refolds_after_a_weight_is_replaced(preset):
    """A parameter replaced by a new tensor (not written in place) must be seen too, even when
    the new one's `_version` equals the old one's: the cached plan is keyed on identities."""
    from qgmrn.nn.blocks import RoutedBasicBlock, RoutedBottleneck

    cfg, model = _model(preset)
    gen = torch.Generator().manual_seed(5)
    H, W = cfg.data.image_size
    x = torch.randn(1, 3, H, W, generator=gen)
    gates = _gates(model.gate_sizes, 1, 0.5, gen)
    routed = [m for m in model.modules() if isinstance(m, (RoutedBottleneck, RoutedBasicBlock))]
    with torch.no_grad():
        model.backbone.forward_sparse(x, gates)  # builds every block's plan
        for block in routed:
            old = block.conv2.weight
            new = nn.Parameter(torch.randn(old.shape, generator=gen))
            while new._version < old._version:  # the same version count: only identity differs
                new.mul_(1.0)
            assert new._version == old._version
            block.conv2.weight = new
        dense = model.backbone(x, gates)
        sparse = model.backbone.forward_sparse(x, gates)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["brn_c16", "frn"])
def test_sliced_weights_are_kept_per_open_set_and_bounded(preset, monkeypatch):
    """At batch 1 a block keeps the weights it sliced for an open set: the same path again is a
    hit (no new entry), at most PATHS_PER_BLOCK sets are kept (least recently used dropped), and
    every answer stays the dense one, hit or rebuilt."""
    from qgmrn.nn import sparse
    from qgmrn.nn.blocks import RoutedBasicBlock, RoutedBottleneck

    monkeypatch.setattr(sparse, "PATHS_PER_BLOCK", 2)
    cfg, model = _model(preset)
    gen = torch.Generator().manual_seed(4)
    H, W = cfg.data.image_size
    x = torch.randn(1, 3, H, W, generator=gen)
    paths = [_gates(model.gate_sizes, 1, 0.5, gen) for _ in range(3)]
    routed = [m for m in model.modules() if isinstance(m, (RoutedBottleneck, RoutedBasicBlock))]
    block = routed[-1]

    def entries() -> int:
        return len(sparse._PLANS[block][1]["paths"])

    with torch.no_grad():
        for gates in (paths[0], paths[0], paths[1], paths[2], paths[0]):
            dense = model.backbone(x, gates)
            torch.testing.assert_close(
                model.backbone.forward_sparse(x, gates), dense, rtol=1e-5, atol=1e-5
            )
        assert entries() == 2  # three open sets met, two kept
        before = entries()
        model.backbone.forward_sparse(x, paths[0])  # the most recent: a hit
        assert entries() == before
