"""Answer heads (paper sec. 3.4): from the last feature map y_L (and q) to answer logits.

Which head (and whether q reaches the classifier, Table 2 "w/ q") is chosen by the builder:
`GMPHead` (image only), `GMPQuestionHead` (pooled image + q, the paper's default for BRN),
`AttentionHead` (Transformer over positions + spatial-softmax pooling).

Dimensions: B batch, C channels of y_L (coordinate maps included), H height, W width,
D question feature size, N = H * W tokens, E Transformer width (d_t), A answers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp_classifier(in_features: int, hidden: int, num_answers: int, dropout: float = 0.0):
    """The MLP classifier: Linear -> ReLU -> Dropout -> Linear (widths not in the paper)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_answers),
    )


class GMPHead(nn.Module):
    """Global max pooling, then the MLP classifier ("w/o q"). Shapes: y (B, C, H, W) -> (B, A)."""

    def __init__(
        self, in_channels: int, q_dim: int, hidden: int, num_answers: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.classifier = mlp_classifier(
            self._features(in_channels, q_dim), hidden, num_answers, dropout
        )

    @staticmethod
    def _features(in_channels: int, q_dim: int) -> int:
        return in_channels

    def pool(self, y: Tensor, q: Tensor) -> Tensor:
        return y.amax(dim=(2, 3))  # (B, C)

    def forward(self, y: Tensor, q: Tensor) -> Tensor:
        return self.classifier(self.pool(y, q))


class GMPQuestionHead(GMPHead):
    """Global max pooling, q concatenated, then the MLP ("w/ q", sec. 4.2). -> (B, A)."""

    @staticmethod
    def _features(in_channels: int, q_dim: int) -> int:
        return in_channels + q_dim

    def pool(self, y: Tensor, q: Tensor) -> Tensor:
        return torch.cat([y.amax(dim=(2, 3)), q], dim=1)  # (B, C + D)


class AttentionHead(nn.Module):
    """QGMRN with attention (sec. 3.4, eq. 12).

    u = concat(y_L, broadcast q) reshaped to N tokens, projected to E, a standard Transformer
    encoder models the correlations among positions; a 1x1 conv and a spatial softmax give the
    weights a, and f = sum_n a_n * u~_n goes to the MLP. Positions are known to the tokens
    through the coordinate maps concatenated to y_L. Shapes: y (B, C, H, W), q (B, D) -> (B, A).
    """

    def __init__(
        self,
        in_channels: int,
        q_dim: int,
        d_model: int,
        nhead: int,
        num_layers: int,
        hidden: int,
        num_answers: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels + q_dim, d_model)  # to d_t; the paper leaves it open
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=4 * d_model, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.score = nn.Conv2d(d_model, 1, kernel_size=1)  # the 1x1 conv of eq. 12
        self.classifier = mlp_classifier(d_model, hidden, num_answers, dropout)

    def forward(self, y: Tensor, q: Tensor) -> Tensor:
        B, C, H, W = y.shape
        u = torch.cat([y, q[:, :, None, None].expand(-1, -1, H, W)], dim=1)  # (B, C + D, H, W)
        u = self.encoder(self.proj(u.flatten(2).transpose(1, 2)))  # (B, N, E)
        u = u.transpose(1, 2).reshape(B, -1, H, W)  # (B, E, H, W)
        a = self.score(u).flatten(2).softmax(dim=-1)  # (B, 1, N): spatial softmax
        f = (u.flatten(2) * a).sum(dim=-1)  # (B, E): eq. 12
        return self.classifier(f)
