import matplotlib

from qgmrn.analysis import curves

from ._fake_runs import write_fake_run

matplotlib.use("Agg")


def test_read_metrics_splits_train_and_val_and_skips_truncated_line(tmp_path):
    train, val = curves.read_metrics(write_fake_run(tmp_path / "r"))
    assert len(train) == 5 and len(val) == 1
    assert list(train["step"]) == [1, 2, 3, 4, 5]


def test_accuracy_frame_in_paper_order(tmp_path):
    runs = {"a": write_fake_run(tmp_path / "a", overall=0.5)}
    df = curves.accuracy_frame(runs)
    assert list(df.index) == [
        "Count",
        "Exist",
        "Compare Numbers",
        "Query Attribute",
        "Compare Attribute",
    ]
    assert df.loc["Exist", "a"] == 0.51
    assert len(curves.accuracy_frame(runs, by="subtype")) == 13


def test_plots(tmp_path):
    runs = {"a": write_fake_run(tmp_path / "a"), "b": write_fake_run(tmp_path / "b")}
    assert len(curves.plot_learning_curves(runs).axes) == 2
    assert len(curves.plot_learning_curves(runs["a"]).axes) == 2
    assert len(curves.plot_accuracy_by_type(runs).axes) == 1
