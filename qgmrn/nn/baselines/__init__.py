"""The Table 1 baselines, trained by the same loop on the same data as the routed models.

- ``lstm``: `QuestionOnlyLSTM` (Johnson et al. 2017a), the question alone.
- ``cnn_lstm``: `CNNLSTM` (Johnson et al. 2017a), pooled CNN features concatenated with q.
- ``cnn_lstm_sa``: `CNNLSTMStackedAttention` (Yang et al. 2016; Johnson et al. 2017a), 2 hops.
- ``film``: `FiLM` (Perez et al. 2018), from raw pixels.

All share the models' interface: forward(images (B, 3, H, W) float, questions (B, T) long,
lengths (B,) long) -> VQAOutput(logits (B, A), gates=[], gate_logits=[]), and one skeleton,
`Baseline` (question encoder, raw-pixel CNN, MLP classifier). Every CNN is trained from raw
pixels (no pretrained ResNet), like our routed models on mini-CLEVR.
"""

from __future__ import annotations

from torch import nn

from qgmrn.config import ModelConfig
from qgmrn.nn.baselines.base import Baseline
from qgmrn.nn.baselines.cnn_lstm import CNNLSTM
from qgmrn.nn.baselines.film import FiLM, FiLMResBlock
from qgmrn.nn.baselines.layers import ConvFeatures
from qgmrn.nn.baselines.lstm import LSTMEncoder, QuestionOnlyLSTM
from qgmrn.nn.baselines.stacked_attention import CNNLSTMStackedAttention, StackedAttention
from qgmrn.nn.coords import coordinate_maps
from qgmrn.nn.heads import mlp_classifier

BASELINE_ARCHS: tuple[str, ...] = ("lstm", "cnn_lstm", "cnn_lstm_sa", "film")

# Sizes ModelConfig has no field for, fixed to the cited papers' values.
SA_HOPS = 2  # Johnson et al. (2017a) stack two attention hops
FILM_BLOCKS = 4  # Perez et al. (2018) use four FiLM-ed residual blocks
CNN_POOL_SIZE = 2  # ours: CNN+LSTM pools its feature map to a 2x2 grid before flattening


def build_baseline(cfg: ModelConfig, vocab_size: int, num_answers: int) -> nn.Module:
    """The baseline named by ``cfg.arch``, sized from `cfg`."""
    common = dict(
        embed_dim=cfg.embed_dim,
        hidden_dim=cfg.hidden_dim,
        mlp_hidden=cfg.mlp_hidden,
        dropout=cfg.dropout,
    )
    if cfg.arch == "lstm":
        return QuestionOnlyLSTM(vocab_size, num_answers, **common)
    if cfg.arch == "cnn_lstm":
        return CNNLSTM(
            vocab_size, num_answers, cnn_widths=cfg.cnn_widths, pool_size=CNN_POOL_SIZE, **common
        )
    if cfg.arch == "cnn_lstm_sa":
        # Johnson et al.'s attention size (512) equals the question feature size at paper scale.
        return CNNLSTMStackedAttention(
            vocab_size,
            num_answers,
            cnn_widths=cfg.cnn_widths,
            attn_dim=cfg.hidden_dim,
            num_hops=SA_HOPS,
            **common,
        )
    if cfg.arch == "film":
        # FiLM's classifier: a 512-channel 1x1 conv before a 1024-unit layer (half of mlp_hidden).
        return FiLM(
            vocab_size,
            num_answers,
            stem_widths=cfg.cnn_widths,
            num_blocks=FILM_BLOCKS,
            classifier_channels=max(1, cfg.mlp_hidden // 2),
            coord_maps=cfg.coord_maps,
            **common,
        )
    raise ValueError(f"unknown baseline arch {cfg.arch!r}; choose from {', '.join(BASELINE_ARCHS)}")


__all__ = [
    "BASELINE_ARCHS",
    "Baseline",
    "CNNLSTM",
    "CNNLSTMStackedAttention",
    "ConvFeatures",
    "FiLM",
    "FiLMResBlock",
    "LSTMEncoder",
    "QuestionOnlyLSTM",
    "StackedAttention",
    "build_baseline",
    "mlp_classifier",
    "coordinate_maps",
]
