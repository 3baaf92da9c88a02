"""Data set statistics of notebook 01 (qgmrn.analysis.dataset_stats): splits side by side."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from qgmrn.analysis.dataset_stats import plot_distributions, split_differences


def _frame(answers, types, subtypes):
    return pd.DataFrame({"answer": answers, "type": types, "subtype": subtypes})


# the labels question_frame writes (TYPE_LABELS / SUBTYPE_LABELS)
TRAIN = _frame(["yes", "no", "2", "red"], ["Exist", "Exist", "Count", "Query Attribute"],
               ["Exist", "Exist", "Count", "Query Color"])  # fmt: skip


def test_identical_splits_do_not_differ():
    diff = split_differences({"train": TRAIN, "val": TRAIN.copy()})
    assert list(diff.index) == [("val", "answer"), ("val", "type"), ("val", "subtype")]
    assert (diff["total_variation"] == 0).all()


def test_a_shifted_split_shows_its_total_variation_and_largest_gap():
    val = _frame(["yes", "yes", "yes", "yes"], ["Exist"] * 4, ["Exist"] * 4)
    diff = split_differences({"train": TRAIN, "val": val})
    # answers: train 1/4 each of yes/no/2/red, val all yes: TV = 0.5 * (3/4 + 3 * 1/4) = 0.75
    assert diff.loc[("val", "answer"), "total_variation"] == pytest.approx(0.75)
    assert diff.loc[("val", "answer"), "largest_gap_at"] == "yes"
    assert diff.loc[("val", "answer"), "largest_gap_pp"] == pytest.approx(75.0)
    # types: exist 1/2 -> 1, count and query 1/4 -> 0: TV = 0.5
    assert diff.loc[("val", "type"), "total_variation"] == pytest.approx(0.5)


def test_two_splits_are_drawn_side_by_side_with_a_legend():
    fig = plot_distributions({"train": TRAIN, "val": TRAIN.iloc[:2]}, title="t")
    try:
        axes = fig.axes
        assert len(axes) == 3
        for ax in axes:
            assert len(ax.containers) == 2  # one bar group per split
        labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
        assert labels == ["train (4 questions)", "val (2 questions)"]
        assert axes[0].get_title() == "answer"
    finally:
        plt.close(fig)


def test_one_split_keeps_the_count_in_the_titles():
    fig = plot_distributions(TRAIN)
    try:
        assert fig.axes[1].get_title() == "type (4 questions)"
        assert fig.axes[0].get_legend() is None
    finally:
        plt.close(fig)


def test_example_titles_are_wrapped_inside_their_panels(tmp_path):
    """Long questions are wrapped at the wrap width, not left to matplotlib's wrap=True (which
    let them run into the neighbouring panel), and the titles fit in the figure."""
    import numpy as np
    from matplotlib.text import Text
    from PIL import Image

    from qgmrn.analysis.dataset_stats import plot_examples

    (tmp_path / "images" / "train").mkdir(parents=True)
    long_q = (
        "Are there any other things that have the same size as the large rubber cylinder that "
        "is behind the small metal thing on the left side of the purple sphere?"
    )
    rows = []
    for i in range(3):
        name = f"CLEVR_train_{i:06d}.png"
        Image.fromarray(np.full((320, 480, 3), 60 * i, np.uint8)).save(
            tmp_path / "images" / "train" / name
        )
        for q in (long_q, "What color is the cube?", long_q.replace(" ", "")[:70]):
            rows.append({"image_index": i, "image_filename": name, "question": q, "answer": "no"})
    fig = plot_examples(tmp_path, "train", pd.DataFrame(rows), n=3, wrap_width=44)
    try:
        titles = [ax.get_title(loc="left") for ax in fig.axes]
        assert len(titles) == 3 and all(t.startswith("Q: Are there") for t in titles)
        for t in titles:
            assert max(len(line) for line in t.split("\n")) <= 44
            assert "purple sphere?" in t.replace("\n   ", " ")  # nothing lost in the wrapping
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [
            ax.findobj(lambda a, t=t: isinstance(a, Text) and a.get_text() == t)[
                0
            ].get_window_extent(renderer)
            for ax, t in zip(fig.axes, titles, strict=True)
        ]
        for left, right in zip(boxes, boxes[1:], strict=False):
            assert left.x1 < right.x0  # no title runs into the next panel's
        assert all(b.y1 <= fig.bbox.height and b.x1 <= fig.bbox.width for b in boxes)
    finally:
        plt.close(fig)
