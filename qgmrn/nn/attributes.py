"""The auxiliary attribute head (ours, not in the paper): trains the visual network to see.

Dimensions: B batch, C channels of y_L, h w its size, K_a classes of attribute a.

A 1x1 convolution reads each cell of the visual network's output y_L (before the coordinate
maps) and predicts, per attribute (colour, shape, size, material), the class of the object that
covers the cell or "no object" (`qgmrn.data.attributes.cell_targets`). It lives beside the model,
not inside it: `fit` owns it while `TrainConfig.attribute_loss_weight` > 0 and keeps it in the
checkpoint's `extra` to resume; the model that is evaluated is the paper's, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from qgmrn.data.attributes import ATTRIBUTE_CLASSES


class AttributeHead(nn.Module):
    """forward(y (B, C, h, w)) -> one (B, K_a, h, w) logit map per attribute."""

    def __init__(self, in_channels: int, classes: Sequence[int] = ATTRIBUTE_CLASSES) -> None:
        super().__init__()
        self.classes = tuple(int(k) for k in classes)
        self.conv = nn.Conv2d(in_channels, sum(self.classes), kernel_size=1)

    def forward(self, y: Tensor) -> list[Tensor]:
        return list(self.conv(y).split(self.classes, dim=1))  # K_a x (B, K_a, h, w)
