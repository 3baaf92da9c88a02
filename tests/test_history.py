"""`qgmrn.engine.history`: the segments of a run (one per call of fit), as a resume after a kill, a
fresh start in the same folder and a damaged file leave them."""

from __future__ import annotations

import json

import pytest
import torch

from qgmrn.engine.history import HISTORY_FILE, RunHistory, device_name, read_history


def test_segments_append_and_a_killed_segment_is_cut_back_to_its_checkpoint(tmp_path):
    first = RunHistory.begin(tmp_path, resumed=False, start_step=0, device="cuda:0")
    first.update(end_step=250, train_minutes=1.0)
    first.update(end_step=500, train_minutes=2.0)  # killed after this checkpoint: no stop reason
    rows = read_history(tmp_path)
    assert [(r["start_step"], r["end_step"], r["stop_reason"]) for r in rows] == [(0, 500, None)]

    # the file says 600 (say, edited by hand) but the resume starts from the checkpoint at 500:
    # the steps after it were lost, so the segment ends there
    rows[0]["end_step"] = 600
    (tmp_path / HISTORY_FILE).write_text(json.dumps(rows[0]) + "\n")
    second = RunHistory.begin(tmp_path, resumed=True, start_step=500, device="cpu")
    second.update(end_step=700, train_minutes=3.5, stop_reason="max_steps")
    rows = read_history(tmp_path)
    assert [(r["segment"], r["start_step"], r["end_step"], r["device"]) for r in rows] == [
        (1, 0, 500, "cuda:0"),
        (2, 500, 700, "cpu"),
    ]
    assert rows[1]["resumed"] and rows[1]["stop_reason"] == "max_steps"
    assert rows[1]["train_minutes"] == 3.5


def test_a_fresh_run_starts_a_new_history(tmp_path):
    RunHistory.begin(tmp_path, resumed=False, start_step=0).update(end_step=9, train_minutes=1)
    RunHistory.begin(tmp_path, resumed=False, start_step=0)
    assert [(r["segment"], r["end_step"]) for r in read_history(tmp_path)] == [(1, 0)]


def test_bad_lines_are_named(tmp_path):
    assert read_history(tmp_path) == []
    (tmp_path / HISTORY_FILE).write_text('{"segment": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"history\.jsonl, line 2: expected a JSON object"):
        read_history(tmp_path)
    (tmp_path / HISTORY_FILE).write_text('{"segment": 1}\n{"segm\n')
    with pytest.raises(ValueError, match=r"history\.jsonl, line 2: not JSON"):
        read_history(tmp_path)


def test_cpu_device_name_says_cores():
    assert device_name(torch.device("cpu")).endswith("cores")


def test_a_kill_between_the_checkpoint_and_the_history_update_leaves_no_gap(tmp_path):
    """checkpoint.pt is written before history.jsonl: killed in between, the history says 250
    while the resume starts at 500; the killed segment is extended to 500."""
    RunHistory.begin(tmp_path, resumed=False, start_step=0).update(end_step=250, train_minutes=1)
    RunHistory.begin(tmp_path, resumed=True, start_step=500)
    rows = read_history(tmp_path)
    assert [(r["start_step"], r["end_step"]) for r in rows] == [(0, 500), (500, 500)]


def test_a_damaged_history_is_set_aside_and_the_run_goes_on(tmp_path):
    (tmp_path / HISTORY_FILE).write_text("not json\n")
    with pytest.warns(UserWarning, match=r"set aside as history\.jsonl\.damaged"):
        RunHistory.begin(tmp_path, resumed=True, start_step=7)
    assert [r["start_step"] for r in read_history(tmp_path)] == [7]
    assert (tmp_path / (HISTORY_FILE + ".damaged")).read_text() == "not json\n"
