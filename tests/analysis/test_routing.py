import colorsys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from qgmrn.analysis import routing
from qgmrn.analysis._io import save_figure
from qgmrn.clevr.constants import SUBTYPE_LABELS, SUBTYPE_TO_TYPE, SUBTYPES

from ._fake_runs import write_fake_run

matplotlib.use("Agg")


def test_load_and_split(tmp_path):
    rp = routing.load_routing_paths(write_fake_run(tmp_path / "r"))
    assert rp.paths.shape == (130, 24) and rp.num_layers == 4
    layers = routing.split_layers(rp.paths, rp.layer_sizes)
    assert [x.shape[1] for x in layers] == [4, 4, 8, 8]
    stages = routing.split_stages(rp.paths, rp.layer_sizes, rp.stage_of_layer)
    assert {s: x.shape[1] for s, x in stages.items()} == {1: 8, 2: 16}  # the paper's numbering
    np.testing.assert_array_equal(stages[2], rp.paths[:, 8:])


def test_inconsistent_file_is_rejected(tmp_path):
    np.savez(
        tmp_path / "routing_paths.npz",
        paths=np.zeros((2, 5)),
        layer_sizes=[2, 2],
        stage_of_layer=[0, 0],
        subtypes=[0, 1],
        question_index=[0, 1],
    )
    with pytest.raises(ValueError, match="layer_sizes sum to 4"):
        routing.load_routing_paths(tmp_path)


def test_sample_per_subtype_caps_each_subtype():
    subtypes = np.array([0] * 10 + [1] * 3 + [-1] * 4)
    idx = routing.sample_per_subtype(subtypes, 5, seed=0)
    assert (subtypes[idx] == 0).sum() == 5 and (subtypes[idx] == 1).sum() == 3
    assert (subtypes[idx] >= 0).all()
    np.testing.assert_array_equal(idx, routing.sample_per_subtype(subtypes, 5, seed=0))


def test_execution_ratio_per_layer():
    paths = np.array([[1, 1, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 0, 1, 0]])
    r = routing.execution_ratio_per_layer(paths, [4, 4])
    np.testing.assert_allclose(r, [[0.5, 1.0], [0.0, 0.5]])
    df = routing.execution_ratio_frame({"m": r})
    assert list(df["layer"]) == [1, 2, 1, 2]


def test_tsne_and_figures(tmp_path):
    rp = routing.load_routing_paths(write_fake_run(tmp_path / "r"))
    emb = routing.tsne_by_stage(
        rp.paths,
        rp.stage_of_layer,
        rp.subtypes,
        layer_sizes=rp.layer_sizes,
        per_subtype=4,
        seed=0,
        max_iter=250,
    )
    assert len(emb) == 2 * 13 * 4
    assert set(emb.columns) >= {"stage", "x", "y", "subtype_name"}
    assert np.isfinite(emb[["x", "y"]].to_numpy()).all()
    fig = routing.plot_tsne_stages(emb, title="fake")
    assert save_figure(fig, tmp_path / "fig" / "tsne.png").stat().st_size > 0
    ratios = {"FRN": routing.execution_ratio_per_layer(rp.paths, rp.layer_sizes)}
    fig = routing.plot_execution_ratio_boxplots(ratios)
    assert len(fig.axes) == 1
    fig = routing.plot_routing_paths([rp.paths[0], rp.paths[1]], rp.layer_sizes, ["a", "b"])
    assert len(fig.axes) == 2


def test_tsne_when_every_question_takes_the_same_path():
    """A barely trained model may route every question alike; t-SNE is skipped, not crashed."""
    paths = np.ones((20, 8), np.uint8)
    emb = routing.tsne_by_stage(paths, [0, 1], np.arange(20) % 13, layer_sizes=[4, 4])
    assert (emb[["x", "y"]].to_numpy() == 0).all() and (emb["distinct_paths"] == 1).all()


def test_execution_ratio_summary_of_models_with_different_depths():
    s = routing.execution_ratio_summary({"a": np.ones((3, 2)), "b": np.zeros((3, 4))})
    assert s.loc["a", 1] == 1.0 and np.isnan(s.loc["a", 4]) and s.loc["b", "mean"] == 0.0


def _hue_distance(a, b):
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)  # hue is an angle


def test_subtype_styles_tell_the_13_subtypes_apart_and_group_them_by_type():
    colors = routing.subtype_colors()
    markers = routing.subtype_markers()
    names = [SUBTYPE_LABELS[s] for s in SUBTYPES]
    assert list(colors) == names and list(markers) == names
    assert len({(tuple(np.round(colors[n], 3)), markers[n]) for n in names}) == 13
    assert len({tuple(np.round(colors[n], 3)) for n in names}) == 13  # colour alone, too
    type_of = {SUBTYPE_LABELS[s]: SUBTYPE_TO_TYPE[s] for s in SUBTYPES}
    hue = {n: colorsys.rgb_to_hls(*colors[n][:3])[0] for n in names}
    for n in names:
        same = [m for m in names if m != n and type_of[m] == type_of[n]]
        other = [m for m in names if type_of[m] != type_of[n]]
        # a type's subtypes differ in marker; its hue family is nearer than any other type's
        assert len({markers[m] for m in [n, *same]}) == 1 + len(same)
        nearest_other = min(_hue_distance(hue[n], hue[m]) for m in other)
        assert all(_hue_distance(hue[n], hue[m]) < nearest_other / 4 for m in same)


