"""`qgmrn train`: train a preset on a data set into a run directory (`qgmrn.engine.fit`).

qgmrn train --preset brn_c16 --profile demo --data-dir data/mini-clevr --out results/demo/runs/x
torchrun --nproc_per_node 4 -m qgmrn.cli train --preset brn_c32 --profile paper --device cuda

Every option that sets a config field bears the field's name (`--num-workers` sets
`DataConfig.num_workers`); `--data` and `--workers`, their first names, still work.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from qgmrn.commands import add_data_dir_argument, add_overrides_argument, run_training
from qgmrn.config import PRESETS, PROFILES, apply_overrides


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), help="the model")
    parser.add_argument("--profile", default="demo", choices=PROFILES, help="data/compute scale")
    add_data_dir_argument(parser, "data set folder (default: the profile's)")
    parser.add_argument(
        "--out", default=None, help="run folder (default: results/<profile>/runs/<name>)"
    )
    parser.add_argument("--name", default=None, help="run name (default: the preset)")
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget")
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size")
    parser.add_argument("--lr", type=float, default=None, help="learning rate after warmup")
    parser.add_argument(
        "--eval-every-steps", type=int, default=None, help="also validate every this many steps"
    )
    parser.add_argument(
        "--checkpoint-every-steps", type=int, default=None, help="steps between checkpoints"
    )
    parser.add_argument(
        "--num-workers",
        "--workers",  # its first name, kept for the commands that use it
        type=int,
        default=None,
        help="DataLoader workers",
    )
    parser.add_argument(
        "--train-source",
        choices=("fixed", "stream"),
        default=None,
        help="fixed: the train split's files; stream: fresh mini-CLEVR scenes (default: config)",
    )
    parser.add_argument(
        "--scene-reuse", type=int, default=None, help="stream: batches per group of scenes"
    )
    parser.add_argument(
        "--curriculum",
        type=int,
        nargs="*",
        default=None,
        metavar="SAMPLES",
        help="stream: sample counts after which relational depth 1, 2, ... is allowed",
    )
    parser.add_argument(
        "--queries-first",
        type=int,
        default=None,
        metavar="SAMPLES",
        help="stream: samples of zero-hop Query Attribute questions alone before the curriculum",
    )
    parser.add_argument(
        "--image-size", type=int, nargs=2, default=None, metavar=("H", "W"), help="network input"
    )
    parser.add_argument(
        "--attribute-loss-weight",
        "--attribute-loss",  # its first name, kept for the commands that use it
        type=float,
        default=None,
        metavar="WEIGHT",
        help="ours, not the paper's: weight of the auxiliary object-attribute loss on y_L "
        "(stream training of brn/frn presets; default 0 = off)",
    )
    parser.add_argument(
        "--attribute-loss-reach",
        choices=("visual", "all"),
        default=None,
        help="ours: what the auxiliary loss trains: visual = the visual network and its head "
        "only, its gradient kept out of the router (default); all = every parameter, through "
        "the gates",
    )
    add_overrides_argument(parser, "; applied after the options above")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _given(**values) -> dict:
    """The options given on the command line (those not left at None)."""
    return {k: v for k, v in values.items() if v is not None}


def build_config(args: argparse.Namespace):
    """The preset's config with the command line's overrides."""
    cfg = PRESETS[args.preset](args.profile)
    name = args.name or args.preset
    train = _given(
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        eval_every_steps=args.eval_every_steps,
        checkpoint_every_steps=args.checkpoint_every_steps,
        attribute_loss_weight=args.attribute_loss_weight,
        attribute_loss_reach=args.attribute_loss_reach,
    )
    data = _given(
        data_dir=args.data_dir,
        num_workers=args.num_workers,
        train_source=args.train_source,
        scene_reuse=args.scene_reuse,
        curriculum=None if args.curriculum is None else tuple(args.curriculum),
        queries_first=args.queries_first,
        image_size=None if args.image_size is None else tuple(args.image_size),
    )
    cfg = dataclasses.replace(
        cfg,
        name=name,
        train=dataclasses.replace(cfg.train, **train),
        data=dataclasses.replace(cfg.data, **data),
    )
    return apply_overrides(cfg, args.overrides)


def budget_note(args: argparse.Namespace, cfg) -> str | None:
    """A note when `--max-steps` is given but the preset's own epoch or minute budget, left in
    force, may stop the run first (the demo profile: 4 epochs, 6 minutes); None otherwise."""
    if args.max_steps is None:
        return None
    kept = []
    if args.epochs is None:
        kept.append(f"--epochs {cfg.train.epochs}")
    if args.max_minutes is None and cfg.train.max_minutes is not None:
        kept.append(f"--max-minutes {cfg.train.max_minutes:g}")
    if not kept:
        return None
    return (
        f"qgmrn train: note: --max-steps {args.max_steps} does not lift the preset's own budget "
        f"({', '.join(kept)}); whichever ends first stops the run. Pass larger values to train "
        "for the steps alone."
    )


def run(args: argparse.Namespace) -> int:
    from qgmrn.engine import fit

    try:
        cfg = build_config(args)
    except ValueError as e:  # a bad --set entry: the message names it
        print(f"qgmrn train: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("results") / cfg.profile / "runs" / cfg.name
    note = budget_note(args, cfg)
    if note:
        print(note, file=sys.stderr)
    result = run_training(
        "train",
        lambda: fit(
            cfg,
            cfg.data.data_dir,
            out,
            device=args.device,
            resume=args.resume,
            progress=not args.no_progress,
            max_steps=args.max_steps,
        ),
    )
    if isinstance(result, int):
        return result
    ev = result["eval"]
    summary = {k: result[k] for k in ("out_dir", "step", "epoch", "stop_reason", "best_val_acc")}
    summary.update(split=ev["split"], n=ev["n"], overall=ev["overall"])
    print(json.dumps(summary, indent=2))
    return 0
