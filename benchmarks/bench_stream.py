"""Throughput of the training stream (qgmrn.data.stream) in one process: how many scenes and
questions per second one CPU core renders and asks, and so how many cores a trainer needs.

For each setting it builds `SceneStream` batches of 64 in this process (what one DataLoader
worker does) and reports scenes/s, questions (samples)/s and ms per batch; then, for a trainer
consuming S samples/s, the cores needed is S / (samples/s per core). Writes
results/bench/stream.json (with the load average at the start: the numbers are per core only
when the machine is otherwise idle).

    python benchmarks/bench_stream.py [--data data/mini-clevr] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from machine import describe

from qgmrn.data.stream import SceneStream, StreamSpec, stream_vocab
from qgmrn.fileio import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (
    # (label, image_size (H, W), scene_reuse)
    ("64x96, no reuse", (64, 96), 1),
    ("64x96, reuse 2", (64, 96), 2),
    ("48x72, no reuse", (48, 72), 1),
)


def measure(spec: StreamSpec, image_size, reuse: int, batches: int) -> dict:
    stream = SceneStream(spec, stream_vocab(), image_size, 64, scene_reuse=reuse)
    chunks = max(batches // reuse, 1)
    stream[0]  # warm-up: imports, camera
    t = time.perf_counter()
    for c in range(1, chunks + 1):
        stream[c]
    dt = time.perf_counter() - t
    scenes = chunks * stream.scenes_per_group
    samples = chunks * reuse * 64
    return {
        "scenes_per_s": scenes / dt,
        "samples_per_s": samples / dt,
        "ms_per_batch": 1000 * dt / (chunks * reuse),
        "scenes_per_batch": stream.scenes_per_group / reuse,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/mini-clevr")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "results" / "bench" / "stream.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    spec = StreamSpec.from_data_dir(args.data)
    machine = describe()  # with the load average at the start
    runs = []
    for label, size, reuse in SETTINGS:
        r = {"setting": label, "image_size": list(size), "scene_reuse": reuse}
        r.update(measure(spec, size, reuse, args.batches))
        # samples/s a trainer consumes -> cores of rendering it needs
        r["cores_for_1000_samples_per_s"] = 1000 / r["samples_per_s"]
        runs.append(r)
        print(json.dumps(r))
    atomic_write_json(
        args.out,
        {
            "benchmark": "bench_stream",
            "spec": spec.__dict__,
            "machine": machine,
            "runs": runs,
        },
        indent=1,
        trailing_newline=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
