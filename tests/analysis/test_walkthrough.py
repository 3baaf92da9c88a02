import numpy as np
import pytest
import torch

from qgmrn.analysis import walkthrough
from qgmrn.clevr import QUESTION_TYPES
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
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = walkthrough.closed_gate_gradients(model, *_batch())
    after = model.state_dict()  # BatchNorm statistics too: later cells see the loaded model
    assert all(torch.equal(before[k], after[k]) for k in before)
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


class _Vocab:
    """What `untrained_like` reads of a `qgmrn.data.Vocab`."""

    num_answers = ANSWERS

    def __len__(self) -> int:
        return VOCAB


def _varied(preset="brn_c16"):
    """An untrained model whose test-time paths differ by question: P~ = W q with W of std 1
    and no bias (the default init opens every gate at test time)."""
    return walkthrough.untrained_like(
        get_config(preset, "smoke").model, _Vocab(), init_exec_prob=0.5, router_init_std=1.0
    )


def test_untrained_like_is_seeded_and_leaves_the_global_rng_alone():
    cfg = get_config("brn_c16", "smoke").model
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = walkthrough.untrained_like(cfg, _Vocab(), seed=1)
    b = walkthrough.untrained_like(cfg, _Vocab(), seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not a.training
    c = walkthrough.untrained_like(cfg, _Vocab(), init_exec_prob=0.3)
    assert c.router.fc.bias[0].item() == pytest.approx(np.log(0.3 / 0.7))


def test_the_initial_router_opens_70_percent_in_training_and_all_at_test():
    """bias log(0.7/0.3), weights of std 1e-3: P~ ~ 0.847 for every question (sec. 4.2), so
    training draws open 70% of the gates (eq. 9) and the test-time rule P~ > 0 opens them all."""
    model = walkthrough.untrained_like(get_config("brn_c16", "smoke").model, _Vocab())
    _, questions, lengths, _ = _batch()
    s = walkthrough.router_summary(model, questions, lengths, samples=2000, seed=0)
    assert s["bias b, mean over gates"] == pytest.approx(np.log(0.7 / 0.3), abs=1e-6)
    assert s["|W q|, largest"] < 0.05
    assert s["training: sigmoid(P~), mean (eq. 9)"] == pytest.approx(0.7, abs=0.01)
    assert s["training: open in 2,000 Gumbel draws"] == pytest.approx(0.7, abs=0.01)
    assert s["test: execution ratio, share of P~ > 0"] == 1.0
    closed = walkthrough.untrained_like(
        get_config("brn_c16", "smoke").model, _Vocab(), init_exec_prob=0.3
    )
    s = walkthrough.router_summary(closed, questions, lengths, samples=2000)
    assert s["training: open in 2,000 Gumbel draws"] == pytest.approx(0.3, abs=0.01)
    assert s["test: execution ratio, share of P~ > 0"] == 0.0


def test_router_view_and_layer_rates_follow_the_test_time_rule():
    model = _varied()
    _, questions, lengths, _ = _batch()
    view = walkthrough.router_view({"m": model}, questions, lengths, layer=1)
    assert len(view) == model.gate_sizes[1]
    assert (view[("m", "test gate")] == (view[("m", "P~")] > 0)).all()
    p = walkthrough.routing_logits(model, questions[:1], lengths[:1])[0]
    start = model.gate_sizes[0]
    np.testing.assert_allclose(view[("m", "P~")], p[start : start + model.gate_sizes[1]], rtol=1e-6)
    rates = walkthrough.layer_open_rates({"m": model}, questions, lengths)
    assert list(rates.index) == list(range(1, len(model.gate_sizes) + 1))
    assert list(rates[("layer", "stage")]) == [s + 1 for s in model.stage_of_layer]
    with torch.no_grad():
        gates = model(torch.zeros(B, 3, 32, 48), questions, lengths).gates
    expected = [g.float().mean().item() for g in gates]
    np.testing.assert_allclose(rates[("m", "test: execution ratio")], expected, rtol=1e-6)


def test_plot_router_logits_draws_each_model_and_the_threshold():
    _, questions, lengths, _ = _batch()
    fig = walkthrough.plot_router_logits({"a": _varied(), "b": _model()}, questions, lengths)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.lines]
    assert labels[:2] == ["a", "b"] and any("threshold" in s for s in labels)
    assert len(ax.lines[0].get_ydata()) == sum(_model().gate_sizes)


