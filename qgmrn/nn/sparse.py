"""Inference that skips closed modules (ours, beyond the paper: sec. 5 notes that frameworks
cannot turn execution ratios into speed; a known path can, by slicing the weights).

At inference the gates are known before a block runs (P = [sigmoid(P~) > 0.5], sec. 3.3), so a
block can compute only the modules some sample of the batch opens, as smaller dense ops:

- BRN (`RoutedBottleneck`): branch m is group m of the grouped 3x3 conv. With the set S of open
  branches, conv1, bn1, conv2 (now `len(S)` groups) and bn2 are sliced to S's channels and conv3
  to S's input channels. The dropped channels were multiplied by 0 before conv3 in the dense
  path, so conv3's output, and with it the *third norm's statistics* (GroupNorm over all of
  conv3's output channels), are the dense path's up to float summation order: bn3 always runs
  on the full output. Samples whose own gate is 0 for a branch in S are still masked.
- FRN (`RoutedBasicBlock`): filter m is output channel m of conv2. conv2 and bn2 are sliced to the
  open filters, and their output is added to the shortcut at those channels; a closed filter
  passes the shortcut alone, as in the dense path (bn2(.) * 0 + identity).
- A layer whose gates are all closed costs its shortcut only: the BRN block adds bn3 applied to
  zeros (a per-channel constant, computed on a 1x1 map), the FRN block adds nothing.

Slicing a norm is exact only for per-channel affine maps, i.e. BatchNorm in eval mode; a block
whose bn1/bn2 is anything else, or whose modules are all open, runs densely. Training keeps the
dense path: a closed module's gate still needs its gradient (straight-through, eq. 12).

Dimensions: B batch, C channels, H height, W width, M modules of the block, S open modules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qgmrn.nn.blocks import RoutedBasicBlock, RoutedBottleneck


def _sliceable(norm: nn.Module) -> bool:
    return (
        isinstance(norm, nn.BatchNorm2d)
        and not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
    )


def _norm_slice(norm: nn.BatchNorm2d, x: Tensor, idx: Tensor) -> Tensor:
    """`norm` (eval-mode BatchNorm) restricted to channels `idx`: x (B, S, H, W)."""
    w = norm.weight[idx] if norm.weight is not None else None
    b = norm.bias[idx] if norm.bias is not None else None
    return F.batch_norm(
        x, norm.running_mean[idx], norm.running_var[idx], w, b, False, 0.0, norm.eps
    )


def _conv(conv: nn.Conv2d, x: Tensor, weight: Tensor, groups: int, bias: Tensor | None) -> Tensor:
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, groups)


def _zeros_through(norm: nn.Module, like: Tensor) -> Tensor:
    """norm(0) for a (B, C, H, W) map of zeros, computed on a (1, C, 1, 1) one: a per-channel
    constant for eval-mode BatchNorm and for GroupNorm (whose statistics over zeros are 0)."""
    return norm(like.new_zeros(1, like.shape[1], 1, 1))  # (1, C, 1, 1), broadcast by the caller


def bottleneck_sparse(block: RoutedBottleneck, x: Tensor, gates: Tensor) -> Tensor:
    """`block(x, gates)` computing only the branches some sample opens (eval mode).
    Shapes: x (B, C_in, H, W), gates (B, M) -> (B, C_out, H / s, W / s)."""
    identity = x if block.downsample is None else block.downsample(x)
    open_ = gates.amax(0) > 0  # (M,): opened by some sample
    n = int(open_.sum())
    if n == 0:
        return block.relu(_zeros_through(block.bn3, identity) + identity)
    if n == block.groups or not (_sliceable(block.bn1) and _sliceable(block.bn2)):
        return block(x, gates)
    cpg = block.conv2.out_channels // block.groups  # channels per branch
    branches = open_.nonzero().flatten()  # (S,)
    ch = (branches[:, None] * cpg + torch.arange(cpg, device=x.device)).flatten()  # (S * cpg,)
    b1 = block.conv1.bias[ch] if block.conv1.bias is not None else None
    out = _conv(block.conv1, x, block.conv1.weight[ch], 1, b1)  # (B, S * cpg, H, W)
    out = block.relu(_norm_slice(block.bn1, out, ch))
    b2 = block.conv2.bias[ch] if block.conv2.bias is not None else None
    out = _conv(block.conv2, out, block.conv2.weight[ch], n, b2)  # grouped: one group a branch
    out = block.relu(_norm_slice(block.bn2, out, ch))
    B, _, H, W = out.shape
    g = gates[:, branches].to(out.dtype).view(B, n, 1, 1, 1)
    out = (out.view(B, n, cpg, H, W) * g).view(B, n * cpg, H, W)  # (B, S * cpg, H, W)
    out = block.bn3(_conv(block.conv3, out, block.conv3.weight[:, ch], 1, block.conv3.bias))
    return block.relu(out + identity)


def basic_block_sparse(block: RoutedBasicBlock, x: Tensor, gates: Tensor) -> Tensor:
    """`block(x, gates)` computing only the conv2 filters some sample opens (eval mode).
    Shapes: x (B, C_in, H, W), gates (B, M) -> (B, M, H / s, W / s)."""
    identity = x if block.downsample is None else block.downsample(x)
    open_ = gates.amax(0) > 0  # (M,)
    n = int(open_.sum())
    if n == 0:
        return block.relu(identity)
    if n == block.num_gates or not _sliceable(block.bn2):
        return block(x, gates)
    idx = open_.nonzero().flatten()  # (S,)
    out = block.relu(block.bn1(block.conv1(x)))
    b2 = block.conv2.bias[idx] if block.conv2.bias is not None else None
    out = _norm_slice(block.bn2, _conv(block.conv2, out, block.conv2.weight[idx], 1, b2), idx)
    out = out * gates[:, idx, None, None].to(out.dtype)  # (B, S, H, W)
    return block.relu(identity.index_add(1, idx, out))


SPARSE_FORWARD: dict[type, Callable[[nn.Module, Tensor, Tensor], Tensor]] = {
    RoutedBottleneck: bottleneck_sparse,
    RoutedBasicBlock: basic_block_sparse,
}


def block_sparse(block: nn.Module, x: Tensor, gates: Tensor) -> Tensor:
    """The sparse forward of `block`'s type, or its dense forward for a type without one
    (e.g. `FilterRoutedBottleneck`, whose gated norm is the third)."""
    if block.training:
        raise RuntimeError(
            "sparse inference is for eval mode: training needs every gate's gradient"
        )
    fn = SPARSE_FORWARD.get(type(block))
    return fn(block, x, gates) if fn is not None else block(x, gates)
