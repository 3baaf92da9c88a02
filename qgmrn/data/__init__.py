"""`qgmrn.data`: CLEVR files -> tensors (vocabulary, image cache, dataset/loader, download).

Names are imported on first use (PEP 562), so `qgmrn download` and `qgmrn prepare` do not pay for
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "tokenize": "vocab",
    "Vocab": "vocab",
    "VocabFormatError": "vocab",
    "build_cache": "cache",
    "open_cache": "cache",
    "cache_paths": "cache",
    "ImageCacheError": "cache",
    "ClevrQuestions": "dataset",
    "build_vocab": "dataset",
    "Batch": "dataset",
    "collate": "dataset",
    "normalize_images": "dataset",
    "make_loader": "dataset",
    "download": "download",
    "DownloadError": "download",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"qgmrn.data.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qgmrn.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
