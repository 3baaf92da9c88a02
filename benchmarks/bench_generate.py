"""Throughput of `generate_dataset` (scene sampling + rendering + PNG + questions), and of the
question generator alone.

Usage: python benchmarks/bench_generate.py [--scenes-small 48] [--scenes-large 16]

For 128x128 and 480x320 images (framing "clevr", 3-10 objects, 10 questions per scene) and 1
and 2 worker processes: end-to-end scenes/s of `generate_dataset`. Then questions/s of
`generate_questions` on the generated scenes (one process). Writes
results/bench/generate.json. Timings on a machine shared with other jobs are noisy; the JSON
records the load average at the start.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe

from qgmrn.clevr import load_scenes
from qgmrn.synth.generate import generate_dataset
from qgmrn.synth.questions import generate_questions


def end_to_end(size: tuple[int, int], scenes: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_dataset(
            tmp,
            train_scenes=scenes,
            val_scenes=0,
            render_size=size,
            questions_per_scene=10,
            workers=workers,
            progress=False,
        )
        seconds = time.perf_counter() - t0
    return {
        "width": size[0],
        "height": size[1],
        "workers": workers,
        "scenes": scenes,
        "seconds": seconds,
        "scenes_per_s": scenes / seconds,
    }


def question_rate(scenes: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(
            tmp,
            train_scenes=scenes,
            val_scenes=0,
            render_size=(128, 128),
            min_objects=3,
            max_objects=10,
            progress=False,
        )
        loaded = load_scenes(Path(tmp) / "scenes" / "CLEVR_train_scenes.json")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    n = sum(len(generate_questions(s, rng, 10)) for s in loaded)
    seconds = time.perf_counter() - t0
    return {"scenes": scenes, "questions": n, "seconds": seconds, "questions_per_s": n / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes-small", type=int, default=48, help="scenes per 128x128 run")
    ap.add_argument("--scenes-large", type=int, default=16, help="scenes per 480x320 run")
    ap.add_argument("--out", default="results/bench/generate.json")
    args = ap.parse_args()
    machine = describe()  # with the load average at the start
    runs = [
        end_to_end(size, n, workers)
        for size, n in (((128, 128), args.scenes_small), ((480, 320), args.scenes_large))
        for workers in (1, 2)
    ]
    questions = question_rate(100)
    out = {
        "runs": runs,
        "questions_only": questions,
        "machine": machine,
        "note": "end to end: sample + render (supersample 2) + RGBA PNG + 10 questions per scene; "
        "measured on a 2-core machine shared with other jobs, so noisy and the 2-worker "
        "speed-up understated",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
