"""Presets and profiles: every preset at every profile is a valid ModelConfig."""

import pytest

from qgmrn.config import PRESETS, PROFILES, config_from_dict, config_to_dict, get_config

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
    assert m.stage_depths == (2, 2, 2, 2) and m.stage_widths == (64, 128, 256, 256)
    assert m.third_norm == "gn" and m.head_uses_q
    f = get_config("frn", "paper").model
    assert f.frn_depths == (3, 4, 6, 3) and f.frn_widths == (64, 128, 256, 512)
    assert f.stem_width == 64 and f.stem_pool


def test_ablations_change_one_thing():
    base = get_config("brn_c32", "paper").model
    assert get_config("brn_c32_deeper", "paper").model.stage_depths == (2, 4, 6, 3)
    assert get_config("brn_c32_wider", "paper").model.stage_widths == (64, 128, 256, 512)
    assert get_config("brn_c32_bn", "paper").model.third_norm == "bn"
    assert get_config("brn_c16_noq", "paper").model.head_uses_q is False
    assert get_config("brn_c32_static", "paper").model.gate == "static"
    assert get_config("brn_c32_attn", "paper").model.head == "attention"
    assert base.cardinality == 32


def test_wider_scales_with_the_profile():
    for profile in PROFILES:
        base = get_config("brn_c32", profile).model.stage_widths
        wider = get_config("brn_c32_wider", profile).model.stage_widths
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
