"""The sub-commands of `qgmrn` (see `qgmrn/cli.py`), one module each: generate, prepare,
download, pretrain-visual, train, evaluate, finetune, reproduce. Each parses its arguments and
calls the library; none holds logic a notebook would need."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def add_overrides_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """`--set SECTION.FIELD=VALUE` (repeatable) into `args.overrides`, for
    `qgmrn.config.apply_overrides`."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="any config field, e.g. --set model.head=attention --set model.stage_strides=1,2,2,1 "
        f"(repeatable; qgmrn.config.apply_overrides){note}",
    )


def add_data_dir_argument(
    parser: argparse.ArgumentParser, help: str, first_name: str = "--data"
) -> None:
    """`--data-dir DIR` into `args.data_dir` (None when not given), the `data_dir` of the
    library call the command makes; `first_name`, the option's name before it took the
    parameter's, still works."""
    parser.add_argument("--data-dir", first_name, default=None, metavar="DIR", help=help)


def run_training(command: str, train: Callable[[], dict[str, Any]]) -> dict[str, Any] | int:
    """`train()` (a `fit` or `finetune` call) for the command `command`: its result, or the exit
    status after a failure the user can act on, printed as one line that names the file and what
    to do (1), or after SIGINT/SIGTERM, once checkpoint.pt holds the step reached (130/143)."""
    from qgmrn.engine import (
        CheckpointError,
        DataWorkerError,
        DeviceOutOfMemoryError,
        NonFiniteLossError,
        PeerProcessError,
        RunLockedError,
        TrainingInterrupted,
    )
    from qgmrn.fileio import DiskFullError

    try:
        return train()
    except (
        CheckpointError,
        DataWorkerError,
        DeviceOutOfMemoryError,
        DiskFullError,
        FileNotFoundError,
        NonFiniteLossError,
        PeerProcessError,
        RunLockedError,
    ) as e:
        print(f"qgmrn {command}: error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:
        print(f"qgmrn {command}: interrupted at step {stop.step}; continue with --resume",
              file=sys.stderr)  # fmt: skip
        return stop.exit_status
