"""`qgmrn.engine`: running a model over data: training a run, from its config to its folder,
and evaluating it.

- `fit` (`trainer.py`): the whole recipe of one run; `setup.py` what it sets up (data, run
  folder, model and optimizer), `loop.py` the loop over epochs and steps, validation and the
  final evaluation, `run.py` the run as the loop sees it and its records (checkpoints, history).
- `finetune` (`finetuning.py`): CLEVR-Humans fine-tuning of a trained run, through `fit`;
  `pretrain.py`: our "perception first" pretraining of the visual network.
- `evaluate.py`: predictions, scores and routing paths of a model (the loop validates with them),
  and `load_run` / `evaluate_run` for a run folder.
- What they stand on: `checkpoint` (atomic save, safe load, exact resume), `runlock` (one
  training per run folder), `interrupt` (a clean stop on SIGINT/SIGTERM), `distributed`
  (torchrun), `history` (where each stretch of steps trained), `schedules` (lr and tau per step),
  `losses` (eq. 13), `auxiliary` (our attribute loss during training), `runtime` (device,
  autocast, loaders).
- The failures a user can act on: `DataWorkerError`, `DeviceOutOfMemoryError`,
  `NonFiniteLossError`, `PeerProcessError` (`errors.py`), `CheckpointError`, `RunLockedError`,
  and `TrainingInterrupted` after a stop request.

Names are imported on first use (PEP 562), so that `import qgmrn.engine.checkpoint` (a notebook
reading a run) does not import the trainer. No module is named after a name exported here
(hence trainer.py and finetuning.py): importing it would bind the module to that name in this
package, in place of the function.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "fit": "trainer",
    "finetune": "finetuning",
    "evaluate_run": "evaluate",
    "load_run": "evaluate",
    "DataWorkerError": "errors",
    "DeviceOutOfMemoryError": "errors",
    "NonFiniteLossError": "errors",
    "PeerProcessError": "errors",
    "CheckpointError": "checkpoint",
    "RunLockedError": "runlock",
    "TrainingInterrupted": "interrupt",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"qgmrn.engine.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qgmrn.engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
