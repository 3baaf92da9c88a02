"""Routed residual blocks: torchvision's BasicBlock / Bottleneck with a `gates` input.

Attribute names are torchvision's (conv1/bn1/conv2/bn2/conv3/bn3/downsample), so torchvision
weights load unchanged. With every gate 1 each block computes exactly what torchvision's does.

Dimensions: B batch, C channels, H height, W width, M gates of the block (its modules).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1, conv3x3

NormLayer = Callable[[int], nn.Module]


class RoutedBasicBlock(nn.Module):
    """Basic block whose modules are the output filters of its second conv (FRN, sec. 3.2).

    "We route the last convolutional layer of each residual block": the gate multiplies the
    channels of bn2's output, before the residual add (eq. 4 with phi = concatenation).
    Shapes: x (B, C_in, H, W), gates (B, M) with M = planes -> (B, planes, H / s, W / s).
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        self.num_gates = planes

    @classmethod
    def from_torchvision(cls, block: BasicBlock) -> RoutedBasicBlock:
        """A routed block sharing `block`'s modules (and so its weights and their names)."""
        routed = cls.__new__(cls)
        nn.Module.__init__(routed)
        for name in ("conv1", "bn1", "relu", "conv2", "bn2", "downsample"):
            setattr(routed, name, getattr(block, name))
        routed.stride = block.stride
        routed.num_gates = block.conv2.out_channels
        return routed

    def forward(self, x: Tensor, gates: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) * gates[:, :, None, None]  # (B, M, H, W): filter m off
        return self.relu(out + identity)


class RoutedBottleneck(nn.Module):
    """ResNeXt bottleneck whose `groups` branches are switched by the router (BRN, sec. 3.2).

    Branch m is the m-th group of the grouped 3x3 conv; zeroing that group's output before the
    last 1x1 conv is exactly gating the branch's output (phi = summation in eq. 4, the 1x1 conv
    being the sum of per-branch 1x1 convs). `bn3` is the injected third norm: GroupNorm in the
    paper (sec. 4.2), BatchNorm in the ablation and in torchvision.
    Shapes: x (B, C_in, H, W), gates (B, M) with M = groups -> (B, C_out, H / s, W / s).
    """

    def __init__(
        self,
        inplanes: int,
        width: int,
        outplanes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        third_norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if width % groups:
            raise ValueError(f"grouped-conv width {width} is not divisible by groups {groups}")
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, outplanes)
        self.bn3 = (third_norm_layer or norm_layer)(outplanes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.groups = groups
        self.num_gates = groups

    @classmethod
    def from_torchvision(cls, block: Bottleneck) -> RoutedBottleneck:
        """A routed block sharing `block`'s modules (and so its weights and their names)."""
        routed = cls.__new__(cls)
        nn.Module.__init__(routed)
        for name in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu", "downsample"):
            setattr(routed, name, getattr(block, name))
        routed.stride = block.stride
        routed.groups = block.conv2.groups
        routed.num_gates = routed._gate_count()
        return routed

    def _gate_count(self) -> int:
        return self.conv2.groups

    def _gate_branches(self, out: Tensor, gates: Tensor) -> Tensor:
        B, C, H, W = out.shape
        out = out.view(B, self.groups, C // self.groups, H, W) * gates.view(B, -1, 1, 1, 1)
        return out.view(B, C, H, W)  # (B, C, H, W): branch m zeroed where gate m is 0

    def forward(self, x: Tensor, gates: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))  # grouped 3x3: one group per branch
        out = self._gate_branches(out, gates)
        out = self.bn3(self.conv3(out))  # bn3 is GroupNorm in the paper
        return self.relu(out + identity)


class FilterRoutedBottleneck(RoutedBottleneck):
    """Bottleneck routed at filter granularity: gates multiply bn3's output channels.

    The FRN rule ("route the last convolutional layer of each residual block") applied to a
    bottleneck (e.g. resnet50); not in the paper's experiments.
    Shapes: x (B, C_in, H, W), gates (B, M) with M = C_out -> (B, C_out, H / s, W / s).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_gates = self._gate_count()

    def _gate_count(self) -> int:
        return self.conv3.out_channels

    def forward(self, x: Tensor, gates: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) * gates[:, :, None, None]  # (B, M, H, W): filter m off
        return self.relu(out + identity)
