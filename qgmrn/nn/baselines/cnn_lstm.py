"""The "CNN+LSTM" baseline of Johnson et al. (2017a): image and question features, concatenated.

Dimensions: B batch, T question length, C channels, H height, W width, P pooled grid side,
D question feature size, A answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from qgmrn.nn.baselines.base import Baseline
from qgmrn.nn.baselines.lstm import LSTMEncoder
from qgmrn.nn.output import VQAOutput


class CNNLSTM(Baseline):
    """CNN+LSTM: CNN feature map, max-pooled to a P x P grid and flattened, concat q -> MLP.

    Johnson et al. (2017a) max-pool ResNet conv4 features 2x2 and flatten them; we pool to a
    fixed P x P grid instead, so that the classifier does not depend on the image size and the
    flattened feature keeps a coarse layout (which CLEVR's spatial questions need).
    Shapes: images (B, 3, H, W), questions (B, T), lengths (B,) -> logits (B, A).
    """

    def __init__(
        self,
        vocab_size: int,
        num_answers: int,
        *,
        cnn_widths: Sequence[int] = (64, 64, 128, 256),
        pool_size: int = 2,
        **sizes: Any,  # embed_dim, hidden_dim, mlp_hidden, dropout: see Baseline
    ) -> None:
        super().__init__(
            vocab_size, num_answers, encoder=LSTMEncoder, cnn_widths=cnn_widths, **sizes
        )
        self.pool = nn.AdaptiveMaxPool2d(pool_size)
        image_dim = self.cnn.out_channels * pool_size * pool_size
        self.add_classifier(image_dim + self.encoder.hidden_dim)

    def forward(self, images: Tensor, questions: Tensor, lengths: Tensor) -> VQAOutput:
        q = self.encoder(questions, lengths)  # (B, D)
        v = self.pool(self.cnn(images)).flatten(1)  # (B, C * P * P)
        return self.answer(torch.cat([v, q], dim=1))
