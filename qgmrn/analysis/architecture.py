"""A picture of a routed model (paper Figure 1) drawn from the built model itself (notebook 02).

question -> textual network (eq. 1) -> routing network (eq. 3, sec. 3.3) -> gates of each stage's
modular layers -> (stem and) stages of the visual network (eq. 4) -> coordinate maps -> head
(sec. 3.4) -> answer. Every size in the picture is read from the model's modules (embedding and
GRU widths, the router's fc, each stage's blocks, modules per block and output channels, the
head's kind and classes), and the feature-map sizes from one forward pass of zeros, so the
picture cannot drift from the code.

Dimensions: L routed layers, M_l modules of layer l, G = sum of M_l gates, S stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import nn


@dataclass(frozen=True)
class StageSummary:
    """One stage of the routed visual network: `blocks` modular layers (residual blocks) whose
    modules (`unit`: BRN branches or FRN filters) are `modules[k]` for block k."""

    index: int  # 1-based, as the paper and the figures count stages
    blocks: int
    modules: tuple[int, ...]  # M_l of each of the stage's layers
    unit: str  # "branches" (BRN) or "filters" (FRN)
    out_channels: int
    map_size: tuple[int, int] | None  # (h, w) of the stage's output for `image_size`

    @property
    def gates(self) -> int:
        return sum(self.modules)


@dataclass(frozen=True)
class ArchitectureSummary:
    """The sizes of a routed model (`qgmrn.model.QGMRN`), read from its modules."""

    arch: str  # "brn" or "frn"
    vocab_size: int
    embed_dim: int
    hidden_dim: int  # D: the GRU's width, the size of q
    router: str  # "gumbel" (Gumbel-sigmoid gates), "soft" or "static" (every gate 1)
    tau: float | None
    stem_width: int
    stem_pool: bool
    image_size: tuple[int, int] | None  # (H, W) fed to the network
    stem_map: tuple[int, int] | None
    stages: tuple[StageSummary, ...]
    coord_maps: bool
    head: str  # "gmp" (global max pooling) or "attention"
    head_uses_q: bool
    mlp_hidden: int
    num_answers: int

    @property
    def layers(self) -> int:
        return sum(s.blocks for s in self.stages)

    @property
    def gates(self) -> int:
        return sum(s.gates for s in self.stages)

    def stage_table(self) -> pd.DataFrame:
        """One row per stage: blocks (routed layers), modules per layer, gates, output channels
        and feature map."""
        rows = []
        for s in self.stages:
            per_layer = sorted(set(s.modules))
            rows.append(
                {
                    "stage": s.index,
                    "routed layers": s.blocks,
                    f"{s.unit} per layer (M_l)": "/".join(str(m) for m in per_layer),
                    "gates": s.gates,
                    "channels out": s.out_channels,
                    "map (h x w)": "x".join(map(str, s.map_size)) if s.map_size else "",
                }
            )
        return pd.DataFrame(rows).set_index("stage")


def _unit(block: nn.Module) -> str:
    from qgmrn.nn.blocks import FilterRoutedBottleneck, RoutedBottleneck

    if isinstance(block, RoutedBottleneck) and not isinstance(block, FilterRoutedBottleneck):
        return "branches"
    return "filters"


def _out_channels(block: nn.Module) -> int:
    return (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels


@torch.no_grad()
def _map_sizes(backbone: nn.Module, image_size: Sequence[int]) -> list[tuple[int, int]]:
    """(h, w) after the stem and after each stage, from one forward pass of a zero image with
    every gate open (the model's mode is restored: no norm statistics change)."""
    sizes: list[tuple[int, int]] = []
    # the trunk runs its blocks one by one (not the stages' Sequential): hook each last block
    ends = [backbone.maxpool] + [getattr(backbone, f"layer{i}")[-1] for i in range(1, 5)]
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[-2:])))
        for m in ends
    ]
    was_training = backbone.training
    backbone.eval()
    try:
        param = next(backbone.parameters())
        x = torch.zeros(1, 3, *image_size, device=param.device, dtype=param.dtype)
        backbone(x, [x.new_ones(1, m) for m in backbone.gate_sizes])
    finally:
        for h in hooks:
            h.remove()
        backbone.train(was_training)
    return sizes


