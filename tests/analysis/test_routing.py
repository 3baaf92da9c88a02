import matplotlib
import numpy as np
import pytest

from qgmrn.analysis import routing
from qgmrn.analysis._io import save_figure

from ._fake_runs import write_fake_run

matplotlib.use("Agg")


def test_load_and_split(tmp_path):
    rp = routing.load_routing_paths(write_fake_run(tmp_path / "r"))
    assert rp.paths.shape == (130, 24) and rp.num_layers == 4
    layers = routing.split_layers(rp.paths, rp.layer_sizes)
    assert [x.shape[1] for x in layers] == [4, 4, 8, 8]
    stages = routing.split_stages(rp.paths, rp.layer_sizes, rp.stage_of_layer)
    assert {s: x.shape[1] for s, x in stages.items()} == {0: 8, 1: 16}
    np.testing.assert_array_equal(stages[1], rp.paths[:, 8:])


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
