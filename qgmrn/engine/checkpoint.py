"""Atomic checkpoint save, safe load (``torch.load(weights_only=True)``) and exact resume.

A checkpoint is a dict of tensors and primitive containers only, so loading it executes no
pickled code:

- ``format``: ``"qgmrn-checkpoint"``, ``version``: 1
- ``model``, ``optimizer``: state dicts
- ``step`` (optimizer steps taken), ``epoch`` (the epoch in progress), ``batch_in_epoch`` (how
  many batches of that epoch were consumed: the sampler position), ``best_val_acc``
- ``rng``: torch CPU state, CUDA states (if any), numpy's and Python's ``random`` states, all as
  tensors and primitives
- ``config``: the `ExperimentConfig` as JSON text, ``vocab``: the vocabulary as JSON text

`load_checkpoint` refuses a checkpoint whose model configuration, data preprocessing or
vocabulary differ from the run's, naming the file and the fields that differ. `read_checkpoint`
refuses, without running any of it, a file holding pickled objects other than tensors and
primitives (``weights_only=True`` stops at the first unknown global, which the message names),
a truncated or foreign file, and one whose fields have the wrong types.

A save that fails on a full disk raises `qgmrn.fileio.DiskFullError` naming the file; the
previous checkpoint is untouched (the write is atomic) and stays loadable.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qgmrn.config import upgrade_config_dict
from qgmrn.fileio import DiskFullError, atomic_write

FORMAT = "qgmrn-checkpoint"
VERSION = 1
# DataConfig fields that change the tensors the model sees (the rest only say where data is).
PREPROCESSING_FIELDS = ("image_size",)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not ours, or made for another run."""


# --------------------------------------------------------------------------------------------
# RNG state as tensors and primitives


