"""Perception first: pretrain the visual network on per-cell object attributes (ours).

Dimensions: B batch, H W input size, h w size of y_L, N objects per scene (padded), K_a classes
of attribute a.

Not in the paper, which trains from raw pixels with the VQA loss alone. On mini-CLEVR that loss
teaches the visual network to see slowly: every reference model sat near the question-only LSTM
after 1-2M samples (results/reference/summary.md), while the same visual network, asked directly
for the colour, shape, size and material of the object in each cell of y_L
(`qgmrn.data.attributes.cell_targets`), learns colour in tens of thousands of images
(results/studies/plateau). `pretrain_visual` does exactly that on the fixed train split's
images, whose object buffers the renderer recomputes from the scene files (no rendering of
images: `qgmrn.synth.render.object_ids`), and writes `visual.pt`: the visual network's weights
and the attribute head's. `TrainConfig.visual_init` then starts a VQA run from it.

The gates during pretraining are drawn as the routed model will first see them: each module open
with probability `init_exec_prob` (all open for a static twin), so the visual network learns to
see under the routing it meets when question answering begins.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from qgmrn.clevr import load_scenes
from qgmrn.config import ExperimentConfig, config_to_json
from qgmrn.data import normalize_images
from qgmrn.data.attributes import ATTRIBUTE_CLASSES, ATTRIBUTES, cell_targets, object_attribute_rows
from qgmrn.data.stream import StreamSpec
from qgmrn.engine.checkpoint import CheckpointError, atomic_torch_save
from qgmrn.engine.losses import attribute_loss
from qgmrn.fileio import atomic_write_json
from qgmrn.model import build_backbone
from qgmrn.nn.attributes import AttributeHead
from qgmrn.synth.camera import Camera
from qgmrn.synth.render import object_ids

VISUAL_FORMAT = "qgmrn-visual"
VISUAL_VERSION = 1


def load_object_maps(
    data_dir: str | os.PathLike, split: str, image_size: tuple[int, int], limit: int | None = None
) -> dict[str, Tensor]:
    """A mini-CLEVR split's images and object maps at `image_size` (H, W):
    images (N, 3, H, W) uint8, ids (N, H, W) int16 (-1: ground), attributes (N, O, 4) long
    (-1: padding). Needs the scene files and the framing in summary.json (mini-CLEVR only: the
    real CLEVR's camera is jittered per image and its object buffers are not recoverable)."""
    data_dir = Path(data_dir)
    spec = StreamSpec.from_data_dir(data_dir)
    camera = Camera.from_framing(spec.framing)
    scenes = load_scenes(data_dir / "scenes" / f"CLEVR_{split}_scenes.json")[:limit]
    if not scenes:
        raise ValueError(f"{data_dir}: the {split} split has no scenes to pretrain on")
    h, w = image_size
    n_obj = max(len(s["objects"]) for s in scenes)
    images = np.empty((len(scenes), h, w, 3), dtype=np.uint8)
    ids = np.empty((len(scenes), h, w), dtype=np.int16)
    attrs = np.full((len(scenes), n_obj, 4), -1, dtype=np.int64)
    for i, scene in enumerate(scenes):
        path = data_dir / "images" / split / scene["image_filename"]
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            # as the image cache and the stream resize (bilinear; ids: nearest pixel centre)
            images[i] = np.asarray(rgb.resize((w, h), Image.Resampling.BILINEAR))
            render_w, render_h = rgb.size
        full = object_ids(scene, camera, render_w, render_h)  # (H_render, W_render)
        rows = ((np.arange(h) + 0.5) * render_h / h).astype(np.int64)
        cols = ((np.arange(w) + 0.5) * render_w / w).astype(np.int64)
        ids[i] = full[rows[:, None], cols[None, :]]
        attrs[i, : len(scene["objects"])] = object_attribute_rows(scene["objects"])
    return {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),  # (N, 3, H, W)
        "ids": torch.from_numpy(ids),
        "attributes": torch.from_numpy(attrs),
    }


class RandomGates(nn.Module):
    """The visual network under gates drawn open with probability `p`: x -> y_L."""

    def __init__(self, backbone: nn.Module, p: float) -> None:
        super().__init__()
        self.backbone, self.p = backbone, float(p)
        self.out_channels = backbone.out_channels

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        if self.training and self.p < 1.0:
            gates = [
                (torch.rand(b, m, device=x.device) < self.p).to(x.dtype)
                for m in self.backbone.gate_sizes
            ]
        else:  # evaluation: every module open (a routed model's untrained test-time path)
            gates = [x.new_ones(b, m) for m in self.backbone.gate_sizes]
        return self.backbone(x, gates)


@torch.no_grad()
def attribute_accuracy(
    net: Callable[[Tensor], Tensor], head: AttributeHead, split: dict[str, Tensor], batch: int
) -> dict[str, float]:
    """Per attribute, the accuracy on the cells an object covers; `occupancy`: object vs no
    object over all cells."""
    correct = np.zeros(len(ATTRIBUTES))
    n_obj = occ_correct = occ_n = 0
    none = ATTRIBUTE_CLASSES[0] - 1
    for i in range(0, len(split["images"]), batch):
        y = net(normalize_images(split["images"][i : i + batch]))  # (B, C, h, w)
        t = cell_targets(
            split["ids"][i : i + batch], split["attributes"][i : i + batch], y.shape[2:]
        )
        logits = head(y)
        obj = t[:, 0] != none  # (B, h, w)
        n_obj += int(obj.sum())
        for a, x in enumerate(logits):
            correct[a] += float((x.argmax(1) == t[:, a])[obj].sum())
        occ_correct += int(((logits[0].argmax(1) != none) == obj).sum())
        occ_n += obj.numel()
    out = {key: float(correct[a] / max(n_obj, 1)) for a, (key, _) in enumerate(ATTRIBUTES)}
    out["occupancy"] = occ_correct / max(occ_n, 1)
    return out


