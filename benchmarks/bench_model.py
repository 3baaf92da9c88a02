"""Model benchmark: parameters and MACs per preset, and the cost of routing on a CPU.

1. Parameters and MACs (torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs / 2) of every
   preset at the paper's input sizes (BRN and baselines 224x224; FRN 480x320, CLEVR's full
   frame; the paper writes 480x360) and at the demo profile's sizes. Batch 1, eval mode. The
   gates multiply (they skip no computation), so a routed model costs what its static twin does
   plus the router.
2. Training-step throughput (samples/s: forward + backward + Adam step, batch 64) of each demo
   routed preset and its static twin, interleaved step by step on the same batch so that load
   from other processes hits both alike; the median over steps is reported.

Usage: python benchmarks/bench_model.py [--steps 12] [--threads 2] [--out results/bench/model.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping

import torch
from machine import describe
from torch.utils.flop_counter import FlopCounterMode

from qgmrn.config import PRESETS, get_config
from qgmrn.engine.losses import load_balance_loss, vqa_loss
from qgmrn.fileio import atomic_write_json
from qgmrn.model import build_model, count_gates

VOCAB, ANSWERS, T = 90, 28, 20
ROUTED_DEMO = ["brn_c8", "brn_c16", "brn_c32", "brn_c32_attn", "frn", "frn_attn"]
PAPER_SIZES = {"frn": (320, 480)}  # (H, W); everything else 224x224


def inputs(batch: int, size: tuple[int, int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, *size, generator=g)
    questions = torch.randint(1, VOCAB, (batch, T), generator=g)
    lengths = torch.randint(8, T + 1, (batch,), generator=g)
    answers = torch.randint(0, ANSWERS, (batch,), generator=g)
    return images, questions, lengths, answers


def params_and_macs(preset: str, profile: str) -> dict:
    cfg = get_config(preset, profile)
    model = build_model(cfg.model, VOCAB, ANSWERS).eval()
    size = cfg.data.image_size
    if profile == "paper":
        size = PAPER_SIZES.get(cfg.model.arch, (224, 224))
    images, questions, lengths, _ = inputs(1, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images, questions, lengths)
    return {
        "preset": preset,
        "profile": profile,
        "input_hw": list(size),
        "params": sum(p.numel() for p in model.parameters()),
        "macs": counter.get_total_flops() // 2,
        "gates": count_gates(model),
        "layers": len(getattr(model, "gate_sizes", [])),
    }


def train_step(model, opt, batch) -> float:
    images, questions, lengths, answers = batch
    start = time.perf_counter()
    out = model(images, questions, lengths)
    loss = vqa_loss(out.logits, answers) + 0.01 * load_balance_loss(out.gates)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def interleaved_samples_per_s(
    steppers: Mapping[str, Callable[[], float]], steps: int, batch_size: int, warmup: int = 2
) -> dict[str, float]:
    """samples/s (batch_size / median step time) of each stepper (a call = one timed training
    step, returning its seconds), called in turn step by step so that load from other processes
    hits all alike; the first `warmup` rounds are dropped."""
    times: dict[str, list[float]] = {k: [] for k in steppers}
    for step in range(steps + warmup):
        for k, step_fn in steppers.items():
            dt = step_fn()
            if step >= warmup:
                times[k].append(dt)
    return {k: batch_size / statistics.median(v) for k, v in times.items()}


def throughput_pair(preset: str, steps: int, batch_size: int) -> dict:
    cfg = get_config(preset, "demo")
    twin_cfg = dataclasses.replace(cfg.model, gate="static")
    torch.manual_seed(0)
    models = {
        "routed": build_model(cfg.model, VOCAB, ANSWERS),
        "static": build_model(twin_cfg, VOCAB, ANSWERS),
    }
    opts = {k: torch.optim.Adam(m.parameters(), lr=3e-4) for k, m in models.items()}
    batch = inputs(batch_size, cfg.data.image_size)
    steppers = {k: functools.partial(train_step, models[k], opts[k], batch) for k in models}
    speed = interleaved_samples_per_s(steppers, steps, batch_size)
    routed, static = speed["routed"], speed["static"]
    return {
        "preset": preset,
        "input_hw": list(cfg.data.image_size),
        "batch": batch_size,
        "routed_samples_per_s": round(routed, 1),
        "static_samples_per_s": round(static, 1),
        "routing_overhead": round(static / routed - 1, 4),  # extra time per step
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/bench/model.json")
    parser.add_argument("--skip-macs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = describe()  # the load average at the start: timings mean little on a loaded machine

    sizes = []
    if args.skip_macs and os.path.exists(args.out):  # keep the sizes measured last time
        with open(args.out) as f:
            sizes = json.load(f).get("sizes", [])
    if not args.skip_macs:
        for profile in ("paper", "demo"):
            for preset in PRESETS:
                sizes.append(params_and_macs(preset, profile))
                print(json.dumps(sizes[-1]), flush=True)
    speed = []
    for preset in ROUTED_DEMO:
        speed.append(throughput_pair(preset, args.steps, args.batch))
        print(json.dumps(speed[-1]), flush=True)
    result = {
        "what": "params/MACs per preset; demo training-step throughput, routed vs static twin",
        "note": "routed and static steps interleaved on the same batch; compare routed with "
        "static, not across presets or runs",
        "machine": machine,
        "steps": args.steps,
        "sizes": sizes,
        "throughput": speed,
    }
    atomic_write_json(args.out, result, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
