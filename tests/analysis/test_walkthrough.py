import numpy as np
import pytest
import torch

from qgmrn.analysis import walkthrough
from qgmrn.config import get_config
from qgmrn.model import build_model

VOCAB, ANSWERS, B, T = 30, 12, 6, 9


def _model(preset="brn_c16"):
    torch.manual_seed(0)
    return build_model(get_config(preset, "smoke").model, VOCAB, ANSWERS)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 3, 32, 48, generator=g)
    questions = torch.randint(1, VOCAB, (B, T), generator=g)
    lengths = torch.full((B,), T)
    answers = torch.randint(0, ANSWERS, (B,), generator=g)
    return images, questions, lengths, answers


@pytest.mark.parametrize("preset", ["brn_c16", "frn"])
def test_trace_shapes_follows_the_forward(preset):
    model = _model(preset).eval()
    images, questions, lengths, _ = _batch()
    table = walkthrough.trace_shapes(model, images, questions, lengths)
    steps = list(table["step"])
    assert steps[0] == "question tokens" and steps[-1] == "logits"
    assert table.set_index("step").loc["logits", "shape"] == f"({B}, {ANSWERS})"
    n_layers = len(model.gate_sizes)
    assert f"P~ layer {n_layers} of {n_layers}" in steps  # the last layer is always shown
    last = table.set_index("step").loc[f"gates layer {n_layers} (0/1)", "shape"]
    assert last == f"({B}, {model.gate_sizes[-1]})"


def test_load_balance_on_batch_is_eq13s_terms():
    model = _model().eval()
    r = walkthrough.load_balance_on_batch(model, *_batch())
    assert r["cross_entropy"] > 0 and r["load_balance"] >= 0
    assert 0.0 <= r["execution_ratio"] <= 1.0


def test_training_paths_vary_and_the_test_path_is_fixed():
    model = _model().eval()
    _, questions, lengths, _ = _batch()
    noisy, test = walkthrough.training_vs_test_paths(model, questions, lengths, samples=6)
    assert noisy.shape == (6, B, sum(model.gate_sizes)) and test.shape == (B, sum(model.gate_sizes))
    assert set(np.unique(noisy)) <= {0, 1} and set(np.unique(test)) <= {0, 1}
    assert (noisy != noisy[0]).any()  # Gumbel noise: draws differ
    _, test2 = walkthrough.training_vs_test_paths(model, questions, lengths, samples=1, seed=5)
    assert np.array_equal(test, test2)  # no noise at test time
    assert not model.training  # mode restored


def test_closed_gates_get_gradients_in_training():
    model = _model()
    table = walkthrough.closed_gate_gradients(model, *_batch())
    closed = table.loc["closed (0)"]
    assert closed["count"] > 0
    # zero only where the module's output, or the gradient reaching it, is zero (tiny smoke
    # branches after a ReLU can be all zero); most closed gates learn
    assert closed["with a non-zero gradient"] >= 0.75 * closed["count"]
    assert all(p.grad is None for p in model.parameters())  # left clean


def test_path_distances_within_below_across_for_clustered_paths():
    rng = np.random.default_rng(0)
    subtypes = np.repeat(np.arange(4), 50)
    codes = rng.integers(0, 2, (4, 32))
    paths = codes[subtypes].copy()
    flip = rng.random(paths.shape) < 0.1
    paths[flip] = 1 - paths[flip]
    d = walkthrough.path_distances(paths, subtypes, max_pairs=2000)
    assert d.loc["within a subtype", "mean"] < d.loc["across subtypes", "mean"]
    assert d.loc["within a subtype", "mean"] == pytest.approx(0.18, abs=0.03)  # 2 x 0.1 x 0.9
