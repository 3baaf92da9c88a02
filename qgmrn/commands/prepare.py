"""`qgmrn prepare DATA_DIR --image-size H W`: build the image caches the data loader reads.

`--image-size` is the network input (H, W), `DataConfig.image_size`, as in `qgmrn train`; its
first name, `--size`, still works. Resumable: run it again after an interruption and it
continues where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="a CLEVR v1.0-layout folder (holds images/{split}/)")
    parser.add_argument(
        "--image-size",
        "--size",  # its first name, kept for the commands that use it
        nargs=2,
        type=int,
        default=(224, 224),
        metavar=("H", "W"),
        help="the network input: height and width of the cached images (default: 224 224)",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        default=None,
        metavar="SPLIT",
        help="splits to cache (default: every one of train, val, test with an image folder)",
    )
    parser.add_argument("--workers", "-j", type=int, default=2, help="decoding processes")
    parser.add_argument("--cache-dir", default=None, help="output folder (default: DATA_DIR/cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from qgmrn.data.cache import ImageCacheError, build_cache
    from qgmrn.fileio import as_disk_full

    data_dir = Path(args.data_dir)
    splits = args.splits
    if splits is None:
        splits = [s for s in ("train", "val", "test") if (data_dir / "images" / s).is_dir()]
        if not splits:
            print(
                f"qgmrn prepare: no images/{{train,val,test}} folder in {data_dir}", file=sys.stderr
            )
            return 1
    for split in splits:
        try:
            path = build_cache(
                data_dir,
                split,
                tuple(args.image_size),
                workers=args.workers,
                cache_dir=args.cache_dir,
                progress=not args.no_progress,
            )
        except (FileNotFoundError, ImageCacheError) as e:
            print(f"qgmrn prepare: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            full = as_disk_full(e, args.cache_dir or data_dir / "cache")
            if full is None:
                raise
            print(f"qgmrn prepare: {full} (the rerun continues where it stopped)", file=sys.stderr)
            return 1
        print(f"{split}: {path}")
    return 0
