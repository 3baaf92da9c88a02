"""Evaluation and routing-path collection: deterministic predictions, accuracy, eval.json.

`predict` runs a model in eval mode over a loader (optionally keeping each question's routing
path); `scores` turns its arrays into the `eval.json` dict. Under torchrun each rank predicts its
`ShardSampler` share and `gather_predictions` puts the shares back in data-set order.
`routing_arrays` gives the `routing_paths.npz` schema. `load_run` and `evaluate_run` evaluate a
finished run directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from qgmrn.config import config_to_json, read_config
from qgmrn.engine import checkpoint as ckpt
from qgmrn.engine import distributed as qdist
from qgmrn.engine.runtime import (
    autocast,
    batch_images,
    ensure_cache,
    sampled_loader,
    use_amp,
    use_channels_last,
)
from qgmrn.fileio import atomic_write, atomic_write_json, locate
from qgmrn.metrics import accuracy
from qgmrn.model import sparse_kwargs


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
    return sampled_loader(dataset, sampler, batch_size, num_workers, torch.device(device), 0, False)


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
    sparse: bool = False,
) -> dict[str, np.ndarray]:
    """Deterministic (eval-mode) predictions over `loader`; `sparse`: a routed model skips its
    closed modules (`qgmrn.nn.sparse`; the same predictions in fp32, up to bf16's near-ties under
    `amp`: docs/model.md), a baseline ignores it.

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
    extra = sparse_kwargs(model, sparse)
    try:
        for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
            images = batch_images(batch, device, channels_last)
            with autocast(device, amp):
                out = model(images, batch.questions.to(device), batch.lengths.to(device), **extra)
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


def gather_predictions(local: dict[str, np.ndarray], info: qdist.DistInfo) -> dict:
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


def scores(
    pred: Mapping[str, np.ndarray], split: str, depths: np.ndarray | None = None
) -> dict[str, Any]:
    """The `eval.json` dict of `predict`'s arrays. With no subtypes known (CLEVR-Humans),
    `by_type`/`by_subtype` are empty: overall accuracy only. `depths`: each question's
    relational depth in the same order (the dataset's `depths`), for `by_depth`."""
    result = {"split": split, **accuracy(pred["predictions"], pred["answers"], pred["subtypes"])}
    if not (np.asarray(pred["subtypes"]) >= 0).any():
        for key in ("by_type", "by_subtype", "count_by_type", "count_by_subtype"):
            result[key] = {}
    if depths is not None:
        result["by_depth"] = accuracy_by_depth(pred, depths)
        zero = np.asarray(depths) == 0
        if zero.any() and result["by_type"]:
            # the zero-hop questions by type: where a model first shows that it picks out the
            # object asked about (Query Attribute), before any relation is needed
            keep = {k: np.asarray(pred[k])[zero] for k in ("predictions", "answers", "subtypes")}
            by_type = accuracy(keep["predictions"], keep["answers"], keep["subtypes"])["by_type"]
            result["by_type_depth0"] = {k: v for k, v in by_type.items() if v is not None}
    return result


def accuracy_by_depth(pred: Mapping[str, np.ndarray], depths: np.ndarray) -> dict[str, float]:
    """Accuracy per relational depth ("0": zero-hop questions such as "What color is the large
    cube?", where perception shows first; `qgmrn.clevr.relational_depth`), over the questions
    whose program is known (depth >= 0)."""
    correct = np.asarray(pred["predictions"]) == np.asarray(pred["answers"])
    depths = np.asarray(depths)
    if len(depths) != len(correct):
        raise ValueError(f"{len(depths)} depths for {len(correct)} predictions")
    return {str(d): float(correct[depths == d].mean()) for d in np.unique(depths) if d >= 0}


# --------------------------------------------------------------------------------------------
# routing paths


def stage_of_layer(model: nn.Module, num_layers: int) -> np.ndarray:
    """The backbone stage of each routed layer (`QGMRN.stage_of_layer`); -1 for a model without
    stages (the baselines)."""
    stages = getattr(ckpt.unwrap(model), "stage_of_layer", None)
    if stages is None or len(stages) != num_layers:
        return np.full(num_layers, -1, dtype=np.int64)
    return np.asarray(stages, dtype=np.int64)


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


