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
from qgmrn.nn.routable import RoutedResNet, init_like_torchvision, make_routable

RESNET34_DEPTHS = (3, 4, 6, 3)
RESNET34_WIDTHS = (64, 128, 256, 512)


def frn_backbone(
    depths: Sequence[int] = RESNET34_DEPTHS,
    widths: Sequence[int] = RESNET34_WIDTHS,
    stem_width: int = 64,
    stem_pool: bool = True,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> RoutedResNet:
    """A routed ResNet trunk of basic blocks; torchvision's resnet34 at the default sizes."""
    depths, widths = tuple(depths), tuple(widths)
    is_resnet34 = (depths, widths, stem_width) == (RESNET34_DEPTHS, RESNET34_WIDTHS, 64)
    if is_resnet34 and stem_pool and norm_layer is nn.BatchNorm2d:
        return make_routable(torchvision.models.resnet34(weights=None), "filter")
    conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
    maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
    stages, inplanes = [], stem_width
    for i, (depth, planes) in enumerate(zip(depths, widths, strict=True)):
        stride = 1 if i == 0 else 2
        blocks = []
        for j in range(depth):
            s = stride if j == 0 else 1
            downsample = None
            if s != 1 or inplanes != planes:  # as torchvision: 1x1 conv + norm on the shortcut
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, stride=s, bias=False), norm_layer(planes)
                )
            blocks.append(RoutedBasicBlock(inplanes, planes, s, downsample, norm_layer))
            inplanes = planes
        stages.append(blocks)
    trunk = RoutedResNet(conv1, norm_layer(stem_width), maxpool, stages)
    init_like_torchvision(trunk)
    return trunk
