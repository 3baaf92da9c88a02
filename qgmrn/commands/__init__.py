"""The sub-commands of `qgmrn` (see `qgmrn/cli.py`), one module each: generate, prepare,
download, pretrain-visual, train, evaluate, finetune, reproduce. Each parses its arguments and
calls the library; none holds logic a notebook would need."""

from __future__ import annotations

import argparse


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