def save_routing_paths(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_write(path, "wb", fsync=False) as f:
        np.savez_compressed(f, **arrays)


# --------------------------------------------------------------------------------------------
# evaluating a finished run


def load_run(
    run_dir: str | os.PathLike, checkpoint: str = "best", device: str | torch.device = "cpu"
):
    """(cfg, vocab, model in eval mode, checkpoint dict) of a run directory.

    checkpoint: "best" (best.pt) or "latest" (checkpoint.pt), as `qgmrn evaluate --checkpoint`.
    """
    from qgmrn.data import Vocab
    from qgmrn.model import build_model

    run_dir = Path(run_dir)
    name = {"best": "best.pt", "latest": "checkpoint.pt"}.get(checkpoint, checkpoint)
    cfg = read_config(run_dir / "config.json")
    vocab = Vocab.load(run_dir / "vocab.json")
    c = ckpt.load_checkpoint(
        run_dir / name, config_json=config_to_json(cfg), vocab_json=ckpt.vocab_to_json(vocab)
    )
    model = build_model(cfg.model, len(vocab), vocab.num_answers)
    model.load_state_dict(c["model"])
    model.to(device).eval()
    return cfg, vocab, model, c


def output_stem(
    run_data_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str,
    questions_file: str | os.PathLike | None,
    checkpoint: str,
) -> str:
    """The name of an evaluation's files, saying what was scored: ``eval_<split>_<checkpoint>``
    on the run's own data set, ``eval_<data set>_<split>_<checkpoint>`` on another, with the
    question file's stem before `checkpoint` when one was given (CLEVR-Humans, say). The run's
    own eval.json (written by training) is never among them."""
    parts = []
    if locate(run_data_dir).resolve() != Path(data_dir).resolve():
        parts.append(Path(data_dir).resolve().name)
    parts.append(split)
    if questions_file is not None:
        parts.append(Path(questions_file).stem)
    parts.append(checkpoint)
    return "eval_" + "_".join(parts)


def run_data_dir(run_dir: str | os.PathLike, cfg) -> Path:
    """The data set a run trained on (its config's `data.data_dir`), or a FileNotFoundError that
    says so and how to point at another copy (a run made on another machine, or moved, records
    a path that is not here)."""
    path = locate(cfg.data.data_dir)  # recorded relative to the project root when inside it
    if not path.is_dir():
        raise FileNotFoundError(
            f"{Path(run_dir) / 'config.json'}: the run's data set, data.data_dir = {str(path)!r}, "
            "is not on this machine: pass the folder that holds your copy (qgmrn evaluate "
            "--data-dir DIR, qgmrn finetune --data-dir DIR; data_dir= in Python)"
        )
    return path


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    split: str = "val",
    checkpoint: str = "best",
    device: str | torch.device = "cpu",
    data_dir: str | os.PathLike | None = None,
    questions_file: str | os.PathLike | None = None,
    progress: bool = True,
    write: bool = True,
    sparse: bool = False,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on `split`; writes `<output_stem>.json` and its routing paths
    (`routing_paths_...npz`) into the run directory when `write`. On the test split of a data
    set that has `questions/CLEVR_test_answers.json` (mini-CLEVR) the answers are read from
    there, so the test split is scored; real CLEVR's test questions have no answers."""
    from qgmrn.data import ClevrQuestions

    device = torch.device(device)
    cfg, vocab, model, c = load_run(run_dir, checkpoint, device)
    data_dir = Path(data_dir) if data_dir is not None else run_data_dir(run_dir, cfg)
    stem = output_stem(cfg.data.data_dir, data_dir, split, questions_file, checkpoint)
    size = tuple(cfg.data.image_size)
    ensure_cache(data_dir, split, size, cfg.data.num_workers, progress)
    answers = data_dir / "questions" / "CLEVR_test_answers.json"
    if split == "test" and questions_file is None and answers.exists():
        questions_file = answers  # mini-CLEVR ships its test answers: score them
    ds = ClevrQuestions(data_dir, split, vocab, size, questions_file)
    loader = eval_loader(ds, cfg.train.batch_size * 2, cfg.data.num_workers, device)
    channels_last = use_channels_last(cfg, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    pred = predict(
        model,
        loader,
        device,
        amp=use_amp(cfg, device),
        channels_last=channels_last,
        collect_paths=True,
        progress=progress,
        sparse=sparse,
    )
    result = scores(pred, split, ds.depths)
    result.update(
        sparse=sparse,
        checkpoint=str(checkpoint),
        checkpoint_step=c["step"],
        data_dir=str(data_dir),
        questions_file=str(ds.questions_file),
    )
    if write:
        run_dir = Path(run_dir)
        atomic_write_json(
            run_dir / f"{stem}.json",
            result,
            indent=2,
            trailing_newline=True,
            fsync=False,
        )
        save_routing_paths(
            run_dir / f"{stem.replace('eval_', 'routing_paths_', 1)}.npz",
            routing_arrays(model, pred),
        )
    return result
