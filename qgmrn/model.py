"""QGMRN: question-guided modular routing network (paper sec. 3, Figure 1), and its builder.

The textual network encodes the question into q; the routing network maps q to a routing path
(one (B, M_l) gate tensor per modular layer); the visual network executes its modules
according to that path; the head predicts the answer from y_L (+ coordinates) and q.

Dimensions: B batch, T question length, D question feature size, L routed layers,
M_l modules of layer l, A answers.
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from qgmrn.config import ModelConfig
from qgmrn.nn.baselines import BASELINE_ARCHS, build_baseline
from qgmrn.nn.brn import brn_backbone, group_norm
from qgmrn.nn.coords import AddCoords
from qgmrn.nn.frn import frn_backbone
from qgmrn.nn.gumbel import GATES, Gate
from qgmrn.nn.heads import AttentionHead, GMPHead, GMPQuestionHead
from qgmrn.nn.output import VQAOutput
from qgmrn.nn.routable import RoutedResNet, make_routable, zero_init_residual
from qgmrn.nn.router import Router, StaticRouter
from qgmrn.nn.text import QuestionEncoder

ROUTED_ARCHS = ("brn", "frn")


class QGMRN(nn.Module):
    """Text encoder -> router -> routed backbone -> (coordinate maps) -> head.

    forward(images (B, 3, H, W) float, questions (B, T) long, lengths (B,) long) -> VQAOutput
    with logits (B, A), gates and gate_logits: L x (B, M_l).
    """

    def __init__(
        self,
        text: QuestionEncoder,
        router: nn.Module,
        backbone: RoutedResNet,
        coords: nn.Module,
        head: nn.Module,
    ) -> None:
        super().__init__()
        self.text = text
        self.router = router
        self.backbone = backbone
        self.coords = coords
        self.head = head

    @property
    def gate_sizes(self) -> list[int]:
        return self.backbone.gate_sizes

    @property
    def stage_of_layer(self) -> list[int]:
        return self.backbone.stage_of_layer

    def set_tau(self, tau: float) -> None:
        set_tau(self, tau)

    def forward(
        self, images: Tensor, questions: Tensor, lengths: Tensor, *, sparse: bool = False
    ) -> VQAOutput:
        """`sparse` (eval mode only): skip the closed modules (`RoutedResNet.forward_sparse`);
        the same logits up to float tolerance."""
        q = self.text(questions, lengths)  # (B, D): eq. 1
        gates, gate_logits = self.router(q)  # L x (B, M_l): eq. 3 and sec. 3.3
        trunk = self.backbone.forward_sparse if sparse else self.backbone
        y = self.coords(trunk(images, gates))  # (B, C + 2, h, w): eq. 4, sec. 4.2
        return VQAOutput(self.head(y, q), gates, gate_logits)


def set_tau(model: nn.Module, tau: float) -> None:
    """Sets the Gumbel-sigmoid temperature of every gate in `model` (a no-op without gates)."""
    for m in model.modules():
        if isinstance(m, Gate):
            m.tau = float(tau)


def sparse_kwargs(model: nn.Module, sparse: bool) -> dict:
    """The keyword a forward call passes to ask `model` to skip its closed modules: {"sparse":
    True} for a routed model when `sparse`, else {} (a baseline has no modules to skip and no
    such argument)."""
    return {"sparse": True} if sparse and getattr(model, "gate_sizes", None) else {}


def count_gates(model: nn.Module) -> int:
    """Total number of routed modules (gates) of `model`; 0 for an unrouted baseline."""
    return sum(getattr(model, "gate_sizes", []))


def build_backbone(cfg: ModelConfig) -> RoutedResNet:
    """The routed visual network of `cfg.arch` ("brn" or "frn"), its residual branches
    zero-initialised when `cfg.zero_init_residual` (ours)."""
    backbone = _backbone(cfg)
    return zero_init_residual(backbone) if cfg.zero_init_residual else backbone


def _backbone(cfg: ModelConfig) -> RoutedResNet:
    if cfg.arch == "brn":
        third = {"gn": group_norm(cfg.gn_groups), "bn": nn.BatchNorm2d}[cfg.third_norm]
        return brn_backbone(
            cfg.brn_depths,
            cfg.brn_widths,
            cfg.cardinality,
            cfg.bottleneck_ratio,
            cfg.stem_width,
            cfg.stem_pool,
            nn.BatchNorm2d,
            third,
            cfg.stage_strides,
        )
    if cfg.frn_backbone != "resnet34":  # any torchvision ResNet/ResNeXt, made routable as is
        return make_routable(torchvision.models.get_model(cfg.frn_backbone, weights=None))
    return frn_backbone(
        cfg.frn_depths, cfg.frn_widths, cfg.stem_width, cfg.stem_pool, strides=cfg.stage_strides
    )


def build_head(cfg: ModelConfig, in_channels: int, num_answers: int) -> nn.Module:
    """The answer head of `cfg` (sec. 3.4); `in_channels` includes the coordinate maps."""
    if cfg.head == "attention":
        return AttentionHead(
            in_channels,
            cfg.hidden_dim,
            cfg.attn_dim,
            cfg.attn_heads,
            cfg.attn_layers,
            cfg.mlp_hidden,
            num_answers,
            cfg.dropout,
        )
    if cfg.head != "gmp":
        raise ValueError(f"unknown head {cfg.head!r}; choose gmp or attention")
    head_cls = GMPQuestionHead if cfg.head_uses_q else GMPHead
    return head_cls(in_channels, cfg.hidden_dim, cfg.mlp_hidden, num_answers, cfg.dropout)


def build_model(cfg: ModelConfig, vocab_size: int, num_answers: int) -> nn.Module:
    """The model `cfg` describes; every choice (gate, norm, head) is made here, by composition.

    The static twin (gate="static") has the same text encoder, backbone and head, and a
    parameter-free `StaticRouter` that opens every gate.
    """
    if cfg.arch in BASELINE_ARCHS:
        return build_baseline(cfg, vocab_size, num_answers)
    if cfg.arch not in ROUTED_ARCHS:
        raise ValueError(f"unknown arch {cfg.arch!r}; choose from {ROUTED_ARCHS + BASELINE_ARCHS}")
    if cfg.gate not in GATES:
        raise ValueError(f"unknown gate {cfg.gate!r}; choose from {', '.join(GATES)}")
    text = QuestionEncoder(vocab_size, cfg.embed_dim, cfg.hidden_dim)
    backbone = build_backbone(cfg)
    if cfg.gate == "static":
        router: nn.Module = StaticRouter(backbone.gate_sizes)
    else:
        gate = GATES[cfg.gate](cfg.tau)
        router = Router(
            cfg.hidden_dim, backbone.gate_sizes, gate, cfg.init_exec_prob, cfg.router_init_std
        )
    coords = AddCoords() if cfg.coord_maps else nn.Identity()
    channels = backbone.out_channels + (AddCoords.extra_channels if cfg.coord_maps else 0)
    head = build_head(cfg, channels, num_answers)
    return QGMRN(text, router, backbone, coords, head)
