"""The "CNN+LSTM+SA" baseline: stacked attention (Yang et al. 2016) as in Johnson et al. (2017a).

Dimensions: B batch, T question length, C CNN channels, D question feature size (the image
features are projected to D too), K attention size, H height, W width, A answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from qgmrn.nn.baselines.base import Baseline
from qgmrn.nn.baselines.lstm import LSTMEncoder
from qgmrn.nn.output import VQAOutput


class StackedAttention(nn.Module):
    """One attention hop of a stacked attention network (Yang et al. 2016).

    h = tanh(W_v v + W_u u), p = softmax over the H*W positions of W_p h, and the refined query
    u' = u + sum_i p_i v_i.
    Shapes: v (B, D, H, W), u (B, D) -> u' (B, D), attention p (B, H, W).
    """

    def __init__(self, feature_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.proj_v = nn.Conv2d(feature_dim, attn_dim, kernel_size=1)  # W_v, per position
        self.proj_u = nn.Linear(feature_dim, attn_dim)  # W_u
        self.score = nn.Conv2d(attn_dim, 1, kernel_size=1)  # W_p

    def forward(self, v: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        B, D, H, W = v.shape
        h = (self.proj_v(v) + self.proj_u(u)[:, :, None, None]).tanh()  # (B, K, H, W)
        p = self.score(h).view(B, H * W).softmax(dim=1)  # (B, H*W)
        v_tilde = (v.view(B, D, H * W) * p[:, None, :]).sum(dim=2)  # (B, D)
        return u + v_tilde, p.view(B, H, W)


class CNNLSTMStackedAttention(Baseline):
    """CNN+LSTM+SA: the question attends to the CNN feature map `num_hops` times, then an MLP.

    As in Johnson et al. (2017a): a 1x1 convolution projects the image features to the question
    feature size D, two hops of stacked attention refine u (initially q), and the MLP reads u.
    Shapes: images (B, 3, H, W), questions (B, T), lengths (B,) -> logits (B, A).
    """

    def __init__(
        self,
        vocab_size: int,
        num_answers: int,
        *,
        cnn_widths: Sequence[int] = (64, 64, 128, 256),
        attn_dim: int = 512,
        num_hops: int = 2,
        **sizes: Any,  # embed_dim, hidden_dim, mlp_hidden, dropout: see Baseline
    ) -> None:
        super().__init__(
            vocab_size, num_answers, encoder=LSTMEncoder, cnn_widths=cnn_widths, **sizes
        )
        d = self.encoder.hidden_dim
        self.image_proj = nn.Conv2d(self.cnn.out_channels, d, kernel_size=1)
        self.hops = nn.ModuleList(StackedAttention(d, attn_dim) for _ in range(num_hops))
        self.add_classifier(d)

    def attend(
        self, images: Tensor, questions: Tensor, lengths: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        """The final query u (B, D) and each hop's attention map (B, H', W') (for figures)."""
        u = self.encoder(questions, lengths)  # (B, D)
        v = self.image_proj(self.cnn(images))  # (B, D, H', W')
        maps = []
        for hop in self.hops:
            u, p = hop(v, u)
            maps.append(p)
        return u, maps

    def forward(self, images: Tensor, questions: Tensor, lengths: Tensor) -> VQAOutput:
        u, _ = self.attend(images, questions, lengths)
        return self.answer(u)
