"""`qgmrn.analysis.compare`: a set of runs compared at equal samples, by the samples to a
target, by where their steps were trained, by what their routers learned, and over seeds.

The run directories are fabricated test data (tests/analysis/_fake_runs.py).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from qgmrn.analysis import compare
from qgmrn.engine.history import write_history

from ._fake_runs import write_fake_run
from .test_reference_runs import _reference


def with_history(ref):
    """The reference runs of `_reference(ref)`, brn_c16 resumed on another machine (a GPU, then
    the CPU: a killed call, then one that stopped) and film still running on the CPU."""
    runs = _reference(ref)
    gpu = {"device": "cuda:0", "device_name": "GPU X", "precision": "bf16 autocast",
           "workers": 4, "global_batch": 64}  # fmt: skip
    cpu = {"device": "cpu", "device_name": "CPU Y, 2 cores", "precision": "fp32",
           "threads": 1, "workers": 1, "global_batch": 64}  # fmt: skip
    write_history(
        runs / "brn_c16",
        [
            {"segment": 1, "start_step": 0, "end_step": 1000, "train_minutes": 1.0,
             "stop_reason": "max_minutes", **gpu},
            {"segment": 2, "start_step": 1000, "end_step": 1500, "train_minutes": 10.0,
             "stop_reason": None, **cpu},
            {"segment": 3, "start_step": 1500, "end_step": 2000, "train_minutes": 10.0,
             "stop_reason": "max_steps", **cpu},
        ],
    )  # fmt: skip
    write_history(runs / "film", [{"segment": 1, "start_step": 0, "end_step": 64,
                                   "train_minutes": 0.5, "stop_reason": None, **cpu}])  # fmt: skip
    return runs


def test_segments_say_where_each_stretch_of_steps_was_trained(tmp_path):
    """A run resumed on another machine: one row per segment (history.jsonl), with a killed
    call and a call still running told apart; runs without a history are left out."""
    runs = with_history(tmp_path / "reference")
    frame = compare.segments_frame({p.name: p for p in sorted(runs.iterdir())})
    assert list(frame.index) == [("brn_c16", 1), ("brn_c16", 2), ("brn_c16", 3), ("film", 1)]
    assert frame.loc[("brn_c16", 1), "where"] == "GPU X, bf16 autocast, 4 data workers"
    assert frame.loc[("brn_c16", 2), "where"] == ("CPU Y, 2 cores, fp32, 1 thread, 1 data worker")
    assert frame.loc[("brn_c16", 1), "samples/s"] == round(64_000 / 60)
    assert list(frame["stopped"]) == ["max_minutes", "killed", "max_steps", "running"]
    assert frame.loc[("brn_c16", 2), "steps"] == "1,000-1,500"
    assert compare.trained_on(runs / "brn_c16") == "GPU (GPU X) + CPU"
    # read at a step the GPU segment trained, the run was the GPU's alone
    assert compare.trained_on(runs / "brn_c16", up_to_step=1000) == "GPU (GPU X)"
    assert compare.trained_on(runs / "brn_c16", up_to_step=1001) == "GPU (GPU X) + CPU"
    assert compare.trained_on(runs / "film") == "CPU"


def _curve_run(path, points, batch=100):
    """A run folder whose validation passes are (step, accuracy) `points`."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"train": {"batch_size": batch}}))
    rows = [{"kind": "val", "step": s, "overall": a} for s, a in points]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_equal_samples_takes_the_last_pass_at_or_before_each_budget(tmp_path):
    # batch 100: steps 1,000 / 2,500 / 5,000 = 100k / 250k / 500k samples
    run = _curve_run(tmp_path / "a", [(1000, 0.40), (2000, 0.45), (2500, 0.50), (5000, 0.55)])
    short = _curve_run(tmp_path / "b", [(1000, 0.30), (2000, 0.35)])
    frame = compare.equal_samples_frame({"a": run, "b": short}, budgets=(100_000, 250_000,
                                                                           500_000))  # fmt: skip
    assert list(frame.columns) == ["100k", "250k", "500k"]
    assert frame.loc["a"].tolist() == pytest.approx([40.0, 50.0, 55.0])
    assert frame.loc["b", "100k"] == pytest.approx(30.0)
    assert math.isnan(frame.loc["b", "250k"])  # b stopped at 200k samples
    near = _curve_run(tmp_path / "near", [(1000, 0.4), (2490, 0.5)])  # 249k: within 1% of 250k
    assert compare.equal_samples_frame({"near": near}, budgets=(250_000,)).iloc[0, 0] == 50.0


