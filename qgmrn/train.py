"""Training: `fit`, `train_one_epoch` and the loop over epochs, plain loops (sec. 3.5, 4.2).

`fit` is the whole recipe: Adam (betas from the config), the learning rate and the Gumbel
temperature as functions of the step (`qgmrn.schedules`), loss = CE + lambda * L_load (eq. 13),
a budget in epochs and/or wall-clock minutes, checkpoints that resume exactly, and the run
directory of docs/internals.md:

    config.json  vocab.json  metrics.jsonl  eval.json  checkpoint.pt  best.pt  routing_paths.npz

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
from qgmrn.config import ExperimentConfig, config_to_json
from qgmrn.data.stream import SceneStream, StreamSpec, stream_batches, stream_vocab
from qgmrn.evaluate import (
    eval_loader,
    gather_predictions,
    predict,
    routing_arrays,
    save_routing_paths,
    scores,
)
from qgmrn.fileio import atomic_write_json
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


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step."""


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
# small helpers


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop the rows written after the checkpoint a run resumes from (they will be redone)."""
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
    path.write_text("".join(line + "\n" for line in keep))


# --------------------------------------------------------------------------------------------
# training


@dataclass
class _Run:
    """Everything one epoch of training needs (built by `fit`)."""

    cfg: ExperimentConfig
    model: nn.Module  # possibly DDP-wrapped
    optimizer: torch.optim.Optimizer
    state: TrainState
    device: torch.device
    info: qdist.DistInfo
    out_dir: Path
    log: _JsonlWriter
    config_json: str
    vocab_json: str
    steps_per_epoch: int
    per_rank_batch: int
    max_steps: int | None
    progress: bool


def save_run_checkpoint(run: _Run, path: Path, *, with_optimizer: bool = True) -> None:
    """Write a checkpoint of `run` (rank 0 only)."""
    if not run.info.is_main:
        return
    s = run.state
    ckpt.save_checkpoint(
        path,
        model=run.model,
        optimizer=run.optimizer if with_optimizer else None,
        step=s.step,
        epoch=s.epoch,
        batch_in_epoch=s.batch_in_epoch,
        config_json=run.config_json,
        vocab_json=run.vocab_json,
        best_val_acc=s.best_val_acc,
        extra={"best_step": s.best_step, "train_seconds": s.train_seconds},
    )


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


def train_one_epoch(run: _Run, loader: Iterable) -> str | None:
    """Train on the rest of the current epoch. Returns why it stopped early ("max_steps",
    "max_minutes", "validate": a step-based validation is due) or None when the epoch is done.
    Updates `run.state` as it goes."""
    from qgmrn import losses
    from qgmrn.model import set_tau

    cfg, tc, s, device = run.cfg, run.cfg.train, run.state, run.device
    model, opt = run.model, run.optimizer
    channels_last, amp = use_channels_last(cfg, device), use_amp(cfg, device)
    model.train()
    # running sums since the last log row, kept on the device (no per-step host sync on GPU)
    acc_loss = torch.zeros((), device=device)
    acc_load = torch.zeros((), device=device)
    acc_correct = torch.zeros((), device=device)
    acc_exec: list[Tensor] = []
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    n_steps = n_samples = 0
    wait = 0.0  # seconds spent waiting for the loader since the last log row
    t_log = t_prev = time.perf_counter()
    bar = tqdm(
        total=run.steps_per_epoch,
        initial=s.batch_in_epoch,
        desc=f"epoch {s.epoch}",
        leave=False,
        disable=not (run.progress and run.info.is_main),
    )
    stop = None
    try:
        for batch in loader:
            wait += time.perf_counter() - t_prev
            lr, tau = lr_at(s.step, tc), tau_at(s.step, tc)
            for group in opt.param_groups:
                group["lr"] = lr
            set_tau(ckpt.unwrap(model), tau)
            images = batch_images(batch, device, channels_last)
            questions = batch.questions.to(device, non_blocking=True)
            lengths = batch.lengths.to(device, non_blocking=True)
            answers = batch.answers.to(device, non_blocking=True)
            with autocast(device, amp):
                out = model(images, questions, lengths)
                ce = losses.vqa_loss(out.logits.float(), answers)
                load = (
                    losses.load_balance_loss([g.float() for g in out.gates])
                    if out.gates
                    else torch.zeros((), device=device)
                )
                loss = ce + tc.load_balance_weight * load
            finite = torch.isfinite(loss.detach())
            first_bad = torch.where(
                (first_bad < 0) & ~finite, torch.full_like(first_bad, s.step), first_bad
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            s.step += 1
            s.batch_in_epoch += 1
            n_steps += 1
            n_samples += len(answers) * run.info.world_size
            with torch.no_grad():
                acc_loss += ce.detach().float()
                acc_load += load.detach().float()
                acc_correct += (out.logits.argmax(-1) == answers).float().mean()
                ratios = [g.detach().float().mean() for g in out.gates]
                if acc_exec:
                    ratios = [a + r for a, r in zip(acc_exec, ratios, strict=True)]
                acc_exec = ratios
            bar.update(1)
            now = time.perf_counter()
            s.train_seconds += now - t_prev  # data loading included
            t_prev = now

            if device.type == "cpu" and not run.info.enabled:  # free: stop at the very step
                _check_finite(first_bad, run)
            if s.step % tc.log_every == 0:
                _check_finite(first_bad, run)
                sums = torch.stack([acc_loss, acc_load, acc_correct, *acc_exec]).float()
                if run.info.enabled:
                    torch.distributed.all_reduce(sums)
                    sums /= run.info.world_size
                vals = (sums / n_steps).tolist()
                elapsed = time.perf_counter() - t_log
                row = {
                    "step": s.step,
                    "epoch": s.epoch,
                    "loss": vals[0],
                    "load_loss": vals[1],
                    "acc": vals[2],
                    "lr": lr,
                    "tau": tau,
                    "samples_per_s": n_samples / max(elapsed, 1e-9),
                    "data_wait_frac": wait / max(elapsed, 1e-9),
                    "exec_ratio": vals[3:],
                }
                run.log.write(row)
                bar.set_postfix(loss=f"{vals[0]:.3f}", acc=f"{vals[2]:.3f}", lr=f"{lr:.1e}")
                acc_loss.zero_()
                acc_load.zero_()
                acc_correct.zero_()
                acc_exec = []
                n_steps = n_samples = 0
                wait = 0.0
                t_log = time.perf_counter()
            if tc.checkpoint_every_steps and s.step % tc.checkpoint_every_steps == 0:
                _check_finite(first_bad, run)
                save_run_checkpoint(run, run.out_dir / "checkpoint.pt")
            if run.max_steps is not None and s.step >= run.max_steps:
                stop = "max_steps"
            elif tc.eval_every_steps and s.step % tc.eval_every_steps == 0:
                stop = "validate"  # the loop validates and continues the epoch
            elif tc.max_minutes is not None and (
                not run.info.enabled or s.step % tc.log_every == 0
            ):  # under DDP the ranks agree on the budget at log steps only
                spent = s.train_seconds >= tc.max_minutes * 60.0
                if qdist.any_true(spent, run.info, device):
                    stop = "max_minutes"
            if stop is not None:
                break
        _check_finite(first_bad, run)
    finally:
        bar.close()
    return stop


# --------------------------------------------------------------------------------------------
# fit


def _questions_path(data_dir: Path, split: str) -> Path:
    return data_dir / "questions" / f"CLEVR_{split}_questions.json"


def build_vocab(data_dir: str | os.PathLike, questions_file: str | os.PathLike | None = None):
    """The vocabulary of the training questions of `data_dir` (or of `questions_file`)."""
    from qgmrn import clevr
    from qgmrn.data import Vocab

    path = Path(questions_file) if questions_file else _questions_path(Path(data_dir), "train")
    if "humans" in path.name.lower():
        questions = clevr.load_humans_questions(path)
    else:
        questions = clevr.load_questions(path)
    return Vocab.build(questions)


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
    """
    info = qdist.setup(torch.device(device).type)
    threads = torch.get_num_threads()
    try:
        return _fit(
            cfg,
            Path(data_dir if data_dir is not None else cfg.data.data_dir),
            Path(out_dir),
            device=resolve_device(device, info),
            info=info,
            resume=resume,
            progress=progress,
            vocab=vocab,
            init_from=init_from,
            max_steps=max_steps,
            questions_files=dict(questions_files or {}),
            eval_split=eval_split,
        )
    finally:
        torch.set_num_threads(threads)  # cfg.train.threads applies to this call only
        qdist.teardown(info)


