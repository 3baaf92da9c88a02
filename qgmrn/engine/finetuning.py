"""CLEVR-Humans fine-tuning (sec. 4.4): the best CLEVR checkpoint, a grown vocabulary, `fit`.

`humans_files` finds the CLEVR-Humans question files, `grow_embedding` carries the weights into a
model with a larger vocabulary (the new embedding rows keep their own init), and `finetune`
trains on the CLEVR-Humans train questions with `qgmrn.engine.fit`, writing an ordinary run
directory (overall accuracy only: the questions have no programs, hence no subtypes).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qgmrn.engine import runlock
from qgmrn.engine.evaluate import load_run, run_data_dir
from qgmrn.engine.trainer import fit
from qgmrn.fileio import atomic_write_json, locate, portable_path

# written into a fine-tuned run's folder: the run it started from (read by the Table 1 builder)
FINETUNED_FROM = "finetuned_from.json"


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


def finetuned_from(run_dir: str | os.PathLike) -> Path | None:
    """The run a fine-tuned run started from (its `FINETUNED_FROM` file, written by
    `finetune`), or None for a run that records none."""
    path = Path(run_dir) / FINETUNED_FROM
    if not path.exists():
        return None
    return locate(json.loads(path.read_text())["run"])


def grow_embedding(model: nn.Module, fresh: nn.Module, old_rows: int) -> nn.Module:
    """Copy `model`'s weights into `fresh` (same architecture, larger vocabulary): every
    tensor as is, except the word embedding, whose first `old_rows` rows are the old ones and
    whose new rows keep `fresh`'s initialisation (the embedding's own init)."""
    old_sd, new_sd = model.state_dict(), fresh.state_dict()
    for key, new in new_sd.items():
        old = old_sd[key]
        if old.shape == new.shape:
            new_sd[key] = old
        elif old.dim() == new.dim() and old.shape[0] == old_rows and old.shape[1:] == new.shape[1:]:
            merged = new.clone()
            merged[:old_rows] = old
            new_sd[key] = merged
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
    cfg, vocab, model, source = load_run(from_run, "best")
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
    # the fine-tune trains on the CLEVR-Humans question file, whatever the base run trained on
    # (a stream of fresh scenes has no question file)
    cfg = dataclasses.replace(
        cfg,
        name=f"{cfg.name}_humans",
        train=dataclasses.replace(cfg.train, **overrides),
        data=dataclasses.replace(cfg.data, train_source="fixed"),
    )
    if "val" not in files:
        raise FileNotFoundError(f"no CLEVR-Humans val questions among {files}")
    if data_dir is None:  # the humans folder itself when it holds the images, else the run's
        root = Path(humans) if not isinstance(humans, Mapping) else None
        data_dir = root if root and (root / "images").is_dir() else run_data_dir(from_run, cfg)
    lock = runlock.read_lock(out_dir)
    if lock is None or runlock.holder_alive(lock) is False:  # else fit refuses the folder
        out_dir.mkdir(parents=True, exist_ok=True)  # which run this one starts from (Table 1)
        atomic_write_json(
            out_dir / FINETUNED_FROM,
            {"run": portable_path(from_run), "checkpoint": "best", "step": int(source["step"])},
            indent=2,
            trailing_newline=True,
            fsync=False,
        )
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
