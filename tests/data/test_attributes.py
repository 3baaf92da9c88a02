"""Object-attribute targets of the auxiliary attribute loss (ours): the cell labels, the
stream's object maps, and `fit` with the loss on (qgmrn.data.attributes, qgmrn.engine.auxiliary)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from qgmrn.config import config_from_dict, config_to_dict, get_config
from qgmrn.data.attributes import ATTRIBUTE_CLASSES, cell_targets, object_attribute_rows
from qgmrn.data.stream import SceneStream, StreamSpec, stream_vocab
from qgmrn.engine import fit
from qgmrn.engine.checkpoint import read_checkpoint
from qgmrn.engine.losses import attribute_loss
from qgmrn.nn.attributes import AttributeHead
from qgmrn.synth.camera import Camera
from qgmrn.synth.render import object_ids

NONE = torch.tensor(ATTRIBUTE_CLASSES) - 1  # the "no object" class of each attribute


def test_object_attribute_rows_index_the_clevr_values():
    rows = object_attribute_rows(
        [
            {"color": "gray", "shape": "cube", "size": "large", "material": "rubber"},
            {"color": "yellow", "shape": "sphere", "size": "small", "material": "metal"},
        ]
    )
    assert rows.tolist() == [[0, 0, 0, 0], [7, 2, 1, 1]]
    with pytest.raises(ValueError, match="object 0: color 'pink'"):
        object_attribute_rows([{"color": "pink", "shape": "cube", "size": "large",
                                "material": "rubber"}])  # fmt: skip


def test_cell_targets_follow_the_object_that_covers_most_of_each_cell():
    ids = torch.full((1, 4, 4), -1, dtype=torch.int16)  # a 4x4 image, 2x2 cells of 2x2 pixels
    ids[0, :2, :2] = 0  # object 0 fills the top-left cell
    ids[0, :2, 2] = 1  # object 1 covers half of the top-right cell
    ids[0, 3, 0] = 1  # and a quarter of the bottom-left one
    attrs = torch.tensor([[[1, 2, 1, 0], [3, 0, 0, 1], [-1, -1, -1, -1]]])  # (1, N=3, 4), padded
    t = cell_targets(ids, attrs, (2, 2), min_cover=0.3)
    assert t.shape == (1, 4, 2, 2)
    assert t[0, :, 0, 0].tolist() == [1, 2, 1, 0]
    assert t[0, :, 0, 1].tolist() == [3, 0, 0, 1]
    assert t[0, :, 1, 0].tolist() == NONE.tolist()  # 25% < min_cover
    assert t[0, :, 1, 1].tolist() == NONE.tolist()  # ground only
    assert cell_targets(ids, attrs, (2, 2), min_cover=0.2)[0, :, 1, 0].tolist() == [3, 0, 0, 1]
    empty = cell_targets(torch.full_like(ids, -1), attrs[:, :0], (2, 2))  # no objects at all
    assert (empty == NONE.view(1, -1, 1, 1)).all()


def test_attribute_head_and_loss_shapes_and_gradient():
    torch.manual_seed(0)
    head = AttributeHead(6)
    y = torch.randn(2, 6, 3, 4, requires_grad=True)
    logits = head(y)
    assert [tuple(x.shape) for x in logits] == [(2, k, 3, 4) for k in ATTRIBUTE_CLASSES]
    targets = torch.zeros(2, 4, 3, 4, dtype=torch.long)
    targets[0, 0] = -1  # ignored cells
    loss = attribute_loss(logits, targets)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and y.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def spec(mini_clevr_dir) -> StreamSpec:
    return StreamSpec.from_data_dir(mini_clevr_dir)


def test_stream_object_maps_are_the_renderers_buffer_and_the_scenes_attributes(spec):
    on = SceneStream(spec, stream_vocab(), (32, 48), 8, object_maps=True)
    off = SceneStream(spec, stream_vocab(), (32, 48), 8)
    batch, plain = on[2][0], off[2][0]
    assert plain.object_ids is None and plain.object_attributes is None
    assert torch.equal(batch.images, plain.images) and torch.equal(batch.answers, plain.answers)
    assert batch.object_ids.shape == (8, 32, 48) and batch.object_ids.dtype == torch.int16
    pairs = on.scenes(2)
    camera = Camera.from_framing(spec.framing)
    w, h = spec.render_size
    buffers = [object_ids(scene, camera, w, h) for scene, _ in pairs]
    for i in range(8):  # each question's image: one of the chunk's scenes, with its buffer
        j = next(j for j, (_, rgb) in enumerate(pairs)
                 if np.array_equal(rgb, batch.images[i].permute(1, 2, 0).numpy()))  # fmt: skip
        assert np.array_equal(batch.object_ids[i].numpy(), buffers[j])
        rows = object_attribute_rows(pairs[j][0]["objects"])
        assert batch.object_attributes[i, : len(rows)].tolist() == rows.tolist()
        assert (batch.object_attributes[i, len(rows) :] == -1).all()
    half = SceneStream(spec, stream_vocab(), (16, 24), 8, object_maps=True)[2][0]
    assert half.object_ids.shape == (8, 16, 24)  # nearest render pixel: labels stay labels
    assert set(half.object_ids.unique().tolist()) <= set(batch.object_ids.unique().tolist())


def _attr_config(weight=1.0, reach="visual", **data):
    cfg = get_config("brn_c8", "smoke")
    data = {"train_source": "stream", **data}
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, stream_epoch_questions=24, num_workers=0, image_size=(32, 48), **data
        ),
        train=dataclasses.replace(
            cfg.train, epochs=2, checkpoint_every_steps=2, attribute_loss_weight=weight,
            attribute_loss_reach=reach,
        ),
    )  # fmt: skip


def test_fit_with_the_attribute_loss_logs_it_resumes_and_keeps_the_model_the_papers(
    mini_clevr_dir, tmp_path
):
    full = fit(_attr_config(), mini_clevr_dir, tmp_path / "full", progress=False)
    assert full["step"] == 6
    rows = [json.loads(r) for r in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert train_rows and all(r["attr_loss"] > 0 and 0 <= r["attr_acc"] <= 1 for r in train_rows)
    a = read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert set(a["extra"]["attribute_head"]) == {"conv.weight", "conv.bias"}
    plain = read_checkpoint(tmp_path / "full" / "best.pt")["model"]
    assert not any(k.startswith("conv.") for k in plain)  # the model's weights alone
    fit(_attr_config(), mini_clevr_dir, tmp_path / "cut", progress=False, max_steps=4)
    fit(_attr_config(), mini_clevr_dir, tmp_path / "cut", progress=False, resume=True)
    b = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key, value in a["extra"]["attribute_head"].items():
        assert torch.equal(value, b["extra"]["attribute_head"][key]), key
    with pytest.raises(ValueError, match="trained with the auxiliary attribute loss"):
        fit(_attr_config(0.0), mini_clevr_dir, tmp_path / "cut", progress=False, resume=True)


def test_the_attribute_loss_changes_the_visual_networks_training(mini_clevr_dir, tmp_path):
    on = fit(_attr_config(), mini_clevr_dir, tmp_path / "on", progress=False, max_steps=2)
    off = fit(_attr_config(0.0), mini_clevr_dir, tmp_path / "off", progress=False, max_steps=2)
    assert on["step"] == off["step"] == 2
    a = read_checkpoint(tmp_path / "on" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "off" / "checkpoint.pt")["model"]
    assert not torch.equal(a["backbone.conv1.weight"], b["backbone.conv1.weight"])
    with pytest.raises(ValueError, match="trained without the auxiliary attribute loss"):
        fit(_attr_config(), mini_clevr_dir, tmp_path / "off", progress=False, resume=True,
            max_steps=3)  # fmt: skip


def test_reach_visual_keeps_the_attribute_gradient_out_of_the_router(mini_clevr_dir, tmp_path):
    """One step from the same weights and noise: with reach "visual" the router and the question
    encoder take exactly the step of a run without the loss, the visual network another one;
    with reach "all" the router's step changes too."""
    steps = {}
    for name, weight, reach in [("off", 0.0, "visual"), ("visual", 1.0, "visual"),
                                ("all", 1.0, "all")]:  # fmt: skip
        fit(_attr_config(weight, reach), mini_clevr_dir, tmp_path / name, progress=False,
            max_steps=1)  # fmt: skip
        steps[name] = read_checkpoint(tmp_path / name / "checkpoint.pt")
    off, visual, every = (steps[n]["model"] for n in ("off", "visual", "all"))
    routing = [k for k in off if k.startswith(("router.", "text."))]
    assert routing and all(torch.equal(visual[k], off[k]) for k in routing)
    assert not all(torch.equal(every[k], off[k]) for k in routing)
    assert not torch.equal(visual["backbone.conv1.weight"], off["backbone.conv1.weight"])
    assert steps["visual"]["extra"]["attribute_loss_reach"] == "visual"
    with pytest.raises(ValueError, match="attribute_loss_reach='visual'"):
        fit(_attr_config(1.0, "all"), mini_clevr_dir, tmp_path / "visual", progress=False,
            resume=True, max_steps=2)  # fmt: skip


def test_configs_from_before_the_reach_mean_all():
    cfg = config_to_dict(_attr_config())
    del cfg["train"]["attribute_loss_reach"]
    assert config_from_dict(cfg).train.attribute_loss_reach == "all"
    plain = config_to_dict(get_config("brn_c8", "smoke"))
    del plain["train"]["attribute_loss_reach"]
    assert config_from_dict(plain).train.attribute_loss_reach == "visual"  # the loss is off


def test_the_attribute_loss_is_refused_where_it_has_no_labels_or_no_visual_network(
    mini_clevr_dir, tmp_path
):
    with pytest.raises(ValueError, match="train_source='stream'"):
        fit(_attr_config(train_source="fixed"), mini_clevr_dir, tmp_path / "a", progress=False)
    cfg = _attr_config()
    lstm = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch="lstm"))
    with pytest.raises(ValueError, match="needs a routed model"):
        fit(lstm, mini_clevr_dir, tmp_path / "b", progress=False)
