"""The architecture picture of notebook 02 is read from the built model, not typed in."""

import pytest
import torch

from qgmrn.analysis.architecture import describe_architecture, plot_architecture
from qgmrn.config import get_config
from qgmrn.model import build_model

IMAGE = (32, 48)  # the smoke profile's (H, W)


def _model(preset: str):
    torch.manual_seed(0)
    return build_model(get_config(preset, "smoke").model, 30, 12)


@pytest.mark.parametrize(("preset", "unit"), [("brn_c16", "branches"), ("frn", "filters")])
def test_stages_add_up_to_the_models_gates(preset, unit):
    model = _model(preset)
    arch = describe_architecture(model, IMAGE)
    assert arch.arch == get_config(preset, "smoke").model.arch
    assert [m for s in arch.stages for m in s.modules] == model.gate_sizes
    assert arch.layers == len(model.gate_sizes) and arch.gates == sum(model.gate_sizes)
    assert {s.unit for s in arch.stages} == {unit}
    assert arch.num_answers == 12 and arch.vocab_size == 30 and arch.router == "gumbel"
    with torch.no_grad():  # the last stage's map is y_L's
        y = model.backbone(torch.zeros(1, 3, *IMAGE), [torch.ones(1, m) for m in model.gate_sizes])
    assert arch.stages[-1].map_size == tuple(y.shape[-2:])
    assert arch.stages[-1].out_channels == y.shape[1]
    table = arch.stage_table()
    assert list(table["gates"]) == [s.gates for s in arch.stages]


def test_brn_stage_gates_are_blocks_times_cardinality():
    cfg = get_config("brn_c8", "smoke").model
    arch = describe_architecture(_model("brn_c8"))
    assert [s.gates for s in arch.stages] == [d * cfg.cardinality for d in cfg.brn_depths]
    assert arch.stages[0].map_size is None  # no image size: no forward pass


def test_describing_leaves_the_model_as_it_was():
    model = _model("brn_c16").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    describe_architecture(model, IMAGE)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too


def test_static_twin_and_attention_head_are_named():
    static = describe_architecture(_model("brn_c16_static"))
    assert static.router == "static" and static.tau is None
    attn = describe_architecture(_model("brn_c32_attn"))
    assert attn.head == "attention" and attn.head_uses_q
    noq = describe_architecture(_model("brn_c16_noq"))
    assert noq.head == "gmp" and not noq.head_uses_q


def test_a_baseline_is_not_described():
    with pytest.raises(ValueError, match="not a routed model"):
        describe_architecture(_model("cnn_lstm"))


@pytest.mark.parametrize("preset", ["brn_c16", "frn"])
def test_the_picture_draws_one_box_per_stage_with_its_gates(preset):
    arch = describe_architecture(_model(preset), IMAGE)
    fig = plot_architecture(arch, title="t")
    (ax,) = fig.axes
    gids = [p.get_gid() for p in ax.patches if p.get_gid()]
    stages = [g for g in gids if g.startswith("stage ")]
    assert stages == [f"stage {s.index}" for s in arch.stages]
    for key in ("question", "text", "router", "image", "stem", "head", "answer"):
        assert gids.count(key) == 1
    texts = [t.get_text() for t in ax.texts]
    for s in arch.stages:
        assert any(t.startswith(f"stage {s.index}\n") and f"= {s.gates} gates" in t for t in texts)
    assert any(f"-> {arch.gates} logits" in t for t in texts)  # the router's fc, read off
    assert ax.get_title() == "t"