def test_static_twin_has_no_router_to_open():
    with pytest.raises(ValueError, match="no learned router"):
        walkthrough.router_summary(_model("brn_c16_static"), *_batch()[1:3])


@pytest.mark.parametrize("preset", ["brn_c16", "frn"])
def test_sparse_timing_gives_both_times_and_the_same_answers(preset):
    model = _varied(preset)
    images, questions, lengths, _ = _batch()
    threads = torch.get_num_threads()
    r = walkthrough.time_sparse_inference(model, images, questions, lengths, repeats=2)
    assert r["dense_s"] > 0 and r["sparse_s"] > 0 and r["speedup"] > 0
    assert r["threads"] == 1 and torch.get_num_threads() == threads  # restored
    assert r["same_answers"] == 1.0 and r["max_logit_diff"] < 1e-4
    assert 0 < r["execution_ratio"] < 1 and r["batch_size"] == B == r["questions"]
    assert r["computed_share"] >= r["execution_ratio"]  # the union over the batch
    one = walkthrough.time_sparse_inference(
        model, images, questions, lengths, batch_size=1, repeats=1
    )
    assert one["computed_share"] == pytest.approx(one["execution_ratio"])  # its own path only
    assert not model.training


def test_tau_changes_the_soft_sample_not_the_open_rate():
    model = _varied()
    _, questions, lengths, _ = _batch()
    cold = walkthrough.open_rate_at_tau(model, questions, lengths, 0.1, samples=500)
    hot = walkthrough.open_rate_at_tau(model, questions, lengths, 5.0, samples=500)
    for r in (cold, hot):
        assert r["training: hard gates open"] == pytest.approx(
            r["predicted: sigmoid(P~), mean"], abs=0.01
        )
    assert cold["test: gates open (P~ > 0)"] == hot["test: gates open (P~ > 0)"]
    near = "training: soft B~ within 0.1 of 0 or 1"
    assert cold[near] > 0.8 > 0.2 > hot[near]
    assert model.router.gate.tau == 1.0  # the model's own temperature is untouched


class _Questions:
    """What `accuracy_with_closed_stage` reads of a `qgmrn.data.ClevrQuestions`."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 3, 32, 48), generator=g, dtype=torch.uint8)
        self.tokens = torch.randint(1, VOCAB, (n, T), generator=g)
        self.answers = torch.randint(0, ANSWERS, (n,), generator=g)
        self.subtypes = np.arange(n) % 13  # every subtype, so every type

    def __len__(self) -> int:
        return len(self.answers)

    def __getitem__(self, k: int):
        return (self.images[k], self.tokens[k], T, int(self.answers[k]), int(self.subtypes[k]), k)


def test_closing_a_stage_of_closed_gates_changes_nothing():
    ds = _Questions(26)
    shut = walkthrough.untrained_like(  # every P~ < 0: every gate already closed at test time
        get_config("brn_c16", "smoke").model, _Vocab(), init_exec_prob=0.01
    )
    table = walkthrough.accuracy_with_closed_stage(shut, ds, 2, questions=20, batch_size=8)
    assert list(table.index) == [*QUESTION_TYPES, "all"]  # every type present, in order
    assert table.loc["all", "questions"] == 20
    assert (table["change (points)"] == 0).all()
    assert (table["accuracy, as routed"] == table["accuracy, stage 2 closed"]).all()


def test_closing_a_stage_is_the_forward_with_its_gates_zeroed():
    model = _model().eval()
    images, questions, lengths, _ = _batch()
    with torch.no_grad():
        same = walkthrough._forward_with_gates(model, images, questions, lengths, lambda g: g)
        np.testing.assert_allclose(same, model(images, questions, lengths).logits, atol=1e-6)
        in_stage = [s == 2 for s in model.stage_of_layer]
        zeroed = walkthrough._forward_with_gates(
            model,
            images,
            questions,
            lengths,
            lambda gs: [torch.zeros_like(g) if c else g for g, c in zip(gs, in_stage, strict=True)],
        )
    assert not torch.allclose(zeroed, same)
    with pytest.raises(ValueError, match="stage 5 does not exist"):
        walkthrough.accuracy_with_closed_stage(model, _Questions(4), 5)
