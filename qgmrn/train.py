"""Training: `fit`, `train_one_epoch` and the loop over epochs, plain loops (sec. 3.5, 4.2).

`fit` is the whole recipe: Adam (betas from the config), the learning rate and the Gumbel
temperature as functions of the step (`qgmrn.schedules`), loss = CE + lambda * L_load (eq. 13),
a budget in epochs and/or wall-clock minutes, checkpoints that resume exactly, and the run
directory of docs/internals.md:

    config.json  vocab.json  metrics.jsonl  eval.json  checkpoint.pt  best.pt  routing_paths.npz
    history.jsonl (one row per call: where and how each stretch of steps trained)

Devices: ``device="cpu"`` or ``"cuda"`` (bf16 autocast and channels-last when the config asks).
Under torchrun (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel, each epoch is
sharded by `qgmrn.distributed.ResumableSampler`, ``cfg.train.batch_size`` is the *global* batch,
and rank 0 writes every file.

Exact resume: epoch e visits the training set in the order ``randperm(n, seed + e)``; a
checkpoint records the step, the epoch, how many of its batches were consumed, the optimizer and
every RNG state, so a run killed at any moment and resumed with ``resume=True`` ends with the same
parameters, bit for bit on CPU, as the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from qgmrn import checkpoint as ckpt
from qgmrn import distributed as qdist
from qgmrn import losses, runlock
from qgmrn.auxiliary import CHECKPOINT_KEY, REACH_KEY, AttributeLoss
from qgmrn.config import ExperimentConfig, config_to_json
from qgmrn.data.dataset import ClevrQuestions, load_question_file
from qgmrn.data.stream import (
    DataWorkerDied,
    SceneStream,
    StreamSpec,
    stream_batches,
    stream_vocab,
)
from qgmrn.data.vocab import Vocab
from qgmrn.evaluate import (
    eval_loader,
    gather_predictions,
    predict,
    routing_arrays,
    save_routing_paths,
    scores,
)
from qgmrn.fileio import atomic_write_json, atomic_write_text, portable_path
from qgmrn.history import HISTORY_FILE, RunHistory, device_name
from qgmrn.interrupt import StopRequest, TrainingInterrupted
from qgmrn.model import build_model, set_tau
from qgmrn.runtime import (
    autocast,
    batch_images,
    ensure_cache,
    resolve_device,
    sampled_loader,
    use_amp,
    use_channels_last,
)
from qgmrn.schedules import lr_at, tau_at

# Seeds derived from cfg.train.seed. Under DDP every rank but 0 reseeds its global RNG with
# seed + RANK_SEED_STRIDE * rank + step, so that ranks draw different Gumbel noise; a prime
# stride keeps these seeds apart from one another and from rank 0's. The fixed split's loader
# seeds its workers with seed * EPOCH_SEED_STRIDE + epoch: distinct for every (seed, epoch) pair
# while epoch < EPOCH_SEED_STRIDE. Changing either changes every run's data order or noise (and
# breaks the exact resume of runs started before the change).
RANK_SEED_STRIDE = 7919
EPOCH_SEED_STRIDE = 100_003
# the stop reason of a run asked to stop by SIGINT/SIGTERM (qgmrn.interrupt): not finished
INTERRUPTED = "interrupted"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step."""


class DataWorkerError(RuntimeError):
    """A DataLoader worker process died (killed, out of memory): the message names it, the step
    the training reached and the step checkpoint.pt holds, to continue from with --resume."""


class PeerProcessError(RuntimeError):
    """Another process of a multi-process run (torchrun) failed or stopped answering: the message
    names this rank, the step reached and the step checkpoint.pt holds (--resume, same number
    of processes)."""


class DeviceOutOfMemoryError(RuntimeError):
    """The accelerator ran out of memory: the message gives the batch size, image size and
    preset, the flags that lower memory, and the step checkpoint.pt holds (--resume)."""


def _worker_death(e: BaseException) -> bool:
    if isinstance(e, DataWorkerDied):  # the stream names its dead worker
        return True
    text = str(e)  # PyTorch's own, raised when a worker's death is noticed first by its signal
    return "DataLoader worker" in text and ("killed by signal" in text or "exited" in text)


