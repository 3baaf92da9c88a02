"""Training, evaluation and routing-path collection: plain loops (sec. 3.5, 4.2).

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
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from qgmrn import checkpoint as ckpt
from qgmrn import distributed as qdist
from qgmrn.config import ExperimentConfig, config_from_dict, config_to_json
from qgmrn.fileio import atomic_write, atomic_write_json
from qgmrn.metrics import accuracy
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


def _seed_worker(worker_id: int) -> None:
    """DataLoader worker init: numpy and random from the worker's torch seed, which the loader
    derives from its own seeded generator (so workers are deterministic per epoch)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def set_tau(model: nn.Module, tau: float) -> None:
    """Set the Gumbel-sigmoid temperature of every gate (`qgmrn.model.set_tau` when present)."""
    model = ckpt.unwrap(model)
    try:
        from qgmrn.model import set_tau as model_set_tau
    except ImportError:
        model_set_tau = None
    if model_set_tau is not None:
        model_set_tau(model, tau)
        return
    for m in model.modules():
        if hasattr(m, "tau") and not isinstance(m.tau, Tensor | nn.Module):
            m.tau = float(tau)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _images(batch, device: torch.device, channels_last: bool) -> Tensor:
    from qgmrn.data import normalize_images

    images = normalize_images(batch.images.to(device, non_blocking=True))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def _channels_last(cfg: ExperimentConfig, device: torch.device) -> bool:
    return bool(cfg.train.channels_last and device.type == "cuda")


def _loader(
    dataset,
    sampler,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    seed: int,
    drop_last: bool,
) -> DataLoader:
    from qgmrn.data import collate

    generator = torch.Generator()
    generator.manual_seed(seed)  # the loader never draws from the global RNG
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra.update(worker_init_fn=_seed_worker, prefetch_factor=4)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        generator=generator,
        **extra,
    )


def eval_loader(
    dataset,
    batch_size: int,
    num_workers: int,
    device: torch.device | str,
    info: qdist.DistInfo | None = None,
) -> DataLoader:
    """In-order loader over this rank's share of `dataset` (all of it when not distributed)."""
    info = info or qdist.DistInfo()
    sampler = qdist.ShardSampler(len(dataset), info.world_size, info.rank)
    return _loader(dataset, sampler, batch_size, num_workers, torch.device(device), 0, False)


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
# evaluation


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    *,
    amp: bool = False,
    channels_last: bool = False,
    collect_paths: bool = False,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, np.ndarray]:
    """Deterministic (eval-mode) predictions over `loader`.

    Returns numpy arrays `predictions, answers, subtypes, question_index` (N,), and with
    `collect_paths` also `paths` (N, G) uint8 (the routing paths, layers concatenated) and
    `layer_sizes` (L,). The model's training mode is restored afterwards.
    """
    device = torch.device(device)
    model = ckpt.unwrap(model)
    was_training = model.training
    model.eval()
    preds, answers, subtypes, qidx, paths = [], [], [], [], []
    layer_sizes: list[int] = []
    try:
        for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
            images = _images(batch, device, channels_last)
            with _autocast(device, amp):
                out = model(images, batch.questions.to(device), batch.lengths.to(device))
            preds.append(out.logits.argmax(-1).cpu())
            answers.append(batch.answers)
            subtypes.append(batch.subtypes)
            qidx.append(batch.question_index)
            if collect_paths:
                layer_sizes = [int(g.shape[1]) for g in out.gates]
                if out.gates:
                    paths.append(torch.cat([g > 0.5 for g in out.gates], 1).to(torch.uint8).cpu())
                else:
                    paths.append(torch.zeros((len(batch.answers), 0), dtype=torch.uint8))
    finally:
        model.train(was_training)

    def cat(xs: list[Tensor]) -> np.ndarray:
        return torch.cat(xs).numpy() if xs else np.zeros(0, dtype=np.int64)

    result = {
        "predictions": cat(preds).astype(np.int64),
        "answers": cat(answers).astype(np.int64),
        "subtypes": cat(subtypes).astype(np.int64),
        "question_index": cat(qidx).astype(np.int64),
    }
    if collect_paths:
        g = sum(layer_sizes)
        result["paths"] = torch.cat(paths).numpy() if paths else np.zeros((0, g), np.uint8)
        result["layer_sizes"] = np.asarray(layer_sizes, dtype=np.int64)
    return result


def _gather_predictions(local: dict[str, np.ndarray], info: qdist.DistInfo) -> dict:
    """Put the ranks' `ShardSampler` shares back into data-set order."""
    if not info.enabled:
        return local
    parts = qdist.all_gather_objects(local, info)
    n = sum(len(p["answers"]) for p in parts)
    out: dict[str, np.ndarray] = {}
    for key, first in parts[0].items():
        if key == "layer_sizes":
            out[key] = first
            continue
        arr = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        for r, p in enumerate(parts):
            arr[r :: info.world_size] = p[key]
        out[key] = arr
    return out


