"""The routing network (paper sec. 3.3): one linear layer q -> real-valued routing path P~.

Dimensions: B batch, D question feature size, G total gates = sum_l M_l, M_l gates of layer l.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from qgmrn.nn.gumbel import Gate, StaticGate


class Router(nn.Module):
    """P~ = fc(q), split per routed layer; `gate` turns P~ into the routing path P (eq. 3).

    ONE `nn.Linear(D, G)` produces every layer's logits (the paper's fc: R^h -> R^{L x M});
    layers may have different M_l (FRN), so the output is split into ragged chunks.
    Shapes: q (B, D) -> (gates, logits), each a list of (B, M_l) tensors.
    """

    def __init__(
        self,
        in_features: int,
        gate_sizes: Sequence[int],
        gate: Gate,
        init_exec_prob: float = 0.7,
        init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        self.gate_sizes = [int(m) for m in gate_sizes]
        self.fc = nn.Linear(in_features, sum(self.gate_sizes))
        self.gate = gate
        # Each module starts executing with probability p: bias = log(p / (1 - p)) (sec. 4.2).
        # Small weights keep that probability nearly the same for every question (std ours).
        nn.init.normal_(self.fc.weight, std=init_std)
        nn.init.constant_(self.fc.bias, math.log(init_exec_prob / (1 - init_exec_prob)))

    def forward(self, q: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        logits = list(self.fc(q).split(self.gate_sizes, dim=1))  # L x (B, M_l)
        gates = [self.gate(p) for p in logits]
        return gates, logits


class StaticRouter(nn.Module):
    """The static twin's router: no parameters, every gate 1 (P~ = +inf: probability 1)."""

    def __init__(self, gate_sizes: Sequence[int]) -> None:
        super().__init__()
        self.gate_sizes = [int(m) for m in gate_sizes]
        self.gate = StaticGate()

    def forward(self, q: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        B = q.shape[0]
        logits = [q.new_full((B, m), math.inf) for m in self.gate_sizes]  # L x (B, M_l)
        return [self.gate(p) for p in logits], logits
