"""Benchmark of `qgmrn.engine.fit`: end-to-end training throughput on this machine.

    .venv/bin/python benchmarks/bench_train.py [--presets brn_c16,frn] [--steps 10] [--device cpu]

For each preset at the `demo` profile (64x64 images, batch 64, the demo's DataLoader workers) on a
small generated mini-CLEVR, `fit` runs `--steps` optimizer steps. Reported per preset, from the
`metrics.jsonl` rows after the first `--steps // 2` steps (warm-up, worker start-up and the first
oneDNN/cuDNN plans excluded):
- samples_per_s: training samples per second, data loading included (the loop's own clock);
- data_wait_frac: the fraction of that time the loop waited on the next batch;
- first_samples_per_s: the same over the warm-up steps.
Writes results/bench/train.json with the machine's description and its load average: on a
shared machine the numbers are lower bounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from machine import describe, load_average

from qgmrn.config import ExperimentConfig, get_config
from qgmrn.engine import fit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRESETS = "brn_c8,brn_c16,brn_c32,brn_c16_static,brn_c32_attn,frn,lstm,cnn_lstm,film"


def make_data(root: Path, train_scenes: int) -> Path:
    from qgmrn.synth.generate import generate_dataset

    d = get_config("brn_c16", "demo").data
    generate_dataset(
        root,
        train_scenes=train_scenes,
        val_scenes=4,
        test_scenes=0,
        questions_per_scene=d.questions_per_scene,
        render_size=d.render_size,
        min_objects=d.min_objects,
        max_objects=d.max_objects,
        framing=d.framing,
        workers=1,
        progress=False,
    )
    return root


def data_scenes(steps: int, batch_size: int = 64, questions_per_scene: int = 10) -> int:
    """Training scenes for `steps` full batches within one epoch (no epoch end, no worker
    restart, no validation pass inside the timed steps)."""
    return (steps * batch_size) // questions_per_scene + 8


def fit_throughput(
    cfg: ExperimentConfig, data: Path, out: Path, steps: int, device: str = "cpu"
) -> dict:
    """`fit(cfg)` for `2 * (steps // 2)` steps; samples/s over the second half (metrics.jsonl).

    The first half (warm-up: worker start-up, the first oneDNN/cuDNN plans) is reported apart as
    `first_*`. `cfg` keeps its model, data and loader settings; only the budget, the log period
    and checkpointing are changed.
    """
    warm = max(steps // 2, 1)
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(
            cfg.train, epochs=10**6, max_minutes=None, log_every=warm,
            checkpoint_every_steps=0,
        ),
    )  # fmt: skip
    t0 = time.perf_counter()
    fit(cfg, data, out, device=device, progress=False, max_steps=2 * warm)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "kind" not in r]
    first, timed = rows[0], rows[1]
    return {
        "steps_timed": warm,
        "batch_size": cfg.train.batch_size,
        "image_size": list(cfg.data.image_size),
        "num_workers": cfg.data.num_workers,
        "samples_per_s": round(timed["samples_per_s"], 1),
        "data_wait_frac": round(timed["data_wait_frac"], 3),
        "first_samples_per_s": round(first["samples_per_s"], 1),
        "first_data_wait_frac": round(first["data_wait_frac"], 3),
        "fit_wall_s": round(wall, 1),
    }


def bench_preset(preset: str, data: Path, out: Path, steps: int, device: str) -> dict:
    cfg = get_config(preset, "demo")
    return {"preset": preset, **fit_throughput(cfg, data, out, steps, device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=DEFAULT_PRESETS)
    parser.add_argument("--steps", type=int, default=10, help="steps per preset (half timed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "train.json"))
    args = parser.parse_args()
    steps = max(args.steps, 2)
    machine = describe(args.device)  # with the load average at the start
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_data(tmp / "data", data_scenes(steps))
        for preset in args.presets.split(","):
            r = bench_preset(preset, data, tmp / preset, steps, args.device)
            print(json.dumps(r))
            results.append(r)
    report = {
        "benchmark": "end-to-end training throughput (fit, data loading included), demo profile",
        "device": args.device,
        "machine": {**machine, "load_average_at_end": load_average()},
        "note": "the machine's cores were shared with other jobs: numbers are lower bounds",
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
