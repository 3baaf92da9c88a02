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

No module is named after a function exported here (hence trainer.py and finetuning.py): the
package's attribute `fit` is the function, and a module `fit` would hide behind it.
"""

from qgmrn.engine.checkpoint import CheckpointError
from qgmrn.engine.errors import (
    DataWorkerError,
    DeviceOutOfMemoryError,
    NonFiniteLossError,
    PeerProcessError,
)
from qgmrn.engine.evaluate import evaluate_run, load_run
from qgmrn.engine.finetuning import finetune
from qgmrn.engine.interrupt import TrainingInterrupted
from qgmrn.engine.runlock import RunLockedError
from qgmrn.engine.trainer import fit

__all__ = [
    "CheckpointError",
    "DataWorkerError",
    "DeviceOutOfMemoryError",
    "NonFiniteLossError",
    "PeerProcessError",
    "RunLockedError",
    "TrainingInterrupted",
    "evaluate_run",
    "finetune",
    "fit",
    "load_run",
]