def describe_architecture(
    model: nn.Module, image_size: Sequence[int] | None = None
) -> ArchitectureSummary:
    """The sizes of a routed `model` read from its modules; with `image_size` (H, W), the
    feature-map size after the stem and each stage too. Raises ValueError for a model that is
    not routed (a baseline has no router or gates)."""
    from qgmrn.nn.heads import AttentionHead, GMPQuestionHead
    from qgmrn.nn.router import Router, StaticRouter

    if not getattr(model, "gate_sizes", None) or not hasattr(model, "router"):
        raise ValueError(f"{type(model).__name__} is not a routed model (no router, no gates)")
    backbone = model.backbone
    stage_blocks = [list(getattr(backbone, f"layer{i}")) for i in range(1, 5)]
    maps = _map_sizes(backbone, image_size) if image_size is not None else None
    stages = tuple(
        StageSummary(
            index=i + 1,
            blocks=len(blocks),
            modules=tuple(int(b.num_gates) for b in blocks),
            unit=_unit(blocks[0]),
            out_channels=_out_channels(blocks[-1]),
            map_size=maps[i + 1] if maps else None,
        )
        for i, blocks in enumerate(stage_blocks)
    )
    if isinstance(model.router, StaticRouter):
        router, tau = "static", None
    elif isinstance(model.router, Router):
        router = {"GumbelSigmoidGate": "gumbel", "SoftGate": "soft"}.get(
            type(model.router.gate).__name__, type(model.router.gate).__name__
        )
        tau = float(model.router.gate.tau)
    else:
        router, tau = type(model.router).__name__, None
    head = model.head
    classifier = [m for m in head.classifier if isinstance(m, nn.Linear)]
    return ArchitectureSummary(
        arch="brn" if stages[0].unit == "branches" else "frn",
        vocab_size=model.text.embed.num_embeddings,
        embed_dim=model.text.embed.embedding_dim,
        hidden_dim=model.text.hidden_dim,
        router=router,
        tau=tau,
        stem_width=backbone.conv1.out_channels,
        stem_pool=not isinstance(backbone.maxpool, nn.Identity),
        image_size=tuple(int(s) for s in image_size) if image_size is not None else None,
        stem_map=maps[0] if maps else None,
        stages=stages,
        coord_maps=not isinstance(model.coords, nn.Identity),
        head="attention" if isinstance(head, AttentionHead) else "gmp",
        head_uses_q=isinstance(head, (AttentionHead, GMPQuestionHead)),
        mlp_hidden=classifier[0].out_features,
        num_answers=classifier[-1].out_features,
    )


# colours of the three sub-networks of Figure 1
_TEXT, _ROUTER, _VISUAL, _HEAD = "#dbe9f6", "#fde2c4", "#e3f1de", "#ece3f3"


def _box(ax, key: str, x: float, y: float, w: float, h: float, text: str, color: str) -> None:
    patch = FancyBboxPatch(
        (x, y), w, h, boxstyle="round,pad=0.2,rounding_size=0.8", fc=color, ec="0.3", lw=1.0
    )
    patch.set_gid(key)
    ax.add_patch(patch)
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8, linespacing=1.35)


def _arrow(ax, start, end, label: str = "", *, dashed: bool = False, above: bool = False) -> None:
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops=dict(
            arrowstyle="-|>", color="0.25", lw=1.0, ls="--" if dashed else "-", shrinkA=0, shrinkB=0
        ),
    )
    if label:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        if above:
            ax.text(mx, my + 0.8, label, fontsize=7.5, color="0.2", va="bottom", ha="center")
        else:
            ax.text(mx + 0.6, my, label, fontsize=7.5, color="0.2", va="center", ha="left")


def _size(hw: tuple[int, int] | None) -> str:
    return f"{hw[0]}x{hw[1]}" if hw else "?"