@dataclass
class TrainState:
    """Where training is: what a checkpoint records besides the weights."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch in progress
    batch_in_epoch: int = 0  # batches of `epoch` already consumed (the sampler position)
    best_val_acc: float | None = None
    best_step: int | None = None
    train_seconds: float = 0.0  # wall-clock seconds spent in training steps, over all resumes


# --------------------------------------------------------------------------------------------
# fit: the recipe, top to bottom


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
    Raises `qgmrn.interrupt.TrainingInterrupted` (a KeyboardInterrupt) after SIGINT/SIGTERM, once
    checkpoint.pt holds the step it reached (no final evaluation; its `.result` is this dict with
    stop reason INTERRUPTED and "eval" None).
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
        device = resolve_device(device, info)
        if cfg.train.threads and device.type == "cpu":
            torch.set_num_threads(cfg.train.threads)  # for this call only: restored below
        progress = progress and info.is_main
        out_dir = Path(out_dir)
        resume = _resume_wanted(out_dir, resume, progress)

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
        restored = _load_resume(out_dir, data, info) if resume else None
        prepare_run_dir(out_dir, data, restored, info)
        model, optimizer, state = build_model_and_optimizer(cfg, data.vocab, device, init_from)
        attributes = build_attribute_loss(cfg, model, optimizer, device, info)
        if restored is not None:
            state = restore(model, optimizer, restored, attributes)
        model = _compile(_distribute(model, cfg, device, info), cfg)
        _seed_rng(cfg, info, state, restored)  # last: a resumed run draws what the original drew

        run = _Run(
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
            # (qgmrn.interrupt; a single process only: DDP ranks would have to agree on the step)
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


def _where_to_continue(run: _Run) -> str:
    saved = run.checkpoint_step
    return (
        f"checkpoint.pt holds step {saved}: run the same command with --resume to continue from "
        "there (the steps after it are trained again, exactly as before)"
        if saved is not None
        else "no checkpoint was saved yet: run the same command again"
    )


def _out_of_memory_message(run: _Run) -> str:
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


def _peer_failure_message(run: _Run, e: RuntimeError) -> str:
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return (
        f"{run.out_dir}: rank {run.info.rank} of {run.info.world_size}: another process of this "
        f"run failed or stopped answering ({first}). The training stopped at step "
        f"{run.state.step}; {_where_to_continue(run)}, with {run.info.world_size} processes "
        "again (the log of the failed rank says why it stopped)."
    )


def _worker_death_message(run: _Run, e: RuntimeError) -> str:
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


# --------------------------------------------------------------------------------------------
# prepare the data


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


def prepare_data(
    cfg: ExperimentConfig,
    data_dir: Path,
    info: qdist.DistInfo,
    resume_dir: Path | None,
    vocab: Vocab | None,
    questions_files: Mapping[str, str | os.PathLike],
    eval_split: str,
    progress: bool,
) -> TrainData:
    """Image caches (rank 0 builds them), the vocabulary (the run's own when resuming from
    `resume_dir`, else `vocab`, else built from the training questions), the training data (the
    train split's questions or the stream of fresh scenes) and the validation split."""
    tc, size = cfg.train, tuple(cfg.data.image_size)
    if tc.batch_size % info.world_size:
        raise ValueError(
            f"batch_size {tc.batch_size} (the global batch) is not divisible by the "
            f"{info.world_size} processes"
        )
    if cfg.data.train_source not in ("fixed", "stream"):
        raise ValueError(f"train_source {cfg.data.train_source!r}: use 'fixed' or 'stream'")
    streamed = cfg.data.train_source == "stream"
    if streamed and questions_files.get("train"):
        raise ValueError("a training stream has no question file: use train_source='fixed'")
    if info.is_main:
        for split in (eval_split,) if streamed else ("train", eval_split):
            ensure_cache(data_dir, split, size, cfg.data.num_workers, progress)
    qdist.barrier(info)
    # the training questions, read once: the vocabulary and the training set both need them
    train_file = questions_files.get("train")
    train_entries = None if streamed else load_question_file(_train_path(data_dir, train_file))
    if resume_dir is not None:
        vocab = Vocab.load(resume_dir / "vocab.json")
    elif vocab is None:
        vocab = stream_vocab() if streamed else Vocab.build(train_entries)
    per_rank_batch = tc.batch_size // info.world_size
    train, steps_per_epoch = _train_data(
        cfg, data_dir, vocab, per_rank_batch, info, train_file, train_entries
    )
    val = ClevrQuestions(
        data_dir,
        eval_split,
        vocab,
        size,
        questions_files.get(eval_split),
        cfg.data.max_val_questions,
    )
    return TrainData(
        config_json=config_to_json(cfg),
        vocab=vocab,
        vocab_json=ckpt.vocab_to_json(vocab),
        train=train,
        steps_per_epoch=steps_per_epoch,
        per_rank_batch=per_rank_batch,
        val=val,
        eval_split=eval_split,
    )


def _train_data(
    cfg, data_dir: Path, vocab, per_rank_batch: int, info, questions_file, entries=None
):
    """(training data, steps per epoch): the train split's questions (`entries`: the file's,
    already read), or the stream of fresh scenes, whose "epoch" is `stream_epoch_questions`
    questions (the validation cadence)."""
    size, batch = tuple(cfg.data.image_size), cfg.train.batch_size
    if cfg.data.train_source == "stream":
        stream = SceneStream(
            StreamSpec.from_data_dir(data_dir),
            vocab,
            size,
            per_rank_batch,
            scene_reuse=cfg.data.stream_scene_reuse,
            curriculum=cfg.data.curriculum,
            rank=info.rank,
            world=info.world_size,
            object_maps=cfg.train.attribute_loss_weight > 0,
        )
        return stream, max(cfg.data.stream_epoch_questions // batch, 1)
    train_ds = ClevrQuestions(
        data_dir,
        "train",
        vocab,
        size,
        questions_file,
        cfg.data.max_train_questions,
        entries=entries,
    )
    probe = qdist.ResumableSampler(
        train_ds, num_replicas=info.world_size, rank=info.rank, seed=cfg.train.seed
    )
    steps_per_epoch = probe.num_samples // per_rank_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_ds)} training questions make no full batch of {batch}")
    return train_ds, steps_per_epoch


def _train_path(data_dir: Path, questions_file: str | os.PathLike | None) -> Path:
    """The training question file: `questions_file`, else the train split's."""
    if questions_file:
        return Path(questions_file)
    return Path(data_dir) / "questions" / "CLEVR_train_questions.json"


def build_vocab(data_dir: str | os.PathLike, questions_file: str | os.PathLike | None = None):
    """The vocabulary of the training questions of `data_dir` (or of `questions_file`)."""
    return Vocab.build(load_question_file(_train_path(Path(data_dir), questions_file)))


# --------------------------------------------------------------------------------------------
# the run directory, resuming


def _resume_wanted(out_dir: Path, resume: bool, progress: bool) -> bool:
    """`resume` if there is a checkpoint to resume from (saying so when there is none)."""
    has_checkpoint = (out_dir / "checkpoint.pt").exists()
    if resume and not has_checkpoint and progress:
        print(f"[qgmrn] no {out_dir / 'checkpoint.pt'} to resume from: starting afresh")
    return resume and has_checkpoint


def _load_resume(out_dir: Path, data: TrainData, info: qdist.DistInfo) -> dict[str, Any]:
    """checkpoint.pt, refused unless it was written with this config and vocabulary, by as many
    processes as this run has (each process draws its share of every batch: another number of
    processes would train on other batches from there on)."""
    path = out_dir / "checkpoint.pt"
    c = ckpt.load_checkpoint(
        path, config_json=data.config_json, vocab_json=data.vocab_json, map_location="cpu"
    )
    saved = (c.get("extra") or {}).get("world_size")  # not recorded by the first versions
    if saved is not None and saved != info.world_size:
        launch = f"torchrun --nproc-per-node {saved} ..." if saved > 1 else "one process"
        raise ckpt.CheckpointError(
            f"{path}: written by a run of {saved} process(es), resumed by {info.world_size}: "
            f"the batches after step {c['step']} would differ from the run's own. Resume it with "
            f"{launch}, or train a new run into another --out."
        )
    return c


def prepare_run_dir(
    out_dir: Path, data: TrainData, restored: Mapping | None, info: qdist.DistInfo
) -> None:
    """config.json and vocab.json; a fresh run clears the files of an earlier one, a resumed run
    drops the metrics rows written after its checkpoint (they will be redone). Rank 0 only."""
    if not info.is_main:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for tmp in out_dir.glob(".*.tmp*"):  # left by a run killed while writing a file
        tmp.unlink(missing_ok=True)
    atomic_write_text(out_dir / "config.json", data.config_json + "\n", fsync=False)
    data.vocab.save(out_dir / "vocab.json")
    if restored is not None:
        _truncate_metrics(out_dir / "metrics.jsonl", restored["step"])
        # a finished run trained further: its end-of-run files describe an earlier step, and a
        # continuation that is stopped or killed must not look finished (they are rewritten when
        # it finishes)
        for name in ("eval.json", "routing_paths.npz"):
            (out_dir / name).unlink(missing_ok=True)
        return
    for name in ("checkpoint.pt", "best.pt", "metrics.jsonl", "eval.json", HISTORY_FILE):
        (out_dir / name).unlink(missing_ok=True)


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop the rows written after the checkpoint a run resumes from."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        if int(row.get("step", 0)) <= last_step:
            keep.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in keep), fsync=False)