def scores(pred: Mapping[str, np.ndarray], split: str) -> dict[str, Any]:
    """The `eval.json` dict of `predict`'s arrays. With no subtypes known (CLEVR-Humans),
    `by_type`/`by_subtype` are empty: overall accuracy only."""
    result = {"split": split, **accuracy(pred["predictions"], pred["answers"], pred["subtypes"])}
    if not (np.asarray(pred["subtypes"]) >= 0).any():
        for key in ("by_type", "by_subtype", "count_by_type", "count_by_subtype"):
            result[key] = {}
    return result


def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str = "cpu",
    *,
    split: str = "val",
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy of `model` on `loader` in the `eval.json` layout:
    ``{"split", "n", "overall", "by_type", "by_subtype", "count_by_type", "count_by_subtype"}``."""
    pred = predict(model, loader, device, amp=amp, channels_last=channels_last, progress=progress)
    return scores(pred, split)


def stage_of_layer(model: nn.Module, num_layers: int) -> np.ndarray:
    """The backbone stage of each routed layer, from the model when it says (-1 otherwise)."""
    model = ckpt.unwrap(model)
    for name in ("stage_of_layer", "layer_stages"):
        value = getattr(model, name, None)
        if callable(value):
            value = value()
        if value is not None:
            arr = np.asarray(list(value), dtype=np.int64)
            if len(arr) == num_layers:
                return arr
    return np.full(num_layers, -1, dtype=np.int64)


def routing_arrays(model: nn.Module, pred: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The `routing_paths.npz` arrays of `predict(..., collect_paths=True)`'s output."""
    layer_sizes = np.asarray(pred["layer_sizes"], dtype=np.int64)
    return {
        "paths": np.asarray(pred["paths"], dtype=np.uint8),
        "layer_sizes": layer_sizes,
        "stage_of_layer": stage_of_layer(model, len(layer_sizes)),
        "subtypes": pred["subtypes"],
        "question_index": pred["question_index"],
        "answers": pred["answers"],
        "predictions": pred["predictions"],
    }