def plot_architecture(arch: ArchitectureSummary, title: str = "") -> Figure:
    """Figure 1 for `arch` (`describe_architecture`): the question path on top (textual and
    routing networks), the visual path below (image, stem, one box per stage, head, answer),
    dashed arrows carrying each stage's gates from the router. Each box's patch has a `gid`
    ("question", "text", "router", "image", "stem", "stage 1" ... "stage S", "head", "answer")."""
    n = len(arch.stages)
    cols = n + 4  # image, stem, stages, head, answer
    fig, ax = plt.subplots(figsize=(1.55 * cols, 4.4))
    ax.set_xlim(0, 10 * cols)
    ax.set_ylim(-1.5, 44)
    ax.axis("off")
    w, gap = 8.0, 2.0
    x = [10 * i + gap / 2 for i in range(cols)]  # left edge of each column

    # visual path (bottom row)
    yb, hb = 3.0, 14.0
    image = f"image\n3 x {_size(arch.image_size)}" if arch.image_size else "image\n3 x H x W"
    _box(ax, "image", x[0], yb, w, hb, image, "white")
    pool = "3x3/2 max pool" if arch.stem_pool else "no max pool"
    stem = f"stem\nconv 7x7/2,\n{arch.stem_width} ch.,\n{pool}"
    if arch.stem_map:
        stem += f"\nmap {_size(arch.stem_map)}"
    _box(ax, "stem", x[1], yb, w, hb, stem, _VISUAL)
    for i, s in enumerate(arch.stages):
        per_layer = "/".join(str(m) for m in sorted(set(s.modules)))
        per_layer = f"c = {per_layer}" if s.unit == "branches" else per_layer  # the cardinality
        text = (
            f"stage {s.index}\n{s.blocks} routed layer{'s' * (s.blocks != 1)}\n"
            f"x {per_layer} {s.unit}\n= {s.gates} gates\n{s.out_channels} ch."
        )
        if s.map_size:
            text += f", {_size(s.map_size)}"
        _box(ax, f"stage {s.index}", x[2 + i], yb, w, hb, text, _VISUAL)
    coords = "+ 2 coord. maps\n" if arch.coord_maps else ""
    if arch.head == "attention":
        pooled = "Transformer over\npositions,\nattention pool\n(eq. 12)"
    else:
        pooled = "global max pool" + (",\nconcat q" if arch.head_uses_q else "\n(w/o q)")
    head = f"head (sec. 3.4)\n{coords}{pooled}\nMLP {arch.mlp_hidden}"
    _box(ax, "head", x[n + 2], yb, w, hb, head, _HEAD)
    _box(ax, "answer", x[n + 3], yb, w, hb, f"answer\n{arch.num_answers} classes", "white")
    for i in range(cols - 1):
        _arrow(ax, (x[i] + w + 0.3, yb + hb / 2), (x[i + 1] - 0.3, yb + hb / 2))

    # question path (top row)
    yt, ht = 26.0, 12.0
    _box(
        ax,
        "question",
        x[0],
        yt,
        w,
        ht,
        f"question\n(words of a\n{arch.vocab_size}-token\nvocab.)",
        "white",
    )
    text = f"textual net.\n(eq. 1)\nembedding {arch.embed_dim}\n-> GRU {arch.hidden_dim}"
    _box(ax, "text", x[1], yt, w, ht, text, _TEXT)
    _arrow(ax, (x[0] + w + 0.3, yt + ht / 2), (x[1] - 0.3, yt + ht / 2))
    rx, rw = x[2], x[n + 1] + w - x[2]  # the router spans the stages it drives
    if arch.router == "static":
        router = "static router: no parameters, every gate 1 (the static twin)"
    else:
        rule = {
            "gumbel": f"training: Gumbel-sigmoid sample, $\\tau$ = {arch.tau:g} (eq. 11)\n"
            "test: P = [$\\tilde{P}$ > 0]",
            "soft": f"P = sigmoid($\\tilde{{P}}$ / $\\tau$), $\\tau$ = {arch.tau:g} (ours)",
        }.get(arch.router, arch.router)
        router = (
            f"routing network (sec. 3.3)\nfc: {arch.hidden_dim} -> {arch.gates} logits "
            f"$\\tilde{{P}}$ (eq. 3), {arch.layers} routed layers\n{rule}"
        )
    _box(ax, "router", rx, yt, rw, ht, router, _ROUTER)
    _arrow(ax, (x[1] + w + 0.3, yt + ht / 2), (rx - 0.3, yt + ht / 2), "q", above=True)
    for i, s in enumerate(arch.stages):
        cx = x[2 + i] + w / 2
        _arrow(ax, (cx, yt - 0.4), (cx, yb + hb + 0.4), f"{s.gates} gates", dashed=True)
    if arch.head_uses_q:  # q also reaches the head: over the router, down to the head
        qx, hx, top = x[1] + w / 2, x[n + 2] + w / 2, yt + ht + 2.5
        ax.plot([qx, qx, hx], [yt + ht + 0.4, top, top], color="0.25", lw=1.0)
        _arrow(ax, (hx, top), (hx, yb + hb + 0.4))
        ax.text(hx + 0.6, top - 1.6, "q", fontsize=7.5, color="0.2")
    ax.text(
        x[0],
        -1.0,
        "dashed: the routing path P, one 0/1 gate per module, switches each "
        "stage's modules (eq. 4)",
        fontsize=7.5,
        color="0.3",
        style="italic",
    )
    if title:
        ax.set_title(title, fontsize=9.5)
    fig.tight_layout()
    return fig
