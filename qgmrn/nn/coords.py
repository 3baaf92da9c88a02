"""Coordinate maps (paper sec. 4.2): two channels with each position's relative x and y.

Dimensions: B batch, C channels, H height, W width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def coordinate_maps(x: Tensor) -> Tensor:
    """(B, 2, H, W) maps for `x` (B, C, H, W): channel 0 is x, channel 1 is y, both in [-1, 1]."""
    B, _, H, W = x.shape
    ys = torch.linspace(-1.0, 1.0, H, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1.0, 1.0, W, device=x.device, dtype=x.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([grid_x, grid_y]).expand(B, 2, H, W)  # (B, 2, H, W)


class AddCoords(nn.Module):
    """Concatenates the coordinate maps to a feature map: (B, C, H, W) -> (B, C + 2, H, W)."""

    extra_channels = 2

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, coordinate_maps(x)], dim=1)  # (B, C + 2, H, W)