# --------------------------------------------------------------------------------------------
# model and optimizer, restored


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# Adam: the paper's (sec. 4.2); AdamW (ours): weight decay decoupled from the gradient
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def build_model_and_optimizer(
    cfg: ExperimentConfig,
    vocab: Vocab,
    device: torch.device,
    init_from: str | os.PathLike | Mapping[str, Tensor] | None = None,
) -> tuple[nn.Module, torch.optim.Optimizer, TrainState]:
    """The model of `cfg` (the same initial weights on every rank: seeded here), optionally
    started from `init_from`, on `device`, and Adam with the paper's betas (sec. 4.2)."""
    tc = cfg.train
    seed_everything(tc.seed)
    model = build_model(cfg.model, len(vocab), vocab.num_answers)
    if init_from is not None:
        state_dict = (
            ckpt.read_checkpoint(init_from)["model"]
            if isinstance(init_from, str | os.PathLike)
            else init_from
        )
        model.load_state_dict(state_dict)
    if tc.visual_init:  # ours: perception first (qgmrn.pretrain); a resumed run then restores
        from qgmrn.pretrain import load_visual_into

        load_visual_into(model, tc.visual_init)
    model.to(device)
    if use_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)
    if tc.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {tc.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    optimizer = OPTIMIZERS[tc.optimizer](
        model.parameters(), lr=lr_at(0, tc), betas=tuple(tc.betas), weight_decay=tc.weight_decay
    )
    return model, optimizer, TrainState()


def build_attribute_loss(
    cfg: ExperimentConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    info: qdist.DistInfo,
) -> AttributeLoss | None:
    """The auxiliary attribute loss (ours, `qgmrn.auxiliary`) when `attribute_loss_weight` > 0:
    its head joins the optimizer as a second parameter group. None otherwise."""
    tc = cfg.train
    if tc.attribute_loss_weight <= 0:
        return None
    if cfg.data.train_source != "stream":
        raise ValueError(
            "attribute_loss_weight > 0 needs train_source='stream': its labels come from the "
            "stream's renderer (the fixed splits store no object buffers)"
        )
    if info.enabled or tc.compile:
        raise ValueError(
            "attribute_loss_weight > 0 runs in one process without torch.compile (its head is "
            "neither all-reduced under torchrun nor traced by the compiler)"
        )
    attributes = AttributeLoss(model, device, tc.attribute_loss_reach, tc.seed)
    if tc.visual_init:  # the head pretrained with the visual network (qgmrn.pretrain)
        from qgmrn.pretrain import read_visual

        attributes.load_state_dict(read_visual(tc.visual_init)["attribute_head"])
    optimizer.add_param_group({"params": list(attributes.parameters())})
    return attributes


def restore(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    restored: Mapping,
    attributes: AttributeLoss | None = None,
) -> TrainState:
    """Load a checkpoint's weights and optimizer state (and the auxiliary attribute head's);
    the training state it recorded."""
    model.load_state_dict(restored["model"])
    extra = restored.get("extra") or {}
    if attributes is not None:
        if CHECKPOINT_KEY not in extra:
            raise ValueError(
                "the checkpoint to resume was trained without the auxiliary attribute loss: "
                "resume it without attribute_loss_weight, or start a new run"
            )
        attributes.load_state_dict(extra[CHECKPOINT_KEY])
        reach = extra.get(REACH_KEY, "all")  # the first runs' checkpoints name none: "all"
        if reach != attributes.reach:
            raise ValueError(
                f"the checkpoint to resume was trained with attribute_loss_reach={reach!r}: "
                f"resume it with the same reach (qgmrn train --attribute-loss-reach {reach})"
            )
    elif CHECKPOINT_KEY in extra:
        raise ValueError(
            "the checkpoint to resume was trained with the auxiliary attribute loss "
            "(attribute_loss_weight > 0): resume it with the same weight"
        )
    optimizer.load_state_dict(restored["optimizer"])
    return TrainState(
        step=restored["step"],
        epoch=restored["epoch"],
        batch_in_epoch=restored["batch_in_epoch"],
        best_val_acc=restored["best_val_acc"],
        best_step=extra.get("best_step"),
        train_seconds=float(extra.get("train_seconds", 0.0)),
    )


def _distribute(
    model: nn.Module, cfg: ExperimentConfig, device: torch.device, info: qdist.DistInfo
) -> nn.Module:
    """DistributedDataParallel under torchrun, the model itself otherwise. A static twin's router
    gets no gradient (its gates are constants), hence find_unused_parameters."""
    if not info.enabled:
        return model
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=cfg.model.gate == "static",
    )


