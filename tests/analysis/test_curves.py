import json

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.ticker import EngFormatter

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
    plt.close("all")


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


def _learning_run(path, *, batch=64, val_every=100, steps=800, seed=0):
    """A run climbing from chance: training accuracy near zero over the first logged steps, then
    40-60% (noisy, seeded), validation passes every `val_every` steps from 42% to 58%."""
    rng = np.random.default_rng(seed)
    train = [(s, 0.02 if s < 60 else min(0.60, 0.40 + 0.20 * s / steps + rng.normal(0, 0.01)))
             for s in range(20, steps + 1, 20)]  # fmt: skip
    passes = [(s, 0.42 + 0.16 * s / steps) for s in range(val_every, steps + 1, val_every)]
    return _run(path, passes, batch=batch, train=train)


def _val_line(ax):
    return next(ln for ln in ax.get_lines() if ln.get_marker() == "o")


def test_learning_curves_in_samples_on_the_datas_range_with_the_prior(tmp_path):
    run = _learning_run(tmp_path / "a")
    fig = curves.plot_learning_curves({"a": run}, prior=0.425)
    ax_loss, ax_acc = fig.axes
    val = _val_line(ax_acc)
    assert list(val.get_xdata()) == [s * 64 for s in range(100, 801, 100)]  # step x batch
    assert list(val.get_ydata()) == pytest.approx([42 + 16 * s / 800 for s in range(100, 801, 100)])
    assert max(ax_loss.get_lines()[0].get_xdata()) == 800 * 64  # the loss panel too
    assert all(ax.get_xlabel() == "training samples (step x batch size)" for ax in fig.axes)
    assert isinstance(ax_acc.xaxis.get_major_formatter(), EngFormatter)
    low, high = ax_acc.get_ylim()
    # the data (40-60%) and the prior, not 0-100 nor the 2% of the first steps
    assert 35 < low < 42 and 60 < high < 65
    prior = [ln for ln in ax_acc.get_lines() if ln.get_label().startswith("question-type")]
    assert len(prior) == 1 and prior[0].get_label() == "question-type prior (42.5%)"
    assert list(prior[0].get_ydata()) == [42.5, 42.5] and prior[0].get_color() == "k"
    assert prior[0].get_linestyle() == "--"
    plt.close(fig)


def test_learning_curves_legend_is_off_the_curves(tmp_path):
    runs = {"a": _learning_run(tmp_path / "a"), "b": _learning_run(tmp_path / "b", seed=1)}
    fig = curves.plot_learning_curves(runs, prior=0.425)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert "a val" in texts and "b train" in texts and "question-type prior (42.5%)" in texts
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:  # the legend overlaps neither panel
        assert not box.overlaps(ax.get_window_extent(renderer))
    plt.close(fig)


def test_learning_curves_without_a_batch_size_stay_in_steps(tmp_path):
    run = write_fake_run(tmp_path / "a")  # its config.json has no train block
    fig = curves.plot_learning_curves(run)
    ax_acc = fig.axes[1]
    assert ax_acc.get_xlabel() == "step"
    assert list(_val_line(ax_acc).get_xdata()) == [5]
    assert not any(ln.get_label().startswith("question-type") for ln in ax_acc.get_lines())
    plt.close(fig)


def test_learning_curves_of_a_run_validated_only_at_its_end_show_its_training(tmp_path):
    """A fine-tune validated once, at its end (05): the y range still covers the training
    accuracy after the run's first tenth, not only what follows the one pass."""
    rows = [(s, 0.28 + 0.14 * s / 320) for s in range(20, 321, 20)]
    run = _run(tmp_path / "ft", [(320, 0.41)], train=rows)
    fig = curves.plot_learning_curves(run)
    low, high = fig.axes[1].get_ylim()
    assert 25 < low < 31 and 42 < high < 45
    plt.close(fig)


@pytest.mark.parametrize("num_runs", [1, 2, 3])
def test_the_prior_line_spans_each_group_of_bars(tmp_path, num_runs):
    runs = {name: write_fake_run(tmp_path / name) for name in "abc"[:num_runs]}
    prior = {"overall": 0.3, "by_type": {"count": 0.4, "exist": 0.5}, "by_subtype": {}}
    fig = curves.plot_accuracy_by_type(runs, prior=prior)
    try:
        ax = fig.axes[0]
        (lines,) = ax.collections  # the prior's hlines
        segs = [np.asarray(s) for s in lines.get_segments()]
        segments = [s for s in segs if s.ndim == 2 and np.isfinite(s[:, 1]).all()]
        assert len(segments) == 2
        bars = sorted(ax.patches, key=lambda r: r.get_x())
        for group, seg in enumerate(segments):  # count, exist: the first two groups
            mine = bars[group * num_runs : (group + 1) * num_runs]
            lo, hi = mine[0].get_x(), mine[-1].get_x() + mine[-1].get_width()
            assert seg[0, 0] <= lo and seg[1, 0] >= hi  # covers its bars
            assert seg[0, 0] > lo - 0.1 and seg[1, 0] < hi + 0.1  # and not the next group's
    finally:
        plt.close(fig)
