"""The textual network (paper sec. 3.1, 4.2): word embedding + GRU -> question feature q.

Dimensions: B batch, T question length (padded), E embedding size, D hidden size.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


class QuestionEncoder(nn.Module):
    """Embedding (uniform init) + one-layer GRU (orthogonal init), as in sec. 4.2.

    q is the GRU state at each question's true length (padding never enters the recurrence).
    Shapes: questions (B, T) long, lengths (B,) long -> q (B, D).
    """

    def __init__(self, vocab_size: int, embed_dim: int = 200, hidden_dim: int = 512) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.hidden_dim = hidden_dim
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # "word embedding ... initialised uniformly, GRU orthogonally" (sec. 4.2); the range
        # +-0.1 is not in the paper.
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        for name, p in self.gru.named_parameters():
            if name.startswith("weight"):
                # torch stacks the three gates' matrices (r, z, n); orthogonalise each one.
                for chunk in p.data.chunk(3, dim=0):
                    nn.init.orthogonal_(chunk)
            else:
                nn.init.zeros_(p)

    def forward(self, questions: Tensor, lengths: Tensor) -> Tensor:
        x = self.embed(questions)  # (B, T, E)
        packed = pack_padded_sequence(
            x, lengths.detach().cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        _, h = self.gru(packed)  # (1, B, D): the state at each question's last real token
        return h[0]  # (B, D)