def test_milestones_measure_where_reached_and_extrapolate_log_linearly(tmp_path):
    # accuracy = 0.1 * log10(samples) - 0.1 exactly: 0.4 at 100k, 0.5 at 1M, 0.6 at 10M
    samples = (10_000, 100_000, 300_000, 600_000, 800_000, 1_000_000)
    points = [(s // 100, 0.1 * math.log10(s) - 0.1) for s in samples]
    run = _curve_run(tmp_path / "a", points)
    flat = _curve_run(
        tmp_path / "f", [(100, 0.30), (1000, 0.31), (2000, 0.30), (3000, 0.30), (4000, 0.29)]
    )
    frame = compare.milestones_frame({"a": run, "f": flat}, targets=(0.4, 0.6, 0.9))
    assert frame.loc["a", "40%"] == "100k"  # measured: the first pass at or above
    assert frame.loc["a", "60%"] == "~10.00M (extrapolated)"
    assert frame.loc["a", "90%"] == "> 100x its samples"  # 10G: far beyond the run
    assert frame.loc["f", "60%"] == "not rising"


def test_routing_frame_reads_figure_2_and_3_numbers_of_runs_with_paths(tmp_path):
    with_paths = write_fake_run(tmp_path / "brn_c16", num_paths=260)
    without = write_fake_run(tmp_path / "film", finished=False)
    ev = json.loads((with_paths / "eval.json").read_text())
    (with_paths / "eval.json").write_text(json.dumps(ev | {"checkpoint_step": 700}))
    frame = compare.routing_frame({"brn_c16": with_paths, "film": without})
    assert list(frame.index) == ["brn_c16"]
    row = frame.loc["brn_c16"]
    assert row["step"] == 700 and 0 <= row["NN subtype acc., stage 1"] <= 100
    assert {"NN subtype acc., stage 2", "chance", "slope per layer"} <= set(frame.columns)
    # the fabricated paths open 0.9, 0.75, 0.6, 0.45 of each layer's modules: a falling trend
    assert row["exec. ratio, first layer"] > row["exec. ratio, last layer"]
    assert row["slope per layer"] < 0


def test_welch_interval_matches_scipys_t_test():
    a, b = np.array([40.0, 42.0, 45.0]), np.array([47.0, 48.0])
    diff, se, ci = compare.welch(a, b)
    low, high = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(47.5 - 127 / 3)
    assert se == pytest.approx(math.sqrt(a.var(ddof=1) / 3 + b.var(ddof=1) / 2))
    assert (diff - ci, diff + ci) == pytest.approx((low, high))
    assert compare.welch(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == (1.0, 0.0, 0.0)


def test_routing_frame_gives_figure_2s_numbers_as_the_caption_computes_them(tmp_path):
    """One measurement: the routers table's stage k is `subtype_separation`'s stage k, with the
    same questions a subtype (Figure 2's 500 by default) and seed."""
    from qgmrn.analysis import captions, routing

    run = write_fake_run(tmp_path / "brn_c16", num_paths=1300, stage_of_layer=(0, 0, 1, 1))
    rp = routing.load_routing_paths(run)
    for kwargs in ({}, {"per_subtype": 40, "seed": 5}):
        frame = compare.routing_frame({"brn_c16": run}, **kwargs)
        sep = captions.subtype_separation(rp.paths, rp.layer_sizes, rp.stage_of_layer,
                                          rp.subtypes, **kwargs)  # fmt: skip
        assert [c for c in frame.columns if c.startswith("NN")] == [
            "NN subtype acc., stage 1",
            "NN subtype acc., stage 2",
        ]
        for k in (1, 2):
            assert frame.loc["brn_c16", f"NN subtype acc., stage {k}"] == pytest.approx(
                100 * sep.loc[k, "nn_accuracy"]
            )
        assert frame.loc["brn_c16", "chance"] == pytest.approx(100 * sep["chance"].iloc[0])


def _evaluated(run, best_pass: float, scored: float, step: int = 20):
    """A run whose highest validation pass reads `best_pass` (its training-time precision) and
    whose final evaluation scored that pass's best.pt at `scored` (another precision)."""
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {"batch_size": 64}}))
    rows = [{"kind": "val", "step": 10, "overall": 0.40},
            {"kind": "val", "step": step, "overall": best_pass},
            {"kind": "val", "step": 30, "overall": 0.50}]  # fmt: skip
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ev = {"split": "val", "n": 4991, "overall": scored, "checkpoint": "best.pt",
          "checkpoint_step": step}  # fmt: skip
    (run / "eval.json").write_text(json.dumps(ev))
    return run


def test_best_val_is_the_final_evaluation_of_best_pt_not_the_highest_pass(tmp_path):
    """The reference FiLM: its step-20,000 pass read 54.5 on the GPU (bf16), best.pt 54.3 in
    fp32; every table and legend gives the second, Table 1's number."""
    from qgmrn.analysis import tables

    film = _evaluated(tmp_path / "film", best_pass=0.5454, scored=0.5432)
    assert tables.best_val(film) == (0.5432, 20)
    row = compare.honest_frame({"film": film}).loc["film"]
    assert row["best val"] == pytest.approx(54.32) and row["best at step"] == 20
    assert row["last val"] == pytest.approx(50.0) and row["samples"] == 30 * 64
    running = tmp_path / "running"
    running.mkdir()
    (running / "config.json").write_text(json.dumps({"train": {"batch_size": 64}}))
    (running / "metrics.jsonl").write_text(json.dumps({"kind": "val", "step": 5, "overall": 0.3}))
    assert tables.best_val(running) is None  # no final evaluation yet: no best to report
    assert math.isnan(compare.honest_frame({"r": running}).loc["r", "best val"])
