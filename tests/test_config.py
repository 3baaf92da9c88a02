"""Presets and profiles: every preset at every profile is a valid ModelConfig."""

import json
from pathlib import Path

import pytest

from qgmrn.config import (
    PRESETS,
    PROFILES,
    ConfigFileError,
    config_from_dict,
    config_to_dict,
    get_config,
    read_config,
    upgrade_config_dict,
)
from qgmrn.engine.checkpoint import config_differences
from qgmrn.engine.evaluate import load_run

TABLE_ROWS = [
    "brn_c8",
    "brn_c16",
    "brn_c32",
    "brn_c32_attn",
    "frn",
    "frn_attn",
    "lstm",
    "cnn_lstm",
    "cnn_lstm_sa",
    "film",
]
ABLATIONS = [
    "brn_c16_noq",
    "brn_c8_bn",
    "brn_c16_bn",
    "brn_c32_bn",
    "brn_c32_deeper",
    "brn_c32_wider",
    "brn_c16_static",
    "brn_c32_static",
    "frn_static",
]


def test_all_named_presets_exist():
    assert set(TABLE_ROWS + ABLATIONS) <= set(PRESETS)


@pytest.mark.parametrize("profile", PROFILES)
def test_round_trip(profile):
    for name in PRESETS:
        cfg = get_config(name, profile)
        assert config_from_dict(config_to_dict(cfg)) == cfg


def test_paper_profile_has_the_papers_sizes():
    m = get_config("brn_c16", "paper").model
    assert (m.embed_dim, m.hidden_dim, m.init_exec_prob, m.tau) == (200, 512, 0.7, 1.0)
    assert m.brn_depths == (2, 2, 2, 2) and m.brn_widths == (64, 128, 256, 256)
    assert m.third_norm == "gn" and m.head_uses_q
    f = get_config("frn", "paper").model
    assert f.frn_depths == (3, 4, 6, 3) and f.frn_widths == (64, 128, 256, 512)
    assert f.stem_width == 64 and f.stem_pool


def test_ablations_change_one_thing():
    base = get_config("brn_c32", "paper").model
    assert get_config("brn_c32_deeper", "paper").model.brn_depths == (2, 4, 6, 3)
    assert get_config("brn_c32_wider", "paper").model.brn_widths == (64, 128, 256, 512)
    assert get_config("brn_c32_bn", "paper").model.third_norm == "bn"
    assert get_config("brn_c16_noq", "paper").model.head_uses_q is False
    assert get_config("brn_c32_static", "paper").model.gate == "static"
    assert get_config("brn_c32_attn", "paper").model.head == "attention"
    assert base.cardinality == 32


def test_wider_scales_with_the_profile():
    for profile in PROFILES:
        base = get_config("brn_c32", profile).model.brn_widths
        wider = get_config("brn_c32_wider", profile).model.brn_widths
        assert wider == (*base[:-1], 2 * base[-1])


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("nope", "demo")
    with pytest.raises(ValueError, match="unknown profile"):
        get_config("brn_c8", "huge")


def test_table2_single_change_ablations_keep_batchnorm():
    """Table 2's w/o q, deeper and wider rows differ from a BatchNorm row in one thing only."""
    for preset, base in [
        ("brn_c16_noq", "brn_c16_bn"),
        ("brn_c32_deeper", "brn_c32_bn"),
        ("brn_c32_wider", "brn_c32_bn"),
    ]:
        a, b = get_config(preset, "paper").model, get_config(base, "paper").model
        assert a.third_norm == "bn"
        diff = [f for f in a.__dataclass_fields__ if getattr(a, f) != getattr(b, f)]
        assert len(diff) == 1, (preset, diff)


