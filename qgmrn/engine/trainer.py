"""`fit`: the whole training recipe of one run, top to bottom (paper sec. 3.5, 4.2).

Adam (betas from the config), the learning rate and the Gumbel temperature as functions of the
step (`qgmrn.engine.schedules`), loss = CE + lambda * L_load (eq. 13), a budget in epochs and/or
wall-clock minutes and/or steps, checkpoints that resume exactly, and the run directory of
docs/internals.md:

    config.json  vocab.json  metrics.jsonl  eval.json  checkpoint.pt  best.pt  routing_paths.npz
    history.jsonl (one row per call: where and how each stretch of steps trained)

`fit` sets the run up (`qgmrn.engine.setup`), runs the loop (`qgmrn.engine.loop`) and evaluates
the best weights at the end. Devices: ``device="cpu"`` or ``"cuda"`` (bf16 autocast and
channels-last when the config asks). Under torchrun (``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel, each epoch is sharded by `qgmrn.engine.distributed.ResumableSampler`,
``cfg.train.batch_size`` is the *global* batch, and rank 0 writes every file. The failures a
user can act on end the run with a message that says how to continue (`qgmrn.engine.errors`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qgmrn.config import ExperimentConfig
from qgmrn.data.stream import DataWorkerDied
from qgmrn.engine import distributed as qdist
from qgmrn.engine import runlock
from qgmrn.engine.errors import DataWorkerError, DeviceOutOfMemoryError, PeerProcessError
from qgmrn.engine.interrupt import StopRequest, TrainingInterrupted
from qgmrn.engine.loop import INTERRUPTED, final_eval, train_loop, validate
from qgmrn.engine.run import Run, TrainState, update_history
from qgmrn.engine.runtime import resolve_device
from qgmrn.engine.setup import (
    build_attribute_loss,
    build_model_and_optimizer,
    compile_model,
    distribute,
    load_resume,
    prepare_data,
    prepare_run_dir,
    restore,
    resume_wanted,
    seed_rng,
)
from qgmrn.fileio import locate, portable_path


def fit(
    cfg: ExperimentConfig,
    data_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "results/run",
    *,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    vocab=None,
    init_from: str | os.PathLike | Mapping[str, Tensor] | None = None,
    max_steps: int | None = None,
    questions_files: Mapping[str, str | os.PathLike] | None = None,
    eval_split: str = "val",
) -> dict[str, Any]:
    """Train `cfg` on `data_dir` (default `cfg.data.data_dir`), writing the run to `out_dir`.

    device:   "cpu", "cuda" or "cuda:N" (under torchrun: each rank's LOCAL_RANK GPU).
    resume:   continue from `out_dir/checkpoint.pt` (refused when the model config, the image
              size or the vocabulary differ); starts afresh when there is none yet.
    vocab:    a `qgmrn.data.Vocab` to use instead of building one from the train questions.
    init_from: a checkpoint path or a model state dict to start from (fine-tuning).
    max_steps: stop after this many optimizer steps in total (as if the budget were spent).
    questions_files: {"train": path, "val": path} question files on the data set's images
              (CLEVR-Humans).
    Returns {"out_dir", "step", "epoch", "stop_reason", "best_val_acc", "eval", ...}.
    Raises `qgmrn.engine.interrupt.TrainingInterrupted` (a KeyboardInterrupt) after SIGINT or
    SIGTERM, once checkpoint.pt holds the step it reached (no final evaluation; its `.result` is
    this dict with stop reason INTERRUPTED and "eval" None), and the errors of
    `qgmrn.engine.errors` after the failures a user can act on.
    """
    t_start = time.monotonic()
    info = qdist.setup(torch.device(device).type, cfg.train.dist_timeout_minutes)
    threads = torch.get_num_threads()
    lock = None
    try:
        if info.is_main:  # one training per run folder: a second one is refused, naming this
            lock = runlock.acquire(out_dir)
        data_dir = Path(data_dir if data_dir is not None else cfg.data.data_dir)
        # config.json records the data set actually used (not part of the resume check), relative
        # to the project root when inside it: a committed run names no machine's folders
        recorded = portable_path(data_dir)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=recorded))
        if cfg.train.visual_init:  # the pretrained visual network, recorded the same way
            visual = portable_path(locate(cfg.train.visual_init))
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, visual_init=visual))
        device = resolve_device(device, info)
        if cfg.train.threads and device.type == "cpu":
            torch.set_num_threads(cfg.train.threads)  # for this call only: restored below
        progress = progress and info.is_main
        out_dir = Path(out_dir)
        resume = resume_wanted(out_dir, resume, progress)

        data = prepare_data(
            cfg,
            data_dir,
            info,
            out_dir if resume else None,
            vocab,
            dict(questions_files or {}),
            eval_split,
            progress,
        )
        restored = load_resume(out_dir, data, info) if resume else None
        prepare_run_dir(out_dir, data, restored, info)
        model, optimizer, state = build_model_and_optimizer(cfg, data.vocab, device, init_from)
        attributes = build_attribute_loss(cfg, model, optimizer, device, info)
        if restored is not None:
            state = restore(model, optimizer, restored, attributes)
        model = compile_model(distribute(model, cfg, device, info), cfg)
        seed_rng(cfg, info, state, restored)  # last: a resumed run draws what the original drew

        run = Run(
            cfg,
            model,
            optimizer,
            state,
            device,
            info,
            out_dir,
            data,
            max_steps,
            progress,
            attributes,
        )
        try:
            # SIGINT/SIGTERM: stop after the step under way with checkpoint.pt at that step
            # (qgmrn.engine.interrupt; a single process only: DDP ranks would have to agree on
            # the step)
            # (and not under torchrun, whose agent forwards Ctrl-C to its children as SIGTERM)
            catch = not info.enabled and "TORCHELASTIC_RUN_ID" not in os.environ
            with StopRequest(enabled=catch) as run.stop:
                try:
                    stop_reason = train_loop(run)
                except torch.cuda.OutOfMemoryError as e:
                    raise DeviceOutOfMemoryError(_out_of_memory_message(run)) from e
                except RuntimeError as e:
                    if _worker_death(e):
                        raise DataWorkerError(_worker_death_message(run, e)) from e
                    if qdist.peer_failure(e, info):
                        raise PeerProcessError(_peer_failure_message(run, e)) from e
                    raise
            result = None  # interrupted: not finished, so no final evaluation and no eval.json
            if stop_reason != INTERRUPTED:
                if run.last_val_step != state.step:
                    validate(run, collect_paths=True)  # final_eval reuses it if it is the best
                result = final_eval(run, stop_reason, t_start)
            update_history(run, stop_reason)
        finally:
            run.log.close()
        if stop_reason == INTERRUPTED:  # checkpoint.pt is at this step: stop as Ctrl-C would
            raise TrainingInterrupted(_result(out_dir, state, stop_reason, None), run.stop.signal)
        return _result(out_dir, state, stop_reason, result)
    finally:
        if lock is not None:
            lock.release()
        torch.set_num_threads(threads)
        qdist.teardown(info)


def _worker_death(e: BaseException) -> bool:
    if isinstance(e, DataWorkerDied):  # the stream names its dead worker
        return True
    text = str(e)  # PyTorch's own, raised when a worker's death is noticed first by its signal
    return "DataLoader worker" in text and ("killed by signal" in text or "exited" in text)


def _where_to_continue(run: Run) -> str:
    saved = run.checkpoint_step
    return (
        f"checkpoint.pt holds step {saved}: run the same command with --resume to continue from "
        "there (the steps after it are trained again, exactly as before)"
        if saved is not None
        else "no checkpoint was saved yet: run the same command again"
    )


def _out_of_memory_message(run: Run) -> str:
    cfg = run.cfg
    H, W = cfg.data.image_size
    lower = [f"--batch-size {max(1, cfg.train.batch_size // 2)} (with --lr scaled alike)"]
    if not run.amp:
        lower.append("--set train.amp=true (bf16 autocast)")
    lower += ["a smaller --set data.image_size=H,W or preset (a new run: --resume refuses them)"]
    return (
        f"{run.out_dir}: out of memory on {run.device} at step {run.state.step}: preset "
        f"{cfg.name!r} ({cfg.model.arch}), profile {cfg.profile!r}, batch {cfg.train.batch_size}"
        f" ({cfg.train.batch_size // run.info.world_size} per process), image {H}x{W}, "
        f"bf16 autocast {'on' if run.amp else 'off'}. {_where_to_continue(run)} once memory is "
        f"freed; to need less, train with {'; '.join(lower)}. A smaller batch resumes from "
        "the checkpoint, with other batches after it than the original run would have drawn."
    )


def _peer_failure_message(run: Run, e: RuntimeError) -> str:
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return (
        f"{run.out_dir}: rank {run.info.rank} of {run.info.world_size}: another process of this "
        f"run failed or stopped answering ({first}). The training stopped at step "
        f"{run.state.step}; {_where_to_continue(run)}, with {run.info.world_size} processes "
        "again (the log of the failed rank says why it stopped)."
    )


def _worker_death_message(run: Run, e: RuntimeError) -> str:
    where = _where_to_continue(run)
    return (
        f"{run.out_dir}: {str(e).strip()} The training stopped at step {run.state.step}; {where}. "
        "A worker that dies this way was killed from outside or ran out of memory (fewer "
        "--workers or a smaller batch use less)."
    )


def _result(out_dir: Path, state: TrainState, stop_reason: str, ev: dict | None) -> dict:
    return {
        "out_dir": str(out_dir),
        "step": state.step,
        "epoch": state.epoch,
        "stop_reason": stop_reason,
        "best_val_acc": state.best_val_acc,
        "best_step": state.best_step,
        "train_minutes": state.train_seconds / 60.0,
        "eval": ev,
    }
