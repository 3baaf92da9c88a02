"""mini-CLEVR: scenes, renderer, question families, paraphrases and the data set writer.

Heavy parts are imported lazily (`from qgmrn.synth.generate import generate_dataset`) so that
importing `qgmrn.synth` stays cheap; see docs/mini-clevr.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate_dataset", "generate_questions", "FAMILIES", "paraphrase"]

_LAZY = {
    "generate_dataset": "qgmrn.synth.generate",
    "generate_questions": "qgmrn.synth.questions",
    "FAMILIES": "qgmrn.synth.families",
    "paraphrase": "qgmrn.synth.paraphrase",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qgmrn.synth' has no attribute {name!r}")
