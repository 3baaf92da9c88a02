import json

import matplotlib
import matplotlib.pyplot as plt
import pytest

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


def test_throughput_reads_the_runs_own_rate(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"train": {"batch_size": 64}}))
    rows = [
        {"step": 20, "loss": 2.0, "samples_per_s": 100.0, "data_wait_frac": 0.1},
        {"kind": "val", "step": 20, "overall": 0.4},
        {"step": 40, "loss": 1.5, "samples_per_s": 300.0, "data_wait_frac": 0.3},
        {"step": 60, "loss": 1.2, "samples_per_s": 200.0, "data_wait_frac": 0.2},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    t = curves.throughput(tmp_path)
    assert t["steps"] == 60 and t["samples"] == 60 * 64
    assert t["samples_per_s"] == 200.0 and t["data_wait_frac"] == 0.2
    assert t["minutes"] == pytest.approx(60 * 64 / 200 / 60)


@pytest.mark.parametrize("by", ["type", "subtype"])
@pytest.mark.parametrize("num_runs", [1, 2])
def test_accuracy_tick_labels_do_not_run_into_each_other(tmp_path, by, num_runs):
    """Adjacent x tick labels, as drawn (Agg), are at least 3 points apart: side by side and
    right-aligned, "Exist" ran into "Compare Numbers" and "Query Attribute" into "Compare
    Attribute"."""
    runs = {name: write_fake_run(tmp_path / name) for name in "ab"[:num_runs]}
    prior = {"overall": 0.3, "by_type": {}, "by_subtype": {}}
    fig = curves.plot_accuracy_by_type(runs, by=by, prior=prior)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        labels = fig.axes[0].get_xticklabels()
        assert len(labels) == (5 if by == "type" else 13)
        assert labels[2].get_text() == ("Compare\nNumbers" if by == "type" else "Equal\nInteger")
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        min_gap = 3 * fig.dpi / 72
        for left, right in zip(boxes, boxes[1:], strict=False):
            assert right.x0 - left.x1 >= min_gap, (left, right)
        assert all(b.x0 >= 0 and b.x1 <= fig.bbox.width and b.y0 >= 0 for b in boxes)
    finally:
        plt.close(fig)
