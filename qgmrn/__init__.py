"""qgmrn: Question Guided Modular Routing Networks for VQA, a reproducibility package."""

__version__ = "0.1.0"
