"""An ipywidgets explorer for notebook 02: pick an image, type a question, see the answer, the
routing path and the saliency map. Nothing runs until a widget changes, so batch runs
(papermill) are never blocked."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from qgmrn.analysis.inspection import TrainedRun, answer
from qgmrn.analysis.routing import plot_routing_paths
from qgmrn.analysis.saliency import plot_saliency_grid


def build_explorer(
    run: TrainedRun,
    images: np.ndarray,
    questions: Sequence[dict],
    *,
    device: str = "cpu",
    sparse: bool = False,
):
    """A widget box: image index slider, question text box, and an output area. `sparse`: the
    routed trunk skips the closed modules (`qgmrn.nn.sparse`; the same answers and maps). Off
    by default: one question at a time is batch 1, where skipping does not pay on a CPU
    (docs/model.md, "Sparse inference").

    images:    (N, H, W, 3) uint8 (e.g. `qgmrn.data.open_cache(...)`).
    questions: question dicts of the same split (used to pre-fill the text box).
    """
    import ipywidgets as w
    from IPython.display import display

    by_image: dict[int, list[str]] = {}
    for q in questions:
        by_image.setdefault(int(q["image_index"]), []).append(q["question"])
    index = w.IntSlider(value=0, min=0, max=len(images) - 1, description="image")
    text = w.Text(
        value=(by_image.get(0) or ["How many objects are there?"])[0],
        description="question",
        layout=w.Layout(width="80%"),
    )
    button = w.Button(description="answer")
    out = w.Output()

    def show(_=None) -> None:
        out.clear_output(wait=True)
        with out:
            img = np.asarray(images[index.value])
            table, res = answer(
                run, img.transpose(2, 0, 1), [text.value], device=device, sparse=sparse
            )
            display(table)
            plot_saliency_grid(img, res["maps"], [text.value], list(table["answer"]), ncols=2)
            plt.show()
            if res["gates"].shape[1]:
                plot_routing_paths([res["gates"][0]], run.model.gate_sizes, ["routing path"])
                plt.show()

    def new_image(change) -> None:
        suggestions = by_image.get(int(change["new"]))
        if suggestions:
            text.value = suggestions[0]

    index.observe(new_image, names="value")
    button.on_click(show)
    return w.VBox([index, w.HBox([text, button]), out])
