"""qgmrn.recipes: the paper's recipe untouched, the plateau study's departures applied exactly."""

from __future__ import annotations

import pytest

from qgmrn.config import get_config
from qgmrn.fileio import project_root
from qgmrn.recipes import PLATEAU_LR, apply_recipe, plateau_recipe, pretrained_visual


def test_the_paper_recipe_is_the_preset_as_it_is():
    cfg = get_config("brn_c16", "demo")
    assert apply_recipe(cfg, "paper", "brn_c16") == cfg


def test_the_plateau_recipe_changes_the_lr_the_attribute_loss_and_the_source_only():
    cfg = get_config("brn_c16", "smoke")
    out = plateau_recipe(cfg, "v.pt")
    assert out.model == cfg.model
    assert (out.train.lr, out.train.attribute_loss_weight) == (PLATEAU_LR, 1.0)
    assert out.train.attribute_loss_reach == "visual" and out.train.visual_init == "v.pt"
    assert out.data.train_source == "stream"
    assert out.train.warmup_steps == cfg.train.warmup_steps  # the schedule's shape is kept
    assert plateau_recipe(cfg, None).train.visual_init is None


def test_the_plateau_recipe_is_for_the_routed_models():
    with pytest.raises(ValueError, match="routed models"):
        plateau_recipe(get_config("film", "demo"), None)
    with pytest.raises(ValueError, match="unknown recipe"):
        apply_recipe(get_config("brn_c16", "demo"), "fast", "brn_c16")


def test_the_pretrained_visual_network_is_the_committed_one_for_brn_c16_demo_only(tmp_path):
    found = pretrained_visual("brn_c16", "demo", project_root())
    assert found is not None and found.name == "visual.pt"
    assert pretrained_visual("brn_c16", "smoke", project_root()) is None
    assert pretrained_visual("brn_c32", "demo", project_root()) is None
    assert pretrained_visual("brn_c16", "demo", tmp_path) is None  # not there: from scratch
    cfg = apply_recipe(get_config("brn_c16", "demo"), "plateau", "brn_c16", project_root())
    assert cfg.train.visual_init == str(found)