def _fit(
    cfg: ExperimentConfig,
    data_dir: Path,
    out_dir: Path,
    *,
    device: torch.device,
    info: qdist.DistInfo,
    resume: bool,
    progress: bool,
    vocab,
    init_from,
    max_steps: int | None,
    questions_files: dict,
    eval_split: str,
) -> dict[str, Any]:
    from qgmrn.data import ClevrQuestions, Vocab
    from qgmrn.model import build_model

    t_start = time.monotonic()
    # config.json records the data set actually used (not part of the resume check)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
    tc = cfg.train
    if tc.threads and device.type == "cpu":
        torch.set_num_threads(tc.threads)
    if tc.batch_size % info.world_size:
        raise ValueError(
            f"batch_size {tc.batch_size} (the global batch) is not divisible by the "
            f"{info.world_size} processes"
        )
    per_rank_batch = tc.batch_size // info.world_size
    progress = progress and info.is_main
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    metrics_path = out_dir / "metrics.jsonl"
    resume_ckpt = None
    if resume and not ckpt_path.exists() and progress:
        print(f"[qgmrn] no {ckpt_path} to resume from: starting afresh")
    resume = resume and ckpt_path.exists()

    # ---- data: image caches (rank 0 builds), vocabulary, data sets
    size = tuple(cfg.data.image_size)
    streamed = cfg.data.train_source == "stream"
    if cfg.data.train_source not in ("fixed", "stream"):
        raise ValueError(f"train_source {cfg.data.train_source!r}: use 'fixed' or 'stream'")
    if streamed and questions_files.get("train"):
        raise ValueError("a training stream has no question file: use train_source='fixed'")
    if info.is_main:
        for split in (eval_split,) if streamed else ("train", eval_split):
            ensure_cache(data_dir, split, size, cfg.data.num_workers, progress)
    qdist.barrier(info)
    if resume:
        vocab = Vocab.load(out_dir / "vocab.json")
    elif vocab is None:
        vocab = stream_vocab() if streamed else build_vocab(data_dir, questions_files.get("train"))
    config_json, vocab_json = config_to_json(cfg), ckpt.vocab_to_json(vocab)
    if resume:
        resume_ckpt = ckpt.load_checkpoint(
            ckpt_path, config_json=config_json, vocab_json=vocab_json, map_location="cpu"
        )
    train_ds, steps_per_epoch = _train_data(
        cfg, data_dir, vocab, per_rank_batch, info, questions_files.get("train")
    )
    val_ds = ClevrQuestions(
        data_dir,
        eval_split,
        vocab,
        size,
        questions_files.get(eval_split),
        cfg.data.max_val_questions,
    )

    # ---- run directory
    if info.is_main:
        for tmp in out_dir.glob(".*.tmp*"):  # left by a run killed while writing a file
            tmp.unlink(missing_ok=True)
        (out_dir / "config.json").write_text(config_json + "\n")
        vocab.save(out_dir / "vocab.json")
        if resume:
            _truncate_metrics(metrics_path, resume_ckpt["step"])
        else:
            for stale in (ckpt_path, best_path, metrics_path, out_dir / "eval.json"):
                stale.unlink(missing_ok=True)

    # ---- model and optimizer (same initial weights on every rank)
    seed_everything(tc.seed)
    model = build_model(cfg.model, len(vocab), vocab.num_answers)
    if init_from is not None:
        state_dict = (
            ckpt.read_checkpoint(init_from)["model"]
            if isinstance(init_from, str | os.PathLike)
            else init_from
        )
        model.load_state_dict(state_dict)
    model.to(device)
    if use_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=lr_at(0, tc), betas=tuple(tc.betas), weight_decay=tc.weight_decay
    )
    state = TrainState()
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["model"])
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        extra = resume_ckpt.get("extra") or {}
        state = TrainState(
            step=resume_ckpt["step"],
            epoch=resume_ckpt["epoch"],
            batch_in_epoch=resume_ckpt["batch_in_epoch"],
            best_val_acc=resume_ckpt["best_val_acc"],
            best_step=extra.get("best_step"),
            train_seconds=float(extra.get("train_seconds", 0.0)),
        )
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.model.gate == "static",
        )
    # RNG last, right before the loop: a resumed run draws exactly what the original drew
    if resume_ckpt is not None:
        ckpt.set_rng_state(resume_ckpt["rng"])
    if info.rank > 0:  # different Gumbel noise per rank
        torch.manual_seed(tc.seed + 7919 * info.rank + state.step)

    run = _Run(
        cfg=cfg,
        model=model,
        optimizer=optimizer,
        state=state,
        device=device,
        info=info,
        out_dir=out_dir,
        log=_JsonlWriter(metrics_path, info.is_main),
        config_json=config_json,
        vocab_json=vocab_json,
        steps_per_epoch=steps_per_epoch,
        per_rank_batch=per_rank_batch,
        max_steps=max_steps,
        progress=progress,
    )
    amp, channels_last = use_amp(cfg, device), use_channels_last(cfg, device)
    val_loader = eval_loader(val_ds, max(per_rank_batch, 1) * 2, cfg.data.num_workers, device, info)
    last_val_step = None

    def validate() -> dict[str, Any]:
        nonlocal last_val_step
        pred = gather_predictions(
            predict(
                model,
                val_loader,
                device,
                amp=amp,
                channels_last=channels_last,
                progress=progress,
                desc=f"eval {eval_split}",
            ),
            info,
        )
        result = scores(pred, eval_split)
        run.log.write(
            {
                "kind": "val",
                "step": state.step,
                "epoch": state.epoch,
                "split": eval_split,
                "n": result["n"],
                "overall": result["overall"],
                "by_type": result["by_type"],
            }
        )
        last_val_step = state.step
        acc = result["overall"] if result["overall"] is not None else -1.0
        if state.best_val_acc is None or acc > state.best_val_acc:
            state.best_val_acc, state.best_step = acc, state.step
            save_run_checkpoint(run, best_path, with_optimizer=False)
        return result

    # ---- the loop
    stop_reason = None
    try:
        stop_reason = _loop(run, train_ds, validate)
        if last_val_step != state.step:
            validate()
        result = _final_eval(run, val_loader, eval_split, stop_reason, t_start)
    finally:
        run.log.close()
    return {
        "out_dir": str(out_dir),
        "step": state.step,
        "epoch": state.epoch,
        "stop_reason": stop_reason,
        "best_val_acc": state.best_val_acc,
        "best_step": state.best_step,
        "train_minutes": state.train_seconds / 60.0,
        "eval": result,
    }


