"""Sparse inference (qgmrn.nn.sparse) against the dense masked forward: latency at batch 1 and
throughput at batch 64, for the routed demo presets, at forced execution ratios.

The gates are forced: every module of every layer is open with probability `ratio`, drawn per
sample (batch 64: the union over the batch is what the sparse path computes, so at batch 64 it
pays only where whole branches stay closed for the batch, e.g. the per-question paths of a
trained router that agree within a batch) and per run of the benchmark. Only the routed trunk
(`RoutedResNet.forward` vs `.forward_sparse`) is timed, eval mode, no grad, one thread by
default; the median of `--repeats` timings of `--iters` calls each. Writes
results/bench/sparse.json with the load average at the start (the numbers are only comparable
with each other when the machine is otherwise idle).

    python benchmarks/bench_sparse.py [--presets brn_c32 brn_c16 frn] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from qgmrn.config import get_config
from qgmrn.fileio import atomic_write_json
from qgmrn.model import build_model

ROOT = Path(__file__).resolve().parents[1]
RATIOS = (0.3, 0.5, 0.57, 0.7, 1.0)


def _time(fn, iters: int, repeats: int) -> float:
    """Median seconds per call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - t) / iters)
    return statistics.median(times)


def measure(preset: str, batch: int, ratio: float, iters: int, repeats: int) -> dict:
    torch.manual_seed(0)
    cfg = get_config(preset, "demo")
    model = build_model(cfg.model, 100, 28).eval()
    H, W = cfg.data.image_size
    x = torch.randn(batch, 3, H, W)
    gen = torch.Generator().manual_seed(1)
    gates = [(torch.rand(batch, m, generator=gen) < ratio).float() for m in model.gate_sizes]
    trunk = model.backbone
    with torch.no_grad():
        dense = _time(lambda: trunk(x, gates), iters, repeats)
        sparse = _time(lambda: trunk.forward_sparse(x, gates), iters, repeats)
    union = float(torch.cat([(g.amax(0) > 0).float() for g in gates]).mean())
    return {
        "preset": preset,
        "batch": batch,
        "ratio": ratio,
        "union_open": union,
        "dense_ms": 1000 * dense,
        "sparse_ms": 1000 * sparse,
        "speedup": dense / sparse,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["brn_c32", "brn_c16", "frn"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "results" / "bench" / "sparse.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rows = []
    for preset in args.presets:
        for batch in (1, 64):
            for ratio in RATIOS:
                iters = args.iters * (8 if batch == 1 else 1)
                r = measure(preset, batch, ratio, iters, args.repeats)
                rows.append(r)
                print(
                    f"{preset:8s} batch {batch:2d} ratio {ratio:.2f} "
                    f"(union {r['union_open']:.2f}): dense {r['dense_ms']:7.2f} ms  "
                    f"sparse {r['sparse_ms']:7.2f} ms  x{r['speedup']:.2f}",
                    flush=True,
                )
    atomic_write_json(
        args.out,
        {
            "benchmark": "bench_sparse",
            "threads": args.threads,
            "load_average_at_start": load,
            "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "runs": rows,
        },
        indent=1,
        trailing_newline=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
