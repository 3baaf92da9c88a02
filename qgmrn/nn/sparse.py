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

Slicing a norm is exact only for per-channel affine maps, i.e. BatchNorm in eval mode, which is
folded into the conv before it (once per block, cached until a weight changes): one gather of
folded rows then slices conv1, conv2 and conv3 together. A block whose bn1/bn2 is anything else
runs densely. Training keeps the dense path: a closed module's gate still needs its gradient
(straight-through, eq. 12).

Where it pays (benchmarks/bench_sparse.py, results/bench/sparse.json; docs/model.md): at batch 1
on a CPU the demo and paper-sized trunks are bound by per-op dispatch and by the work of a block
that no branch decides (third norm and residual add on the full map, downsampling shortcut): a
BRN block with one branch open still costs 54-68% of its dense time (`--blocks`,
results/bench/sparse_blocks.json), so the sparse trunk is only on par with dense there (kept
paths included); it pays where whole layers close (ratio 0: 2.5-13x) and, with BatchNorm folded,
at batch 64.

Dimensions: B batch, C channels, H height, W width, M modules of the block, S open modules.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qgmrn.nn.blocks import RoutedBasicBlock, RoutedBottleneck


def _sliceable(norm: nn.Module) -> bool:
    buffers = norm._buffers  # read directly: `norm.running_mean` goes through Module.__getattr__
    return (
        isinstance(norm, nn.BatchNorm2d)
        and not norm.training
        and buffers.get("running_mean") is not None
        and buffers.get("running_var") is not None
    )


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """conv followed by eval-mode `norm` as one conv: (weight (C_out, ...), bias (C_out,))."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return conv.weight * scale.view(-1, *[1] * (conv.weight.dim() - 1)), shift


# Folded weights per block, rebuilt when any of its tensors changes (their `_version` counts
# in-place writes, as `load_state_dict` and optimiser steps make). Folding is done once, not per
# call: slicing one folded matrix per block replaces the dozen small index ops (weights, biases,
# running statistics) that otherwise cost as much as the skipped convolutions at batch 1.
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(block: nn.Module, key: tuple, build: Callable[[], dict]) -> dict:
    """The block's plan, rebuilt by `build` when `key` (`_state_key`) changed."""
    cached = _PLANS.get(block)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, build())
        _PLANS[block] = cached
    return cached[1]


def _state_key(block: nn.Module, names: tuple[str, ...]) -> tuple:
    """(id, _version) of every parameter and buffer of the named submodules, the tensors a plan
    is folded from: it changes when one is replaced or written in place. One generator over the
    modules' own dictionaries: at batch 1 this check runs once per block and call, and going
    through Module.__getattr__ cost three times as much (about 20 against 6 us, ad hoc)."""
    mods = block._modules
    return tuple(
        (id(t), t._version)
        for name in names
        for tensors in (mods[name]._parameters, mods[name]._buffers)
        for t in tensors.values()
        if t is not None
    )


# Sliced weights kept per block and open set (least recently used dropped first). A trained
# router sends the questions of one kind down few paths, so at batch 1 the same open sets come
# back: a hit skips the row gather and the copies that make each slice contiguous (on a CPU at
# batch 1 those small ops cost about as much as the convolutions they feed). Each entry holds
# at most one block's folded weights, and the cache lives in the block's plan (a weight change
# drops it).
PATHS_PER_BLOCK = 64


def _open_key(open_: Tensor) -> bytes:
    """The open set (M,) bool as a dictionary key, one byte (0 or 1) a module, whose count of
    ones is the number of open modules (a host copy: on a GPU one small sync, which deciding
    the sliced shapes needs anyway)."""
    return open_.cpu().numpy().tobytes()


def _cached(plan: dict, key: bytes, build: Callable[[], tuple]) -> tuple:
    paths: OrderedDict = plan["paths"]
    hit = paths.get(key)
    if hit is None:
        hit = paths[key] = build()
        if len(paths) > PATHS_PER_BLOCK:
            paths.popitem(last=False)
    else:
        paths.move_to_end(key)
    return hit


_BOTTLENECK_FOLDED = ("conv1", "bn1", "conv2", "bn2", "conv3")
_BASIC_FOLDED = ("conv1", "bn1", "conv2", "bn2")