def collect_routing_paths(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str = "cpu",
    *,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Deterministic routing path of every question of `loader` (the `routing_paths.npz` schema:
    `paths` uint8 (N, G), `layer_sizes` (L,), `stage_of_layer` (L,), `subtypes`,
    `question_index`, `answers`, `predictions` (N,))."""
    pred = predict(
        model,
        loader,
        device,
        amp=amp,
        channels_last=channels_last,
        collect_paths=True,
        progress=progress,
        desc="routing paths",
    )
    return routing_arrays(model, pred)


def save_routing_paths(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_write(path, "wb", fsync=False) as f:
        np.savez_compressed(f, **arrays)


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
    "max_minutes") or None when the epoch is done. Updates `run.state` as it goes."""
    from qgmrn import losses

    cfg, tc, s, device = run.cfg, run.cfg.train, run.state, run.device
    model, opt = run.model, run.optimizer
    channels_last = _channels_last(cfg, device)
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
            set_tau(model, tau)
            images = _images(batch, device, channels_last)
            questions = batch.questions.to(device, non_blocking=True)
            lengths = batch.lengths.to(device, non_blocking=True)
            answers = batch.answers.to(device, non_blocking=True)
            with _autocast(device, tc.amp):
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


def _ensure_cache(data_dir: Path, split: str, size, workers: int, progress: bool) -> None:
    from qgmrn.data.cache import ImageCacheError, build_cache, open_cache

    try:
        open_cache(data_dir, split, size)
    except (ImageCacheError, FileNotFoundError):
        build_cache(data_dir, split, size, workers=max(workers, 1), progress=progress)


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


def _vocab_json(vocab) -> str:
    return json.dumps(vocab.to_dict(), sort_keys=True)


def _resolve_device(device: str | torch.device, info: qdist.DistInfo) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank if info.enabled else 0)
    return device


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
            device=_resolve_device(device, info),
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
    if info.is_main:
        for split in ("train", eval_split):
            _ensure_cache(data_dir, split, size, cfg.data.num_workers, progress)
    qdist.barrier(info)
    if resume:
        vocab = Vocab.load(out_dir / "vocab.json")
    elif vocab is None:
        vocab = build_vocab(data_dir, questions_files.get("train"))
    config_json, vocab_json = config_to_json(cfg), _vocab_json(vocab)
    if resume:
        resume_ckpt = ckpt.load_checkpoint(
            ckpt_path, config_json=config_json, vocab_json=vocab_json, map_location="cpu"
        )
    train_ds = ClevrQuestions(
        data_dir,
        "train",
        vocab,
        size,
        questions_files.get("train"),
        cfg.data.max_train_questions,
    )
    val_ds = ClevrQuestions(
        data_dir,
        eval_split,
        vocab,
        size,
        questions_files.get(eval_split),
        cfg.data.max_val_questions,
    )
    probe = qdist.ResumableSampler(
        train_ds, num_replicas=info.world_size, rank=info.rank, seed=tc.seed
    )
    steps_per_epoch = probe.num_samples // per_rank_batch
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(train_ds)} training questions make no full batch of {tc.batch_size}"
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
    if _channels_last(cfg, device):
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
    amp, channels_last = tc.amp, _channels_last(cfg, device)
    val_loader = eval_loader(val_ds, max(per_rank_batch, 1) * 2, cfg.data.num_workers, device, info)
    last_val_step = None

    def validate() -> dict[str, Any]:
        nonlocal last_val_step
        pred = _gather_predictions(
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


def _loop(run: _Run, train_ds, validate) -> str:
    """Epochs until the budget (epochs, minutes, steps) is spent; returns why it stopped."""
    tc, state, info = run.cfg.train, run.state, run.info
    ckpt_path = run.out_dir / "checkpoint.pt"
    stop_reason = None
    if run.max_steps is not None and state.step >= run.max_steps:
        stop_reason = "max_steps"
        save_run_checkpoint(run, ckpt_path)
    while stop_reason is None and state.epoch < tc.epochs:
        sampler = qdist.ResumableSampler(
            train_ds,
            num_replicas=info.world_size,
            rank=info.rank,
            seed=tc.seed,
            epoch=state.epoch,
            start=state.batch_in_epoch * run.per_rank_batch,
        )
        loader = _loader(
            train_ds,
            sampler,
            run.per_rank_batch,
            run.cfg.data.num_workers,
            run.device,
            seed=tc.seed * 100_003 + state.epoch,
            drop_last=True,
        )
        stop_reason = train_one_epoch(run, loader)
        if state.batch_in_epoch >= run.steps_per_epoch:  # the epoch is complete
            state.epoch += 1
            state.batch_in_epoch = 0
            if tc.eval_every_epochs and state.epoch % tc.eval_every_epochs == 0:
                validate()
        save_run_checkpoint(run, ckpt_path)
    return stop_reason or "epochs"


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
    channels_last = _channels_last(run.cfg, device)
    pred = _gather_predictions(
        predict(
            model_eval,
            val_loader,
            device,
            amp=tc.amp,
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


# --------------------------------------------------------------------------------------------
# evaluating a finished run


def load_run(run_dir: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"):
    """(cfg, vocab, model in eval mode, checkpoint dict) of a run directory.

    which: "best" (best.pt) or "latest" (checkpoint.pt).
    """
    from qgmrn.data import Vocab
    from qgmrn.model import build_model

    run_dir = Path(run_dir)
    name = {"best": "best.pt", "latest": "checkpoint.pt"}.get(which, which)
    cfg = config_from_dict(json.loads((run_dir / "config.json").read_text()))
    vocab = Vocab.load(run_dir / "vocab.json")
    c = ckpt.load_checkpoint(
        run_dir / name, config_json=config_to_json(cfg), vocab_json=_vocab_json(vocab)
    )
    model = build_model(cfg.model, len(vocab), vocab.num_answers)
    model.load_state_dict(c["model"])
    model.to(device).eval()
    return cfg, vocab, model, c


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    split: str = "val",
    which: str = "best",
    device: str | torch.device = "cpu",
    data_dir: str | os.PathLike | None = None,
    questions_file: str | os.PathLike | None = None,
    progress: bool = True,
    write: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on `split`; writes `eval_<split>_<which>.json` (and its
    routing paths) into the run directory when `write`."""
    from qgmrn.data import ClevrQuestions

    device = torch.device(device)
    cfg, vocab, model, c = load_run(run_dir, which, device)
    data_dir = Path(data_dir if data_dir is not None else cfg.data.data_dir)
    size = tuple(cfg.data.image_size)
    _ensure_cache(data_dir, split, size, cfg.data.num_workers, progress)
    ds = ClevrQuestions(data_dir, split, vocab, size, questions_file)
    loader = eval_loader(ds, cfg.train.batch_size * 2, cfg.data.num_workers, device)
    channels_last = _channels_last(cfg, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    pred = predict(
        model,
        loader,
        device,
        amp=cfg.train.amp,
        channels_last=channels_last,
        collect_paths=True,
        progress=progress,
    )
    result = scores(pred, split)
    result.update(checkpoint=f"{which}", checkpoint_step=c["step"])
    if write:
        run_dir = Path(run_dir)
        atomic_write_json(
            run_dir / f"eval_{split}_{which}.json",
            result,
            indent=2,
            trailing_newline=True,
            fsync=False,
        )
        save_routing_paths(
            run_dir / f"routing_paths_{split}_{which}.npz", routing_arrays(model, pred)
        )
    return result


# --------------------------------------------------------------------------------------------
# CLEVR-Humans fine-tuning (sec. 4.4)


def humans_files(path: str | os.PathLike) -> dict[str, Path]:
    """{"train": ..., "val": ...} CLEVR-Humans question files under `path`.

    Accepts a CLEVR-Humans folder (``CLEVR-Humans-{split}.json``, also in ``questions/`` or
    ``humans/`` below it) or a data set folder holding such files.
    """
    root = Path(path)
    found: dict[str, Path] = {}
    for split in ("train", "val", "test"):
        for sub in (".", "questions", "humans", "CLEVR-Humans"):
            for name in (f"CLEVR-Humans-{split}.json", f"CLEVR_Humans_{split}.json"):
                p = root / sub / name
                if p.is_file() and split not in found:
                    found[split] = p
    if "train" not in found:
        raise FileNotFoundError(f"no CLEVR-Humans-train.json in {root} (or its questions/)")
    return found


def grow_embedding(model: nn.Module, fresh: nn.Module, old_rows: int) -> nn.Module:
    """Copy `model`'s weights into `fresh` (same architecture, larger vocabulary): every
    tensor as is, except the word embedding, whose first `old_rows` rows are the old ones and
    whose new rows keep `fresh`'s initialisation (the embedding's own init)."""
    old_sd, new_sd = model.state_dict(), fresh.state_dict()
    grown = []
    for key, new in new_sd.items():
        old = old_sd[key]
        if old.shape == new.shape:
            new_sd[key] = old
        elif old.dim() == new.dim() and old.shape[0] == old_rows and old.shape[1:] == new.shape[1:]:
            merged = new.clone()
            merged[:old_rows] = old
            new_sd[key] = merged
            grown.append(key)
        else:
            raise ValueError(f"cannot carry {key}: {tuple(old.shape)} -> {tuple(new.shape)}")
    fresh.load_state_dict(new_sd)
    return fresh


def finetune(
    from_run: str | os.PathLike,
    humans: str | os.PathLike | Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    min_count: int = 1,
    epochs: int | None = None,
    max_minutes: float | None = None,
    lr: float | None = None,
    warmup_steps: int | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune the best checkpoint of `from_run` on CLEVR-Humans questions (sec. 4.4).

    The vocabulary grows by the new words of the CLEVR-Humans train questions seen at least
    `min_count` times (rarer ones read as <UNK>); the embedding grows with it (old rows kept).
    Images come from `data_dir` (default: the run's data set). Overall accuracy only.
    """
    from qgmrn.data import Vocab
    from qgmrn.data.vocab import tokenize
    from qgmrn.model import build_model

    from_run, out_dir = Path(from_run), Path(out_dir)
    files = dict(humans) if isinstance(humans, Mapping) else humans_files(humans)
    files = {k: Path(v) for k, v in files.items()}
    cfg, vocab, model, _ = load_run(from_run, "best")
    old_rows = len(vocab)
    if resume and (out_dir / "vocab.json").exists():
        vocab = Vocab.load(out_dir / "vocab.json")
        init = None
    else:
        from qgmrn import clevr

        counts: Counter[str] = Counter()
        for q in clevr.load_humans_questions(files["train"]):
            counts.update(tokenize(q["question"]))
        new_words = [w for w, n in counts.items() if n >= min_count]
        added = vocab.extend(sorted(new_words))
        torch.manual_seed(cfg.train.seed)
        fresh = build_model(cfg.model, len(vocab), vocab.num_answers)
        init = grow_embedding(model, fresh, old_rows).state_dict()
        if progress:
            print(f"[qgmrn] vocabulary {old_rows} -> {len(vocab)} tokens (+{added} new words)")
    overrides: dict[str, Any] = {}
    for key, value in (
        ("epochs", epochs),
        ("max_minutes", max_minutes),
        ("lr", lr),
        ("warmup_steps", warmup_steps),
    ):
        if value is not None:
            overrides[key] = value
    cfg = dataclasses.replace(
        cfg, name=f"{cfg.name}_humans", train=dataclasses.replace(cfg.train, **overrides)
    )
    if "val" not in files:
        raise FileNotFoundError(f"no CLEVR-Humans val questions among {files}")
    if data_dir is None:  # the humans folder itself when it holds the images, else the run's
        root = Path(humans) if not isinstance(humans, Mapping) else None
        data_dir = root if root and (root / "images").is_dir() else cfg.data.data_dir
    return fit(
        cfg,
        data_dir,
        out_dir,
        device=device,
        resume=resume,
        progress=progress,
        vocab=vocab,
        init_from=init,
        max_steps=max_steps,
        questions_files={"train": files["train"], "val": files["val"]},
        eval_split="val",
    )
