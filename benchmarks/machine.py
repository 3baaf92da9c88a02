"""What a benchmark ran on, for the JSON file it writes.

The machine behind "this CPU" changes between sittings (docs/training.md, "CPU throughput and the
levers"): the same script read 156 samples/s on one 2-core CPU and 402 on another. A number is
only comparable with the ones measured on the same model of processor, so every script records
its name (`qgmrn.engine.history.device_name`, the same words a run's history.jsonl uses),
whether it has native bf16 (which decides what `TrainConfig.cpu_amp` does) and the load at the time.
"""

from __future__ import annotations

import os
import platform

import torch

from qgmrn.engine.history import device_name
from qgmrn.engine.runtime import cpu_has_native_bf16


def load_average() -> list[float]:
    """The 1/5/15-minute load averages now, rounded: other jobs make CPU timings lower bounds."""
    return [round(x, 2) for x in os.getloadavg()]


def describe(device: str | torch.device = "cpu") -> dict:
    """The machine as a JSON-ready dict: `name` (the CPU's model and cores, or the GPU's name),
    `cpu` (the CPU's, always), `native_bf16` (the CPU's), torch threads and versions, and the
    load averages now (`load_average`; every script calls this at its start)."""
    device = torch.device(device)
    return {
        "name": device_name(device),
        "cpu": device_name(torch.device("cpu")),
        "cpu_count": os.cpu_count(),
        "native_bf16": cpu_has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
    }
