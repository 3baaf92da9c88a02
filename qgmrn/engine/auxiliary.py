"""The auxiliary attribute loss during training (ours, not in the paper).

Dimensions: B batch, C channels of y_L, h w its size.

`AttributeLoss` hooks the routed model's visual network to keep its output y_L of the step,
applies its `AttributeHead` and scores it against the cell targets that the batch's object
buffer gives (`qgmrn.data.attributes.cell_targets`). `fit` adds the head's parameters to the
optimizer as a second group (same lr schedule) and its weights to the checkpoint's `extra`, so
a run resumes with it; the model itself, its forward and its checkpoint weights are untouched.

Its reach (`TrainConfig.attribute_loss_reach`): "visual" hands `fit` the parameters the loss may
train (`inputs`: the visual network's and the head's), which backpropagates it on its own,
restricted to them, so no gradient of it reaches the router through the straight-through gates;
"all" (`inputs` None) adds it to the VQA loss, one backward pass for both.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from qgmrn.data.attributes import ATTRIBUTE_CLASSES, cell_targets
from qgmrn.engine.checkpoint import unwrap
from qgmrn.engine.losses import attribute_loss
from qgmrn.nn.attributes import AttributeHead

CHECKPOINT_KEY = "attribute_head"  # where the head's state dict lives in a checkpoint's extra
REACH_KEY = "attribute_loss_reach"  # and its reach (absent in the first runs': "all")
REACHES = ("visual", "all")


class AttributeLoss:
    """The head, and the hook that hands it the model's y_L (B, C, h, w) of the last forward."""

    def __init__(
        self, model: nn.Module, device: torch.device, reach: str = "visual", seed: int = 0
    ) -> None:
        if reach not in REACHES:
            raise ValueError(
                f"attribute_loss_reach must be one of {', '.join(REACHES)}, not {reach!r}"
            )
        backbone = getattr(unwrap(model), "backbone", None)
        if backbone is None or not hasattr(backbone, "out_channels"):
            raise ValueError(
                "attribute_loss_weight > 0 needs a routed model (brn, frn and their static "
                f"twins): {type(unwrap(model)).__name__} has no routed visual network to supervise"
            )
        # initialised from its own seed, leaving the global generator where it was: a run with
        # the loss draws the same Gumbel noise and dropout as its twin without it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = AttributeHead(backbone.out_channels).to(device)
        self.reach = reach
        # what its own backward pass trains; None: it joins the VQA loss's and trains everything
        self.inputs: list[Tensor] | None = (
            [*backbone.parameters(), *self.head.parameters()] if reach == "visual" else None
        )
        self._y: Tensor | None = None
        # each attribute's "no object" class: cells at or above it show no object
        self._none = torch.tensor(ATTRIBUTE_CLASSES, device=device).view(1, -1, 1, 1) - 1
        self._hook = backbone.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs, output: Tensor) -> None:
        self._y = output if module.training else None  # validation keeps nothing

    def __call__(self, batch) -> tuple[Tensor, Tensor]:
        """(loss (), accuracy () over the cells that show an object, all attributes) of the
        forward just run on `batch`, whose stream must carry its object maps."""
        if batch.object_ids is None or batch.object_attributes is None:
            raise ValueError(
                "the auxiliary attribute loss needs batches with object maps: train on the "
                "stream (train_source='stream'), whose renderer provides them"
            )
        y, self._y = self._y, None
        if y is None:
            raise RuntimeError("no y_L kept: call the loss right after the model's forward")
        device = y.device
        targets = cell_targets(
            batch.object_ids.to(device, non_blocking=True),
            batch.object_attributes.to(device, non_blocking=True),
            y.shape[-2:],
        )  # (B, 4, h, w)
        logits = self.head(y.float())
        with torch.no_grad():
            seen = targets < self._none
            hits = torch.stack([x.argmax(1) for x in logits], 1) == targets  # (B, 4, h, w)
            acc = (hits & seen).sum() / seen.sum().clamp(min=1)
        return attribute_loss(logits, targets), acc.float()

    def state_dict(self) -> dict[str, Tensor]:
        return self.head.state_dict()

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.head.load_state_dict(state)

    def parameters(self):
        return self.head.parameters()
