import numpy as np
import pandas as pd
import pytest
import torch

from qgmrn.analysis import inspection, presets
from qgmrn.clevr import load_questions
from qgmrn.data import Vocab


@pytest.fixture(scope="module")
def run(mini_clevr_dir):
    vocab = Vocab.build(load_questions(mini_clevr_dir / "questions" / "CLEVR_train_questions.json"))
    return inspection.untrained_model("brn_c16", "smoke", vocab, seed=0)


def test_answer_gives_one_row_per_question(run):
    image = np.random.default_rng(0).integers(0, 256, (3, 32, 48), dtype=np.uint8)
    questions = ["Is there a red cube?", "How many spheres are there?"]
    table, out = inspection.answer(run, image, questions)
    assert list(table["question"]) == questions
    assert set(table["answer"]) <= set(run.vocab.answers)
    assert out["gates"].shape == (2, sum(run.model.gate_sizes))
    assert ((table["gates open"] >= 0) & (table["gates open"] <= 1)).all()


def test_sparse_answers_and_saliency_are_the_dense_ones(mini_clevr_dir, monkeypatch):
    """The explorer's `sparse` switch: the trunk skips closed modules and the gradient reaches
    the image through the sliced convolutions, so answers, paths and maps stay the dense ones."""
    vocab = Vocab.build(load_questions(mini_clevr_dir / "questions" / "CLEVR_train_questions.json"))
    run = inspection.untrained_model("brn_c16", "smoke", vocab, seed=0)
    with torch.no_grad():  # an untrained router opens every module (p = 0.7): close about half
        run.model.router.fc.bias.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    image = np.random.default_rng(2).integers(0, 256, (3, 32, 48), dtype=np.uint8)
    questions = ["Is there a red cube?", "How many spheres are there?", "What size is it?"]
    from qgmrn.nn import sparse as sparse_mod
    from qgmrn.nn.blocks import RoutedBottleneck

    calls = []
    sliced = sparse_mod.SPARSE_FORWARD[RoutedBottleneck]
    monkeypatch.setitem(sparse_mod.SPARSE_FORWARD, RoutedBottleneck,
                        lambda *a: calls.append(1) or sliced(*a))  # fmt: skip
    dense_table, dense = inspection.answer(run, image, questions)
    assert calls == []
    sparse_table, sparse = inspection.answer(run, image, questions, sparse=True)
    assert len(calls) == len(questions) * len(run.model.gate_sizes)  # every block, sliced
    assert all(sparse_mod._sliceable(b.bn1) for b in run.model.modules()
               if isinstance(b, RoutedBottleneck))  # fmt: skip
    assert 0 < dense["gates"].mean() < 1  # some modules closed: the sparse path skips them
    assert list(sparse_table["answer"]) == list(dense_table["answer"])
    np.testing.assert_array_equal(sparse["gates"], dense["gates"])
    np.testing.assert_allclose(sparse["scores"], dense["scores"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sparse["maps"], dense["maps"], rtol=1e-4, atol=1e-5)


def test_block_switch_effects_one_row_per_module(run):
    image = np.random.default_rng(1).integers(0, 256, (3, 32, 48), dtype=np.uint8)
    effects = inspection.block_switch_effects(run, image, "Is there a red cube?", layer=0)
    assert len(effects) == run.model.gate_sizes[0]
    assert set(effects["gate"]) <= {0, 1}
    # a branch's share of the block's output: never negative, and some branch matters (a tiny
    # smoke branch can be all zero after its ReLU, so not every one)
    assert (effects["change"] >= 0).all() and (effects["change"] > 0).any()


def test_preset_tables():
    gates = presets.model_gate_table(["frn", "brn_c16"], "smoke")
    assert list(gates.index) == ["frn", "brn_c16"]
    assert (
        gates.loc["brn_c16", "gates (sum of M_l)"] == 16 * gates.loc["brn_c16", "routed layers L"]
    )
    table = presets.preset_table("smoke")
    assert table.loc["brn_c16_static", "gate"] == "static"
    assert pd.isna(table.loc["frn", "cardinality"])