def _compile(model: nn.Module, cfg: ExperimentConfig) -> nn.Module:
    """`torch.compile` of the training model when `TrainConfig.compile` names a backend (ours; the
    lever's gain is measured in benchmarks/bench_levers.py). dynamic=None (automatic): the first
    graph is static, and a dimension seen to change (the padded question length, the last batch
    of an epoch) becomes symbolic at its recompile. dynamic=True made every dimension symbolic,
    the image's too, and inductor failed on the BRN's convolution shapes ("cannot determine truth
    value of Relational", torch 2.14.1, CPU). Checkpoints and validation reach the module inside
    (`checkpoint.unwrap`)."""
    if not cfg.train.compile:
        return model
    return torch.compile(model, backend=cfg.train.compile, dynamic=None)


def _seed_rng(
    cfg: ExperimentConfig, info: qdist.DistInfo, state: TrainState, restored: Mapping | None
) -> None:
    if restored is not None:
        ckpt.set_rng_state(restored["rng"])
    if info.rank > 0:  # different Gumbel noise per rank
        torch.manual_seed(cfg.train.seed + RANK_SEED_STRIDE * info.rank + state.step)


# --------------------------------------------------------------------------------------------
# the run: one training step, one epoch, the loop over epochs


class _JsonlWriter:
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


