"""The question-only "LSTM" baseline of Johnson et al. (2017a), Table 1's first row.

The answer is predicted from the question alone: an LSTM question encoder, then an MLP. It
measures how much of CLEVR can be answered from question priors.

Dimensions: B batch, T question length (padded), E embedding size, D hidden size, A answers.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from qgmrn.nn.baselines.base import Baseline
from qgmrn.nn.output import VQAOutput


class LSTMEncoder(nn.Module):
    """Word embedding + one-layer LSTM; q is the state at each question's true length.

    Johnson et al. (2017a) encode questions with an LSTM (theirs has two layers); our routed
    models use a GRU (`qgmrn.nn.text.QuestionEncoder`), FiLM too. Initialisation is PyTorch's,
    except the embedding, which is uniform like `QuestionEncoder`'s.
    Shapes: questions (B, T) long, lengths (B,) long -> q (B, D).
    """

    def __init__(self, vocab_size: int, embed_dim: int = 200, hidden_dim: int = 512) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.hidden_dim = hidden_dim
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def forward(self, questions: Tensor, lengths: Tensor) -> Tensor:
        x = self.embed(questions)  # (B, T, E)
        packed = pack_padded_sequence(
            x, lengths.detach().cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)  # (1, B, D): the state at each question's last real token
        return h[0]  # (B, D)


class QuestionOnlyLSTM(Baseline):
    """LSTM (Johnson et al. 2017a): question encoder -> MLP. The image is accepted and ignored.

    Shapes: images (B, 3, H, W), questions (B, T), lengths (B,) -> logits (B, A).
    """

    def __init__(self, vocab_size: int, num_answers: int, **sizes: Any) -> None:
        # sizes: embed_dim, hidden_dim, mlp_hidden, dropout (see Baseline); no CNN
        super().__init__(vocab_size, num_answers, encoder=LSTMEncoder, **sizes)
        self.add_classifier(self.encoder.hidden_dim)

    def forward(self, images: Tensor, questions: Tensor, lengths: Tensor) -> VQAOutput:
        q = self.encoder(questions, lengths)  # (B, D)
        return self.answer(q)