def _train_data(cfg, data_dir: Path, vocab, per_rank_batch: int, info, questions_file):
    """(training data, steps per epoch): the train split's questions, or the stream of fresh
    scenes, whose "epoch" is `stream_epoch_questions` questions (the validation cadence)."""
    from qgmrn.data import ClevrQuestions

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
        )
        return stream, max(cfg.data.stream_epoch_questions // batch, 1)
    train_ds = ClevrQuestions(
        data_dir, "train", vocab, size, questions_file, cfg.data.max_train_questions
    )
    probe = qdist.ResumableSampler(
        train_ds, num_replicas=info.world_size, rank=info.rank, seed=cfg.train.seed
    )
    steps_per_epoch = probe.num_samples // per_rank_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_ds)} training questions make no full batch of {batch}")
    return train_ds, steps_per_epoch


def _loop(run: _Run, train_ds, validate) -> str:
    """Epochs until the budget (epochs, minutes, steps) is spent; returns why it stopped."""
    tc, state = run.cfg.train, run.state
    ckpt_path = run.out_dir / "checkpoint.pt"
    stop_reason = None
    if run.max_steps is not None and state.step >= run.max_steps:
        stop_reason = "max_steps"
        save_run_checkpoint(run, ckpt_path)
    while stop_reason is None and state.epoch < tc.epochs:
        stop_reason = train_one_epoch(run, _epoch_batches(run, train_ds))
        due = stop_reason == "validate"
        if due:
            stop_reason = None
        if state.batch_in_epoch >= run.steps_per_epoch:  # the epoch is complete
            state.epoch += 1
            state.batch_in_epoch = 0
            due |= bool(tc.eval_every_epochs) and state.epoch % max(tc.eval_every_epochs, 1) == 0
        if due:
            validate()
        save_run_checkpoint(run, ckpt_path)
    return stop_reason or "epochs"


def _epoch_batches(run: _Run, train_ds) -> Iterable:
    """The batches of the rest of the current epoch: this rank's share of a seeded permutation
    of the train split, or the next steps of the training stream."""
    tc, state, info = run.cfg.train, run.state, run.info
    if isinstance(train_ds, SceneStream):
        rest = run.steps_per_epoch - state.batch_in_epoch
        batches = stream_batches(train_ds, state.step, run.cfg.data.num_workers, run.device)
        return itertools.islice(batches, rest)
    sampler = qdist.ResumableSampler(
        train_ds,
        num_replicas=info.world_size,
        rank=info.rank,
        seed=tc.seed,
        epoch=state.epoch,
        start=state.batch_in_epoch * run.per_rank_batch,
    )
    return sampled_loader(
        train_ds,
        sampler,
        run.per_rank_batch,
        run.cfg.data.num_workers,
        run.device,
        seed=tc.seed * 100_003 + state.epoch,
        drop_last=True,
    )


def _final_eval(run: _Run, val_loader, eval_split: str, stop_reason: str, t_start: float):
    """Evaluate the best weights (best.pt) once more, collecting routing paths; write
    eval.json and routing_paths.npz. Returns the eval dict."""
    tc, state, info, device = run.cfg.train, run.state, run.info, run.device
    best_path = run.out_dir / "best.pt"
    qdist.barrier(info)  # best.pt is written by rank 0
    model_eval = ckpt.unwrap(run.model)
    used = "best.pt" if best_path.exists() else "checkpoint.pt"
    if best_path.exists() and state.best_step != state.step:
        model_eval.load_state_dict(ckpt.read_checkpoint(best_path)["model"])
    channels_last = use_channels_last(run.cfg, device)
    pred = gather_predictions(
        predict(
            model_eval,
            val_loader,
            device,
            amp=use_amp(run.cfg, device),
            channels_last=channels_last,
            collect_paths=True,
            progress=run.progress,
            desc="routing paths",
        ),
        info,
    )
    result = scores(pred, eval_split)
    result.update(
        checkpoint=used,
        checkpoint_step=state.best_step,
        train={
            "steps": state.step,
            "epochs_completed": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
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
