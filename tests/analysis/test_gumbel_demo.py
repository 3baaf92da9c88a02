import matplotlib
import numpy as np
import pytest

from qgmrn.analysis import gumbel_demo

matplotlib.use("Agg")


def test_hard_gate_frequency_is_the_probability_for_every_tau():
    """P(sigmoid((t + P~)/tau) > 0.5) = sigmoid(P~): tau does not change the opening rate."""
    df = gumbel_demo.sample_frequency([0.1, 0.7], [0.5, 2.0], samples=20_000, seed=0)
    assert df["frequency"].to_numpy() == pytest.approx(df["prob"].to_numpy(), abs=0.015)


def test_small_tau_makes_soft_samples_nearly_binary():
    s = gumbel_demo.soft_samples(0.7, [0.1, 5.0], samples=5000, seed=0)
    near_binary = {tau: np.mean((x < 0.05) | (x > 0.95)) for tau, x in s.items()}
    assert near_binary[0.1] > 0.8 > 0.2 > near_binary[5.0]


def test_straight_through_gradient_is_the_soft_samples():
    df = gumbel_demo.straight_through_gradients([-2.0, 0.0, 3.0], tau=0.5, seed=1)
    assert set(df["gate"]) <= {0.0, 1.0}
    np.testing.assert_allclose(df["grad"], df["expected_grad"], rtol=1e-6)
    assert (df["gate"] == (df["soft"] > 0.5)).all()


def test_plots_draw_what_they_say():
    freq = gumbel_demo.sample_frequency([0.3, 0.5], [1.0], samples=100)
    (ax,) = gumbel_demo.plot_frequency_vs_probability(freq).axes
    assert "hard Gumbel-sigmoid" in ax.get_title() and len(ax.lines) >= 2  # diagonal + taus
    soft = gumbel_demo.soft_samples(0.7, [0.5, 1.0], samples=100)
    (ax,) = gumbel_demo.plot_soft_samples(soft, 0.7).axes
    assert len(ax.patches) == 2  # one step histogram per tau
    (ax,) = gumbel_demo.plot_straight_through(1.0).axes
    forward = ax.lines[0].get_ydata()
    assert set(np.unique(forward)) <= {0.0, 1.0} and forward[0] == 0.0 and forward[-1] == 1.0