def test_cnn_widths_equal_what_the_baselines_used_before_they_had_a_field():
    """Before `cnn_widths`, the baselines sized their CNN as (stem_width, *stage_widths)[:4]: the
    profiles' values must be those, so no committed baseline changes size."""
    for profile in PROFILES:
        m = get_config("cnn_lstm", profile).model
        assert m.cnn_widths == (m.stem_width, *m.brn_widths)[:4]


def test_a_config_written_with_the_old_field_names_is_upgraded():
    new = json.loads(json.dumps(config_to_dict(get_config("brn_c32_deeper", "demo"))))  # as on disk
    old = {**new, "model": dict(new["model"])}
    old["model"]["stage_depths"] = old["model"].pop("brn_depths")
    old["model"]["stage_widths"] = old["model"].pop("brn_widths")
    del old["model"]["cnn_widths"]
    assert upgrade_config_dict(old) == new
    assert config_from_dict(old) == get_config("brn_c32_deeper", "demo")
    assert upgrade_config_dict(new) is new  # a current dict is returned as it is
    assert config_differences(old, new) == []


def test_a_config_with_the_old_name_of_scene_reuse_is_upgraded(tmp_path):
    """`DataConfig.scene_reuse` was `stream_scene_reuse`: a config.json (or a checkpoint's
    config) written under the old name reads with the new one, and resumes (no difference)."""
    import dataclasses

    cfg = get_config("brn_c16", "demo")
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, train_source="stream", scene_reuse=4)
    )
    new = json.loads(json.dumps(config_to_dict(cfg)))  # as on disk
    old = {**new, "data": {("stream_scene_reuse" if k == "scene_reuse" else k): v
                           for k, v in new["data"].items()}}  # fmt: skip
    assert "scene_reuse" not in old["data"] and old["data"]["stream_scene_reuse"] == 4
    assert upgrade_config_dict(old) == new
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert read_config(tmp_path / "config.json") == cfg
    assert config_differences(old, new) == []


# `qgmrn train` options that set no config field
NOT_CONFIG_FIELDS = {"help", "preset", "profile", "out", "name", "max_steps", "device", "resume",
                     "no_progress", "overrides"}  # fmt: skip


def test_each_train_option_sets_the_config_field_of_its_name():
    """One knob, one name: `qgmrn train --scene-reuse R` sets `DataConfig.scene_reuse`, and so
    for every option that sets a config field (`--data-dir`, `--num-workers` too)."""
    import argparse

    from qgmrn.commands import train

    parser = argparse.ArgumentParser()
    train.configure(parser)
    base = config_to_dict(train.build_config(parser.parse_args(["--preset", "brn_c16"])))
    checked = []
    for action in parser._actions:
        if action.dest in NOT_CONFIG_FIELDS:
            continue
        if action.choices:
            values = [list(action.choices)[-1]]
        elif action.nargs == "*":
            values = ["1000", "2000"]
        elif action.nargs == 2:
            values = ["16", "24"]
        else:
            values = {int: ["3"], float: ["0.25"]}.get(action.type, ["elsewhere"])
        args = parser.parse_args(["--preset", "brn_c16", action.option_strings[0], *values])
        cfg = config_to_dict(train.build_config(args))
        changed = {
            field
            for section in ("data", "model", "train")
            for field, value in cfg[section].items()
            if base[section][field] != value
        }
        assert changed == {action.dest}, action.option_strings
        checked.append(action.dest)
    assert {"scene_reuse", "attribute_loss_weight", "train_source", "image_size", "data_dir",
            "num_workers"} <= set(checked)  # fmt: skip


@pytest.mark.parametrize(
    "first_name, value, section, field",
    [
        ("--attribute-loss", "0.5", "train", "attribute_loss_weight"),
        ("--data", "elsewhere", "data", "data_dir"),
        ("--workers", "3", "data", "num_workers"),
    ],
)
def test_the_first_names_of_renamed_train_options_still_work(first_name, value, section, field):
    """Commands written before an option took its field's name keep working."""
    import argparse

    from qgmrn.commands import train

    parser = argparse.ArgumentParser()
    train.configure(parser)
    args = parser.parse_args(["--preset", "brn_c16", first_name, value])
    assert str(config_to_dict(train.build_config(args))[section][field]) == value


