"""BRN, the branch routing network (paper sec. 3.2, 4.2): a routed ResNeXt-26.

Depth 26 = 3 x 8 + 2: 8 bottleneck blocks in stages [2, 2, 2, 2] with widths
[64, 128, 256, 256]; each block is one modular layer whose modules are its c branches
(cardinality 8/16/32), so L = 8 and M = c. The third norm (bn3) is GroupNorm (the paper's
finding) or BatchNorm (the Table 2 ablation), chosen by the builder.

How "width" maps onto a bottleneck is not in the paper; ours:
- a stage's width is its blocks' OUTPUT channels (conv3's);
- the grouped 3x3 conv has c * d channels, d = max(1, width // (bottleneck_ratio * c)) per
  branch: width / bottleneck_ratio whenever that divides by c (all paper-profile presets:
  e.g. c=16, width 64 -> 32 channels, 2 per branch), and at least one channel per branch when
  our small profiles make width / bottleneck_ratio < c.
- the stem is torchvision's (7x7 conv stride 2, norm, ReLU, 3x3 max pool stride 2); stage 1
  keeps the resolution, stages 2-4 halve it (stride in the grouped conv, as torchvision).

Dimensions: B batch, C channels, H height, W width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from qgmrn.nn.blocks import NormLayer, RoutedBottleneck
from qgmrn.nn.routable import RoutedResNet, build_trunk


def branch_width(width: int, cardinality: int, bottleneck_ratio: int) -> int:
    """Channels of the grouped 3x3 conv of a block with `width` output channels (see above)."""
    return cardinality * max(1, width // (bottleneck_ratio * cardinality))


def group_norm(groups: int) -> NormLayer:
    """GroupNorm factory; uses gcd(groups, C) groups so every width is accepted."""

    def make(channels: int) -> nn.Module:
        return nn.GroupNorm(math.gcd(groups, channels), channels)

    return make


def brn_backbone(
    depths: Sequence[int] = (2, 2, 2, 2),
    widths: Sequence[int] = (64, 128, 256, 256),
    cardinality: int = 16,
    bottleneck_ratio: int = 2,
    stem_width: int = 64,
    stem_pool: bool = True,
    norm_layer: NormLayer = nn.BatchNorm2d,
    third_norm_layer: NormLayer | None = None,
    strides: Sequence[int] = (1, 2, 2, 2),
) -> RoutedResNet:
    """A routed ResNeXt trunk of `RoutedBottleneck`s with torchvision names and init."""

    def block(inplanes: int, outplanes: int, stride: int, downsample) -> RoutedBottleneck:
        return RoutedBottleneck(
            inplanes,
            branch_width(outplanes, cardinality, bottleneck_ratio),
            outplanes,
            stride=stride,
            downsample=downsample,
            groups=cardinality,
            norm_layer=norm_layer,
            third_norm_layer=third_norm_layer,
        )

    return build_trunk(depths, widths, stem_width, stem_pool, norm_layer, block, strides)
