"""`studies.learnability.summary`: its table's best validation and its figures.

The run directories are fabricated test data (validation passes, training rows, eval.json).
"""

from __future__ import annotations

import json

import matplotlib
import matplotlib.pyplot as plt
import pytest

from qgmrn.clevr.constants import QUESTION_TYPES
from studies.learnability import summary

matplotlib.use("Agg")


def _run(path, passes, *, batch=64, scored=None):
    """A `<preset>__<arm>` run: validation passes (step, overall), a training row at each, and
    with `scored` an eval.json of best.pt (the highest pass) scored at that."""
    path.mkdir(parents=True)
    cfg = {"train": {"batch_size": batch, "max_minutes": 30.0},
           "data": {"image_size": [96, 64], "train_source": "stream"}}  # fmt: skip
    (path / "config.json").write_text(json.dumps(cfg))
    by_type = {t: 0.5 for t in QUESTION_TYPES}
    rows = []
    for step, acc in passes:
        rows.append({"step": step, "acc": acc, "loss": 1.0, "samples_per_s": 50.0})
        rows.append({"kind": "val", "step": step, "overall": acc, "by_type": by_type})
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if scored is not None:
        step = max(passes, key=lambda p: p[1])[0]
        ev = {"split": "val", "overall": scored, "checkpoint_step": step,
              "train": {"train_minutes": 30.0}}  # fmt: skip
        (path / "eval.json").write_text(json.dumps(ev))
    return path


def test_val_best_is_best_pt_as_table_1_gives_it(tmp_path):
    run = _run(tmp_path / "brn_c16__stream", [(800, 0.40), (1600, 0.43)], scored=0.428)
    row = summary.run_frame(run)
    assert row["val best"] == pytest.approx(42.8)  # eval.json, not the pass's 43.0
    assert row["val last"] == pytest.approx(43.0)


def test_by_type_keeps_each_preset_apart_and_names_each_runs_samples(tmp_path):
    """Equal minutes are not equal samples: a CNN+LSTM sees several times a BRN's in them, so
    each preset gets a panel and each bar its samples."""
    runs = {
        "brn_c16__stream": _run(tmp_path / "brn_c16__stream", [(800, 0.40), (1600, 0.43)]),
        "cnn_lstm__stream": _run(tmp_path / "cnn_lstm__stream", [(800, 0.4), (8000, 0.48)]),
    }
    fig = summary.plot_by_type(runs, prior=None)
    assert len(fig.axes) == 2
    brn, cnn = ([t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes)
    assert brn == ["stream (at 102k samples)"] and cnn == ["stream (at 512k samples)"]
    assert fig.axes[0].get_title().startswith("brn_c16:")
    plt.close(fig)


def test_curves_span_the_data_from_the_first_validation_pass(tmp_path):
    runs = {"brn_c16__stream": _run(tmp_path / "brn_c16__stream", [(800, 0.40), (1600, 0.43)])}
    fig = summary.plot_curves(runs, prior=0.425)
    low, high = fig.axes[0].get_ylim()
    assert 39 < low < 40 and 43 < high < 44  # not 0-100: the curves and the prior
    assert fig.axes[0].xaxis.get_major_formatter()(51_200, 0) == "51.2k"  # samples
    plt.close(fig)
