"""Training losses (paper sec. 3.5, eq. 13): L = L_vqa + lambda * L_load, and (ours, off by
default) + mu * L_attr, the auxiliary attribute loss of `qgmrn.data.attributes`.

Dimensions: B batch, A answers, M_l modules of routed layer l, K_a classes of attribute a,
h w the size of the supervised feature map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def vqa_loss(logits: Tensor, answers: Tensor) -> Tensor:
    """Cross-entropy over the answers; answers -1 (unknown) are ignored. (B, A), (B,) -> ()."""
    return F.cross_entropy(logits, answers, ignore_index=-1)


def cv_squared(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Squared coefficient of variation var(x) / mean(x)^2 over the last dimension.

    Population variance (divide by M), as Shazeer et al. 2017's `cv_squared`; `eps` keeps a
    layer whose modules are never executed (mean 0) finite: its loss is then 0.
    """
    x = x.float()
    return x.var(dim=-1, unbiased=False) / (x.mean(dim=-1) ** 2 + eps)


def load_balance_loss(gates: Sequence[Tensor]) -> Tensor:
    """L_load = sum_l CV(A_l)^2, A_l,m = sum over the batch of P_l,m (sec. 3.5).

    `gates` is one (B, M_l) tensor per routed layer; an empty list (unrouted model) gives 0.
    Equal loads give exactly 0. Gradients flow through straight-through gates to the router.
    """
    if len(gates) == 0:
        return torch.zeros(())
    return torch.stack([cv_squared(g.sum(dim=0)) for g in gates]).sum()  # sum over layers


def attribute_loss(logits: Sequence[Tensor], targets: Tensor) -> Tensor:
    """The auxiliary attribute loss (ours, `qgmrn.data.attributes`): the mean over attributes
    of the per-cell cross-entropy. logits: one (B, K_a, h, w) map per attribute; targets
    (B, 4, h, w) long (-1 ignored) -> ()."""
    return torch.stack(
        [F.cross_entropy(x.float(), targets[:, a], ignore_index=-1) for a, x in enumerate(logits)]
    ).mean()