def _bottleneck_plan(block: RoutedBottleneck) -> dict:
    """Per branch channel c of the block's width: one row [w1 | b1 | w2 | b2 | w3^T] (bn1 and bn2
    folded into conv1 and conv2), so that one row gather slices all three convolutions."""
    w1, b1 = _fold(block.conv1, block.bn1)  # (Cw, C_in, 1, 1), (Cw,)
    w2, b2 = _fold(block.conv2, block.bn2)  # (Cw, cpg, 3, 3), (Cw,)
    width = w1.shape[0]
    w3t = block.conv3.weight.flatten(1).t()  # (Cw, C_out)
    rows = torch.cat([w1.flatten(1), b1[:, None], w2.flatten(1), b2[:, None], w3t], dim=1)
    c_in, k2 = w1.shape[1], w2[0].numel()
    splits = (c_in, 1, k2, 1, w3t.shape[1])
    return {
        "rows": rows.contiguous(),
        "splits": splits,
        "w2_shape": w2.shape[1:],
        "width": width,
        "paths": OrderedDict(),
    }


def _bottleneck_weights(plan: dict, open_: Tensor, key: bytes, groups: int) -> tuple[Tensor, ...]:
    """(w1 (S*cpg, C_in), b1, w2 (S*cpg, cpg, 3, 3), b2, w3 (C_out, S*cpg)) of the open
    branches (`open_`, whose `_open_key` is `key`), contiguous: gathered from the plan's rows once
    per open set."""

    def build() -> tuple[Tensor, ...]:
        rows = plan["rows"]
        if not bool(open_.all()):
            cpg = plan["width"] // groups  # channels per branch
            branches = open_.nonzero().flatten()  # (S,)
            ch = (branches[:, None] * cpg + torch.arange(cpg, device=rows.device)).flatten()
            rows = rows.index_select(0, ch)  # (S * cpg, row)
        w1, b1, w2, b2, w3t = rows.split(plan["splits"], dim=1)
        return (
            w1.contiguous(),
            b1[:, 0].contiguous(),
            w2.reshape(-1, *plan["w2_shape"]).contiguous(),  # (S * cpg, cpg, 3, 3)
            b2[:, 0].contiguous(),
            w3t.t().contiguous(),  # (C_out, S * cpg)
        )

    return _cached(plan, key, build)


def _conv1x1(weight: Tensor, bias: Tensor | None, x: Tensor) -> Tensor:
    """A stride-1 1x1 convolution as one matrix product: weight (C_out, C_in), x (B, C_in, H, W)
    -> (B, C_out, H, W). At the small maps and batches of inference this skips the convolution
    dispatch (im2col, layout conversion) that dominates a 1x1 conv's cost; at batch 1 the bias
    is fused into the product (addmm). A channels-last x (the loaders' layout: `qgmrn evaluate`
    feeds it) is multiplied as (B * H * W, C_in) rows and stays channels-last, where reshaping
    it to (B, C_in, H * W) would copy it and hand the next convolution an NCHW map."""
    B, C, H, W = x.shape
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        rows = x.permute(0, 2, 3, 1).reshape(B * H * W, C)  # (B * H * W, C_in), no copy
        out = rows @ weight.t() if bias is None else torch.addmm(bias, rows, weight.t())
        return out.view(B, H, W, -1).permute(0, 3, 1, 2)  # (B, C_out, H, W), channels-last
    if B == 1 and bias is not None:
        return torch.addmm(bias[:, None], weight, x.reshape(C, H * W)).view(1, -1, H, W)
    out = torch.matmul(weight, x.reshape(B, C, H * W))  # (B, C_out, H * W)
    if bias is not None:
        out = out + bias[:, None]
    return out.view(B, -1, H, W)  # (B, C_out, H, W)


def _zeros_through(norm: nn.Module, like: Tensor) -> Tensor:
    """norm(0) for a (B, C, H, W) map of zeros, computed on a (1, C, 1, 1) one: a per-channel
    constant for eval-mode BatchNorm and for GroupNorm (whose statistics over zeros are 0)."""
    return norm(like.new_zeros(1, like.shape[1], 1, 1))  # (1, C, 1, 1), broadcast by the caller


