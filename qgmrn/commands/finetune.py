"""`qgmrn finetune`: fine-tune a trained run on CLEVR-Humans questions (paper sec. 4.4).

    qgmrn finetune --from results/demo/runs/brn_c16 --humans data/mini-clevr \
        --out results/demo/runs/brn_c16_humans

`--humans` is a CLEVR-Humans folder (`CLEVR-Humans-{train,val}.json`, also under `questions/`)
or a data set folder holding such files; images come from `--data-dir` (default: `--humans` when
it has `images/`, else the run's data set). The options bear the names of `finetune`'s
parameters; their first names, `--data` for `--humans` and `--images` for `--data-dir`, still
work.
"""

from __future__ import annotations

import argparse
import json

from qgmrn.commands import add_data_dir_argument, run_training


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_run", required=True, help="the trained run folder")
    parser.add_argument(
        "--humans",
        "--data",  # its first name, kept for the commands that use it
        required=True,
        help="CLEVR-Humans folder or data set folder",
    )
    parser.add_argument("--out", required=True, help="the fine-tuned run folder")
    add_data_dir_argument(parser, "data set folder holding the images", first_name="--images")
    parser.add_argument("--min-count", type=int, default=1, help="rarer new words read as <UNK>")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from qgmrn.engine import finetune

    result = run_training(
        "finetune",
        lambda: finetune(
            args.from_run,
            args.humans,
            args.out,
            data_dir=args.data_dir,
            device=args.device,
            min_count=args.min_count,
            epochs=args.epochs,
            max_minutes=args.max_minutes,
            max_steps=args.max_steps,
            lr=args.lr,
            resume=args.resume,
            progress=not args.no_progress,
        ),
    )
    if isinstance(result, int):
        return result
    ev = result["eval"]
    print(json.dumps({"out_dir": result["out_dir"], "n": ev["n"], "overall": ev["overall"]}))
    return 0
