"""`qgmrn download {clevr,clevr-humans} --to DIR`: fetch and unpack a released data set.

Resumable (run it again after an interruption); see `qgmrn.data.download` for checksums.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    from qgmrn.data.download import SOURCES

    parser.add_argument("name", choices=sorted(SOURCES), help="which data set")
    parser.add_argument("--to", default="data", help="destination folder (default: data)")
    parser.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    parser.add_argument("--no-extract", action="store_true", help="keep the zip, do not unpack")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from qgmrn.data.download import DownloadError, download

    try:
        path = download(
            args.name,
            args.to,
            args.url,
            sha256=args.sha256,
            progress=not args.no_progress,
            extract=not args.no_extract,
        )
    except DownloadError as e:
        print(f"qgmrn download: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0
