"""Random CLEVR scenes with the real generator's statistics and placement rules.

Follows `add_random_objects` of the official generator (clevr-dataset-gen, render_images.py):
per object a size, then up to `max_retries` positions uniform in (-3, 3)^2 until its surface is
0.25 from every other and it is at least 0.4 from every other along both the left/right and the
front/behind axis (our addition for close framings: its centre must lie inside the picture);
then shape, colour, material and rotation, uniform. A scene where an object cannot be placed,
or where an object shows fewer than `min_pixels` pixels in the renderer's object-id buffer, is
placed again from scratch.
"""

from __future__ import annotations

import math

import numpy as np

from qgmrn.clevr import (
    COLORS,
    DIRECTIONS,
    MATERIALS,
    SHAPES,
    SIZE_RADIUS,
    SIZES,
    compute_relationships,
)

from .camera import Camera
from .render import object_ids

ARENA = 3.0           # x, y uniform in (-ARENA, ARENA)
MIN_GAP = 0.25        # between surfaces
MIN_MARGIN = 0.4      # along each ground axis
REAL_MIN_PIXELS = 200  # the generator's threshold at 480x320
MAX_OBJECTS = 16      # beyond this, the margins rarely admit a scene: refuse early


def default_min_pixels(width: int, height: int) -> int:
    """The real threshold (200 px at 480x320) scaled with image area, at least 4 px."""
    return max(4, round(REAL_MIN_PIXELS * width * height / (480 * 320)))


def _fits(x: float, y: float, r: float, placed: list[tuple[float, float, float]],
          right: np.ndarray, behind: np.ndarray) -> bool:
    for px, py, pr in placed:
        dx, dy = x - px, y - py
        if math.hypot(dx, dy) - r - pr < MIN_GAP:
            return False
        if abs(dx * right[0] + dy * right[1]) < MIN_MARGIN:
            return False
        if abs(dx * behind[0] + dy * behind[1]) < MIN_MARGIN:
            return False
    return True


def _in_frame(x: float, y: float, r: float, camera: Camera, width: int, height: int) -> bool:
    """Object centre in the picture (always so at CLEVR framing; matters when 'close', where
    objects near the edge may still be partly cut off)."""
    px, py, _ = camera.project(np.array([[x, y, r]]), width, height)
    return 0 <= px[0] < width and 0 <= py[0] < height


def _place(rng: np.random.Generator, n: int, max_retries: int, camera: Camera,
           width: int, height: int) -> list[dict] | None:
    """One placement attempt of `n` objects; None when an object found no spot."""
    right, behind = np.array(DIRECTIONS["right"]), np.array(DIRECTIONS["behind"])
    placed: list[tuple[float, float, float]] = []
    objects = []
    for _ in range(n):
        size = SIZES[rng.integers(len(SIZES))]
        r = SIZE_RADIUS[size]
        for _ in range(max_retries):
            x, y = rng.uniform(-ARENA, ARENA, size=2)
            if _fits(x, y, r, placed, right, behind) and _in_frame(x, y, r, camera, width, height):
                break
        else:
            return None
        placed.append((x, y, r))
        coords = [float(x), float(y), float(r)]
        objects.append({
            "color": COLORS[rng.integers(len(COLORS))],
            "size": size,
            "rotation": float(rng.uniform(0.0, 360.0)),
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "3d_coords": coords,
            "material": MATERIALS[rng.integers(len(MATERIALS))],
            "pixel_coords": camera.pixel_coords(coords, width, height),
        })
    return objects


def sample_scene(
    rng: np.random.Generator,
    *,
    min_objects: int = 3,
    max_objects: int = 10,
    camera: Camera | None = None,
    width: int = 480,
    height: int = 320,
    min_pixels: int | None = None,
    max_retries: int = 50,
    max_attempts: int = 200,
    supersample: int = 2,
) -> dict:
    """A random scene dict in CLEVR's form: `objects`, `relationships`, `directions`.

    `image_index`, `image_filename` and `split` are left to the writer. `min_pixels` defaults
    to `default_min_pixels(width, height)`; visibility is counted in `render_scene`'s
    object-id buffer for the same `camera`, size and `supersample`. Raises ValueError when the
    settings are impossible or no valid scene turns up in `max_attempts` placements.
    """
    camera = camera or Camera.clevr()
    if min_objects < 1:
        raise ValueError(f"min_objects must be >= 1, got {min_objects}")
    if max_objects < min_objects:
        raise ValueError(f"max_objects ({max_objects}) < min_objects ({min_objects})")
    if max_objects > MAX_OBJECTS:
        raise ValueError(
            f"max_objects={max_objects} cannot fit: with 0.25 gaps and 0.4 axis margins in a 6x6 "
            f"arena use at most {MAX_OBJECTS} (CLEVR uses 10)")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if min_pixels is None:
        min_pixels = default_min_pixels(width, height)
    if min_pixels * min_objects > width * height:
        raise ValueError(
            f"{min_objects} objects of >= {min_pixels} px cannot fit in {width}x{height}: "
            "lower min_pixels or enlarge the image")

    n = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(max_attempts):
        objects = _place(rng, n, max_retries, camera, width, height)
        if objects is None:
            continue
        scene = {"objects": objects}
        ids = object_ids(scene, camera, width, height, supersample=supersample)
        counts = np.bincount(ids[ids >= 0].ravel(), minlength=n)
        if (counts < min_pixels).any():
            continue
        scene["relationships"] = compute_relationships(objects, DIRECTIONS, eps=0.2)
        scene["directions"] = {k: list(v) for k, v in DIRECTIONS.items()}
        return scene
    raise ValueError(
        f"no valid scene with {n} objects in {max_attempts} attempts at {width}x{height} "
        f"(framing {camera.framing!r}, min_pixels {min_pixels}): lower max_objects or "
        "min_pixels, enlarge the image, or use the 'clevr' framing")
