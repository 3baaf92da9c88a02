"""Can the answer heads read a question's object from features that already know the objects?
(a study of ours, the plateau study)

The VQA arms answer Query Attribute near its prior even where their visual network reads
colour on 94% of the object cells. This probe separates seeing from answering: it freezes a
visual network pretrained on the per-cell attributes (`qgmrn pretrain-visual`, every gate open),
computes y_L once for every train and val image, and trains only a question encoder and a head
on the VQA answers, scoring val by subtype. Heads (the package's, built by `build_head`):

- `gmp`: global max pooling, q concatenated, the MLP (the paper's BRN head);
- `attention`: the paper's attention head (sec. 3.4, eq. 12);
- `film_gmp` (a diagnostic, not a model of the paper): y_L scaled and shifted per channel by q
  (FiLM, Perez et al. 2018), one 1x1 conv + ReLU, then the `gmp` head: the question acts on
  the features before the pooling, as routing would have to.
- `routed_gmp`: the BRN's own mechanism on top of the features: a 1x1 conv stem, then
  ``--blocks`` of the demo BRN's last-stage blocks (`RoutedBottleneck`, 16 branches, GroupNorm
  third norm) whose branches the paper's router opens from q (Gumbel-sigmoid gates, tau 1,
  70% open at the start: sec. 3.3, 4.2), then the coordinate maps and the `gmp` head;
  `static_gmp` the same blocks with every branch open (the static twin): can routing learn
  to pick out the object where the attention head can?

Features (``--features``): `visual`, y_L of the pretrained visual network; `oracle`, the true
per-cell attributes instead (one-hot colour, shape, size, material or "no object" of the object
covering each cell, `qgmrn.data.attributes.cell_targets`, at ``--oracle-size``, plus the
coordinate maps): what a perfect perception would hand the head, so that a head which fails on
them fails at selection, not at seeing.

Training questions (``--train-on``): `all` the train split; `depth0` its questions of relational
depth 0 (no `relate`, no `same_*`: "What color is the large cube?", "How many red things are
there?"), the first stage of the stream's curriculum; `query0` the depth-0 Query Attribute
questions alone. Val is always the whole val split, scored also on depth 0 and on the depth-0
Query Color questions (`query_color_depth0`).

Dimensions: B batch, C channels of y_L, h w its size, D question feature size, A answers.

    python studies/plateau/head_probe.py --visual results/studies/plateau/visual/.../visual.pt \
        --head gmp --steps 3000 --out results/studies/plateau/heads/gmp.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qgmrn.clevr.constants import SUBTYPES
from qgmrn.config import get_config
from qgmrn.data import ClevrQuestions, Vocab, normalize_images
from qgmrn.data.attributes import ATTRIBUTE_CLASSES, cell_targets
from qgmrn.engine.pretrain import load_object_maps, load_visual_into
from qgmrn.fileio import atomic_write_text
from qgmrn.model import build_head, build_model
from qgmrn.nn.blocks import RoutedBottleneck
from qgmrn.nn.brn import branch_width, group_norm
from qgmrn.nn.coords import AddCoords
from qgmrn.nn.gumbel import GumbelSigmoidGate
from qgmrn.nn.router import Router, StaticRouter


class FiLMThenGMP(nn.Module):
    """y -> ReLU(conv1x1(gamma(q) * y + beta(q))) -> the GMP head.
    Shapes: y (B, C, h, w), q (B, D) -> (B, A)."""

    def __init__(self, channels: int, q_dim: int, head: nn.Module) -> None:
        super().__init__()
        self.film = nn.Linear(q_dim, 2 * channels)
        self.conv = nn.Conv2d(channels, channels, 1)
        self.head = head

    def forward(self, y: Tensor, q: Tensor) -> Tensor:
        gamma, beta = self.film(q)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return self.head(F.relu(self.conv((1 + gamma) * y + beta)), q)


class RoutedStageThenGMP(nn.Module):
    """y -> conv1x1 stem -> `blocks` routed bottlenecks gated by the router from q -> coords ->
    the GMP head. Shapes: y (B, C, h, w), q (B, D) -> (B, A); width W, M = `cardinality`."""

    def __init__(
        self, channels: int, q_dim: int, head: nn.Module, *, blocks: int, routed: bool,
        width: int = 128, cardinality: int = 16, bottleneck_ratio: int = 2, gn_groups: int = 16,
    ) -> None:  # fmt: skip
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        inner = branch_width(width, cardinality, bottleneck_ratio)
        self.blocks = nn.ModuleList(
            RoutedBottleneck(width, inner, width, groups=cardinality,
                             norm_layer=nn.BatchNorm2d, third_norm_layer=group_norm(gn_groups))
            for _ in range(blocks)
        )  # fmt: skip
        sizes = [cardinality] * blocks
        self.router = Router(q_dim, sizes, GumbelSigmoidGate()) if routed else StaticRouter(sizes)
        self.coords = AddCoords()
        self.head = head

    def forward(self, y: Tensor, q: Tensor) -> Tensor:
        gates, _ = self.router(q)  # blocks x (B, M)
        x = self.stem(y)  # (B, W, h, w)
        for block, g in zip(self.blocks, gates, strict=True):
            x = block(x, g)
        return self.head(self.coords(x), q)


@torch.no_grad()
def features(model: nn.Module, images: np.ndarray, batch: int = 200) -> Tensor:
    """y_L with coordinate maps of every image, every gate open: (N, C + 2, h, w)."""
    out = []
    for i in range(0, len(images), batch):
        x = normalize_images(torch.from_numpy(np.array(images[i : i + batch])).permute(0, 3, 1, 2))
        gates = [torch.ones(len(x), m) for m in model.backbone.gate_sizes]
        out.append(model.coords(model.backbone(x, gates)))
    return torch.cat(out)


def oracle_features(data: str, split: str, image_size, size: tuple[int, int]) -> Tensor:
    """The true per-cell attributes of every image of `split`, one-hot, with the coordinate maps:
    (N, sum K_a + 2, h, w), row == image_index."""
    maps = load_object_maps(data, split, image_size)
    t = cell_targets(maps["ids"], maps["attributes"], size)  # (N, 4, h, w)
    onehot = [F.one_hot(t[:, a], k).permute(0, 3, 1, 2) for a, k in enumerate(ATTRIBUTE_CLASSES)]
    return AddCoords()(torch.cat(onehot, dim=1).float())  # (N, sum K_a + 2, h, w)


QUERY_SUBTYPES = [i for i, name in enumerate(SUBTYPES) if name.startswith("query_")]


def training_pool(ds: ClevrQuestions, train_on: str) -> np.ndarray:
    """The indices of `ds` a `--train-on` choice trains on."""
    if train_on == "all":
        return np.arange(len(ds))
    keep = ds.depths == 0
    if train_on == "query0":
        keep &= np.isin(ds.subtypes, QUERY_SUBTYPES)
    return np.flatnonzero(keep)


def by_subtype(pred: Tensor, ds: ClevrQuestions) -> dict[str, float]:
    ok = pred.numpy() == ds.answers
    out = {"overall": float(ok.mean()), "depth0": float(ok[ds.depths == 0].mean())}
    qc0 = (ds.depths == 0) & (ds.subtypes == SUBTYPES.index("query_color"))
    out["query_color_depth0"] = float(ok[qc0].mean())
    for i, name in enumerate(SUBTYPES):
        m = ds.subtypes == i
        if m.any():
            out[name] = float(ok[m].mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/mini-clevr")
    p.add_argument("--features", choices=("visual", "oracle"), default="visual")
    p.add_argument("--visual", help="visual.pt of qgmrn pretrain-visual (--features visual)")
    p.add_argument("--oracle-size", default="4,6", help="h,w of the oracle's grid (y_L: 4,6)")
    p.add_argument(
        "--stage-strides",
        default=None,
        help="the visual network's model.stage_strides, e.g. 1,2,2,1 for y_L 8x12 (--visual of "
        "a network pretrained so)",
    )
    p.add_argument("--vocab", required=True, help="a run's vocab.json (the answer set)")
    p.add_argument(
        "--head",
        choices=("gmp", "attention", "film_gmp", "routed_gmp", "static_gmp"),
        default="gmp",
    )
    p.add_argument("--blocks", type=int, default=2, help="routed_gmp/static_gmp: blocks")
    p.add_argument("--train-on", choices=("all", "depth0", "query0"), default="all")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    cfg = get_config("brn_c16", "demo")
    mcfg = dataclasses.replace(cfg.model, head="attention" if args.head == "attention" else "gmp")
    if args.stage_strides:
        strides = tuple(int(v) for v in args.stage_strides.split(","))
        mcfg = dataclasses.replace(mcfg, stage_strides=strides)
    vocab = Vocab.load(args.vocab)
    model = build_model(mcfg, len(vocab), vocab.num_answers)
    model.eval()
    size = tuple(cfg.data.image_size)
    train = ClevrQuestions(args.data, "train", vocab, size)
    val = ClevrQuestions(args.data, "val", vocab, size)
    t0 = time.perf_counter()
    if args.features == "oracle":
        grid = tuple(int(v) for v in args.oracle_size.split(","))
        f_train, f_val = (oracle_features(args.data, s, size, grid) for s in ("train", "val"))
    else:
        if not args.visual:
            p.error("--features visual needs --visual")
        load_visual_into(model, args.visual)
        f_train, f_val = features(model, train.images), features(model, val.images)
    feat_s = time.perf_counter() - t0
    channels = f_train.shape[1]
    if args.head in ("routed_gmp", "static_gmp"):
        width = cfg.model.brn_widths[-1]
        head = RoutedStageThenGMP(
            channels,
            mcfg.hidden_dim,
            build_head(mcfg, width + 2, vocab.num_answers),
            blocks=args.blocks,
            routed=args.head == "routed_gmp",
            width=width,
            cardinality=cfg.model.cardinality,
            bottleneck_ratio=cfg.model.bottleneck_ratio,
            gn_groups=cfg.model.gn_groups,
        )
    else:
        head = build_head(mcfg, channels, vocab.num_answers)
    if args.head == "film_gmp":
        head = FiLMThenGMP(channels, mcfg.hidden_dim, head)
    text = model.text  # a fresh question encoder (the pretraining has none)
    params = [*text.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)

    def batch_of(ds: ClevrQuestions, feats: Tensor, idx: np.ndarray):
        lengths = torch.from_numpy(ds.lengths[idx])
        tokens = torch.from_numpy(ds.tokens[idx, : int(lengths.max())])
        return feats[ds.image_index[idx]], tokens, lengths

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        text.eval(), head.eval()
        preds = []
        for i in range(0, len(val), 500):
            idx = np.arange(i, min(i + 500, len(val)))
            y, tokens, lengths = batch_of(val, f_val, idx)
            preds.append(head(y, text(tokens, lengths)).argmax(-1))
        text.train(), head.train()
        return by_subtype(torch.cat(preds), val)

    pool = torch.from_numpy(training_pool(train, args.train_on))

    def write(rows: list[dict], train_s: float, finished: bool) -> None:
        """The probe's file, rewritten after every evaluation (a stopped probe keeps its rows)."""
        out = {
            "head": args.head,
            "blocks": args.blocks if args.head in ("routed_gmp", "static_gmp") else None,
            "features": args.features,
            "train_on": args.train_on,
            "train_questions": len(pool),
            "visual": args.visual if args.features == "visual" else None,
            "stage_strides": args.stage_strides,
            "oracle_size": args.oracle_size if args.features == "oracle" else None,
            "lr": args.lr,
            "batch": args.batch,
            "seed": args.seed,
            "steps": args.steps,
            "finished": finished,
            "feature_s": round(feat_s, 1),
            "train_s": round(train_s, 1),
            "rows": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")

    rows, t1 = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = pool[torch.randint(len(pool), (args.batch,), generator=gen)].numpy()
        y, tokens, lengths = batch_of(train, f_train, idx)
        loss = F.cross_entropy(head(y, text(tokens, lengths)), torch.from_numpy(train.answers[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            row = {
                "step": step,
                "samples": step * args.batch,
                "loss": float(loss.detach()),
                **evaluate(),
            }
            rows.append(row)
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
            print(json.dumps(shown), flush=True)
            write(rows, time.perf_counter() - t1, finished=step == args.steps)


if __name__ == "__main__":
    main()
