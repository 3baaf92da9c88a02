"""The `qgmrn` command line: one sub-command per pipeline step.

Each sub-command is one module of `qgmrn/commands/` (its name is the command's) exposing
`configure(parser)` and `run(args) -> int`, a thin layer over the library function it drives;
this file only dispatches, importing a command's module lazily so that
`qgmrn generate` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": (
        "qgmrn.commands.generate",
        "generate a mini-CLEVR data set in the CLEVR v1.0 layout",
    ),
    "prepare": (
        "qgmrn.commands.prepare",
        "decode and resize images into a memory-mapped cache",
    ),
    "download": ("qgmrn.commands.download", "download CLEVR v1.0 or CLEVR-Humans"),
    "pretrain-visual": (
        "qgmrn.commands.pretrain_visual",
        "pretrain the visual network on per-cell object attributes (ours)",
    ),
    "train": ("qgmrn.commands.train", "train a preset on a data set"),
    "evaluate": ("qgmrn.commands.evaluate", "evaluate a trained run"),
    "finetune": ("qgmrn.commands.finetune", "fine-tune a run on CLEVR-Humans-style questions"),
    "reproduce": ("qgmrn.commands.reproduce", "run the notebooks 01-06 through papermill"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qgmrn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"qgmrn {name}", description=COMMANDS[name][1])
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
