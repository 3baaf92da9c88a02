"""`qgmrn pretrain-visual`: the visual network pretrained on per-cell object attributes (ours).

qgmrn pretrain-visual --preset brn_c16 --profile demo --data-dir data/mini-clevr \
    --out results/studies/plateau/visual/brn_c16 --steps 1500
then: qgmrn train --preset brn_c16 ... --set train.visual_init=OUT/visual.pt
"""

from __future__ import annotations

import argparse
import json
import sys

from qgmrn.commands import add_data_dir_argument, add_overrides_argument
from qgmrn.config import PRESETS, PROFILES, apply_overrides


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), help="the model")
    parser.add_argument("--profile", default="demo", choices=PROFILES, help="data/compute scale")
    add_data_dir_argument(parser, "mini-CLEVR folder (default: the profile's)")
    parser.add_argument("--out", required=True, help="folder for visual.pt and metrics.jsonl")
    parser.add_argument("--steps", type=int, required=True, help="Adam steps")
    parser.add_argument("--eval-every", type=int, default=250, help="steps between val scores")
    add_overrides_argument(parser, "; the VQA run must use the same model fields")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")


def run(args: argparse.Namespace) -> int:
    from qgmrn.engine.pretrain import pretrain_visual

    try:
        cfg = apply_overrides(PRESETS[args.preset](args.profile), args.overrides)
        data_dir = args.data_dir or cfg.data.data_dir
        last = pretrain_visual(
            cfg,
            data_dir,
            args.out,
            steps=args.steps,
            eval_every=args.eval_every,
            device=args.device,
            log=lambda row: print(json.dumps(row), flush=True),
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"qgmrn pretrain-visual: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"out": args.out, **last}, indent=2))
    return 0
