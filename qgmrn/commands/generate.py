"""`qgmrn generate OUT_DIR ...`: write a mini-CLEVR data set (see qgmrn.synth.generate).

``--profile smoke|demo|paper`` takes its defaults from `qgmrn.config` (the profile's DataConfig);
any option given on the command line overrides the profile's value. `--render-size W H` is the
PNGs' size, `DataConfig.render_size`; its first name, `--image-size`, still works with a note
(everywhere else `--image-size` is the network input, (H, W)).
"""

from __future__ import annotations

import argparse
import json
import sys

from qgmrn.config import PROFILES, DataConfig, get_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="where to write the data set")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="take the defaults below from this profile's DataConfig",
    )
    parser.add_argument("--train-scenes", type=int, help="number of train images")
    parser.add_argument("--val-scenes", type=int, help="number of val images")
    parser.add_argument("--test-scenes", type=int, help="number of test images (default 0)")
    parser.add_argument("--questions-per-scene", type=int, help="questions per image (1..90)")
    parser.add_argument(
        "--render-size",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help="PNG width and height (default 480 320, as CLEVR)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        dest="render_size",
        action=_RenamedToRenderSize,
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--min-objects", type=int, help="fewest objects per scene (default 3)")
    parser.add_argument("--max-objects", type=int, help="most objects per scene (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    parser.add_argument(
        "--humans",
        action="store_true",
        help="also write synthetic CLEVR-Humans-style paraphrase files",
    )
    parser.add_argument("--framing", help="camera: clevr (real) or close (objects larger)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class _RenamedToRenderSize(argparse.Action):
    """`--image-size W H`, generate's first name for `--render-size`: stored as that, with a
    note, since train and prepare read `--image-size` as the network input (H, W)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            "qgmrn generate: note: --image-size W H is now --render-size W H (--image-size is "
            "the network input, H W, in train and prepare)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def _defaults(profile: str | None) -> DataConfig:
    if profile is None:
        return DataConfig(test_scenes=0)
    return get_config("brn_c16", profile).data  # every preset shares its profile's DataConfig


def run(args: argparse.Namespace) -> int:
    d = _defaults(args.profile)

    def pick(value, default):
        return default if value is None else value

    train = pick(args.train_scenes, d.train_scenes if args.profile else None)
    val = pick(args.val_scenes, d.val_scenes if args.profile else None)
    if train is None or val is None:
        print(
            "qgmrn generate: give --train-scenes and --val-scenes, or a --profile", file=sys.stderr
        )
        return 2
    from qgmrn.synth.generate import generate_dataset  # numpy/Pillow only when running

    try:
        summary = generate_dataset(
            args.out_dir,
            train_scenes=train,
            val_scenes=val,
            test_scenes=pick(args.test_scenes, d.test_scenes),
            questions_per_scene=pick(args.questions_per_scene, d.questions_per_scene),
            render_size=tuple(pick(args.render_size, d.render_size)),
            min_objects=pick(args.min_objects, d.min_objects),
            max_objects=pick(args.max_objects, d.max_objects),
            seed=args.seed,
            workers=args.workers,
            humans=args.humans,
            framing=pick(args.framing, d.framing),
            progress=not args.no_progress,
        )
    except ValueError as exc:
        print(f"qgmrn generate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from qgmrn.fileio import as_disk_full

        full = as_disk_full(exc, args.out_dir)
        if full is None:
            raise
        print(
            f"qgmrn generate: {full} (the rerun rewrites every file: the result is as if nothing "
            "had stopped it)",
            file=sys.stderr,
        )
        return 1
    splits = {
        s: {k: v for k, v in e.items() if k != "answers_by_type"}
        for s, e in summary["splits"].items()
    }
    print(json.dumps({"out_dir": summary["out_dir"], "splits": splits}, indent=1))
    return 0
