"""The named output every model in the package returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class VQAOutput(NamedTuple):
    """What a VQA model's forward returns.

    logits:      (B, A) answer scores (A = number of answers).
    gates:       one (B, M_l) tensor per routed layer l: the binary routing path P (paper eq. 3);
                 an empty list for unrouted models.
    gate_logits: one (B, M_l) tensor per routed layer: the real-valued routing path P~ (sec. 3.3).
    """

    logits: Tensor
    gates: list[Tensor]
    gate_logits: list[Tensor]
