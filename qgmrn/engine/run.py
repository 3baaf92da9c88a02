"""A training run as the loop sees it, and how it records itself in its folder.

`TrainState` is where training is (what a checkpoint records besides the weights), `TrainData`
what it trains and validates on, and `Run` everything the loop needs, built once by `fit`. The
records: checkpoint.pt (the point a resume continues from) and best.pt, one row of metrics.jsonl
per logged step (`JsonlWriter`), and this call's segment of history.jsonl (`qgmrn.engine.history`).
Rank 0 writes every file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qgmrn.config import ExperimentConfig
from qgmrn.data.dataset import ClevrQuestions
from qgmrn.data.stream import SceneStream
from qgmrn.data.vocab import Vocab
from qgmrn.engine import checkpoint as ckpt
from qgmrn.engine import distributed as qdist
from qgmrn.engine.auxiliary import CHECKPOINT_KEY, REACH_KEY, AttributeLoss
from qgmrn.engine.evaluate import eval_loader
from qgmrn.engine.history import RunHistory, device_name
from qgmrn.engine.interrupt import StopRequest
from qgmrn.engine.runtime import use_amp, use_channels_last


@dataclass
class TrainState:
    """Where training is: what a checkpoint records besides the weights."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch in progress
    batch_in_epoch: int = 0  # batches of `epoch` already consumed (the sampler position)
    best_val_acc: float | None = None
    best_step: int | None = None
    train_seconds: float = 0.0  # wall-clock seconds spent in training steps, over all resumes


@dataclass(frozen=True)
class TrainData:
    """What `fit` trains and validates on, and the texts that pin a run to it."""

    config_json: str  # config.json; a checkpoint to resume must carry the same
    vocab: Vocab
    vocab_json: str
    train: ClevrQuestions | SceneStream
    steps_per_epoch: int  # per rank; the stream's "epoch" is stream_epoch_questions questions
    per_rank_batch: int
    val: ClevrQuestions
    eval_split: str


class JsonlWriter:
    """Appends one JSON object per line, flushed at once (rank 0 only; a no-op elsewhere)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.f = open(path, "a") if enabled else None  # noqa: SIM115

    def write(self, row: Mapping[str, Any]) -> None:
        if self.f is not None:
            self.f.write(json.dumps(row) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


class Run:
    """Everything the loop needs, built once by `fit`."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        model: nn.Module,  # possibly DDP-wrapped
        optimizer: torch.optim.Optimizer,
        state: TrainState,
        device: torch.device,
        info: qdist.DistInfo,
        out_dir: Path,
        data: TrainData,
        max_steps: int | None,
        progress: bool,
        attributes: AttributeLoss | None = None,  # the auxiliary loss (ours), when on
    ) -> None:
        self.cfg, self.model, self.optimizer, self.state = cfg, model, optimizer, state
        self.attributes = attributes
        self.device, self.info, self.out_dir, self.data = device, info, out_dir, data
        self.max_steps, self.progress = max_steps, progress
        self.amp, self.channels_last = use_amp(cfg, device), use_channels_last(cfg, device)
        self.log = JsonlWriter(out_dir / "metrics.jsonl", info.is_main)
        batch = max(data.per_rank_batch, 1) * 2
        self.val_loader = eval_loader(data.val, batch, cfg.data.num_workers, device, info)
        self.last_val_step: int | None = None
        # the last validation's predictions with routing paths (validate(collect_paths=True)):
        # final_eval's, when they come from the best weights, so it need not predict again
        self.last_val_pred: dict[str, np.ndarray] | None = None
        # history.jsonl: where and how this call trains (a resumed run may change machines)
        self.seconds_at_start = state.train_seconds
        # the step checkpoint.pt holds (a resumed run starts from it; None: none written yet)
        self.checkpoint_step: int | None = state.step if state.step else None
        self.history = begin_history(self) if info.is_main else None
        self.stop = StopRequest(enabled=False)  # fit installs the signal handlers around the loop

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch


def begin_history(run: Run) -> RunHistory:
    """Append this call's segment to the run's history.jsonl (`qgmrn.engine.history`)."""
    cfg, device = run.cfg, run.device
    return RunHistory.begin(
        run.out_dir,
        resumed=run.state.step > 0,
        start_step=run.state.step,
        device=str(device),
        device_name=device_name(device),
        precision="bf16 autocast" if run.amp else "fp32",
        channels_last=run.channels_last,
        threads=torch.get_num_threads(),
        workers=cfg.data.num_workers,
        world_size=run.info.world_size,
        global_batch=cfg.train.batch_size,
        train_source=cfg.data.train_source,
        torch=torch.__version__,
    )


def update_history(run: Run, stop_reason: str | None = None) -> None:
    """Record in history.jsonl the step the segment has checkpointed (and why it stopped)."""
    if run.history is not None:
        minutes = (run.state.train_seconds - run.seconds_at_start) / 60.0
        run.history.update(end_step=run.state.step, train_minutes=minutes, stop_reason=stop_reason)


def save_resume_checkpoint(run: Run) -> None:
    """checkpoint.pt, the point a resume continues from, and the history's end of segment."""
    save_run_checkpoint(run, run.out_dir / "checkpoint.pt")
    run.checkpoint_step = run.state.step
    update_history(run)


def save_run_checkpoint(run: Run, path: Path, *, with_optimizer: bool = True) -> None:
    """Write a checkpoint of `run` (rank 0 only)."""
    if not run.info.is_main:
        return
    s = run.state
    extra: dict[str, Any] = {
        "best_step": s.best_step,
        "train_seconds": s.train_seconds,
        "world_size": run.info.world_size,  # a resume with another number of processes is refused
    }
    if run.attributes is not None:
        extra[CHECKPOINT_KEY] = run.attributes.state_dict()
        extra[REACH_KEY] = run.attributes.reach
    ckpt.save_checkpoint(
        path,
        model=run.model,
        optimizer=run.optimizer if with_optimizer else None,
        step=s.step,
        epoch=s.epoch,
        batch_in_epoch=s.batch_in_epoch,
        config_json=run.data.config_json,
        vocab_json=run.data.vocab_json,
        best_val_acc=s.best_val_acc,
        extra=extra,
    )
