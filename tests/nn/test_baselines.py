"""The Table 1 baselines: the shared interface, where gradients flow, and what each one reads."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qgmrn.config import get_config
from qgmrn.nn.baselines import (
    BASELINE_ARCHS,
    CNNLSTMStackedAttention,
    FiLM,
    LSTMEncoder,
    build_baseline,
)
from qgmrn.nn.output import VQAOutput

VOCAB, ANSWERS = 20, 28


def _model(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_baseline(get_config(arch, "smoke").model, VOCAB, ANSWERS)


def _batch(seed: int = 0, batch: int = 3):
    """Smoke-sized inputs: 32x32 images, questions of true lengths 6, 4, 5 padded with 0."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, 32, 32, generator=g)
    lengths = torch.tensor([6, 4, 5][:batch])
    questions = torch.randint(4, VOCAB, (batch, 6), generator=g)
    questions[torch.arange(6)[None, :] >= lengths[:, None]] = 0  # <NULL> padding
    return images, questions, lengths


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_forward_backward_shapes_and_no_gates(arch):
    """Every baseline returns VQAOutput(logits (B, A), [], []) and trains end to end."""
    model = _model(arch).train()
    images, questions, lengths = _batch()
    images.requires_grad_(True)
    out = model(images, questions, lengths)
    assert isinstance(out, VQAOutput)
    assert out.logits.shape == (3, ANSWERS)
    assert out.gates == [] and out.gate_logits == []
    out.logits.logsumexp(dim=1).sum().backward()
    embed_grad = model.encoder.embed.weight.grad
    assert embed_grad is not None and embed_grad.abs().sum() > 0  # the question is read
    if arch == "lstm":
        assert images.grad is None  # the image is never touched
    else:
        assert images.grad.abs().sum() > 0  # the image branch is on the gradient path
        assert model.cnn[0].weight.grad.abs().sum() > 0


def test_question_only_lstm_ignores_the_image():
    """LSTM (Johnson et al. 2017a) answers from the question alone."""
    model = _model("lstm").eval()
    images, questions, lengths = _batch()
    with torch.no_grad():
        a = model(images, questions, lengths).logits
        b = model(torch.rand_like(images), questions, lengths).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["cnn_lstm", "cnn_lstm_sa", "film"])
def test_image_models_read_the_image(arch):
    model = _model(arch).eval()
    images, questions, lengths = _batch()
    with torch.no_grad():
        a = model(images, questions, lengths).logits
        b = model(torch.rand_like(images), questions, lengths).logits
    assert not torch.allclose(a, b)


def test_lstm_encoder_ignores_padding():
    """q is the state at the true length: tokens after it (padding) change nothing."""
    torch.manual_seed(0)
    encoder = LSTMEncoder(VOCAB, embed_dim=8, hidden_dim=12).eval()
    _, questions, lengths = _batch()
    noisy = questions.clone()
    noisy[questions == 0] = 7  # overwrite the padding with a real word
    with torch.no_grad():
        torch.testing.assert_close(encoder(questions, lengths), encoder(noisy, lengths))


def test_film_parameters_depend_on_the_question():
    """FiLM's gamma and beta come from q: two questions modulate one image differently."""
    model = _model("film").eval()
    assert isinstance(model, FiLM)
    images, questions, lengths = _batch()
    _, other, other_lengths = _batch(seed=1)  # other words, same lengths
    same_image = images[:1].expand(3, -1, -1, -1)
    with torch.no_grad():
        gammas, betas = model.film_parameters(questions, lengths)
        gammas2, betas2 = model.film_parameters(other, other_lengths)
        assert gammas.shape == betas.shape == (3, model.num_blocks, model.channels)
        a = model(same_image, questions, lengths).logits
        b = model(same_image, other, other_lengths).logits
    for i in range(3):  # every row differs, not merely the batch as a whole
        assert not torch.allclose(gammas[i], gammas2[i]) and not torch.allclose(betas[i], betas2[i])
        assert not torch.allclose(a[i], b[i])


def test_stacked_attention_maps_are_distributions():
    """Each hop's attention (Yang et al. 2016) is a softmax over the feature map's positions."""
    model = _model("cnn_lstm_sa").eval()
    assert isinstance(model, CNNLSTMStackedAttention)
    with torch.no_grad():
        _, maps = model.attend(*_batch())
    assert len(maps) == 2  # two hops, as in Johnson et al. (2017a)
    for p in maps:
        assert p.shape == (3, 2, 2)  # 32x32 pixels at total stride 16
        torch.testing.assert_close(p.sum(dim=(1, 2)), torch.ones(3))


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_seeded_and_deterministic_in_eval(arch):
    """The same seed builds the same weights; eval-mode forwards repeat exactly."""
    batch = _batch()
    a, b = _model(arch, seed=1).eval(), _model(arch, seed=1).eval()
    with torch.no_grad():
        la = a(*batch).logits
        torch.testing.assert_close(la, a(*batch).logits, rtol=0, atol=0)
        torch.testing.assert_close(la, b(*batch).logits, rtol=0, atol=0)


def test_build_baseline_rejects_unknown_arch():
    cfg = dataclasses.replace(get_config("lstm", "smoke").model, arch="gru_only")
    with pytest.raises(ValueError, match="'gru_only'.*lstm, cnn_lstm, cnn_lstm_sa, film"):
        build_baseline(cfg, VOCAB, ANSWERS)
