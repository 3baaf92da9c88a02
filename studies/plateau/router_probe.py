"""Does a trained routed model use its routing? (ours, the plateau study)

For each run: the router's logits P~ on the val questions (how far from the initial bias, how
much they vary from question to question), and the val accuracy under four routing paths:

- `own`: the question's own deterministic path (what `qgmrn evaluate` scores);
- `shuffled`: the path of another val question of the same batch (a fixed derangement);
- `mean`: one path for every question, the majority of the val paths, gate by gate;
- `all_open`: every module executes (the static network with the routed weights).

If `own` is not above `shuffled`, the answer does not depend on which modules the question
opened: the router has not learned to route, and the model answers as a CNN+LSTM would.

    python studies/plateau/router_probe.py RUN_DIR [RUN_DIR ...] [--limit N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from qgmrn.data import ClevrQuestions
from qgmrn.engine.evaluate import eval_loader, load_run, predict, run_data_dir


class FixedPathRouter(nn.Module):
    """Wraps a router: the same logits, but the gates come from `choose(gates)`."""

    def __init__(self, router: nn.Module, choose) -> None:
        super().__init__()
        self.inner = router
        self.choose = choose

    def forward(self, q: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        gates, logits = self.inner(q)
        return self.choose(gates), logits


def shuffled(gates: list[Tensor]) -> list[Tensor]:
    # roll by one inside the batch: every question gets another question's path
    return [g.roll(1, dims=0) for g in gates]


def all_open(gates: list[Tensor]) -> list[Tensor]:
    return [torch.ones_like(g) for g in gates]


def probe(run_dir: Path, limit: int | None) -> dict:
    cfg, vocab, model, c = load_run(run_dir, "best")
    data_dir = run_data_dir(run_dir, cfg)
    ds = ClevrQuestions(data_dir, "val", vocab, tuple(cfg.data.image_size))
    if limit is not None:
        ds = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    loader = eval_loader(ds, 128, 0, "cpu")

    # the logits themselves
    logits = []
    with torch.no_grad():
        for batch in loader:
            q = model.text(batch.questions, batch.lengths)
            logits.append(torch.cat(model.router(q)[1], dim=1))
    P = torch.cat(logits)  # (N, G)
    bias = model.router.fc.bias.detach()
    paths = P > 0
    majority = paths.float().mean(0) > 0.5  # (G,)
    sizes = model.router.gate_sizes

    def mean_path(gates: list[Tensor]) -> list[Tensor]:
        chunks = majority.float().split(sizes)
        return [ch.expand_as(g).to(g.dtype) for ch, g in zip(chunks, gates, strict=True)]

    acc = {}
    inner = model.router
    for name, choose in [
        ("own", None),
        ("shuffled", shuffled),
        ("mean", mean_path),
        ("all_open", all_open),
    ]:
        model.router = inner if choose is None else FixedPathRouter(inner, choose)
        pred = predict(model, loader, "cpu")
        acc[name] = float((pred["predictions"] == pred["answers"]).mean() * 100)
    model.router = inner
    varies = (paths.any(0) & ~paths.all(0)).float().mean().item()
    return {
        "run": str(run_dir),
        "step": int(c["step"]),
        "questions": int(P.shape[0]),
        "accuracy": acc,
        "logit_mean_abs": float(P.abs().mean()),
        "bias_mean": float(bias.mean()),
        "logit_std_across_questions": float(P.std(0).mean()),
        "gates_that_vary": varies,
        "open_rate": float(paths.float().mean()),
        "hamming_to_majority": float((paths != majority).float().sum(1).mean()),
        "gates": int(P.shape[1]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="first N val questions only")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    rows = [probe(r, args.limit) for r in args.runs]
    for r in rows:
        a = r["accuracy"]
        print(
            f"{r['run']} step {r['step']}: own {a['own']:.1f} shuffled {a['shuffled']:.1f} "
            f"mean {a['mean']:.1f} all_open {a['all_open']:.1f} | |P~| {r['logit_mean_abs']:.2f} "
            f"std over q {r['logit_std_across_questions']:.3f} varying gates "
            f"{r['gates_that_vary']:.2f} open {r['open_rate']:.2f} "
            f"hamming to majority {r['hamming_to_majority']:.1f}/{r['gates']}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
