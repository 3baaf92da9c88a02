"""Random CLEVR scenes with the real generator's statistics and placement rules.

Follows `add_random_objects` of the official generator (clevr-dataset-gen, render_images.py):
per object a size, then up to `max_retries` positions uniform in (-3, 3)^2 until its surface is
0.25 from every other and it is at least 0.4 from every other along both the left/right and the
front/behind axis; shape, colour, material and rotation are uniform. Our addition, which
matters for close framings: the object's whole projected bounding box (a cube's own rotated
corners) must lie inside the picture with a margin of `frame_margin(width, height)` pixels, so
no object is cut off by the frame (shape and rotation are therefore drawn before the
position). A scene where an object cannot be placed, or where an object shows fewer than
`min_pixels` pixels in the renderer's object-id buffer, is placed again from scratch.
"""

from __future__ import annotations

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
from .render import object_bounds, object_ids

ARENA = 3.0  # x, y uniform in (-ARENA, ARENA)
MIN_GAP = 0.25  # between surfaces
MIN_MARGIN = 0.4  # along each ground axis
REAL_MIN_PIXELS = 200  # the generator's threshold at 480x320
MAX_OBJECTS = 16  # beyond this, the margins rarely admit a scene: refuse early


def default_min_pixels(width: int, height: int) -> int:
    """The real threshold (200 px at 480x320) scaled with image area, at least 4 px."""
    return max(4, round(REAL_MIN_PIXELS * width * height / (480 * 320)))


def _fits(
    xy: np.ndarray, r: float, placed: np.ndarray, right: np.ndarray, behind: np.ndarray
) -> np.ndarray:
    """Which candidate centres xy (R, 2) keep the gap and axis margins to every placed object
    (rows x, y, r of `placed` (M, 3)): bool (R,)."""
    if not len(placed):
        return np.ones(len(xy), dtype=bool)
    d = xy[:, None, :] - placed[None, :, :2]  # (R, M, 2)
    gap = np.sqrt((d * d).sum(-1)) - r - placed[None, :, 2]
    ok = (gap >= MIN_GAP) & (np.abs(d @ right) >= MIN_MARGIN) & (np.abs(d @ behind) >= MIN_MARGIN)
    return ok.all(1)


def frame_margin(width: int, height: int) -> float:
    """Pixels to keep between every object's projected box and the image border."""
    return max(1.0, 0.01 * max(width, height))


def _in_frame(
    obj: dict, xy: np.ndarray, camera: Camera, width: int, height: int, margin: float
) -> np.ndarray:
    """Whether the object's projected bounding box, centred at each candidate xy (R, 2), lies
    inside the picture `margin` px from the edge: bool (R,)."""
    box = object_bounds({**obj, "3d_coords": [0.0, 0.0, 0.0]})  # (8, 3) around the origin
    pts = box[None, :, :] + np.concatenate([xy, np.zeros((len(xy), 1))], 1)[:, None, :]
    px, py, _ = camera.project(pts.reshape(-1, 3), width, height)
    px, py = px.reshape(len(xy), 8), py.reshape(len(xy), 8)
    return (
        (px.min(1) >= margin)
        & (px.max(1) <= width - margin)
        & (py.min(1) >= margin)
        & (py.max(1) <= height - margin)
    )


def _place(
    rng: np.random.Generator, n: int, max_retries: int, camera: Camera, width: int, height: int
) -> list[dict] | None:
    """One placement attempt of `n` objects; None when an object found no spot.

    The `max_retries` candidate positions of an object are drawn and tested at once; the first
    valid one is taken, as the real generator's sequential retries would.
    """
    right, behind = np.array(DIRECTIONS["right"][:2]), np.array(DIRECTIONS["behind"][:2])
    margin = frame_margin(width, height)
    placed = np.zeros((0, 3))
    objects = []
    for _ in range(n):
        size = SIZES[rng.integers(len(SIZES))]
        r = SIZE_RADIUS[size]
        obj = {
            "color": COLORS[rng.integers(len(COLORS))],
            "size": size,
            "rotation": float(rng.uniform(0.0, 360.0)),
            "shape": SHAPES[rng.integers(len(SHAPES))],
        }
        xy = rng.uniform(-ARENA, ARENA, size=(max_retries, 2))
        ok = _fits(xy, r, placed, right, behind)
        ok[ok] = _in_frame(obj, xy[ok], camera, width, height, margin)
        if not ok.any():
            return None
        x, y = (float(v) for v in xy[ok.argmax()])
        placed = np.concatenate([placed, [[x, y, r]]])
        obj["3d_coords"] = [x, y, float(r)]
        obj["material"] = MATERIALS[rng.integers(len(MATERIALS))]
        obj["pixel_coords"] = camera.pixel_coords(obj["3d_coords"], width, height)
        objects.append(obj)
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
            f"arena use at most {MAX_OBJECTS} (CLEVR uses 10)"
        )
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if min_pixels is None:
        min_pixels = default_min_pixels(width, height)
    if min_pixels * min_objects > width * height:
        raise ValueError(
            f"{min_objects} objects of >= {min_pixels} px cannot fit in {width}x{height}: "
            "lower min_pixels or enlarge the image"
        )

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
        "min_pixels, enlarge the image, or use the 'clevr' framing"
    )
