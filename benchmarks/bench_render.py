"""Scenes per second of `sample_scene` + `render_scene` (single process), and a contact sheet.

Usage: python benchmarks/bench_render.py [--seconds 5] [--sheet docs/images/contact_sheet.png]
Writes results/bench/render.json. Timings on a shared machine are noisy; the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from qgmrn.synth.camera import Camera
from qgmrn.synth.render import render_scene
from qgmrn.synth.scene import sample_scene


def rate(width: int, height: int, seconds: float, camera: Camera) -> dict:
    rng = np.random.default_rng(0)
    n, t_sample, t_render = 0, 0.0, 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        scene = sample_scene(rng, camera=camera, width=width, height=height)
        t1 = time.perf_counter()
        render_scene(scene, camera, width, height)
        t_sample += t1 - t0
        t_render += time.perf_counter() - t1
        n += 1
    total = t_sample + t_render
    return {"width": width, "height": height, "framing": camera.framing, "scenes": n,
            "scenes_per_s": n / total, "sample_ms": 1e3 * t_sample / n,
            "render_ms": 1e3 * t_render / n}


def contact_sheet(path: Path) -> None:
    """4x3 scenes at 480x320 shown at 240x160, plus a row of 96x64 'close' scenes (nearest x2.5)."""
    rng = np.random.default_rng(2024)
    cam = Camera.clevr()
    tiles = [render_scene(sample_scene(rng, camera=cam), cam)[0] for _ in range(12)]
    tiles = [np.asarray(Image.fromarray(t).resize((240, 160), Image.LANCZOS)) for t in tiles]
    rows = [np.concatenate(tiles[i:i + 4], 1) for i in range(0, 12, 4)]
    close = Camera.close()
    small = [render_scene(sample_scene(rng, camera=close, width=96, height=64), close, 96, 64)[0]
             for _ in range(4)]
    small = [np.asarray(Image.fromarray(t).resize((240, 160), Image.NEAREST)) for t in small]
    rows.append(np.concatenate(small, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", default="results/bench/render.json")
    ap.add_argument("--sheet", default="")
    args = ap.parse_args()
    runs = [rate(128, 128, args.seconds, Camera.clevr()),
            rate(96, 64, args.seconds, Camera.close()),
            rate(480, 320, args.seconds, Camera.clevr())]
    out = {"runs": runs, "supersample": 2, "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(),
           "note": "single process; measured on a machine shared with other jobs, so noisy"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(runs, indent=2))
    if args.sheet:
        contact_sheet(Path(args.sheet))


if __name__ == "__main__":
    main()
