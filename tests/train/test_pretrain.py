"""Perception first (ours, the plateau study): the visual network pretrained on per-cell object
attributes (`qgmrn.engine.pretrain`), a VQA run started from it (`TrainConfig.visual_init`), and the
attribute-only steps at the start of a run (`TrainConfig.attribute_pretrain_steps`)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from qgmrn.config import get_config
from qgmrn.engine import fit
from qgmrn.engine.checkpoint import CheckpointError, read_checkpoint
from qgmrn.engine.pretrain import load_object_maps, pretrain_visual, read_visual


def _config(**train):
    cfg = get_config("brn_c8", "smoke")
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, train_source="stream", stream_epoch_questions=24, num_workers=0,
            image_size=(32, 48),
        ),
        train=dataclasses.replace(cfg.train, epochs=1, checkpoint_every_steps=2, **train),
    )  # fmt: skip


def test_object_maps_of_a_split_are_its_images_and_renderer_buffers(mini_clevr_dir):
    maps = load_object_maps(mini_clevr_dir, "val", (32, 48))
    n = len(maps["images"])
    assert maps["images"].shape == (n, 3, 32, 48) and maps["images"].dtype == torch.uint8
    assert maps["ids"].shape == (n, 32, 48)
    assert maps["ids"].min() == -1 and maps["ids"].max() >= 2  # ground and 3+ objects
    assert maps["attributes"].shape[2] == 4
    for i in range(n):  # every object seen has its attribute row, padding beyond
        seen = set(maps["ids"][i].unique().tolist()) - {-1}
        assert all((maps["attributes"][i, j] >= 0).all() for j in seen)


def test_pretraining_learns_the_attributes_and_writes_a_visual_file(mini_clevr_dir, tmp_path):
    cfg = _config(lr=3e-3, batch_size=8)
    rows = []
    last = pretrain_visual(cfg, mini_clevr_dir, tmp_path / "v", steps=30, eval_every=15,
                           log=rows.append)  # fmt: skip
    assert [r["step"] for r in rows] == [15, 30] and last == rows[-1]
    assert set(last["val"]) == {"color", "shape", "size", "material", "occupancy"}
    metrics = [json.loads(x) for x in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    assert metrics == rows
    first_loss = rows[0]["loss"]
    assert rows[-1]["loss"] < first_loss or rows[-1]["val"]["occupancy"] > 0.5
    state = read_visual(tmp_path / "v" / "visual.pt")
    assert state["steps"] == 30 and state["images"] == 240
    assert set(state["attribute_head"]) == {"conv.weight", "conv.bias"}


def test_a_run_starts_from_the_pretrained_visual_network(mini_clevr_dir, tmp_path):
    cfg = _config(batch_size=8)
    pretrain_visual(cfg, mini_clevr_dir, tmp_path / "v", steps=3, eval_every=3)
    visual = read_visual(tmp_path / "v" / "visual.pt")
    # zero steps is not a budget fit takes: one step at lr 0 keeps the weights as loaded
    start = dataclasses.replace(cfg.train, visual_init=str(tmp_path / "v" / "visual.pt"),
                                lr=0.0, warmup_steps=0)  # fmt: skip
    fit(dataclasses.replace(cfg, train=start), mini_clevr_dir, tmp_path / "r", progress=False,
        max_steps=1)  # fmt: skip
    model = read_checkpoint(tmp_path / "r" / "checkpoint.pt")["model"]
    weights = [k for k in visual["backbone"] if "running_" not in k and "num_batches" not in k]
    assert weights  # (a training step moves the norms' running statistics, not the weights)
    for key in weights:
        assert torch.equal(model[f"backbone.{key}"], visual["backbone"][key]), key
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, cardinality=4),
                                train=start)  # fmt: skip
    with pytest.raises(CheckpointError, match="does not fit this model's"):
        fit(other, mini_clevr_dir, tmp_path / "wrong", progress=False, max_steps=1)
    with pytest.raises(CheckpointError, match="no such visual checkpoint"):
        fit(dataclasses.replace(cfg, train=dataclasses.replace(start, visual_init="nope.pt")),
            mini_clevr_dir, tmp_path / "missing", progress=False, max_steps=1)  # fmt: skip


def test_the_visual_network_is_recorded_relative_to_the_project(mini_clevr_dir, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    """A committed run names no machine's folders: visual_init inside the project is recorded
    relative to its root, and found from there whatever the working directory."""
    import qgmrn.fileio

    cfg = _config(batch_size=8)
    pretrain_visual(cfg, mini_clevr_dir, tmp_path / "v", steps=1, eval_every=1)
    monkeypatch.setattr(qgmrn.fileio, "project_root", lambda: tmp_path)
    start = dataclasses.replace(cfg.train, visual_init=str(tmp_path / "v" / "visual.pt"))
    fit(dataclasses.replace(cfg, train=start), mini_clevr_dir, tmp_path / "r", progress=False,
        max_steps=1)  # fmt: skip
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["train"]["visual_init"]
    assert recorded == "v/visual.pt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded path resolves under the root, not the cwd
    again = dataclasses.replace(cfg, train=dataclasses.replace(start, visual_init=recorded))
    fit(again, mini_clevr_dir, tmp_path / "r2", progress=False, max_steps=1)
    assert (tmp_path / "r2" / "checkpoint.pt").exists()


def test_a_file_that_is_not_a_visual_checkpoint_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt: not a visual checkpoint"):
        read_visual(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable visual checkpoint"):
        read_visual(tmp_path / "junk.pt")


def test_attribute_only_steps_leave_the_router_and_classifier_waiting(mini_clevr_dir, tmp_path):
    """During `attribute_pretrain_steps` only the visual network and the attribute head learn:
    the question encoder, the router and the classifier keep their initial weights."""
    cfg = _config(attribute_loss_weight=1.0, attribute_pretrain_steps=2, batch_size=8)
    fit(cfg, mini_clevr_dir, tmp_path / "pre", progress=False, max_steps=2)
    fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.0, warmup_steps=0)),
        mini_clevr_dir, tmp_path / "init", progress=False, max_steps=1)  # fmt: skip
    pre = read_checkpoint(tmp_path / "pre" / "checkpoint.pt")["model"]
    init = read_checkpoint(tmp_path / "init" / "checkpoint.pt")["model"]
    waiting = [k for k in pre if k.startswith(("text.", "router.", "head."))]
    assert waiting and all(torch.equal(pre[k], init[k]) for k in waiting)
    assert not torch.equal(pre["backbone.conv1.weight"], init["backbone.conv1.weight"])
    fit(cfg, mini_clevr_dir, tmp_path / "pre", progress=False, max_steps=3, resume=True)
    after = read_checkpoint(tmp_path / "pre" / "checkpoint.pt")["model"]
    assert not all(torch.equal(after[k], init[k]) for k in waiting)  # step 3: VQA joins


def test_validation_rows_score_each_relational_depth(mini_clevr_dir, tmp_path):
    fit(_config(batch_size=8), mini_clevr_dir, tmp_path / "r", progress=False, max_steps=1)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r.get("kind") == "val"]
    assert val and all(set(r["by_depth"]) <= {"0", "1", "2", "3"} for r in val)
    assert "0" in val[-1]["by_depth"]
    ev = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert ev["by_depth"] == val[-1]["by_depth"]
    # the zero-hop questions by type, consistent with by_depth's "0"
    zero = val[-1]["by_type_depth0"]
    assert zero and set(zero) <= set(val[-1]["by_type"]) and ev["by_type_depth0"] == zero
    counts = ev["count_by_type"]
    assert all(0.0 <= a <= 1.0 for a in zero.values()) and set(zero) <= set(counts)


def test_the_commands_take_overrides_and_refuse_a_bad_one(mini_clevr_dir, tmp_path, capsys):
    from qgmrn.cli import main

    out = tmp_path / "v"
    args = ["pretrain-visual", "--preset", "brn_c8", "--profile", "smoke", "--steps", "2",
            "--data-dir", str(mini_clevr_dir), "--out", str(out), "--eval-every", "1"]  # fmt: skip
    assert main([*args, "--set", "data.image_size=32,48", "--set", "train.lr=1e-3"]) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["train"]["lr"] == 1e-3
    assert main([*args, "--set", "train.lr=fast"]) == 1
    assert "override 'train.lr=fast': 'fast' is not a number" in capsys.readouterr().err
    train = ["train", "--preset", "brn_c8", "--profile", "smoke", "--data-dir", str(mini_clevr_dir),
             "--out", str(tmp_path / "r"), "--set", "model.nope=1"]  # fmt: skip
    assert main(train) == 2
    assert "model has no field 'nope'" in capsys.readouterr().err
