import numpy as np
import pandas as pd
import pytest

from qgmrn.analysis import captions


def test_slope():
    assert captions.slope([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert captions.slope([0.9, 0.7, 0.5, 0.3]) == pytest.approx(-0.2)
    assert captions.slope([0.5]) == 0.0


def test_nearest_neighbour_agreement_perfect_and_chance():
    labels = np.repeat(np.arange(4), 10)
    clustered = np.eye(4)[labels]  # every subtype one path: its neighbours are its own
    assert captions.nearest_neighbour_agreement(clustered, labels) == 1.0
    same = np.ones((40, 5))  # every question the same path: all tied, accuracy = chance
    assert captions.nearest_neighbour_agreement(same, labels) == pytest.approx(
        captions.chance_agreement(labels)
    )
    assert captions.chance_agreement(labels) == pytest.approx(4 * 10 * 9 / (40 * 39))


def test_nearest_neighbour_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (60, 6)).astype(float)  # binary paths: many ties
    labels = rng.integers(0, 3, 60)
    perm = rng.permutation(60)
    a = captions.nearest_neighbour_agreement(x, labels)
    b = captions.nearest_neighbour_agreement(x[perm], labels[perm])
    assert a == pytest.approx(b)


def _paths_separating_in_later_stages(seed=0):
    """3 stages of 8 gates; subtype information in the gates grows with the stage."""
    rng = np.random.default_rng(seed)
    subtypes = np.repeat(np.arange(5), 40)
    stages = []
    for noise in (0.5, 0.25, 0.0):  # probability that a gate is random instead of the code
        code = rng.integers(0, 2, (5, 8))[subtypes]
        flip = rng.random(code.shape) < noise
        stages.append(np.where(flip, rng.integers(0, 2, code.shape), code))
    paths = np.concatenate(stages, axis=1).astype(np.float32)
    return paths, [8, 8, 8], [1, 2, 3], subtypes


def test_subtype_separation_grows_when_the_paths_do():
    paths, sizes, stages, subtypes = _paths_separating_in_later_stages()
    frame = captions.subtype_separation(paths, sizes, stages, subtypes, per_subtype=40)
    assert list(frame.index) == [1, 2, 3]
    acc = frame["nn_accuracy"].to_numpy()
    assert acc[0] < acc[1] < acc[2]
    assert acc[2] == pytest.approx(1.0, abs=0.05)
    assert (frame["lift"] > 1).all()
    text = captions.separation_caption(frame)
    assert "holds" in text and "does not hold" not in text


def test_subtype_separation_of_unrelated_paths_is_chance():
    rng = np.random.default_rng(1)
    subtypes = np.repeat(np.arange(5), 40)
    paths = rng.integers(0, 2, (200, 16)).astype(np.float32)
    frame = captions.subtype_separation(paths, [8, 8], [1, 2], subtypes, per_subtype=40)
    assert (frame["lift"] < 1.6).all()
    assert "does not hold" in captions.separation_caption(frame)


def test_execution_trend_and_caption():
    n = 50
    falling = np.tile(np.array([0.9, 0.8, 0.6, 0.4]), (n, 1))
    flat = np.full((n, 4), 0.7)
    t_fall, t_flat = captions.execution_trend(falling), captions.execution_trend(flat)
    assert t_fall["medians"] == [0.9, 0.8, 0.6, 0.4]
    assert t_fall["slope_per_layer"] < 0 and t_flat["slope_per_layer"] == pytest.approx(0.0)
    text = captions.execution_caption({"FRN": t_fall, "BRN": t_flat})
    assert "FRN: median execution ratio 0.90" in text
    assert "falls with depth, as the paper reports" in text
    assert "BRN" in text and "does not fall with depth" in text


def _table(rows):
    """A Table-1/2-shaped frame: (source, model) rows, an Overall column."""
    index = pd.MultiIndex.from_tuples([(s, m) for s, m, _ in rows], names=["source", "model"])
    return pd.DataFrame({"Overall": [v for _, _, v in rows]}, index=index)


def test_table_caption_compares_with_the_prior_and_the_static_twin():
    table = _table([
        ("paper", "BRN (c=16)", 97.0),
        ("ours (reference, 10 min)", "LSTM", 47.0),
        ("ours (reference, 10 min)", "BRN (c=16)", 58.0),
        ("ours (reference, 10 min)", "BRN (c=16), static twin (ours)", 55.0),
        ("prior (mini-clevr, val)", "question-type prior", 50.0),
    ])  # fmt: skip
    text = captions.table_caption(table)
    assert text.startswith("Question-type prior 50.0.")
    assert "best BRN (c=16) at 58.0 (+8.0 against the prior); 2 of 3 rows above the prior" in text
    assert "58.0 vs its static twin 55.0: +3.0 points, routing ahead." in text
    assert "97.0" not in text  # the paper's rows are not ours


def test_table_caption_checks_table2s_orderings():
    ours = "ours (demo, 1 min)"
    index = pd.MultiIndex.from_tuples(
        [
            (ours, "modules per layer", r)
            for r in ("c=8, w/ q, gn", "c=16, w/ q, gn", "c=32, w/ q, gn")
        ]
        + [(ours, "bn vs gn", r) for r in ("c=8, w/ q", "c=8, w/ q, gn", "c=16, w/ q")]
        + [("prior (x, val)", "all", "question-type prior")]
    )
    table = pd.DataFrame({"Overall": [40.0, 45.0, 44.0, 41.0, 40.0, 46.0, 42.0]}, index=index)
    text = captions.table_caption(table)
    assert "c=8 / 16 / 32: 40.0 / 45.0 / 44.0: not in the paper's order" in text
    # pairs present: c=8 (bn 41, gn 40) and c=16 (bn 46, gn 45); the repeated gn rows count once
    assert "GroupNorm ahead of BatchNorm in 0 of 2 cardinalities (-1.0, -1.0 points" in text
    assert "3 of 5 rows above the prior" in text


def test_table_caption_weighs_the_question_feature_to_the_classifier():
    ours = "ours (demo, 6 min)"
    index = pd.MultiIndex.from_tuples(
        [(ours, "q to classifier", "c=16, w/o q"), (ours, "q to classifier", "c=16, w/ q")]
        + [(ours, "bn vs gn", "c=16, w/ q")]  # the w/ q row again, under another experiment
        + [("prior (x, val)", "all", "question-type prior")]
    )
    table = pd.DataFrame({"Overall": [25.5, 34.0, 34.0, 42.5]}, index=index)
    text = captions.table_caption(table)
    assert "w/ q 34.0 vs w/o q 25.5: +8.5 points, w/ q ahead, as in the paper." in text
    assert "0 of 2 rows above the prior" in text  # the repeated row counts once
    table.loc[(ours, "q to classifier", "c=16, w/o q"), "Overall"] = 36.0
    assert "-2.0 points, w/ q not ahead at this budget." in captions.table_caption(table)


def test_subtype_separation_counts_on_the_points_figure_2_draws():
    """Same defaults, same seed: the caption's questions are the t-SNE's, its stages 1 to S."""
    from qgmrn.analysis import routing

    rng = np.random.default_rng(2)
    subtypes = np.repeat(np.arange(13), 520)  # more than 500 of each: the cap matters
    paths = rng.integers(0, 2, (len(subtypes), 8)).astype(np.uint8)
    frame = captions.subtype_separation(paths, [4, 4], [0, 1], subtypes, seed=3)
    assert list(frame.index) == [1, 2]  # the model's 0-based ids, the paper's numbers
    assert (frame["n"] == 13 * routing.PER_SUBTYPE).all()
    idx = routing.sample_per_subtype(subtypes, routing.PER_SUBTYPE, seed=3)
    x = routing.split_stages(paths[idx], [4, 4], [0, 1])[2]
    assert frame.loc[2, "nn_accuracy"] == captions.nearest_neighbour_agreement(x, subtypes[idx])
    assert "stage 1: " in captions.separation_caption(frame)
