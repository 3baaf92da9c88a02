"""Atomic save, safe load, RNG state round trip and refusal of foreign checkpoints."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from qgmrn.config import config_to_json, get_config
from qgmrn.engine import checkpoint as ckpt


def _vocab_json(words=("a", "b")) -> str:
    tokens = ["<NULL>", "<START>", "<END>", "<UNK>", *words]
    return json.dumps(
        {"question_token_to_idx": {t: i for i, t in enumerate(tokens)}, "answers": ["yes", "no"]}
    )


def _save(path, cfg=None, vocab_json=None, step=3):
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    ckpt.save_checkpoint(
        path,
        model=model,
        optimizer=opt,
        step=step,
        epoch=1,
        batch_in_epoch=2,
        config_json=config_to_json(cfg or get_config("brn_c8", "smoke")),
        vocab_json=vocab_json or _vocab_json(),
    )
    return model


def test_round_trip_and_no_temp_files_left(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    model = _save(path)
    c = ckpt.load_checkpoint(
        path, config_json=config_to_json(get_config("brn_c8", "smoke")), vocab_json=_vocab_json()
    )
    assert (c["step"], c["epoch"], c["batch_in_epoch"]) == (3, 1, 2)
    assert torch.equal(c["model"]["weight"], model.weight)
    assert c["optimizer"]["state"][0]["exp_avg"].shape == (2, 3)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]


def test_rng_state_round_trip():
    """Restoring the saved state replays torch's, numpy's and Python's draws exactly."""
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    state = ckpt.get_rng_state()
    first = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    ckpt.set_rng_state(state)
    again = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_changed_training_settings_are_allowed(tmp_path):
    """Resuming with a longer budget or another lr is fine: only model/preprocessing count."""
    cfg = get_config("brn_c8", "smoke")
    _save(tmp_path / "c.pt", cfg)
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=50, lr=1.0))
    ckpt.load_checkpoint(tmp_path / "c.pt", config_json=config_to_json(longer))


def test_mismatched_config_is_refused_naming_file_and_fields(tmp_path):
    cfg = get_config("brn_c8", "smoke")
    _save(tmp_path / "c.pt", cfg)
    other = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, cardinality=16),
        data=dataclasses.replace(cfg.data, image_size=(64, 64)),
    )
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_checkpoint(tmp_path / "c.pt", config_json=config_to_json(other))
    msg = str(e.value)
    assert "c.pt" in msg and "model.cardinality" in msg and "data.image_size" in msg
    assert "8" in msg and "16" in msg


def test_mismatched_vocab_is_refused(tmp_path):
    _save(tmp_path / "c.pt", vocab_json=_vocab_json(("a", "b")))
    with pytest.raises(ckpt.CheckpointError, match=r"c\.pt.*vocabulary") as e:
        ckpt.load_checkpoint(tmp_path / "c.pt", vocab_json=_vocab_json(("a", "zebra")))
    assert "zebra" in str(e.value)


def test_garbage_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint at all" * 10)
    with pytest.raises(ckpt.CheckpointError, match="garbage.pt.*not a readable"):
        ckpt.read_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")  # a torch file, not ours
    with pytest.raises(ckpt.CheckpointError, match="plain.pt.*not a qgmrn checkpoint"):
        ckpt.read_checkpoint(tmp_path / "plain.pt")
    torch.save({"obj": Exception("code")}, tmp_path / "pickle.pt")  # refused by weights_only
    with pytest.raises(ckpt.CheckpointError, match="pickle.pt"):
        ckpt.read_checkpoint(tmp_path / "pickle.pt")
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint"):
        ckpt.read_checkpoint(tmp_path / "missing.pt")
    _save(tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])  # a write killed half-way
    with pytest.raises(ckpt.CheckpointError, match="cut.pt"):
        ckpt.read_checkpoint(tmp_path / "cut.pt")
