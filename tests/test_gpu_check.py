"""benchmarks/gpu_check.py, the prepared GPU-machine script, run smoke-sized on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_check_quick_on_cpu(tmp_path, load_benchmark):
    gpu_check = load_benchmark("gpu_check")
    out = tmp_path / "out"
    rc = gpu_check.main(
        ["--device", "cpu", "--quick", "--out", str(out), "--data", str(tmp_path / "data")]
    )
    report = json.loads((out / "gpu_check.json").read_text())
    assert rc == 0, report["failures"]
    assert report["status"] == "complete" and report["ok"] is True and report["quick"] is True
    for key in ("torch", "cuda", "device", "device_name", "bf16_supported", "cpu_count"):
        assert key in report["env"]
    assert report["data"]["generated"] is True
    assert [r["preset"] for r in report["train_check"]] == list(gpu_check.TRAIN_PRESETS)
    for r in report["train_check"]:
        assert all(r["files"].values())
        for check in ("loss_finite", "resume_continued", "files_written", "first_stop_max_steps"):
            assert r["checks"][check], check
        assert (out / "gpu_check_runs" / r["preset"] / "metrics.jsonl").exists()
    rows = report["throughput"]
    assert [r["preset"] for r in rows] == list(gpu_check.SPEED_PRESETS)
    for r in rows:
        assert r["samples_per_s"] > 0 and r["ms_per_step"] > 0 and r["loss_finite"]
        assert {"profile", "input_hw", "batch", "peak_mem_mib", "params"} <= set(r)


def test_benchmarks_name_the_machine_they_ran_on(monkeypatch):
    """Every benchmark JSON names its CPU as a run's history.jsonl does (benchmarks/machine.py):
    the same script reads 2x apart on two of this project's CPUs."""
    monkeypatch.syspath_prepend(str(BENCH))
    import machine
    import torch

    from qgmrn.engine.history import device_name
    from qgmrn.engine.runtime import cpu_has_native_bf16

    info = machine.describe("cpu")
    assert info["name"] == info["cpu"] == device_name(torch.device("cpu"))
    assert info["native_bf16"] is cpu_has_native_bf16()
    assert info["torch_threads"] == torch.get_num_threads()
    assert len(info["load_average"]) == 3
    json.dumps(info)  # JSON-ready
