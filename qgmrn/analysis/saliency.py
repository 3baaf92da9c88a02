"""Saliency maps: which pixels move the answer most, per question (paper Fig. 4, Simonyan et al.).

For one image and several questions, the map of a question is |d s_max / d x| maximised over
the colour channels, where s_max is the largest answer score (logit) and x the normalised input
image. The model is put in evaluation mode, so its routing path is deterministic.

Dimension letters: Q questions, T tokens, H x W pixels, A answers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn


def _as_float_image(image: np.ndarray | Tensor, normalize: Callable[[Tensor], Tensor] | None):
    # a row of the read-only image cache (a memory map) is copied: torch warns on, and must not
    # share, non-writable memory
    x = image if isinstance(image, Tensor) else torch.from_numpy(np.array(image))
    if x.ndim == 3 and x.shape[-1] == 3 and x.shape[0] != 3:
        x = x.permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    x = x.unsqueeze(0)  # (1, 3, H, W)
    if normalize is None:
        from qgmrn.data import normalize_images as normalize
    return normalize(x) if x.dtype == torch.uint8 else x.float()


def pad_questions(token_lists: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Token id lists -> (questions (Q, T) long padded with 0, lengths (Q,) long)."""
    lengths = torch.tensor([len(t) for t in token_lists], dtype=torch.long)
    questions = torch.zeros(len(token_lists), int(lengths.max()), dtype=torch.long)
    for i, t in enumerate(token_lists):
        questions[i, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
    return questions, lengths


def saliency_maps(
    model: nn.Module,
    image: np.ndarray | Tensor,
    token_lists: Sequence[Sequence[int]],
    *,
    normalize: Callable[[Tensor], Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Saliency of one image under each question.

    image:       uint8 (3, H, W) or (H, W, 3) (normalised with `normalize`, by default
                 `qgmrn.data.normalize_images`), or an already normalised float (3, H, W).
    token_lists: encoded questions (e.g. `Vocab.encode_question(text)`).
    Returns ``maps`` (Q, H, W) float in [0, 1] (each map divided by its maximum),
    ``predictions`` (Q,) int, ``scores`` (Q,) the max logits, and ``gates`` (Q, G) uint8 routing
    paths (G = 0 for unrouted models).
    """
    was_training = model.training
    model.eval()
    try:
        x0 = _as_float_image(image, normalize).to(device)
        questions, lengths = pad_questions(token_lists)
        maps, preds, scores, gates = [], [], [], []
        for i in range(len(token_lists)):
            x = x0.clone().requires_grad_(True)
            out = model(x, questions[i : i + 1].to(device), lengths[i : i + 1])
            score, pred = out.logits[0].max(dim=0)
            (grad,) = torch.autograd.grad(score, x)
            m = grad[0].abs().amax(dim=0)  # (H, W)
            maps.append((m / m.max().clamp_min(1e-12)).cpu().numpy())
            preds.append(int(pred))
            scores.append(float(score.detach()))
            g = [t[0].detach().cpu() for t in out.gates]
            gates.append(torch.cat(g).numpy().astype(np.uint8) if g else np.zeros(0, np.uint8))
    finally:
        model.train(was_training)
    return {
        "maps": np.stack(maps),
        "predictions": np.array(preds),
        "scores": np.array(scores),
        "gates": np.stack(gates),
    }


def plot_saliency_grid(
    image: np.ndarray,
    maps: np.ndarray,
    questions: Sequence[str],
    answers: Sequence[str] | None = None,
    *,
    ncols: int = 3,
    title: str = "",
) -> Figure:
    """The image, then each question's saliency map over a dimmed copy of it (as Fig. 4);
    `title` goes above the grid (e.g. which run it shows)."""
    suptitle = title
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    n = len(maps) + 1
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.5 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(img)
    axes.flat[0].set_title("image", fontsize=9)
    for i, (ax, m) in enumerate(zip(axes.flat[1:], maps, strict=False)):
        ax.imshow(img, alpha=0.35)
        ax.imshow(m, cmap="inferno", alpha=0.75, vmin=0, vmax=1)
        # wrapped here, not by matplotlib's wrap=True, which lets long questions run into the
        # neighbouring panel's title and the figure title
        title = "\n".join(textwrap.wrap(questions[i], width=44))
        if answers is not None:
            title += f"\n-> {answers[i]}"
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig
