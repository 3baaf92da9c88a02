"""Numbers and plots for the Gumbel-sigmoid walkthrough (paper sec. 3.3; notebook 02).

Three facts the walkthrough shows, each computed with the package's own `gumbel_sigmoid`:

1. A hard gate opens with probability sigmoid(P~), whatever tau: P(sigmoid((t + P~)/tau) > 0.5)
   = P(t > -P~) = sigmoid(P~) for logistic t. (`sample_frequency`)
2. tau only shapes the *soft* sample B~: small tau pushes it to 0/1, large tau towards 0.5.
   (`soft_samples`)
3. Straight-through: the forward value is the hard 0/1 gate, the gradient is the soft sample's,
   d B~ / d P~ = B~ (1 - B~) / tau, so the router learns although the threshold has no gradient.
   (`straight_through_gradients`)
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from qgmrn.nn.gumbel import gumbel_sigmoid


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def sample_frequency(
    probs: Sequence[float], taus: Sequence[float], *, samples: int = 20_000, seed: int = 0
) -> pd.DataFrame:
    """Empirical opening rate of hard gates with logit log(p / (1 - p)), per (p, tau).

    Columns: ``prob, tau, frequency``.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        rows = []
        for tau in taus:
            for p in probs:
                logits = torch.full((samples,), float(_logit(np.float64(p))))
                freq = gumbel_sigmoid(logits, tau=float(tau), hard=True).mean().item()
                rows.append({"prob": float(p), "tau": float(tau), "frequency": freq})
    finally:
        torch.random.set_rng_state(gen_state)
    return pd.DataFrame(rows)


def soft_samples(
    prob: float, taus: Sequence[float], *, samples: int = 20_000, seed: int = 0
) -> dict[float, np.ndarray]:
    """Soft samples B~ for one execution probability, per tau."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        logits = torch.full((samples,), float(_logit(np.float64(prob))))
        return {
            float(tau): gumbel_sigmoid(logits, tau=float(tau), hard=False).numpy() for tau in taus
        }
    finally:
        torch.random.set_rng_state(gen_state)


def straight_through_gradients(
    logits: Sequence[float], *, tau: float = 1.0, seed: int = 0
) -> pd.DataFrame:
    """One hard sample per logit, with d(gate)/d(logit) from autograd.

    Columns: ``logit, gate`` (the forward value, exactly 0 or 1), ``soft`` (B~), ``grad``
    (autograd through the straight-through estimator) and ``expected_grad`` = B~(1-B~)/tau.
    """
    gen_state = torch.random.get_rng_state()
    try:
        x = torch.tensor(list(logits), dtype=torch.float64, requires_grad=True)
        torch.manual_seed(seed)
        gate = gumbel_sigmoid(x, tau=tau, hard=True)
        gate.sum().backward()
        torch.manual_seed(seed)
        soft = gumbel_sigmoid(x.detach(), tau=tau, hard=False)  # same noise: same seed
    finally:
        torch.random.set_rng_state(gen_state)
    s = soft.numpy()
    return pd.DataFrame(
        {
            "logit": x.detach().numpy(),
            "gate": gate.detach().numpy(),
            "soft": s,
            "grad": x.grad.numpy(),
            "expected_grad": s * (1 - s) / tau,
        }
    )


def plot_frequency_vs_probability(freq: pd.DataFrame) -> Figure:
    """Opening frequency of hard gates against sigmoid(P~), one line per tau."""
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="frequency = probability")
    for i, (tau, d) in enumerate(freq.groupby("tau")):
        ax.plot(
            d["prob"],
            d["frequency"],
            marker="o",
            linestyle="",
            color=f"C{i}",
            alpha=0.8,
            markersize=4 + 2 * i,
            fillstyle="none",
            label=f"tau = {tau:g}",
        )
    ax.set_xlabel("sigmoid(P~): execution probability")
    ax.set_ylabel("fraction of hard samples = 1")
    ax.set_title("hard Gumbel-sigmoid gates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_soft_samples(samples: dict[float, np.ndarray], prob: float) -> Figure:
    """Histograms of the soft sample B~ per tau, at one execution probability."""
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    bins = np.linspace(0, 1, 41)
    for i, (tau, s) in enumerate(samples.items()):
        ax.hist(s, bins=bins, histtype="step", density=True, color=f"C{i}", label=f"tau = {tau:g}")
    ax.axvline(0.5, color="grey", linestyle=":", label="threshold 0.5")
    ax.set_xlabel("soft sample B~")
    ax.set_ylabel("density")
    ax.set_title(f"soft samples at execution probability {prob:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_straight_through(tau: float = 1.0) -> Figure:
    """Forward (hard step) and backward (soft sigmoid's slope) of a noiseless gate vs the logit."""
    z = np.linspace(-6, 6, 400)
    soft = 1 / (1 + np.exp(-z / tau))
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    ax.plot(z, (z > 0).astype(float), label="forward: hard gate [B~ > 0.5]")
    ax.plot(z, soft, label="soft sample B~ = sigmoid(P~ / tau) (t = 0)")
    ax.plot(z, soft * (1 - soft) / tau, label="backward: dB~/dP~ used by straight-through")
    ax.set_xlabel("P~ + t (logit plus logistic noise)")
    ax.set_title(f"straight-through estimator, tau = {tau:g}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
