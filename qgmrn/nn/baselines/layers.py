"""The raw-pixel CNN shared by the Table 1 baselines (the MLP classifier is
`qgmrn.nn.heads.mlp_classifier`, the coordinate maps `qgmrn.nn.coords.coordinate_maps`).

Dimensions: B batch, C channels, H height, W width, D input features, A answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class ConvFeatures(nn.Sequential):
    """A small CNN from raw pixels: one conv3x3(stride 2)-BN-ReLU layer per entry of `widths`.

    With four layers the total stride is 16, the resolution of the ResNet-101 conv4 features
    of Johnson et al. (2017a) and of FiLM's raw-pixel stem (Perez et al. 2018, 224 -> 14); both
    use pretrained or 4x4 convolutions, we use 3x3 ones trained from scratch, like our models.
    Shapes: images (B, 3, H, W) -> features (B, widths[-1], H / 2^n, W / 2^n).
    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for width in widths:
            layers += [
                nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            in_channels = width
        super().__init__(*layers)
        self.out_channels = in_channels