class _Run:
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
        self.log = _JsonlWriter(out_dir / "metrics.jsonl", info.is_main)
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
        self.history = _begin_history(self) if info.is_main else None
        self.stop = StopRequest(enabled=False)  # fit installs the signal handlers around the loop

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch


def _begin_history(run: _Run) -> RunHistory:
    """Append this call's segment to the run's history.jsonl (`qgmrn.history`)."""
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


def update_history(run: _Run, stop_reason: str | None = None) -> None:
    """Record in history.jsonl the step the segment has checkpointed (and why it stopped)."""
    if run.history is not None:
        minutes = (run.state.train_seconds - run.seconds_at_start) / 60.0
        run.history.update(end_step=run.state.step, train_minutes=minutes, stop_reason=stop_reason)


def save_resume_checkpoint(run: _Run) -> None:
    """checkpoint.pt, the point a resume continues from, and the history's end of segment."""
    save_run_checkpoint(run, run.out_dir / "checkpoint.pt")
    run.checkpoint_step = run.state.step
    update_history(run)


def save_run_checkpoint(run: _Run, path: Path, *, with_optimizer: bool = True) -> None:
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


@dataclass
class StepOutput:
    """What one training step leaves for the log, detached, on the device."""

    ce: Tensor  # () cross-entropy
    load: Tensor  # () load-balancing loss L_load (0 for a model without gates)
    correct: Tensor  # () fraction of the batch answered right
    exec_ratio: list[Tensor]  # per modular layer: () mean of its gates
    finite: Tensor  # () bool: the loss was finite
    lr: float
    tau: float
    batch: int
    attributes: Tensor | None = None  # (2,) auxiliary attribute loss and cell accuracy (ours)


