"""Neural-network building blocks: text encoder, gates, router, routed backbones, heads."""

from qgmrn.nn.output import VQAOutput
from qgmrn.nn.text import QuestionEncoder

__all__ = ["QuestionEncoder", "VQAOutput"]
