"""The routed model taken apart, for notebook 02: shapes at every step, noisy training paths
beside the test-time path, the gradient a closed gate still gets, path distances by subtype.

Dimension letters: B batch, T question length, D question feature, L routed layers, M_l modules
(gates) of layer l, G = sum of M_l, C channels, h w the final feature map, A answers.

Each function runs the model's own submodules in the order of `qgmrn.model.QGMRN.forward`
(text encoder -> router -> routed backbone -> coordinate maps -> head), so what it shows is
what the model computes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from qgmrn.engine.losses import load_balance_loss, vqa_loss

# where each step lives, for the walkthrough's table
_FILES = {
    "text": "qgmrn/nn/text.py",
    "router": "qgmrn/nn/router.py + qgmrn/nn/gumbel.py",
    "backbone": "qgmrn/nn/routable.py + qgmrn/nn/blocks.py",
    "coords": "qgmrn/nn/coords.py",
    "head": "qgmrn/nn/heads.py",
}


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


@torch.no_grad()
def trace_shapes(
    model: nn.Module, images: Tensor, questions: Tensor, lengths: Tensor, *, layers: int = 2
) -> pd.DataFrame:
    """One forward pass of a routed model (`QGMRN`), step by step: a row per tensor with its
    shape, the paper's equation and the file that computes it. Routing logits P~ and gates are
    shown for the first `layers` routed layers and the last. The last row's logits equal
    ``model(images, questions, lengths).logits`` in eval mode (checked here)."""
    rows = [("question tokens", _shape(questions), "input", "qgmrn/data/dataset.py")]
    q = model.text(questions, lengths)  # (B, D)
    rows.append(("q: question feature", _shape(q), "eq. 1", _FILES["text"]))
    gates, gate_logits = model.router(q)  # L x (B, M_l)
    shown = sorted({*range(min(layers, len(gates))), len(gates) - 1})
    for layer in shown:
        rows.append(
            (f"P~ layer {layer + 1} of {len(gates)}", _shape(gate_logits[layer]), "eq. 3",
             _FILES["router"])
        )  # fmt: skip
        rows.append(
            (f"gates layer {layer + 1} (0/1)", _shape(gates[layer]), "sec. 3.3", _FILES["router"])
        )
    feats = model.backbone(images, gates)  # (B, C, h, w)
    rows.append(("y_L: routed backbone output", _shape(feats), "eq. 4", _FILES["backbone"]))
    y = model.coords(feats)  # (B, C + 2, h, w)
    rows.append(("y_L with coordinate maps", _shape(y), "sec. 4.2", _FILES["coords"]))
    logits = model.head(y, q)  # (B, A)
    rows.append(("logits", _shape(logits), "sec. 3.4", _FILES["head"]))
    if not model.training:
        full = model(images, questions, lengths).logits
        if not torch.allclose(full, logits, atol=1e-5):
            raise AssertionError("trace_shapes diverged from the model's forward")
    return pd.DataFrame(rows, columns=["step", "shape", "paper", "file"])


def load_balance_on_batch(
    model: nn.Module, images: Tensor, questions: Tensor, lengths: Tensor, answers: Tensor
) -> dict[str, float]:
    """The two terms of eq. 13 on one batch: the answer cross-entropy and L_load, with the
    mean execution ratio (the share of open gates) that L_load pulls towards balance."""
    with torch.no_grad():
        out = model(images, questions, lengths)
        gates = [g.float() for g in out.gates]
        return {
            "cross_entropy": float(vqa_loss(out.logits.float(), answers)),
            "load_balance": float(load_balance_loss(gates)) if gates else 0.0,
            "execution_ratio": float(torch.cat([g.reshape(-1) for g in gates]).mean()),
        }


def training_vs_test_paths(
    model: nn.Module, questions: Tensor, lengths: Tensor, *, samples: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The routing path of each question as training samples it (Gumbel noise: a different
    path per draw) and as the test-time path (noise-free: gate open iff P~ > 0).

    Returns (noisy (samples, B, G) uint8, test (B, G) uint8). The model's mode is restored."""
    was_training = model.training
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            q = model.text(questions, lengths)
            model.train()
            noisy = [torch.cat(model.router(q)[0], dim=1) for _ in range(samples)]
            model.eval()
            test = torch.cat(model.router(q)[0], dim=1)  # (B, G)
    finally:
        model.train(was_training)
    return torch.stack(noisy).to(torch.uint8).numpy(), test.to(torch.uint8).numpy()


def closed_gate_gradients(
    model: nn.Module,
    images: Tensor,
    questions: Tensor,
    lengths: Tensor,
    answers: Tensor,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Why a closed module is still computed in training: one training-mode forward and
    backward; for the gates that came out closed (0) and open (1), the share whose routing
    logit P~ received a non-zero gradient. With the straight-through estimator a closed gate's
    gradient is dL/dy . (module output) x dB~/dP~, so the module's output must exist (the
    gradient is zero only where that output, or the gradient reaching it, is zero): only
    inference, which needs no gradient, may skip it (`sparse=True`)."""
    was_training = model.training
    torch.manual_seed(seed)
    model.train()
    try:
        q = model.text(questions, lengths)
        gates, logits = model.router(q)
        for p in logits:
            p.retain_grad()
        out = model.head(model.coords(model.backbone(images, gates)), q)
        vqa_loss(out.float(), answers).backward()
        g = torch.cat([x.detach().reshape(-1) for x in gates])
        grad = torch.cat([p.grad.reshape(-1) for p in logits])
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    rows = []
    for state, mask in (("closed (0)", g == 0), ("open (1)", g == 1)):
        n = int(mask.sum())
        nonzero = int((grad[mask] != 0).sum())
        rows.append({"gates": state, "count": n, "with a non-zero gradient": nonzero})
    return pd.DataFrame(rows).set_index("gates")


def path_distances(
    paths: np.ndarray, subtypes: np.ndarray, *, max_pairs: int = 20000, seed: int = 0
) -> pd.DataFrame:
    """Mean Hamming distance (share of the G gates that differ) between the routing paths of
    question pairs of the same subtype and of different subtypes, over at most `max_pairs`
    random pairs of each kind. Index: within / across; columns: pairs, mean, std."""
    paths = np.asarray(paths)
    subtypes = np.asarray(subtypes)
    rng = np.random.default_rng(seed)
    n = len(paths)
    i = rng.integers(0, n, 4 * max_pairs)
    j = rng.integers(0, n, 4 * max_pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    same = subtypes[i] == subtypes[j]
    rows = {}
    for name, mask in (("within a subtype", same), ("across subtypes", ~same)):
        a, b = i[mask][:max_pairs], j[mask][:max_pairs]
        d = (paths[a] != paths[b]).mean(axis=1)
        rows[name] = {"pairs": len(d), "mean": float(d.mean()), "std": float(d.std())}
    return pd.DataFrame.from_dict(rows, orient="index")


def first_batch(
    dataset, size: int, indices: Sequence[int] | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(images (B, 3, H, W) normalized as in training, questions (B, T), lengths (B,), answers
    (B,)) of `size` items of a `qgmrn.data.ClevrQuestions` (the first ones, or `indices`)."""
    from qgmrn.data import normalize_images
    from qgmrn.data.dataset import collate

    idx = list(indices) if indices is not None else list(range(size))
    batch = collate([dataset[k] for k in idx])
    return normalize_images(batch.images), batch.questions, batch.lengths, batch.answers
