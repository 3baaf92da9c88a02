"""Object-attribute targets for the auxiliary attribute loss (ours, not in the paper).

Dimension letters: B batch, N objects per scene (padded), H W input image size, h w size of the
feature map the loss supervises, K_a classes of attribute a (its values + one "no object").

One labelled arm outside the paper's method is kept (out of its tables) because the faithful
runs cannot approach the paper's accuracy within this project's CPU budget: after about a
million samples every image model sat only 3-5 points above the question-only LSTM (the image
barely used). The renderer knows which object every pixel shows, so a dense label comes for
free: each cell of the visual network's output map y_L is labelled with the colour, shape, size
and material of the object that covers most of it, or "no object" (`cell_targets`). The loss
(`qgmrn.engine.losses.attribute_loss`) trains a 1x1 head (`qgmrn.nn.attributes.AttributeHead`)
that exists only during training; the model evaluated is the paper's, unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from qgmrn.clevr.constants import COLORS, MATERIALS, SHAPES, SIZES

# (scene key, values) per attribute, in the order of `object_attributes`' last dimension
ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("color", COLORS),
    ("shape", SHAPES),
    ("size", SIZES),
    ("material", MATERIALS),
)
# classes per attribute: its values, then "no object" (index len(values))
ATTRIBUTE_CLASSES: tuple[int, ...] = tuple(len(values) + 1 for _, values in ATTRIBUTES)
# ours: a cell is labelled with an object only if it covers at least this share of the cell
# (objects of the demo's 96x64 renders cover a median 129 pixels: half a 16x16 cell of y_L)
MIN_COVER = 0.1


def object_attribute_rows(objects: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The (N, 4) int64 attribute indices of a scene's objects, in `ATTRIBUTES` order."""
    rows = np.empty((len(objects), len(ATTRIBUTES)), dtype=np.int64)
    for i, obj in enumerate(objects):
        for a, (key, values) in enumerate(ATTRIBUTES):
            try:
                rows[i, a] = values.index(obj[key])
            except (KeyError, ValueError):
                raise ValueError(
                    f"object {i}: {key} {obj.get(key)!r} is not one of {values}"
                ) from None
    return rows


def cell_targets(
    object_ids: Tensor,
    object_attributes: Tensor,
    size: Sequence[int],
    min_cover: float = MIN_COVER,
) -> Tensor:
    """Per cell of an (h, w) grid over the image, each attribute's class: (B, 4, h, w) long.

    object_ids (B, H, W) int (-1: ground), object_attributes (B, N, 4) long (-1: padding),
    size (h, w). A cell takes the attributes of the object covering the largest share of it
    (the share an area-average of the object's mask gives) when that share is at least
    `min_cover`, else "no object" (class K_a - 1) for every attribute.
    """
    b, n = object_attributes.shape[:2]
    none = torch.tensor(ATTRIBUTE_CLASSES, device=object_ids.device) - 1  # (4,)
    if n == 0:
        return none.view(1, -1, 1, 1).expand(b, -1, *size).clone()
    ids = object_ids.long().clamp(min=-1) + 1  # (B, H, W): 0 ground, 1..N objects
    onehot = F.one_hot(ids, n + 1).permute(0, 3, 1, 2).float()  # (B, N + 1, H, W)
    cover = F.adaptive_avg_pool2d(onehot, tuple(size))[:, 1:]  # (B, N, h, w) objects only
    share, which = cover.max(dim=1)  # (B, h, w)
    attrs = torch.gather(
        object_attributes, 1, which.flatten(1)[..., None].expand(-1, -1, len(ATTRIBUTES))
    )  # (B, h * w, 4)
    attrs = attrs.transpose(1, 2).reshape(b, len(ATTRIBUTES), *size)  # (B, 4, h, w)
    keep = (share >= min_cover)[:, None] & (attrs >= 0)  # (B, 4, h, w)
    return torch.where(keep, attrs, none.view(1, -1, 1, 1))
