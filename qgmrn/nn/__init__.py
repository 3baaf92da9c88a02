"""Neural-network building blocks: text encoder, gates, router, routed backbones, heads.

`qgmrn.model.build_model` composes them; each concept lives in its own file.
"""

from qgmrn.nn.blocks import FilterRoutedBottleneck, RoutedBasicBlock, RoutedBottleneck
from qgmrn.nn.brn import brn_backbone
from qgmrn.nn.coords import AddCoords, coordinate_maps
from qgmrn.nn.frn import frn_backbone
from qgmrn.nn.gumbel import GumbelSigmoidGate, SoftGate, StaticGate, gumbel_sigmoid
from qgmrn.nn.heads import AttentionHead, GMPHead, GMPQuestionHead
from qgmrn.nn.output import VQAOutput
from qgmrn.nn.routable import RoutedResNet, make_routable
from qgmrn.nn.router import Router, StaticRouter
from qgmrn.nn.text import QuestionEncoder

__all__ = [
    "AddCoords",
    "AttentionHead",
    "FilterRoutedBottleneck",
    "GMPHead",
    "GMPQuestionHead",
    "GumbelSigmoidGate",
    "QuestionEncoder",
    "RoutedBasicBlock",
    "RoutedBottleneck",
    "RoutedResNet",
    "Router",
    "SoftGate",
    "StaticGate",
    "StaticRouter",
    "VQAOutput",
    "brn_backbone",
    "coordinate_maps",
    "frn_backbone",
    "gumbel_sigmoid",
    "make_routable",
]
