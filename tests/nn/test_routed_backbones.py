"""Routed blocks and trunks: torchvision-equivalent with all gates open (minGPT-style check)."""

import pytest
import torch
import torchvision
from torch import nn

from qgmrn.nn.blocks import RoutedBasicBlock, RoutedBottleneck
from qgmrn.nn.brn import brn_backbone, group_norm
from qgmrn.nn.frn import frn_backbone
from qgmrn.nn.routable import make_routable


def ones(trunk, batch):
    return [torch.ones(batch, m) for m in trunk.gate_sizes]


def torchvision_trunk(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


@pytest.mark.parametrize(
    ("name", "granularity"),
    [
        ("resnet34", "filter"),
        ("resnet18", "filter"),
        ("resnext50_32x4d", "branch"),
    ],
)
def test_all_gates_open_equals_torchvision(name, granularity):
    """make_routable on a copy of the weights, gates all 1, eval mode: torchvision's output."""
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name, weights=None).eval()
    routed = make_routable(torchvision.models.get_model(name, weights=None), granularity)
    trunk_state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    routed.load_state_dict(trunk_state, strict=True)
    routed.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(
            routed(x, ones(routed, 2)), torchvision_trunk(reference, x), atol=1e-5, rtol=1e-5
        )


def test_frn_is_resnet34_with_3776_gates():
    """FRN at the paper's sizes loads torchvision resnet34's trunk weights with strict=True;
    our own-built narrow FRN (smoke/demo widths) has the same parameter names."""
    trunk = frn_backbone()  # paper sizes
    assert len(trunk.gate_sizes) == 16
    assert sum(trunk.gate_sizes) == 3 * 64 + 4 * 128 + 6 * 256 + 3 * 512 == 3776
    assert trunk.stage_of_layer == [0] * 3 + [1] * 4 + [2] * 6 + [3] * 3
    state = torchvision.models.resnet34(weights=None).state_dict()
    trunk_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    trunk.load_state_dict(trunk_state, strict=True)
    narrow = frn_backbone(widths=(8, 8, 16, 16), stem_width=8)
    assert list(narrow.state_dict()) == list(trunk_state)
    assert narrow(torch.randn(2, 3, 32, 32), ones(narrow, 2)).shape == (2, 16, 1, 1)


@pytest.mark.parametrize("c", [8, 16, 32])
def test_brn_gate_layout(c):
    trunk = brn_backbone(
        widths=(8, 16, 16, 16), stem_width=8, cardinality=c, third_norm_layer=group_norm(4)
    )
    assert trunk.gate_sizes == [c] * 8
    assert trunk.stage_of_layer == [0, 0, 1, 1, 2, 2, 3, 3]
    assert trunk(torch.randn(2, 3, 32, 32), ones(trunk, 2)).shape == (2, 16, 1, 1)


def test_brn_paper_widths():
    """Paper sizes: outputs [64,128,256,256]; grouped conv = width / 2 (our mapping)."""
    trunk = brn_backbone(cardinality=16, third_norm_layer=group_norm(32))
    assert [b.conv3.out_channels for b in trunk.blocks] == [64, 64, 128, 128, 256, 256, 256, 256]
    assert [b.conv2.out_channels for b in trunk.blocks] == [32, 32, 64, 64, 128, 128, 128, 128]
    assert all(b.conv2.groups == 16 for b in trunk.blocks)


def test_third_norm_is_injected():
    gn = brn_backbone(
        widths=(8, 16, 16, 16), stem_width=8, cardinality=8, third_norm_layer=group_norm(4)
    )
    bn = brn_backbone(widths=(8, 16, 16, 16), stem_width=8, cardinality=8)
    assert all(isinstance(b.bn3, nn.GroupNorm) for b in gn.blocks)
    assert all(isinstance(b.bn2, nn.BatchNorm2d) for b in gn.blocks)
    assert all(isinstance(b.bn3, nn.BatchNorm2d) for b in bn.blocks)


def test_closed_basic_block_is_its_shortcut():
    """All gates 0: y = relu(identity) (eq. 4 with every module switched off)."""
    torch.manual_seed(0)
    block = RoutedBasicBlock(8, 8).eval()
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x, torch.zeros(2, 8)), torch.relu(x))


def test_closed_bottleneck_is_its_shortcut():
    torch.manual_seed(0)
    block = RoutedBottleneck(16, 8, 16, groups=4, third_norm_layer=group_norm(4)).eval()
    with torch.no_grad():  # norm(conv3(0)) = bn3.bias: 0 (torchvision init), said explicitly
        block.bn3.bias.fill_(0.0)
    x = torch.randn(2, 16, 5, 5)
    assert torch.allclose(block(x, torch.zeros(2, 4)), torch.relu(x))


def test_branch_gate_zeroes_exactly_one_branch():
    """Closing branch m equals zeroing group m's conv3 input by hand."""
    torch.manual_seed(0)
    block = RoutedBottleneck(16, 8, 16, groups=4).eval()
    x = torch.randn(1, 16, 5, 5)
    gates = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    with torch.no_grad():
        mid = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))
        mid[:, 2:4] = 0
        expected = block.relu(block.bn3(block.conv3(mid)) + x)
        assert torch.allclose(block(x, gates), expected, atol=1e-6)


def test_gradients_reach_gates():
    trunk = brn_backbone(widths=(8, 16, 16, 16), stem_width=8, cardinality=4)
    gates = [torch.ones(2, m, requires_grad=True) for m in trunk.gate_sizes]
    trunk(torch.randn(2, 3, 32, 32), gates).sum().backward()
    assert all(g.grad is not None for g in gates)


def test_stage_strides_keep_a_finer_last_map():
    """Ours (the resolution lever): a stride of 1 in the last stage doubles y_L's side. The
    blocks keep their weights' shapes; as in torchvision, a block that keeps both the width and
    the resolution has no 1x1 shortcut (here the last stage's first block)."""
    x = torch.randn(2, 3, 64, 96)
    default = brn_backbone((1, 1, 1, 1), (16, 16, 32, 32), 4, stem_width=8, stem_pool=False)
    fine = brn_backbone((1, 1, 1, 1), (16, 16, 32, 32), 4, stem_width=8, stem_pool=False,
                        strides=(1, 2, 2, 1))  # fmt: skip
    gates = [torch.ones(2, m) for m in default.gate_sizes]
    assert default(x, gates).shape == (2, 32, 4, 6)
    assert fine(x, gates).shape == (2, 32, 8, 12)
    a = {k: v.shape for k, v in default.state_dict().items()}
    b = {k: v.shape for k, v in fine.state_dict().items()}
    assert {k for k in a if k not in b} == {k for k in a if k.startswith("layer4.0.downsample")}
    assert all(a[k] == b[k] for k in b)
    frn = frn_backbone((1, 1, 1, 1), (8, 8, 16, 16), 8, stem_pool=False, strides=(1, 1, 2, 2))
    assert frn(x, [torch.ones(2, m) for m in frn.gate_sizes]).shape == (2, 16, 8, 12)
    with pytest.raises(ValueError, match="3 stage strides for 4 stages"):
        brn_backbone((1, 1, 1, 1), (16, 16, 32, 32), 4, strides=(1, 2, 2))
