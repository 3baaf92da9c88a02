"""Gumbel-sigmoid gates: the binary switches of the routing path (paper sec. 3.3, eqs. 7-11).

`gumbel_sigmoid` is the estimator as a plain function; the gate modules turn the router's
real-valued routing path P~ (logits) into the routing path P. Which gate a model uses is chosen
by the builder (composition), never by a flag inside `forward`:

- `GumbelSigmoidGate` (paper): training, a hard sample with straight-through gradients;
  evaluation, the deterministic P = [sigmoid(P~) > 0.5] = [P~ > 0] (sec. 4.2).
- `StaticGate`: every gate 1, the "static" twin (identical network, no routing).
- `SoftGate` (ablation, not in the paper): P = sigmoid(P~ / tau), no threshold, no noise.

Every gate carries a `tau` attribute; `qgmrn.model.set_tau` updates it once per step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def gumbel_sigmoid(logits: Tensor, tau: float = 1.0, hard: bool = True) -> Tensor:
    """Relaxed Bernoulli sample per element of `logits` (paper eq. 11).

    B~ = sigmoid((t + P~) / tau) with t ~ Logistic(0, 1) = log u - log(1 - u), u ~ U(0, 1)
    (footnote 3). Forward is exactly 0/1 when `hard` (threshold 0.5, eq. 9); the gradient is
    that of the soft sample (straight-through, Bengio et al. 2013).
    """
    u = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
    soft = torch.sigmoid((logits + u.log() - (-u).log1p()) / tau)  # logistic noise
    if not hard:
        return soft
    return (soft > 0.5).to(soft.dtype) - soft.detach() + soft


class Gate(nn.Module):
    """Base of the gate modules: maps logits (..., M) to gates (..., M); holds `tau`."""

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = float(tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class GumbelSigmoidGate(Gate):
    """Stochastic hard gate in training, deterministic threshold in evaluation (sec. 3.3, 4.2)."""

    def forward(self, logits: Tensor) -> Tensor:
        if self.training:
            return gumbel_sigmoid(logits, self.tau, hard=True)
        # sigmoid(P~) > 0.5  <=>  P~ > 0: no noise at test time, so evaluation is deterministic
        return (logits > 0).to(logits.dtype)


class StaticGate(Gate):
    """Every module always executes: the static twin of a routed model."""

    def forward(self, logits: Tensor) -> Tensor:
        return torch.ones_like(logits)


class SoftGate(Gate):
    """Continuous gate sigmoid(P~ / tau) in training and evaluation (ablation, ours)."""

    def forward(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits / self.tau)


GATES: dict[str, type[Gate]] = {
    "gumbel": GumbelSigmoidGate,
    "static": StaticGate,
    "soft": SoftGate,
}
