"""Scenes per second of `sample_scene` + `render_scene` (single process), and a contact sheet.

Usage: python benchmarks/bench_render.py [--seconds 5] [--repeats 3]
       [--sheet docs/images/contact_sheet.png] [--compare docs/images/render_train0_vs_real.png]
Writes results/bench/render.json (median of the repeats). Timings on a shared machine are
noisy; the JSON says so. `--compare` needs the real excerpt image under /work/shared.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import describe
from PIL import Image

from qgmrn.clevr import DIRECTIONS
from qgmrn.synth.camera import Camera, fit_location
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
    return {
        "width": width,
        "height": height,
        "framing": camera.framing,
        "scenes": n,
        "scenes_per_s": n / total,
        "sample_ms": 1e3 * t_sample / n,
        "render_ms": 1e3 * t_render / n,
    }


def contact_sheet(path: Path) -> None:
    """4x3 scenes at 480x320 shown at 240x160, plus a row of 96x64 'close' scenes (nearest x2.5)."""
    rng = np.random.default_rng(2024)
    cam = Camera.clevr()
    tiles = [render_scene(sample_scene(rng, camera=cam), cam)[0] for _ in range(12)]
    tiles = [np.asarray(Image.fromarray(t).resize((240, 160), Image.LANCZOS)) for t in tiles]
    rows = [np.concatenate(tiles[i : i + 4], 1) for i in range(0, 12, 4)]
    close = Camera.close()
    small = [
        render_scene(sample_scene(rng, camera=close, width=96, height=64), close, 96, 64)[0]
        for _ in range(4)
    ]
    small = [np.asarray(Image.fromarray(t).resize((240, 160), Image.NEAREST)) for t in small]
    rows.append(np.concatenate(small, 1))
    rows.append(np.concatenate(material_tiles(), 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def material_tiles() -> list[np.ndarray]:
    """Four 240x160 tiles: rubber (left) and metal (right) of the same colour per shape."""
    cam = Camera.clevr()
    right = np.array(DIRECTIONS["right"][:2])
    behind = np.array(DIRECTIONS["behind"][:2])

    def obj(shape, color, material, size, xy, rotation=25.0):
        r = 0.7 if size == "large" else 0.35
        return {
            "shape": shape,
            "color": color,
            "material": material,
            "size": size,
            "rotation": rotation,
            "3d_coords": [float(xy[0]), float(xy[1]), r],
        }

    tiles = []
    for shape, color in (("cube", "blue"), ("cylinder", "green"), ("sphere", "red")):
        scene = {
            "objects": [
                obj(shape, color, m, "large", s * 1.3 * right + 0.5 * behind)
                for m, s in (("rubber", -1), ("metal", 1))
            ]
        }
        tiles.append(render_scene(scene, cam)[0])
    objects = []
    for k, (shape, color) in enumerate(
        (("cube", "yellow"), ("cylinder", "brown"), ("sphere", "gray"))
    ):
        for m, s in (("rubber", -1), ("metal", 1)):
            xy = (s * 0.7 + (k - 1) * 2.3) * right + (1.0 - 1.3 * k) * behind
            objects.append(obj(shape, color, m, "small", xy))
    tiles.append(render_scene({"objects": objects}, cam)[0])
    return [np.asarray(Image.fromarray(t).resize((240, 160), Image.LANCZOS)) for t in tiles]


def compare_train0(path: Path, samples: Path = Path("/work/shared/clevr-samples")) -> None:
    """The real CLEVR_train_000000.png (left) next to our render of its scene (right).

    Our camera is the real image's jittered camera, recovered with `fit_location`.
    """
    scene = json.loads((samples / "CLEVR_train_scenes_excerpt.json").read_text())["scenes"][0]
    real = np.asarray(Image.open(samples / "images/train" / scene["image_filename"]).convert("RGB"))
    pts = np.array([o["3d_coords"] for o in scene["objects"]])
    pix = np.array([o["pixel_coords"] for o in scene["objects"]])
    cam, _ = fit_location(Camera.clevr(), pts, pix)
    ours = render_scene(scene, cam)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([real, ours], 1)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", default="results/bench/render.json")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sheet", default="")
    ap.add_argument("--compare", default="")
    args = ap.parse_args()
    if args.sheet:
        contact_sheet(Path(args.sheet))
    if args.compare:
        compare_train0(Path(args.compare))
    if args.seconds <= 0:
        return
    runs = []
    for w, h, cam in (
        (128, 128, Camera.clevr()),
        (96, 64, Camera.close()),
        (480, 320, Camera.clevr()),
    ):
        reps = [rate(w, h, args.seconds / args.repeats, cam) for _ in range(args.repeats)]
        med = sorted(reps, key=lambda r: r["scenes_per_s"])[len(reps) // 2]
        runs.append({**med, "repeats_scenes_per_s": [r["scenes_per_s"] for r in reps]})
    out = {
        "runs": runs,
        "supersample": 2,
        "statistic": "median of the repeats",
        "machine": describe(),
        "note": "single process; measured on a machine shared with other jobs, so noisy",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
