"""FRN, the filter routing network (paper sec. 3.2, 4.2): a routed ResNet-34 trunk.

Each basic block is one modular layer; its modules are the output filters of its second conv.
At the paper's sizes (depths [3,4,6,3], widths [64,128,256,512], stem 64) the trunk IS
torchvision's resnet34 made routable: 16 layers, 3*64 + 4*128 + 6*256 + 3*512 = 3,776 gates.
Smaller widths (our smoke/demo profiles) build the same architecture with our own code and
torchvision's initialisation.

Dimensions: B batch, C channels, H height, W width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import nn

from qgmrn.nn.blocks import NormLayer, RoutedBasicBlock
from qgmrn.nn.routable import RoutedResNet, build_trunk, make_routable

RESNET34_DEPTHS = (3, 4, 6, 3)
RESNET34_WIDTHS = (64, 128, 256, 512)


def frn_backbone(
    depths: Sequence[int] = RESNET34_DEPTHS,
    widths: Sequence[int] = RESNET34_WIDTHS,
    stem_width: int = 64,
    stem_pool: bool = True,
    norm_layer: NormLayer = nn.BatchNorm2d,
    strides: Sequence[int] = (1, 2, 2, 2),
) -> RoutedResNet:
    """A routed ResNet trunk of basic blocks; torchvision's resnet34 at the default sizes."""
    depths, widths = tuple(depths), tuple(widths)
    is_resnet34 = (depths, widths, stem_width) == (RESNET34_DEPTHS, RESNET34_WIDTHS, 64)
    if (
        is_resnet34
        and stem_pool
        and norm_layer is nn.BatchNorm2d
        and tuple(strides) == (1, 2, 2, 2)
    ):
        return make_routable(torchvision.models.resnet34(weights=None), "filter")

    def block(inplanes: int, planes: int, stride: int, downsample) -> RoutedBasicBlock:
        return RoutedBasicBlock(inplanes, planes, stride, downsample, norm_layer)

    return build_trunk(depths, widths, stem_width, stem_pool, norm_layer, block, strides)
