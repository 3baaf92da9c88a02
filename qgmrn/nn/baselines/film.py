"""The FiLM baseline (Perez et al. 2018), trained from raw pixels.

A GRU reads the question; one linear layer (the FiLM generator) turns q into a (gamma, beta)
pair per channel of every residual block; each block normalises without affine parameters and
applies gamma * x + beta instead. Coordinate maps are appended to each block's input and to the
classifier's, as in FiLM.

Dimensions: B batch, T question length, C channels, H height, W width, N residual blocks,
D question feature size, K classifier channels, A answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from qgmrn.nn.baselines.base import Baseline
from qgmrn.nn.coords import coordinate_maps
from qgmrn.nn.output import VQAOutput
from qgmrn.nn.text import QuestionEncoder


class FiLMResBlock(nn.Module):
    """FiLM's residual block (Perez et al. 2018, fig. 3).

    [x, coords] -> conv1x1 -> ReLU = r;  r -> conv3x3 -> BN (no affine) -> FiLM -> ReLU;  + r.
    Shapes: x (B, C, H, W), gamma (B, C), beta (B, C) -> (B, C, H, W).
    """

    def __init__(self, channels: int, coord_maps: bool = True) -> None:
        super().__init__()
        self.coord_maps = coord_maps
        self.conv1 = nn.Conv2d(channels + 2 * coord_maps, channels, kernel_size=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, affine=False)  # gamma and beta come from FiLM
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        if self.coord_maps:
            x = torch.cat([x, coordinate_maps(x)], dim=1)  # (B, C + 2, H, W)
        residual = self.relu(self.conv1(x))  # (B, C, H, W)
        out = self.bn2(self.conv2(residual))
        out = gamma[:, :, None, None] * out + beta[:, :, None, None]  # FiLM: gamma * x + beta
        return self.relu(out) + residual


class FiLM(Baseline):
    """FiLM: raw-pixel CNN stem -> N FiLM-ed residual blocks -> 1x1 conv, global max pool, MLP.

    The generator predicts gamma as 1 + delta, so that a freshly initialised network starts near
    the identity modulation (our choice; not stated in the FiLM paper).
    Shapes: images (B, 3, H, W), questions (B, T), lengths (B,) -> logits (B, A).
    """

    def __init__(
        self,
        vocab_size: int,
        num_answers: int,
        *,
        stem_widths: Sequence[int] = (64, 64, 128, 256),
        num_blocks: int = 4,
        classifier_channels: int = 512,
        coord_maps: bool = True,
        **sizes: Any,  # embed_dim, hidden_dim, mlp_hidden, dropout: see Baseline
    ) -> None:
        # the question encoder is the GRU of the routed models, as in FiLM
        super().__init__(
            vocab_size, num_answers, encoder=QuestionEncoder, cnn_widths=stem_widths, **sizes
        )
        channels = self.cnn.out_channels
        self.channels = channels
        self.num_blocks = num_blocks
        self.coord_maps = coord_maps
        self.film_generator = nn.Linear(self.encoder.hidden_dim, num_blocks * 2 * channels)
        self.blocks = nn.ModuleList(FiLMResBlock(channels, coord_maps) for _ in range(num_blocks))
        self.classifier_conv = nn.Sequential(
            nn.Conv2d(channels + 2 * coord_maps, classifier_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(classifier_channels),
            nn.ReLU(inplace=True),
        )
        self.add_classifier(classifier_channels)

    def film_parameters(self, questions: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """gamma and beta for every block: each (B, N, C)."""
        q = self.encoder(questions, lengths)  # (B, D)
        film = self.film_generator(q).view(-1, self.num_blocks, 2, self.channels)  # (B, N, 2, C)
        return 1.0 + film[:, :, 0], film[:, :, 1]

    def forward(self, images: Tensor, questions: Tensor, lengths: Tensor) -> VQAOutput:
        gammas, betas = self.film_parameters(questions, lengths)  # (B, N, C) each
        x = self.cnn(images)  # (B, C, H', W')
        for i, block in enumerate(self.blocks):
            x = block(x, gammas[:, i], betas[:, i])
        if self.coord_maps:
            x = torch.cat([x, coordinate_maps(x)], dim=1)  # (B, C + 2, H', W')
        x = self.classifier_conv(x).amax(dim=(2, 3))  # (B, K): global max pooling
        return self.answer(x)
