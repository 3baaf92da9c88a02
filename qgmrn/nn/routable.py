"""Routed ResNet trunks and `make_routable`, which turns a torchvision ResNet/ResNeXt into one.

A routed trunk is torchvision's ResNet without `avgpool`/`fc` (same names: conv1, bn1, maxpool,
layer1..layer4), whose blocks take `(x, gates)`; each block is one modular layer (sec. 3.2).

Dimensions: B batch, C channels, H height, W width, L routed layers, M_l gates of layer l.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from qgmrn.nn.blocks import FilterRoutedBottleneck, RoutedBasicBlock, RoutedBottleneck
from qgmrn.nn.sparse import block_sparse


class RoutedResNet(nn.Module):
    """Stem + four stages of routed blocks; forward(x, gates) -> the last feature map y_L.

    `gate_sizes[l]` is M_l, the number of modules of routed layer l (in forward order);
    `stage_of_layer[l]` is the stage (0..3) that layer l belongs to.
    Shapes: x (B, 3, H, W), gates L x (B, M_l) -> (B, out_channels, H / 32, W / 32)
    (H / 16 when the stem has no max pooling).
    """

    def __init__(
        self,
        conv1: nn.Module,
        bn1: nn.Module,
        maxpool: nn.Module,
        stages: Sequence[Sequence[nn.Module]],
    ) -> None:
        super().__init__()
        self.conv1 = conv1
        self.bn1 = bn1
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = maxpool
        for i, blocks in enumerate(stages, start=1):
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.blocks = [b for i in range(len(stages)) for b in getattr(self, f"layer{i + 1}")]
        self.gate_sizes = [b.num_gates for b in self.blocks]
        self.stage_of_layer = [i for i, blocks in enumerate(stages) for _ in blocks]
        last = self.blocks[-1]
        self.out_channels = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels

    def forward(self, x: Tensor, gates: Sequence[Tensor]) -> Tensor:
        if len(gates) != len(self.blocks):
            raise ValueError(f"expected {len(self.blocks)} gate tensors, got {len(gates)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for block, g in zip(self.blocks, gates, strict=True):
            x = block(x, g)
        return x

    def forward_sparse(self, x: Tensor, gates: Sequence[Tensor]) -> Tensor:
        """`forward` computing only the modules some sample opens (eval mode; `qgmrn.nn.sparse`):
        the same y_L up to float summation order, faster where many modules are closed."""
        if len(gates) != len(self.blocks):
            raise ValueError(f"expected {len(self.blocks)} gate tensors, got {len(gates)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for block, g in zip(self.blocks, gates, strict=True):
            x = block_sparse(block, x, g)
        return x


_ROUTED: dict[tuple[type, str], type[nn.Module]] = {
    (BasicBlock, "filter"): RoutedBasicBlock,
    (Bottleneck, "filter"): FilterRoutedBottleneck,
    (Bottleneck, "branch"): RoutedBottleneck,
}


def make_routable(model: ResNet, granularity: str = "filter") -> RoutedResNet:
    """A routed trunk sharing `model`'s weights: a torchvision ResNet/ResNeXt minus `avgpool`, `fc`.

    granularity "filter" (FRN): a BasicBlock's modules are its conv2 filters, a Bottleneck's
    its conv3 filters; "branch" (BRN): a Bottleneck's modules are the groups of its grouped
    conv2 (a ResNeXt's cardinality; plain ResNet bottlenecks have one group).
    Its state_dict keys are the model's minus `fc.*`, so torchvision checkpoints load with
    `strict=True` once `fc.*` is dropped.
    """
    stages = []
    for i in range(1, 5):
        blocks = []
        for block in getattr(model, f"layer{i}"):
            key = (type(block), granularity)
            if key not in _ROUTED:
                raise ValueError(f"cannot route {type(block).__name__} at {granularity!r}")
            blocks.append(_ROUTED[key].from_torchvision(block))
        stages.append(blocks)
    return RoutedResNet(model.conv1, model.bn1, model.maxpool, stages)


# (inplanes, outplanes, stride, downsample) -> a block
BlockFactory = Callable[[int, int, int, "nn.Module | None"], nn.Module]


def build_trunk(
    depths: Sequence[int],
    widths: Sequence[int],
    stem_width: int,
    stem_pool: bool,
    norm_layer: Callable[[int], nn.Module],
    make_block: BlockFactory,
    strides: Sequence[int] = (1, 2, 2, 2),
) -> RoutedResNet:
    """torchvision's ResNet layout, shared by the BRN and the FRN trunks: a 7x7/2 stem conv and
    norm (and a 3x3/2 max pool when `stem_pool`), then one stage per (depth, width, stride) whose
    first block strides by `strides[i]` (torchvision: 1, 2, 2, 2) and gets a 1x1 conv + norm
    shortcut when the shape changes, torchvision's names and init. `make_block` makes each
    block. A stride of 1 in a later stage keeps a finer y_L (ours: the resolution lever)."""
    if len(strides) != len(depths):
        raise ValueError(f"{len(strides)} stage strides for {len(depths)} stages")
    conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
    maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
    stages, inplanes = [], stem_width
    for depth, outplanes, stage_stride in zip(depths, widths, strides, strict=True):
        blocks = []
        for j in range(depth):
            stride = stage_stride if j == 0 else 1
            downsample = None
            if stride != 1 or inplanes != outplanes:  # as torchvision: 1x1 conv + norm
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False),
                    norm_layer(outplanes),
                )
            blocks.append(make_block(inplanes, outplanes, stride, downsample))
            inplanes = outplanes
        stages.append(blocks)
    trunk = RoutedResNet(conv1, norm_layer(stem_width), maxpool, stages)
    init_like_torchvision(trunk)
    return trunk


def init_like_torchvision(module: nn.Module) -> None:
    """torchvision ResNet's initialisation: Kaiming-normal convs (fan_out), norms at (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def zero_init_residual(trunk: RoutedResNet) -> RoutedResNet:
    """torchvision's `zero_init_residual` (Goyal et al. 2017) on a routed trunk: the last norm
    of every residual branch (bn3 of a bottleneck, bn2 of a basic block) starts at weight 0, so
    each block starts as its shortcut and the signal passes the trunk unchanged at first."""
    for block in trunk.blocks:
        last = block.bn3 if hasattr(block, "bn3") else block.bn2
        nn.init.zeros_(last.weight)
    return trunk