def get_rng_state() -> dict[str, Any]:
    """Every RNG that training draws from, as weights_only-loadable values."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `get_rng_state`."""
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            int(n["pos"]),
            int(n["has_gauss"]),
            float(n["cached_gaussian"]),
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in states])
        else:  # a different number of GPUs: seed what we can, in order
            for i, s in enumerate(states[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s.to(torch.uint8), i)


# --------------------------------------------------------------------------------------------
# Save


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` atomically and durably (`qgmrn.fileio.atomic_write`, with fsync).

    A reader (or a run killed mid-write) sees either the old file or the complete new one. A
    full disk raises `DiskFullError` saying so, with the old file unchanged.
    """
    try:
        with atomic_write(path, "wb") as f:
            torch.save(obj, f)
    except DiskFullError as e:
        name = Path(path).name
        raise DiskFullError(
            path,
            e.errno,
            advice=f"The previous {name}, if there was one, is intact and loadable. Free some "
            f"space on the disk holding {Path(path).parent} (or train into another folder), then "
            "continue the run with `qgmrn train ... --resume`.",
        ) from e


def vocab_to_json(vocab) -> str:
    """A `qgmrn.data.Vocab` as the JSON text a checkpoint records (keys sorted)."""
    return json.dumps(vocab.to_dict(), sort_keys=True)


def make_checkpoint(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    epoch: int,
    batch_in_epoch: int,
    config_json: str,
    vocab_json: str,
    best_val_acc: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring); RNG states are taken now."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "epoch": int(epoch),
        "batch_in_epoch": int(batch_in_epoch),
        "best_val_acc": None if best_val_acc is None else float(best_val_acc),
        "rng": get_rng_state(),
        "config": config_json,
        "vocab": vocab_json,
        "extra": dict(extra or {}),
    }


def save_checkpoint(path: str | os.PathLike, **fields: Any) -> None:
    """`make_checkpoint(**fields)` written atomically to `path`."""
    atomic_torch_save(make_checkpoint(**fields), path)


def drop_optimizer_state(path: str | os.PathLike) -> int:
    """Rewrite a finished run's checkpoint without its optimizer state (atomically; about two
    thirds of the file for Adam): the weights, step, RNG state, config and vocabulary stay, so
    it evaluates and fine-tunes as before, but `--resume` then refuses it. Returns the bytes
    saved (0 when it held none)."""
    path = Path(path)
    before = path.stat().st_size
    c = read_checkpoint(path)
    if c["optimizer"] is None:
        return 0
    c["optimizer"] = None
    atomic_torch_save(c, path)
    return before - path.stat().st_size


# --------------------------------------------------------------------------------------------
# Load


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list | tuple):
        d = list(d)
    return {prefix[:-1]: d}


def config_differences(saved: dict, current: dict) -> list[str]:
    """Fields of the model config and data preprocessing that differ: ``"model.x: a != b"``
    (an older version's field names upgraded first)."""
    saved, current = upgrade_config_dict(saved), upgrade_config_dict(current)
    diffs = []
    for section, keys in (("model", None), ("data", PREPROCESSING_FIELDS)):
        a = _flatten(saved.get(section, {}), f"{section}.")
        b = _flatten(current.get(section, {}), f"{section}.")
        names = sorted(set(a) | set(b))
        if keys is not None:
            names = [n for n in names if n.split(".", 1)[1] in keys]
        for name in names:
            if a.get(name, "<missing>") != b.get(name, "<missing>"):
                diffs.append(
                    f"{name}: checkpoint {a.get(name, '<missing>')!r} != run "
                    f"{b.get(name, '<missing>')!r}"
                )
    return diffs


def vocab_differences(saved: dict, current: dict) -> list[str]:
    """Human-readable differences between two vocabulary JSON objects."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            only_a = sorted(set(a) - set(b))[:5]
            only_b = sorted(set(b) - set(a))[:5]
            moved = sorted(k for k in set(a) & set(b) if a[k] != b[k])[:5]
            diffs.append(
                f"{key}: {len(a)} vs {len(b)} entries; only in checkpoint {only_a}, "
                f"only in run {only_b}, different ids {moved}"
            )
        elif isinstance(a, list) and isinstance(b, list):
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            diffs.append(f"{key}: {len(a)} vs {len(b)} entries, first difference at {first}")
        else:
            diffs.append(f"{key}: checkpoint {a!r} != run {b!r}")
    return diffs


_USE_OURS = (
    "use a checkpoint.pt or best.pt written by `qgmrn train` (or train afresh, without --resume)"
)
_MISSING = object()
_MISMATCH_ADVICE = (
    "Resume with the settings and data the run was started with, or train the new settings into "
    "another folder (or without --resume, which starts this folder afresh)."
)
# field -> the types a checkpoint written by `make_checkpoint` holds there
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (dict,),
    "optimizer": (dict, type(None)),
    "step": (int,),
    "epoch": (int,),
    "batch_in_epoch": (int,),
    "best_val_acc": (float, int, type(None)),
    "rng": (dict,),
    "config": (str,),
    "vocab": (str,),
    "extra": (dict,),
}


def _refusal(path: Path, e: Exception) -> CheckpointError:
    """The CheckpointError for a file `torch.load(weights_only=True)` could not read."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch colours part of its message
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:  # weights_only met a class or function to import: never done, never run
        return CheckpointError(
            f"{path}: refused: it holds pickled Python objects (first found: {found.group(1)}) "
            "besides tensors and plain values. A qgmrn checkpoint never does, so this file was "
            "not written by qgmrn or has been altered, and unpickling it could run arbitrary "
            f"code; nothing of it was executed or loaded. {_USE_OURS[0].upper()}{_USE_OURS[1:]}."
        )
    if isinstance(e, pickle.UnpicklingError):  # torch's text only says how to bypass the check
        why = "not a torch zip checkpoint"
    else:
        why = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
    return CheckpointError(
        f"{path}: not a readable qgmrn checkpoint ({why}); the file is truncated, damaged "
        f"(copied while being written?) or something else: {_USE_OURS}"
    )


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint file safely (weights_only); CheckpointError if it is not one of ours.

    Refused, with a message saying what to do: a missing, truncated or foreign file, one
    holding pickled objects (never executed: ``weights_only=True``), another format version,
    or one whose fields have the wrong types.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, garbage, or holding objects weights_only refuses
        raise _refusal(path, e) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a qgmrn checkpoint (no format={FORMAT!r} marker; a plain torch file?): "
            f"{_USE_OURS}"
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported (expected "
            f"{VERSION}): {_USE_OURS}"
        )
    for field, types in _FIELD_TYPES.items():
        value = ckpt.get(field, _MISSING)
        ok = value is not _MISSING and isinstance(value, types)
        ok = ok and not (isinstance(value, bool) and bool not in types)
        if ok and field == "model":
            ok = all(isinstance(k, str) and torch.is_tensor(v) for k, v in value.items())
        if not ok:
            raise CheckpointError(
                f"{path}: checkpoint field {field!r} "
                + ("is missing" if value is _MISSING else f"holds {type(value).__name__}")
                + f", not what qgmrn writes there (damaged or edited?): {_USE_OURS}"
            )
    return ckpt


def load_checkpoint(
    path: str | os.PathLike,
    *,
    config_json: str | None = None,
    vocab_json: str | None = None,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Read `path` and check it belongs to a run with `config_json` and `vocab_json`.

    Raises CheckpointError naming the file and the differing fields when the model config, the
    data preprocessing (image size) or the vocabulary differ. Training settings (epochs, budget,
    lr) may differ: resuming with a longer budget is allowed.
    """
    ckpt = read_checkpoint(path, map_location)
    checks = (
        ("configuration", config_differences, "config", config_json),
        ("vocabulary", vocab_differences, "vocab", vocab_json),
    )
    for what, differences, key, expected in checks:
        diffs = [] if expected is None else differences(json.loads(ckpt[key]), json.loads(expected))
        if diffs:
            raise CheckpointError(
                f"{path}: checkpoint was made with a different {what}:\n  "
                + "\n  ".join(diffs)
                + f"\n{_MISMATCH_ADVICE}"
            )
    return ckpt
