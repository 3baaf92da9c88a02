"""What `fit` sets up before the first step: the data, the run folder, the model and optimizer.

- The data (`prepare_data`): the image caches (rank 0 builds them), the vocabulary, the training
  data (the train split's questions, or the stream of fresh scenes) and the validation split.
- The run folder: whether to resume (`resume_wanted`), the checkpoint to resume from
  (`load_resume`: refused for another config, vocabulary or number of processes), config.json
  and vocab.json (`prepare_run_dir`).
- The model and its optimizer (`build_model_and_optimizer`, `build_attribute_loss` for the
  auxiliary loss of ours), restored from the checkpoint (`restore`), wrapped for DDP
  (`distribute`) and torch.compile (`compile_model`), and the RNGs seeded (`seed_rng`) last, so
  that a resumed run draws what the original drew.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from qgmrn.config import ExperimentConfig, config_to_json
from qgmrn.data.dataset import ClevrQuestions, load_question_file, train_questions_path
from qgmrn.data.stream import SceneStream, StreamSpec, stream_vocab
from qgmrn.data.vocab import Vocab
from qgmrn.engine import checkpoint as ckpt
from qgmrn.engine import distributed as qdist
from qgmrn.engine.auxiliary import CHECKPOINT_KEY, REACH_KEY, AttributeLoss
from qgmrn.engine.history import HISTORY_FILE
from qgmrn.engine.run import TrainData, TrainState
from qgmrn.engine.runtime import ensure_cache, use_channels_last
from qgmrn.engine.schedules import lr_at
from qgmrn.fileio import atomic_write_text, locate
from qgmrn.model import build_model

# Under DDP every rank but 0 reseeds its global RNG with seed + RANK_SEED_STRIDE * rank + step,
# so that ranks draw different Gumbel noise; a prime stride keeps these seeds apart from one
# another and from rank 0's. Changing it changes every multi-process run's noise (and breaks the
# exact resume of runs started before the change).
RANK_SEED_STRIDE = 7919

# --------------------------------------------------------------------------------------------
# the data


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
    train_entries = (
        None if streamed else load_question_file(train_questions_path(data_dir, train_file))
    )
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
            scene_reuse=cfg.data.scene_reuse,
            curriculum=cfg.data.curriculum,
            queries_first=cfg.data.queries_first,
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


# --------------------------------------------------------------------------------------------
# the run folder, resuming


def resume_wanted(out_dir: Path, resume: bool, progress: bool) -> bool:
    """`resume` if there is a checkpoint to resume from (saying so when there is none)."""
    has_checkpoint = (out_dir / "checkpoint.pt").exists()
    if resume and not has_checkpoint and progress:
        print(f"[qgmrn] no {out_dir / 'checkpoint.pt'} to resume from: starting afresh")
    return resume and has_checkpoint


def load_resume(out_dir: Path, data: TrainData, info: qdist.DistInfo) -> dict[str, Any]:
    """checkpoint.pt, refused unless it was written with this config and vocabulary, by as many
    processes as this run has (each process draws its share of every batch: another number of
    processes would train on other batches from there on)."""
    path = out_dir / "checkpoint.pt"
    c = ckpt.load_checkpoint(
        path, config_json=data.config_json, vocab_json=data.vocab_json, map_location="cpu"
    )
    if c["optimizer"] is None:  # a finished run's checkpoint, kept for its weights only
        raise ckpt.CheckpointError(
            f"{path}: holds no optimizer state (the checkpoint of a finished run, kept for its "
            "weights): it cannot continue exactly. Train a new run into another --out (from its "
            "weights: fit(init_from=...))."
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
    # ours: perception first (qgmrn.engine.pretrain); a resumed run then restores
    if tc.visual_init:
        from qgmrn.engine.pretrain import load_visual_into

        load_visual_into(model, locate(tc.visual_init))
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
    """The auxiliary attribute loss (ours, `qgmrn.engine.auxiliary`) when
    `attribute_loss_weight` > 0: its head joins the optimizer as a second parameter group. None
    otherwise."""
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
    if tc.visual_init:  # the head pretrained with the visual network (qgmrn.engine.pretrain)
        from qgmrn.engine.pretrain import read_visual

        attributes.load_state_dict(read_visual(locate(tc.visual_init))["attribute_head"])
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


def distribute(
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


def compile_model(model: nn.Module, cfg: ExperimentConfig) -> nn.Module:
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


def seed_rng(
    cfg: ExperimentConfig, info: qdist.DistInfo, state: TrainState, restored: Mapping | None
) -> None:
    if restored is not None:
        ckpt.set_rng_state(restored["rng"])
    if info.rank > 0:  # different Gumbel noise per rank
        torch.manual_seed(cfg.train.seed + RANK_SEED_STRIDE * info.rank + state.step)