def _gated(out: Tensor, gates: Tensor, modules: int) -> Tensor:
    """Zero, per sample, the open-for-the-batch modules the sample itself closes: out
    (B, S * k, H, W) viewed as S modules of k channels, gates (B, S). Skipped when every sample
    opens every one of them (always so at batch 1), since multiplying by 1 changes nothing."""
    if gates.shape[0] == 1 or bool((gates == 1).all()):  # batch 1: the open set is its own
        return out
    B, C, H, W = out.shape
    g = gates.to(out.dtype).view(B, modules, 1, 1, 1)
    return (out.view(B, modules, C // modules, H, W) * g).view(B, C, H, W)  # (B, C, H, W)


def bottleneck_sparse(block: RoutedBottleneck, x: Tensor, gates: Tensor) -> Tensor:
    """`block(x, gates)` computing only the branches some sample opens (eval mode).
    Shapes: x (B, C_in, H, W), gates (B, M) -> (B, C_out, H / s, W / s)."""
    identity = x if block.downsample is None else block.downsample(x)
    open_ = gates.amax(0) > 0  # (M,): opened by some sample
    key = _open_key(open_)
    n = key.count(1)  # open branches (a bool is one byte, 0 or 1)
    if n == 0:
        return block.relu(_zeros_through(block.bn3, identity) + identity)
    if not (_sliceable(block.bn1) and _sliceable(block.bn2)):
        return block(x, gates)
    state = _state_key(block, _BOTTLENECK_FOLDED)
    plan = _plan(block, state, lambda: _bottleneck_plan(block))
    w1, b1, w2, b2, w3 = _bottleneck_weights(plan, open_, key, block.groups)
    out = block.relu(_conv1x1(w1, b1, x))  # (B, S * cpg, H, W)
    c2 = block.conv2
    out = F.conv2d(out, w2, b2, c2.stride, c2.padding, c2.dilation, n)  # one group a branch
    out = block.relu(out)
    if gates.shape[0] > 1:  # at batch 1 the open set is the sample's own: nothing to mask
        out = _gated(out, gates if n == block.groups else gates[:, open_], n)
    out = block.bn3(_conv1x1(w3, block.conv3.bias, out))  # (B, C_out, H / s, W / s)
    return block.relu(out + identity)


def _basic_plan(block: RoutedBasicBlock) -> dict:
    """conv1 with bn1 folded; per output filter of conv2 one row [w2 | b2] with bn2 folded."""
    w1, b1 = _fold(block.conv1, block.bn1)
    w2, b2 = _fold(block.conv2, block.bn2)  # (M, C, 3, 3), (M,)
    rows = torch.cat([w2.flatten(1), b2[:, None]], dim=1).contiguous()
    return {
        "w1": w1.contiguous(),
        "b1": b1,
        "rows": rows,
        "w2_shape": w2.shape[1:],
        "paths": OrderedDict(),
    }


def _basic_weights(plan: dict, open_: Tensor, key: bytes) -> tuple[Tensor, Tensor, Tensor | None]:
    """(w2 (S, C, 3, 3), b2 (S,), the open filters' indices (S,) or None when all are open),
    contiguous, gathered once per open set (`key`: `_open_key(open_)`)."""

    def build() -> tuple[Tensor, Tensor, Tensor | None]:
        rows, idx = plan["rows"], None
        if not bool(open_.all()):
            idx = open_.nonzero().flatten()  # (S,)
            rows = rows.index_select(0, idx)  # (S, row)
        w2 = rows[:, :-1].reshape(-1, *plan["w2_shape"]).contiguous()  # (S, C, 3, 3)
        return w2, rows[:, -1].contiguous(), idx

    return _cached(plan, key, build)


def basic_block_sparse(block: RoutedBasicBlock, x: Tensor, gates: Tensor) -> Tensor:
    """`block(x, gates)` computing only the conv2 filters some sample opens (eval mode).
    Shapes: x (B, C_in, H, W), gates (B, M) -> (B, M, H / s, W / s)."""
    identity = x if block.downsample is None else block.downsample(x)
    open_ = gates.amax(0) > 0  # (M,)
    key = _open_key(open_)
    n = key.count(1)  # open filters
    if n == 0:
        return block.relu(identity)
    if not (_sliceable(block.bn1) and _sliceable(block.bn2)):
        return block(x, gates)
    plan = _plan(block, _state_key(block, _BASIC_FOLDED), lambda: _basic_plan(block))
    c1, c2 = block.conv1, block.conv2
    out = F.conv2d(x, plan["w1"], plan["b1"], c1.stride, c1.padding, c1.dilation, c1.groups)
    out = block.relu(out)
    w2, b2, idx = _basic_weights(plan, open_, key)
    out = F.conv2d(out, w2, b2, c2.stride, c2.padding, c2.dilation, c2.groups)  # (B, S, H, W)
    if gates.shape[0] > 1:  # at batch 1 the open set is the sample's own: nothing to mask
        out = _gated(out, gates if idx is None else gates[:, idx], n)
    if idx is None:
        return block.relu(out + identity)
    # into a copy of the shortcut in its own layout (out-of-place index_add returns NCHW)
    return block.relu(identity.clone().index_add_(1, idx, out))


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