COMMITTED = sorted(Path(__file__).resolve().parents[1].glob("results/*/runs/*/config.json"))


@pytest.mark.skipif(not COMMITTED, reason="no committed runs in this checkout")
def test_every_committed_run_config_still_loads():
    for path in COMMITTED:
        config_from_dict(json.loads(path.read_text()))


@pytest.mark.parametrize("name", ["cnn_lstm", "film"])
def test_a_committed_baseline_checkpoint_loads_into_the_upgraded_config(name):
    """The reference baselines were written before the rename: their weights still fit."""
    run = Path(__file__).resolve().parents[1] / "results" / "reference" / "runs" / name
    if not (run / "checkpoint.pt").exists():
        pytest.skip("no committed reference run")
    cfg, _vocab, model, _ckpt = load_run(run, "latest")  # strict load_state_dict
    assert cfg.model.cnn_widths == (16, 32, 64, 128)


def test_overrides_set_any_field_with_its_type():
    from qgmrn.config import apply_overrides

    cfg = apply_overrides(
        get_config("brn_c16", "demo"),
        [
            "model.head=attention",
            "model.stage_strides=1,2,2,1",
            "model.coord_maps=false",
            "train.grad_clip=1.5",
            "train.compile=none",
            "data.max_train_questions=200",
            "train.visual_init=some/visual.pt",
        ],
    )
    assert cfg.model.head == "attention" and cfg.model.stage_strides == (1, 2, 2, 1)
    assert cfg.model.coord_maps is False and cfg.train.grad_clip == 1.5
    assert cfg.train.compile is None and cfg.data.max_train_questions == 200
    assert cfg.train.visual_init == "some/visual.pt"
    assert get_config("brn_c16", "demo").model.head == "gmp"  # a copy, the preset untouched


@pytest.mark.parametrize(
    "item, message",
    [
        ("model.nope=1", "model has no field 'nope'"),
        ("train.lr=fast", "'fast' is not a number"),
        ("train.batch_size=6.5", "'6.5' is not an integer"),
        ("model.coord_maps=maybe", "not a boolean"),
        ("net.lr=1", "section must be data, model or train"),
        ("model.head", "expected SECTION.FIELD=VALUE"),
    ],
)
def test_a_bad_override_names_the_entry_and_what_is_wrong(item, message):
    from qgmrn.config import apply_overrides

    with pytest.raises(ValueError, match=message) as err:
        apply_overrides(get_config("brn_c16", "demo"), [item])
    assert repr(item) in str(err.value)


def test_a_config_from_before_stage_strides_builds_the_same_network():
    d = config_to_dict(get_config("brn_c16", "demo"))
    del d["model"]["stage_strides"]
    assert config_from_dict(d).model.stage_strides == (1, 2, 2, 2)
    assert config_differences(d, config_to_dict(get_config("brn_c16", "demo"))) == []


def test_read_config_takes_defaults_for_fields_an_older_version_did_not_write(tmp_path):
    """A config.json from before a train field existed reads with that field's default; one with
    a field this version does not know (a newer version's) is refused naming the file."""
    d = json.loads(json.dumps(config_to_dict(get_config("brn_c16", "demo"))))
    for later in ("dist_timeout_minutes", "lr_schedule", "optimizer", "visual_init"):
        del d["train"][later]
    del d["model"]["zero_init_residual"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d))
    assert read_config(path) == get_config("brn_c16", "demo")
    d["train"]["a_field_from_the_future"] = 1
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigFileError, match=r"config\.json: unknown TrainConfig field.*newer"):
        read_config(path)
    path.write_text("{")
    with pytest.raises(ConfigFileError, match="not a qgmrn config"):
        read_config(path)
