"""How fast can a visual network learn to SEE mini-CLEVR objects? (a study of ours)

Dimensions: B batch, H W input size, h w size of the feature map probed, K_a classes of
attribute a.

The plateau study (issue "Break the plateau") asks whether perception is the first wall: the
reference runs barely beat the question-only LSTM after 1-2M samples, and our labelled arm's
per-cell attribute accuracy was still 0.71 after 600k samples. This probe trains a visual network
with ONE objective, the per-cell object attributes of `qgmrn.data.attributes.cell_targets`
(colour, shape, size, material or "no object", from the renderer's object buffer), on the fixed
train split's images, and scores it on the val split's: the accuracy of each attribute on the
cells an object covers. No question, no router: a visual network that cannot learn this quickly
cannot answer "What color is the large cube?" either.

Variants (``--variant``) are visual networks built by the package's own builders:
- ``brn``: the demo BRN trunk (all gates open), y_L 4x6 at 64x96;
- ``brn_s8``: the same with the last stage's stride removed, y_L 8x12;
- ``cnn``: FiLM's stem (four 3x3 stride-2 conv + BN + ReLU; `qgmrn.nn.baselines`), 4x6.

    python studies/plateau/perception_probe.py --variant brn --steps 1500 --out results/...json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qgmrn.config import apply_overrides, get_config
from qgmrn.data import normalize_images
from qgmrn.data.attributes import cell_targets
from qgmrn.engine.pretrain import RandomGates, attribute_accuracy, load_object_maps
from qgmrn.model import build_backbone
from qgmrn.nn.attributes import AttributeHead


class FilmStem(nn.Module):
    """FiLM's raw-pixel stem: four 3x3 stride-2 conv + BN + ReLU. (B, 3, H, W) -> (B, C, H/16,
    W/16)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers, c = [], 3
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True)]
            c = w
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def build_variant(name: str, overrides: list[str]) -> nn.Module:
    cfg = apply_overrides(get_config("brn_c16_static", "demo"), overrides).model
    if name == "brn":
        return RandomGates(build_backbone(cfg), 1.0)  # every gate open
    if name == "brn_s8":
        return RandomGates(
            build_backbone(dataclasses.replace(cfg, stage_strides=(1, 2, 2, 1))), 1.0
        )
    if name == "cnn":
        return FilmStem(cfg.cnn_widths)
    raise ValueError(f"unknown variant {name!r}")


def _score(net: nn.Module, head: AttributeHead, val: dict[str, Tensor]) -> dict[str, float]:
    net.eval()
    out = attribute_accuracy(net, head, val, 250)
    net.train()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/mini-clevr")
    p.add_argument("--variant", default="brn")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--train-scenes", type=int, default=5000)
    p.add_argument("--val-scenes", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="model.FIELD=V")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    size = tuple(get_config("brn_c16", "demo").data.image_size)
    data = Path(args.data)
    train = load_object_maps(data, "train", size, args.train_scenes)
    val = load_object_maps(data, "val", size, args.val_scenes)
    net = build_variant(args.variant, args.overrides)
    head = AttributeHead(net.out_channels)
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    rows, t0, trained = [], time.perf_counter(), 0.0
    for step in range(1, args.steps + 1):
        t1 = time.perf_counter()
        idx = torch.randint(len(train["images"]), (args.batch,), generator=gen)
        x = normalize_images(train["images"][idx])
        y = net(x)  # (B, C, h, w)
        t = cell_targets(train["ids"][idx], train["attributes"][idx], y.shape[2:])  # (B, 4, h, w)
        loss = torch.stack([F.cross_entropy(lg, t[:, a]) for a, lg in enumerate(head(y))]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        trained += time.perf_counter() - t1
        if step % args.eval_every == 0 or step == args.steps:
            row = {
                "step": step,
                "images": step * args.batch,
                "train_s": round(trained, 1),
                "loss": float(loss.detach()),
                **_score(net, head, val),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {
        "variant": args.variant,
        "overrides": args.overrides,
        "lr": args.lr,
        "batch": args.batch,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
