"""`qgmrn evaluate RUN_DIR`: accuracy of a run's checkpoint on a split.

Writes `eval_[<data set>_]<split>[_<questions>]_<best|latest>.json` and the matching
`routing_paths_...npz` into the run folder (named by what was scored: another data set's name,
another question file's stem; `qgmrn.engine.evaluate.output_stem`) and prints the accuracies.
"""

from __future__ import annotations

import argparse
import json
import sys

from qgmrn.commands import add_data_dir_argument


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by `qgmrn train`")
    parser.add_argument("--split", default="val", help="val | train | test (no answers) ...")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    add_data_dir_argument(parser, "data set folder (default: the run's)")
    parser.add_argument(
        "--questions-file",
        "--questions",
        default=None,
        help="another question file on the split (the first name, --questions, still works)",
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument(
        "--sparse",
        action="store_true",
        help="skip closed modules (routed models; same answers in fp32, bf16 may flip near-ties)",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from qgmrn.config import ConfigFileError
    from qgmrn.engine.checkpoint import CheckpointError
    from qgmrn.engine.evaluate import evaluate_run

    try:
        result = evaluate_run(
            args.run_dir,
            split=args.split,
            checkpoint=args.checkpoint,
            device=args.device,
            data_dir=args.data_dir,
            questions_file=args.questions_file,
            progress=not args.no_progress,
            sparse=args.sparse,
        )
    except (CheckpointError, ConfigFileError, FileNotFoundError) as e:
        print(f"qgmrn evaluate: error: {e}", file=sys.stderr)
        return 1
    keys = ("split", "n", "overall", "by_type", "checkpoint", "checkpoint_step")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    return 0
