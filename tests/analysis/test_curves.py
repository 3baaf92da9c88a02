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


def _run(path, passes, *, batch=64, scored=None, train=()):
    """A run folder: validation passes (step, overall), training rows (step, acc) and, with
    `scored`, an eval.json of best.pt at the highest pass."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"train": {"batch_size": batch}}))
    rows = [{"step": s, "acc": a, "loss": 1.0} for s, a in train]
    rows += [{"kind": "val", "step": s, "overall": a} for s, a in passes]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if scored is not None:
        step = max(passes, key=lambda p: p[1])[0]
        ev = {"split": "val", "overall": scored, "checkpoint_step": step}
        (path / "eval.json").write_text(json.dumps(ev))
    return path


def test_validation_curves_in_samples_on_the_datas_range_with_the_prior(tmp_path):
    runs = {
        "a": _run(tmp_path / "a", [(100, 0.40), (200, 0.46)], scored=0.455,
                  train=[(1, 0.05), (100, 0.41), (200, 0.48)]),
        "b": _run(tmp_path / "b", [(100, 0.42)], batch=32),  # still training
    }  # fmt: skip
    fig = curves.plot_validation_curves(runs, prior=0.425)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert list(lines[0].get_xdata()) == [100 * 64, 200 * 64]  # samples, each its own batch
    assert list(lines[1].get_xdata()) == [100 * 32]
    assert list(lines[0].get_ydata()) == pytest.approx([40.0, 46.0])  # percent
    low, high = ax.get_ylim()
    # the curves from the first pass on (val 40-46, training 41-48) and the prior 42.5: not 0-100
    assert 38 < low < 40 and 48 < high < 50
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == [
        "a: 13k samples, best.pt 45.5%",  # eval.json's number, not the pass's 46.0
        "b: 3k samples, training (no final evaluation yet)",
        "question-type prior (42.5%)",
    ]
    prior = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(prior) == 1 and list(prior[0].get_ydata()) == [42.5, 42.5]
    # the legend stands right of the axes, off the curves
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend_box = ax.get_legend().get_window_extent(renderer)
    assert legend_box.x0 >= ax.get_window_extent(renderer).x1
    plt.close(fig)


def test_validation_curves_cut_at_a_budget_say_so(tmp_path):
    """Our arm's figure compares runs to the longest run of the arm: a longer twin is drawn to
    that budget and its legend says how much of it is shown."""
    long = _run(tmp_path / "long", [(100, 0.40), (200, 0.45), (3000, 0.55)], scored=0.55)
    short = _run(tmp_path / "short", [(100, 0.41), (200, 0.47)], scored=0.47)
    fig = curves.plot_validation_curves({"long": long, "short": short}, max_samples=200 * 64)
    ax = fig.axes[0]
    drawn = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert max(drawn[0].get_xdata()) == 200 * 64  # nothing past the compared budget
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "long: first 13k of its 192k samples"
    assert texts[1] == "short: 13k samples, best.pt 47.0%"
    assert ax.get_ylim()[1] < 50  # the range of what is drawn
    plt.close(fig)


def test_data_ylim_pads_the_range_and_includes_the_prior():
    assert curves.data_ylim([40.0, 50.0]) == pytest.approx((39.2, 50.8))
    assert curves.data_ylim([40.0, 50.0], prior=30.0) == pytest.approx((28.4, 51.6))
    low, high = curves.data_ylim([45.0, 45.0, float("nan")])
    assert low < 45 < high  # a flat curve still gets a range
    assert curves.data_ylim([]) == (0.0, 1.0)


def test_bars_by_type_name_the_samples_of_the_weights_scored(tmp_path):
    a = _run(tmp_path / "a", [(100, 0.40), (200, 0.46)], scored=0.455)
    fig = curves.plot_accuracy_by_type({"a": a})
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["a (overall 45.5%, weights at 13k samples)"]
    plt.close(fig)