def train_step(run: _Run, batch) -> StepOutput:
    """One optimizer step: lr and tau of this step (`qgmrn.schedules`), the forward pass under
    autocast, loss = CE + lambda * L_load (eq. 13), backward through the straight-through
    gates, optional gradient clipping, the Adam step. With the auxiliary attribute loss (ours)
    its weighted term joins that loss (reach "all") or takes a backward pass of its own into the
    visual network and its head only (reach "visual", `AttributeLoss.inputs`)."""
    tc, step = run.cfg.train, run.state.step
    model, opt, device = run.model, run.optimizer, run.device
    lr, tau = lr_at(step, tc), tau_at(step, tc)
    for group in opt.param_groups:
        group["lr"] = lr
    set_tau(ckpt.unwrap(model), tau)
    images = batch_images(batch, device, run.channels_last)  # (B, 3, H, W)
    questions = batch.questions.to(device, non_blocking=True)  # (B, T)
    lengths = batch.lengths.to(device, non_blocking=True)  # (B,)
    answers = batch.answers.to(device, non_blocking=True)  # (B,)
    with autocast(device, run.amp):
        out = model(images, questions, lengths)
        ce = losses.vqa_loss(out.logits.float(), answers)
        load = (
            losses.load_balance_loss([g.float() for g in out.gates])
            if out.gates
            else torch.zeros((), device=device)
        )
        loss = ce + tc.load_balance_weight * load
        attr, own = None, None
        if run.attributes is not None:  # ours: the auxiliary attribute loss on y_L
            attr_loss, attr_acc = run.attributes(batch)
            weighted = tc.attribute_loss_weight * attr_loss
            if run.attributes.inputs is None:
                loss = loss + weighted  # reach "all": through the gates into the router too
            else:
                own = weighted  # reach "visual": its own backward pass below
            attr = torch.stack([attr_loss.detach().float(), attr_acc])
    finite = torch.isfinite(loss.detach())
    opt.zero_grad(set_to_none=True)
    if own is not None:
        finite = finite & torch.isfinite(own.detach())
        # restricted to the visual network and the head: none of it reaches the router, whose
        # gates then learn from the VQA loss alone (the graph is kept for that loss's pass)
        own.backward(inputs=run.attributes.inputs, retain_graph=step >= tc.attribute_pretrain_steps)
    if attr is not None and step < tc.attribute_pretrain_steps:
        if own is None:  # reach "all": the attribute term alone, through the whole model
            (tc.attribute_loss_weight * attr_loss).backward()
    else:
        loss.backward()
    if tc.grad_clip is not None:
        # every optimised parameter: the model's and, when on, the attribute head's
        nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], tc.grad_clip)
    opt.step()
    with torch.no_grad():
        correct = (out.logits.argmax(-1) == answers).float().mean()
        ratios = [g.detach().float().mean() for g in out.gates]
    return StepOutput(
        ce.detach().float(),
        load.detach().float(),
        correct,
        ratios,
        finite,
        lr,
        tau,
        len(answers),
        attr,
    )