def pretrain_visual(
    cfg: ExperimentConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    steps: int,
    eval_every: int = 250,
    device: str | torch.device = "cpu",
    train_limit: int | None = None,
    val_limit: int | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train `cfg`'s visual network and an `AttributeHead` on the train split's per-cell
    attributes for `steps` Adam steps (batch `cfg.train.batch_size` images, lr `cfg.train.lr`,
    `cfg.train.seed`), scoring the val split every `eval_every` steps; writes
    `out_dir/visual.pt` (atomically) and `out_dir/metrics.jsonl`. Returns the last val row."""
    if cfg.model.arch not in ("brn", "frn"):
        raise ValueError(f"pretrain_visual needs a routed model (brn or frn), not {cfg.model.arch}")
    if steps < 1:
        raise ValueError(f"steps={steps}: pretrain at least one step")
    dev = torch.device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = tuple(cfg.data.image_size)
    train = load_object_maps(data_dir, "train", size, train_limit)
    val = load_object_maps(data_dir, "val", size, val_limit)
    torch.manual_seed(cfg.train.seed)
    backbone = build_backbone(cfg.model).to(dev)
    p = 1.0 if cfg.model.gate == "static" else cfg.model.init_exec_prob
    net = RandomGates(backbone, p)
    head = AttributeHead(backbone.out_channels).to(dev)
    opt = torch.optim.Adam(
        [*backbone.parameters(), *head.parameters()], lr=cfg.train.lr, betas=tuple(cfg.train.betas)
    )
    gen = torch.Generator().manual_seed(cfg.train.seed)
    batch = cfg.train.batch_size
    rows: list[dict[str, Any]] = []
    trained_s = 0.0
    metrics = out_dir / "metrics.jsonl"
    metrics.write_text("")
    row: dict[str, Any] = {}
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        idx = torch.randint(len(train["images"]), (batch,), generator=gen)
        x = normalize_images(train["images"][idx].to(dev))  # (B, 3, H, W)
        y = net(x)  # (B, C, h, w)
        t = cell_targets(train["ids"][idx].to(dev), train["attributes"][idx].to(dev), y.shape[2:])
        loss = attribute_loss(head(y), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        trained_s += time.perf_counter() - t0
        if step % eval_every == 0 or step == steps:
            net.eval()
            acc = attribute_accuracy(net, head, {k: v.to(dev) for k, v in val.items()}, 250)
            net.train()
            row = {
                "step": step,
                "images": step * batch,
                "train_s": round(trained_s, 1),
                "loss": float(loss.detach()),
                "val": acc,
            }
            rows.append(row)
            with metrics.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if log is not None:
                log(row)
    save_visual(out_dir / "visual.pt", cfg, backbone, head, steps, steps * batch, trained_s)
    atomic_write_json(
        out_dir / "summary.json",
        {
            "config": json.loads(config_to_json(cfg)),
            "steps": steps,
            "images": steps * batch,
            "train_s": round(trained_s, 1),
            "threads": torch.get_num_threads(),
            "last": row,
        },
    )
    return row


def save_visual(path, cfg, backbone, head, steps: int, images: int, train_s: float) -> None:
    atomic_torch_save(
        {
            "format": VISUAL_FORMAT,
            "version": VISUAL_VERSION,
            "config": config_to_json(cfg),
            "backbone": backbone.state_dict(),
            "attribute_head": head.state_dict(),
            "steps": int(steps),
            "images": int(images),
            "train_s": float(train_s),
        },
        path,
    )


def read_visual(path: str | os.PathLike) -> dict[str, Any]:
    """A `visual.pt` written by `pretrain_visual`; CheckpointError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such visual checkpoint (qgmrn pretrain-visual writes it)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable visual checkpoint ({e})") from e
    if not isinstance(state, dict) or state.get("format") != VISUAL_FORMAT:
        raise CheckpointError(f"{path}: not a visual checkpoint of qgmrn pretrain-visual")
    if state.get("version") != VISUAL_VERSION:
        raise CheckpointError(
            f"{path}: visual checkpoint version {state.get('version')} is not supported "
            f"(expected {VISUAL_VERSION}); run qgmrn pretrain-visual again"
        )
    return state


def load_visual_into(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Loads `visual.pt`'s visual network into `model.backbone` (strict: the same architecture,
    else a CheckpointError naming the file and the mismatch); returns the file's dict."""
    state = read_visual(path)
    try:
        model.backbone.load_state_dict(state["backbone"])
    except RuntimeError as e:
        why = " ".join(str(e).split()[5:25])
        raise CheckpointError(
            f"{path}: its visual network does not fit this model's ({why} ...); "
            "pretrain with the same preset and model settings"
        ) from e
    return state


__all__ = [
    "attribute_accuracy",
    "load_object_maps",
    "load_visual_into",
    "pretrain_visual",
    "read_visual",
]