def test_identical_paths_are_jittered_deterministically_and_others_left_alone():
    emb = pd.DataFrame(
        {
            "x": [0.0, 0.0, 0.0, 5.0, 10.0],
            "y": [0.0, 0.0, 0.0, 5.0, 10.0],
            "path_id": [0, 0, 0, 1, 2],
        }
    )
    x, y = routing.jitter_identical_paths(emb, scale=0.01, seed=0)
    assert len({(a, b) for a, b in zip(x[:3], y[:3], strict=True)}) == 3  # spread apart
    assert np.abs(np.r_[x[:3], y[:3]]).max() < 0.5  # by a little (sd 0.1 here)
    np.testing.assert_array_equal(np.r_[x[3:], y[3:]], [5.0, 10.0, 5.0, 10.0])  # alone: kept
    x2, y2 = routing.jitter_identical_paths(emb, scale=0.01, seed=0)
    np.testing.assert_array_equal(np.r_[x, y], np.r_[x2, y2])
    # without path_id (an older frame), coincident coordinates count as one path
    x3, _ = routing.jitter_identical_paths(emb.drop(columns="path_id"), scale=0.01, seed=0)
    np.testing.assert_array_equal(x3, x)
    # every question on one path (all at the origin): still spread
    same = pd.DataFrame({"x": np.zeros(6), "y": np.zeros(6)})
    assert len(np.unique(routing.jitter_identical_paths(same)[0])) == 6
    np.testing.assert_array_equal(routing.jitter_identical_paths(same, scale=0)[0], np.zeros(6))


def test_tsne_frame_numbers_the_paths_and_the_figure_uses_the_markers(tmp_path):
    paths = np.zeros((26, 8), np.uint8)
    paths[13:, :4] = 1  # stage 1: two distinct paths; stage 2: one
    emb = routing.tsne_by_stage(paths, [0, 1], np.arange(26) % 13, layer_sizes=[4, 4])
    s0 = emb[emb["stage"] == 1].sort_values("index")
    assert list(s0["path_id"]) == [0] * 13 + [1] * 13
    fig = routing.plot_tsne_stages(emb)
    try:
        legend = fig.legends[0]
        assert "jittered" in legend.get_title().get_text()
        shown = {h.get_label(): h.get_marker() for h in legend.legend_handles}
        assert shown == routing.subtype_markers()
        # the 26 points of each stage are drawn, none hidden on top of another
        for ax in fig.axes:
            offsets = np.concatenate([c.get_offsets() for c in ax.collections])
            assert len(offsets) == 26 and len(np.unique(offsets, axis=0)) == 26
    finally:
        plt.close(fig)


@pytest.mark.parametrize("ids", [[0, 0, 1, 1], [1, 1, 2, 2], [3, 3, 7, 7]])
def test_stages_are_numbered_as_the_paper_numbers_them(ids):
    """Whatever ids a model gives its stages (ours are 0-based), stages are 1, 2, ... in depth
    order, in the splits, the t-SNE frame and the panel titles: one numbering everywhere."""
    paths = np.random.default_rng(0).integers(0, 2, (26, 8)).astype(np.uint8)
    subtypes = np.arange(26) % 13
    assert list(routing.split_stages(paths, [2, 2, 2, 2], ids)) == [1, 2]
    emb = routing.tsne_by_stage(paths, ids, subtypes, layer_sizes=[2, 2, 2, 2], max_iter=250)
    assert sorted(emb["stage"].unique()) == [1, 2]
    fig = routing.plot_tsne_stages(emb)
    assert [ax.get_title().split(" (")[0] for ax in fig.axes[:2]] == ["stage 1", "stage 2"]
    plt.close(fig)


def test_figure_2_draws_the_papers_500_questions_a_subtype_by_default():
    subtypes = np.repeat(np.arange(13), 600)
    paths = np.ones((len(subtypes), 4), np.uint8)  # one path: the draw, without the t-SNE's cost
    assert routing.PER_SUBTYPE == 500
    idx = routing.sample_per_subtype(subtypes, routing.PER_SUBTYPE, seed=0)
    assert np.bincount(subtypes[idx]).tolist() == [500] * 13
    # the t-SNE's default draws exactly those questions (the caption's too: test_captions)
    emb = routing.tsne_by_stage(paths, [0, 0], subtypes, layer_sizes=[2, 2])
    np.testing.assert_array_equal(np.sort(emb["index"].unique()), idx)
