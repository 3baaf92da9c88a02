"""A run's history: one row per call of `qgmrn.engine.fit` on its folder (a *segment*).

A run that is resumed on another machine (started on a lent GPU, continued on a CPU, or the
reverse) keeps one config.json, that of its last call; the history says where every stretch of
steps was trained, how, and how long it took there, so that a budget counted in samples can be
read next to the machines that spent it. ``history.jsonl`` in the run folder (rank 0 writes it):

    {"segment": 1, "start_step": 0, "end_step": 15731, "resumed": false, "device": "cuda:0",
     "device_name": "NVIDIA H200", "precision": "bf16 autocast", "channels_last": true,
     "threads": 16, "workers": 4, "world_size": 1, "global_batch": 64, "train_source": "stream",
     "torch": "2.11.0", "started_utc": "...", "updated_utc": "...", "train_minutes": 10.0,
     "stop_reason": "max_minutes"}

A segment's row is appended when `fit` starts and rewritten (atomically, the file is small) at
every checkpoint and at the end: ``end_step`` is the last step saved in checkpoint.pt, the step a
resume continues from, and ``stop_reason`` stays null when the call was killed (the next segment
then starts at ``end_step``). A fresh run (no resume) starts a new history.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from qgmrn.fileio import atomic_write_text

HISTORY_FILE = "history.jsonl"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def device_name(device: torch.device) -> str:
    """A readable name of the machine part that trains: the GPU's name, or the CPU's model and
    core count (from /proc/cpuinfo where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The segments of the run in `run_dir`, oldest first ([] when it has no history.jsonl).
    Raises ValueError naming the file and the line when a line is not a JSON object."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {line[:60]!r}")
        rows.append(row)
    return rows


def write_history(run_dir: str | os.PathLike, rows: list[Mapping[str, Any]]) -> Path:
    """Replace the history of `run_dir` with `rows` (atomically)."""
    text = "".join(json.dumps(dict(row)) + "\n" for row in rows)
    return atomic_write_text(Path(run_dir) / HISTORY_FILE, text, fsync=False)


def _readable_history(run_dir: Path) -> list[dict[str, Any]]:
    """The history to continue; a damaged one is set aside (history.jsonl.damaged) with a
    warning rather than stopping the training it only describes."""
    try:
        return read_history(run_dir)
    except ValueError as err:
        path = run_dir / HISTORY_FILE
        path.replace(path.with_name(HISTORY_FILE + ".damaged"))
        warnings.warn(
            f"{err}; set aside as {path.name}.damaged, a new history begins", stacklevel=3
        )
        return []


class RunHistory:
    """The current segment of a run: `begin` appends its row, `update` rewrites it.

    Only `qgmrn.engine.fit` writes it (on rank 0); readers use `read_history`.
    """

    def __init__(self, run_dir: Path, rows: list[dict[str, Any]]) -> None:
        self.run_dir, self.rows = run_dir, rows

    @classmethod
    def begin(
        cls, run_dir: str | os.PathLike, *, resumed: bool, start_step: int, **fields: Any
    ) -> RunHistory:
        """Start a segment at `start_step`. A resumed run keeps the rows of its earlier segments
        (those that end after `start_step` are cut back to it: their later steps were lost with
        the kill); a fresh run starts a new history. `fields`: device, precision, ..."""
        run_dir = Path(run_dir)
        rows = _readable_history(run_dir) if resumed else []
        for row in rows:
            if row.get("end_step") is not None and row["end_step"] > start_step:
                row["end_step"] = start_step
        if rows and rows[-1].get("stop_reason") is None:
            # killed between writing checkpoint.pt and updating the history: the checkpoint it
            # resumes from is the true end of that segment
            rows[-1]["end_step"] = max(int(rows[-1].get("end_step") or 0), start_step)
        rows.append(
            {
                "segment": len(rows) + 1,
                "start_step": start_step,
                "end_step": start_step,
                "resumed": resumed,
                **fields,
                "started_utc": _now(),
                "updated_utc": _now(),
                "train_minutes": 0.0,
                "stop_reason": None,
            }
        )
        history = cls(run_dir, rows)
        write_history(run_dir, rows)
        return history

    def update(self, *, end_step: int, train_minutes: float, stop_reason: str | None = None):
        """Record that the segment has reached (and checkpointed) `end_step` after
        `train_minutes` of its own training; `stop_reason` once it ends."""
        row = self.rows[-1]
        row.update(end_step=end_step, train_minutes=round(train_minutes, 3))
        row["updated_utc"] = _now()
        if stop_reason is not None:
            row["stop_reason"] = stop_reason
        write_history(self.run_dir, self.rows)
