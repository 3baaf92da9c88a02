"""Building blocks shared by the Table 1 baselines: a raw-pixel CNN, an MLP, coordinate maps.

Dimensions: B batch, C channels, H height, W width, D input features, A answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


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


def classifier_mlp(
    in_dim: int, hidden_dim: int, num_answers: int, dropout: float = 0.0
) -> nn.Sequential:
    """The answer classifier of every baseline: Linear-ReLU-(Dropout)-Linear, (B, D) -> (B, A).

    Johnson et al. (2017a) use one hidden layer of 1024 units (our `mlp_hidden` at paper size).
    """
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, num_answers),
    )


def coordinate_maps(x: Tensor) -> Tensor:
    """Two channels holding each position's x and y coordinate, scaled to [-1, 1] (FiLM).

    Shapes: x (B, C, H, W) -> (B, 2, H, W), on x's device and dtype.
    """
    B, _, H, W = x.shape
    ys = torch.linspace(-1.0, 1.0, H, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1.0, 1.0, W, device=x.device, dtype=x.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([grid_x, grid_y]).expand(B, 2, H, W)  # (B, 2, H, W)