class _RunningMeans:
    """Sums since the last log row, kept on the device (no per-step host sync on a GPU), and
    the first step whose loss was not finite (-1: none yet)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self._reset()

    def _reset(self) -> None:
        self.sums = torch.zeros(3, device=self.device)  # ce, load, correct
        self.attr: Tensor | None = None  # auxiliary attribute loss, cell accuracy (ours)
        self.exec: list[Tensor] = []
        self.steps = self.samples = 0
        self.wait = 0.0  # seconds spent waiting for the loader
        self.t0 = time.perf_counter()

    def add(self, out: StepOutput, step: int, world_size: int) -> None:
        bad = (self.first_bad < 0) & ~out.finite
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)
        self.sums += torch.stack([out.ce, out.load, out.correct])
        if out.attributes is not None:
            self.attr = out.attributes if self.attr is None else self.attr + out.attributes
        if self.exec:
            self.exec = [a + r for a, r in zip(self.exec, out.exec_ratio, strict=True)]
        else:
            self.exec = list(out.exec_ratio)
        self.steps += 1
        self.samples += out.batch * world_size

    def row(self, run: _Run, out: StepOutput) -> dict[str, Any]:
        """The log row of the steps since the last one (averaged over ranks), then reset."""
        sums = torch.cat([self.sums, torch.stack(self.exec)]) if self.exec else self.sums
        if run.info.enabled:
            torch.distributed.all_reduce(sums)
            sums /= run.info.world_size
        vals = (sums / self.steps).tolist()
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        row = {
            "step": run.state.step,
            "epoch": run.state.epoch,
            "loss": vals[0],
            "load_loss": vals[1],
            "acc": vals[2],
            "lr": out.lr,
            "tau": out.tau,
            "samples_per_s": self.samples / elapsed,
            "data_wait_frac": self.wait / elapsed,
            "exec_ratio": vals[3:],
        }
        if self.attr is not None:  # one process only (build_attribute_loss): no all-reduce
            row["attr_loss"], row["attr_acc"] = (self.attr / self.steps).tolist()
        self._reset()
        return row


def _check_finite(first_bad: Tensor, run: _Run) -> None:
    if run.info.enabled:  # all ranks stop together, naming the earliest bad step
        never = torch.iinfo(torch.long).max
        t = torch.where(first_bad < 0, torch.full_like(first_bad, never), first_bad)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        first_bad = torch.where(t == never, torch.full_like(t, -1), t)
    bad = int(first_bad.item())
    if bad >= 0:
        last = run.out_dir / "checkpoint.pt"
        kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint"
        raise NonFiniteLossError(
            f"non-finite training loss at step {bad} (epoch {run.state.epoch}); training "
            f"stopped, {kept} (lower the learning rate or enable grad_clip)"
        )


def _validation_due(run: _Run) -> bool:
    """Whether a step-based validation (`eval_every_steps`) falls on the current step."""
    every = run.cfg.train.eval_every_steps
    return bool(every) and run.state.step % every == 0


def _stop_reason(run: _Run) -> str | None:
    """Why the epoch stops after this step: INTERRUPTED (SIGINT/SIGTERM), "max_steps",
    "validate" (a step-based validation is due) or "max_minutes"; None to go on."""
    tc, s = run.cfg.train, run.state
    if run.stop.requested:
        return INTERRUPTED
    if run.max_steps is not None and s.step >= run.max_steps:
        return "max_steps"
    if _validation_due(run):
        return "validate"
    # under DDP the ranks agree on the wall-clock budget at log steps only
    if tc.max_minutes is not None and (not run.info.enabled or s.step % tc.log_every == 0):
        spent = s.train_seconds >= tc.max_minutes * 60.0
        if qdist.any_true(spent, run.info, run.device):
            return "max_minutes"
    return None


def train_one_epoch(run: _Run, loader: Iterable) -> str | None:
    """Train on the rest of the current epoch, logging every `log_every` steps and saving
    checkpoint.pt every `checkpoint_every_steps`. Returns why it stopped early (`_stop_reason`)
    or None when the epoch is done. Updates `run.state` as it goes."""
    tc, s = run.cfg.train, run.state
    run.model.train()
    means = _RunningMeans(run.device)
    cheap_check = run.device.type == "cpu" and not run.info.enabled  # no sync to wait for
    bar = tqdm(
        total=run.steps_per_epoch,
        initial=s.batch_in_epoch,
        desc=f"epoch {s.epoch}",
        leave=False,
        disable=not (run.progress and run.info.is_main),
    )
    stop, t_prev = None, time.perf_counter()
    try:
        for batch in loader:
            means.wait += time.perf_counter() - t_prev
            out = train_step(run, batch)
            means.add(out, s.step, run.info.world_size)
            s.step += 1
            s.batch_in_epoch += 1
            bar.update(1)
            now = time.perf_counter()
            s.train_seconds += now - t_prev  # data loading included
            t_prev = now
            if cheap_check:  # stop at the very step
                _check_finite(means.first_bad, run)
            if s.step % tc.log_every == 0:
                _check_finite(means.first_bad, run)
                row = means.row(run, out)
                run.log.write(row)
                bar.set_postfix(
                    loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.3f}", lr=f"{out.lr:.1e}"
                )
            if tc.checkpoint_every_steps and s.step % tc.checkpoint_every_steps == 0:
                _check_finite(means.first_bad, run)
                save_resume_checkpoint(run)
            stop = _stop_reason(run)
            if stop is not None:
                break
        _check_finite(means.first_bad, run)
    finally:
        bar.close()
    return stop


def _epoch_batches(run: _Run) -> Iterable:
    """The batches of the rest of the current epoch: this rank's share of a seeded permutation
    of the train split, or the next steps of the training stream."""
    tc, state, info, train = run.cfg.train, run.state, run.info, run.data.train
    if isinstance(train, SceneStream):
        rest = run.steps_per_epoch - state.batch_in_epoch
        batches = stream_batches(train, state.step, run.cfg.data.num_workers, run.device)
        return itertools.islice(batches, rest)
    sampler = qdist.ResumableSampler(
        train,
        num_replicas=info.world_size,
        rank=info.rank,
        seed=tc.seed,
        epoch=state.epoch,
        start=state.batch_in_epoch * run.data.per_rank_batch,
    )
    return sampled_loader(
        train,
        sampler,
        run.data.per_rank_batch,
        run.cfg.data.num_workers,
        run.device,
        seed=tc.seed * EPOCH_SEED_STRIDE + state.epoch,
        drop_last=True,
    )


def train_loop(run: _Run) -> str:
    """Epochs until the budget (epochs, minutes, steps) is spent, validating at epoch ends and
    every `eval_every_steps`, checkpointing after each stretch; returns why it stopped."""
    tc, state = run.cfg.train, run.state
    stop_reason = None
    if run.max_steps is not None and state.step >= run.max_steps:
        stop_reason = "max_steps"
        save_resume_checkpoint(run)
    while stop_reason is None and state.epoch < tc.epochs:
        stop_reason = train_one_epoch(run, _epoch_batches(run))
        # a step-based validation due at this step, also when a stop request came first (the
        # resumed run would not redo it)
        due = stop_reason == "validate" or (stop_reason == INTERRUPTED and _validation_due(run))
        if stop_reason == "validate":
            stop_reason = None
        if state.batch_in_epoch >= run.steps_per_epoch:  # the epoch is complete
            state.epoch += 1
            state.batch_in_epoch = 0
            due |= bool(tc.eval_every_epochs) and state.epoch % max(tc.eval_every_epochs, 1) == 0
        if due:
            validate(run)
        save_resume_checkpoint(run)
        if run.stop.requested:  # asked during the validation or the save: no further step
            stop_reason = INTERRUPTED
    return stop_reason or "epochs"


# --------------------------------------------------------------------------------------------
# validate, evaluate at the end


def validate(run: _Run, *, collect_paths: bool = False) -> dict[str, Any]:
    """Score the current weights on the validation split: a "val" row in metrics.jsonl, and
    best.pt when they beat the best so far. `collect_paths`: keep the predictions with their
    routing paths in `run.last_val_pred` (the end-of-run validation, for `final_eval`)."""
    state, split = run.state, run.data.eval_split
    pred = predict(
        run.model,
        run.val_loader,
        run.device,
        amp=run.amp,
        channels_last=run.channels_last,
        collect_paths=collect_paths,
        progress=run.progress,
        desc=f"eval {split}",
    )
    pred = gather_predictions(pred, run.info)
    run.last_val_pred = pred if collect_paths else None
    result = scores(pred, split, run.data.val.depths)
    run.log.write(
        {
            "kind": "val",
            "step": state.step,
            "epoch": state.epoch,
            "split": split,
            "n": result["n"],
            "overall": result["overall"],
            "by_type": result["by_type"],
            "by_depth": result["by_depth"],
        }
    )
    run.last_val_step = state.step
    acc = result["overall"] if result["overall"] is not None else -1.0
    if state.best_val_acc is None or acc > state.best_val_acc:
        state.best_val_acc, state.best_step = acc, state.step
        save_run_checkpoint(run, run.out_dir / "best.pt", with_optimizer=False)
    return result


def final_eval(run: _Run, stop_reason: str, t_start: float) -> dict[str, Any]:
    """Evaluate the best weights (best.pt) once more, collecting routing paths; write
    eval.json and routing_paths.npz. Returns the eval dict."""
    tc, state, info, device = run.cfg.train, run.state, run.info, run.device
    best_path = run.out_dir / "best.pt"
    qdist.barrier(info)  # best.pt is written by rank 0
    model_eval = ckpt.unwrap(run.model)
    used = "best.pt" if best_path.exists() else "checkpoint.pt"
    best_is_current = state.best_step == state.step
    if best_path.exists() and not best_is_current:
        model_eval.load_state_dict(ckpt.read_checkpoint(best_path)["model"])
    if best_is_current and run.last_val_pred is not None and run.last_val_step == state.step:
        pred = run.last_val_pred  # the end-of-run validation scored these very weights
    else:
        pred = predict(
            model_eval,
            run.val_loader,
            device,
            amp=run.amp,
            channels_last=run.channels_last,
            collect_paths=True,
            progress=run.progress,
            desc="routing paths",
        )
        pred = gather_predictions(pred, info)
    result = scores(pred, run.data.eval_split, run.data.val.depths)
    result.update(
        checkpoint=used,
        checkpoint_step=state.best_step,
        train={
            "steps": state.step,
            "epochs_completed": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "steps_per_epoch": run.steps_per_epoch,
            # whole epochs plus the part of the current one: "0.4 epochs", not "0 epochs"
            "epochs_seen": state.epoch + state.batch_in_epoch / max(1, run.steps_per_epoch),
            "stop_reason": stop_reason,
            "epochs_budget": tc.epochs,
            "max_minutes": tc.max_minutes,
            "train_minutes": state.train_seconds / 60.0,
            "wall_minutes_this_call": (time.monotonic() - t_start) / 60.0,
            "global_batch": tc.batch_size,
            "world_size": info.world_size,
            "device": str(device),
            "torch": torch.__version__,
        },
    )
    if info.is_main:
        atomic_write_json(
            run.out_dir / "eval.json", result, indent=2, trailing_newline=True, fsync=False
        )
        save_routing_paths(run.out_dir / "routing_paths.npz", routing_arrays(model_eval, pred))
    return result
