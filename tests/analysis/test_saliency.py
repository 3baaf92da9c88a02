import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from qgmrn.analysis import saliency
from qgmrn.nn.output import VQAOutput

matplotlib.use("Agg")


class PixelPicker(nn.Module):
    """Answer scores that depend on one pixel chosen by the question's first token."""

    def forward(self, images, questions, lengths):
        b = images.shape[0]
        pix = images[torch.arange(b), 0, questions[:, 0], 0]  # (B,)
        logits = torch.stack([pix * 3.0, torch.zeros_like(pix)], dim=1)
        gates = [torch.ones(b, 2)]
        return VQAOutput(logits, gates, gates)


def test_saliency_points_at_the_pixel_the_question_reads():
    image = np.full((3, 5, 4), 200, dtype=np.uint8)
    out = saliency.saliency_maps(PixelPicker(), image, [[1, 9], [3]], normalize=lambda x: x / 255.0)
    assert out["maps"].shape == (2, 5, 4)
    assert np.unravel_index(out["maps"][0].argmax(), (5, 4)) == (1, 0)
    assert np.unravel_index(out["maps"][1].argmax(), (5, 4)) == (3, 0)
    assert out["maps"].max() == 1.0
    assert list(out["predictions"]) == [0, 0]
    assert out["gates"].shape == (2, 2)


def test_pad_questions():
    q, lengths = saliency.pad_questions([[5, 6, 7], [8]])
    assert q.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]


def test_plot_saliency_grid_shows_the_image_and_the_truth():
    img = np.full((5, 4, 3), 200, np.uint8)
    maps = np.zeros((2, 5, 4))
    maps[0, 0, 0] = 1.0
    fig = saliency.plot_saliency_grid(img, maps, ["q1", "q2"], ["yes", "no"],
                                      truths=["yes", "yes"])  # fmt: skip
    assert len(fig.axes) == 4  # the image, two maps, their colour bar
    titles = [ax.get_title() for ax in fig.axes[1:3]]
    assert titles == ["q1\npredicted yes, truth yes (right)", "q2\npredicted no, truth yes (wrong)"]
    overlay = fig.axes[1].get_images()[1].get_array()  # (H, W, 4): the map over the image
    assert overlay[0, 0, 3] == 1.0 and overlay[1, 1, 3] == 0.0  # zero saliency leaves the image


def test_a_read_only_cache_row_is_copied_without_a_warning():
    """Rows of the image cache are read-only memory maps; torch must not warn about them."""
    import warnings

    import numpy as np

    from qgmrn.analysis.saliency import _as_float_image

    image = np.zeros((3, 8, 12), dtype=np.uint8)
    image.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = _as_float_image(image, None)
    assert x.shape == (1, 3, 8, 12) and x.dtype == torch.float32


@pytest.mark.parametrize(
    ("n", "shape"), [(1, (1, 1)), (2, (1, 2)), (5, (1, 5)), (6, (2, 3)), (7, (2, 4)), (8, (2, 4))]
)
def test_grid_shape_leaves_no_empty_panel_where_it_can(n, shape):
    assert saliency.grid_shape(n) == shape


def test_figure_4_with_four_questions_has_no_empty_panel_and_a_colour_scale():
    img = np.full((8, 12, 3), 100, np.uint8)
    maps = np.random.default_rng(0).random((4, 8, 12))
    fig = saliency.plot_saliency_grid(img, maps, [f"q{i}" for i in range(4)], ["a"] * 4)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 5  # the image and four maps, in one row: no sixth, empty cell
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in panels} == {(1, 5)}
    bars = [ax for ax in fig.axes if ax not in panels]
    assert len(bars) == 1 and "maximum" in bars[0].get_ylabel()  # the colour bar and its scale
    assert bars[0].get_ylim() == (0.0, 1.0)
    plt.close(fig)
