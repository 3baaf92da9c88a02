"""A vectorised numpy ray caster for CLEVR scenes.

Legend: H, W output size; s supersampling factor; h, w = H*s, W*s sample grid; P object pixels.

One primary ray per sample; the loop runs over objects only, each tested against the rays in
its screen-space bounding box. Spheres, cylinders (radius r, height 2r) and cubes (half side r,
rotated about z) are exact solids resting on the ground (z = 0). Lighting imitates CLEVR's
Blender scene: a key light from the camera's right and above casting soft shadows (hard
shadow rays toward the key light, then a box blur), a fill light, a rim light from behind, an
ambient term, and a grey ground brighter toward the camera. Rubber is Lambertian; metal has a
dark base, a reflection of a fake sky/ground environment tinted by the object's colour and
sharp highlights. docs/renderer.md compares this with the real images.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from qgmrn.clevr import COLOR_RGB, SIZE_RADIUS

from .camera import Camera

_SHAPES = {"sphere": 0, "cylinder": 1, "cube": 2}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# Lights as (right, behind, up) in the camera's ground directions, turned into world vectors.
_KEY = (0.7, 0.25, 1.0)    # from the right, a little behind, high: shadows fall to the left
_FILL = (-0.7, -0.6, 0.6)  # from the left, in front: lifts the key light's shadow side
_RIM = (0.0, 1.0, 0.5)     # from behind: a bright edge on the far side
_AMBIENT, _KEY_I, _FILL_I, _RIM_I = 0.36, 0.5, 0.2, 0.18
_SHADOW_DARKNESS = 0.33     # fraction of light removed in full shadow on the ground
_SATURATION = 0.8           # Blender's lighting washes CLEVR's colours out somewhat
_HIDDEN = 1e30              # "no hit" distance; inf would make 0 * inf = nan in blends


def _to_world(camera: Camera, v) -> np.ndarray:
    dirs = camera.ground_directions()
    return _unit(v[0] * np.array(dirs["right"]) + v[1] * np.array(dirs["behind"])
                 + v[2] * np.array([0.0, 0.0, 1.0]))


def object_radius(obj: dict) -> float:
    """Radius of the object (half side for cubes): CLEVR's 0.7 (large) or 0.35 (small)."""
    return SIZE_RADIUS[obj["size"]]


def object_bounds(obj: dict) -> np.ndarray:
    """The 8 corners (8, 3) of an upright box enclosing the object."""
    x, y, _ = obj["3d_coords"]
    r = object_radius(obj)
    half = r * math.sqrt(2.0) if obj["shape"] == "cube" else r  # a rotated cube's reach
    return np.array(
        [[x + a * half, y + b * half, z] for a in (-1, 1) for b in (-1, 1) for z in (0.0, 2 * r)]
    )


# ----------------------------------------------------------------------------------------------
# Ray-solid intersections. Origins o (..., 3) or (3,) relative to the object's base centre,
# directions d (..., 3). Return t (...,) with _HIDDEN where missed, and unit normals (..., 3).


def _hit_sphere(o, d, r):
    oc = o - np.array([0.0, 0.0, r], dtype=np.float32)
    b = np.einsum("...k,...k->...", d, oc) if oc.ndim > 1 else d @ oc
    c = (oc * oc).sum(-1) - r * r
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    t = np.where((disc > 0) & (t > 1e-4), t, _HIDDEN)
    n = (o + t[..., None] * d - np.array([0.0, 0.0, r], dtype=np.float32)) / r
    return t, n


def _hit_cylinder(o, d, r):
    ox, oy, oz = o[..., 0], o[..., 1], o[..., 2]
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        z_side = oz + t_side * dz
        side = (disc > 0) & (t_side > 1e-4) & (z_side >= 0) & (z_side <= 2 * r)
        t_cap = (2 * r - oz) / dz
    cx, cy = ox + t_cap * dx, oy + t_cap * dy
    cap = (t_cap > 1e-4) & (cx * cx + cy * cy <= r * r)
    t_side = np.where(side, t_side, _HIDDEN)
    t_cap = np.where(cap, t_cap, _HIDDEN)
    use_cap = t_cap < t_side
    t = np.minimum(t_side, t_cap)
    px, py = ox + t_side * dx, oy + t_side * dy
    n = np.stack([px / r, py / r, np.zeros_like(px)], -1)
    n = np.where(use_cap[..., None], np.array([0.0, 0.0, 1.0], dtype=np.float32), n)
    return t, n


def _hit_cube(o, d, r, theta):
    cos, sin = math.cos(theta), math.sin(theta)
    # Into the cube's frame (rotate by -theta about z), centred at half height.
    ox, oy, oz = o[..., 0], o[..., 1], o[..., 2] - r
    lo = np.stack([cos * ox + sin * oy, -sin * ox + cos * oy, oz * np.ones_like(ox)], -1)
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    ld = np.stack([cos * dx + sin * dy, -sin * dx + cos * dy, dz], -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / ld
        t1 = (-r - lo) * inv
        t2 = (r - lo) * inv
    tnear = np.minimum(t1, t2)
    tfar = np.maximum(t1, t2)
    axis = np.argmax(tnear, -1)
    t_in = np.take_along_axis(tnear, axis[..., None], -1)[..., 0]
    t_out = tfar.min(-1)
    hit = (t_in < t_out) & (t_in > 1e-4)
    t = np.where(hit, t_in, _HIDDEN)
    sign = -np.sign(np.take_along_axis(ld, axis[..., None], -1)[..., 0])
    ln = (axis[..., None] == np.arange(3)) * sign[..., None]  # local normal (..., 3)
    n = np.stack([cos * ln[..., 0] - sin * ln[..., 1], sin * ln[..., 0] + cos * ln[..., 1],
                  ln[..., 2]], -1)
    return t, n.astype(np.float32)


def _hit(obj: dict, o, d):
    r = object_radius(obj)
    shape = obj["shape"]
    if shape == "sphere":
        return _hit_sphere(o, d, r)
    if shape == "cylinder":
        return _hit_cylinder(o, d, r)
    if shape == "cube":
        return _hit_cube(o, d, r, math.radians(obj["rotation"]))
    raise ValueError(f"unknown shape {shape!r}; expected one of {tuple(_SHAPES)}")


# ----------------------------------------------------------------------------------------------
# Per-camera caches: rays and ground geometry do not depend on the scene.


@lru_cache(maxsize=8)
def _grid(camera: Camera, width: int, height: int, supersample: int):
    """Rays (h, w, 3), ground distance (h, w), ground points xy (h, w, 2), base ground rgb."""
    d = camera.rays(width, height, supersample)
    o = np.asarray(camera.location, dtype=np.float32)
    with np.errstate(divide="ignore"):
        t = np.where(d[..., 2] < -1e-6, -o[2] / d[..., 2], _HIDDEN).astype(np.float32)
    g = o[:2] + np.minimum(t, 1e3)[..., None] * d[..., :2]
    # CLEVR's floor: mid grey, darker far away, a broad bright pool in front-right of centre.
    key = _to_world(camera, _KEY)
    near = np.exp(-np.minimum(t, 60.0) / 14.0)
    pool = np.exp(-((g[..., 0] - 3.5 - 2 * key[0]) ** 2 + (g[..., 1] - 2 * key[1] + 3.5) ** 2)
                  / 60.0)
    grey = 0.37 + 0.2 * near + 0.12 * pool
    ground = np.repeat(grey[..., None], 3, -1) * np.array([1.0, 0.99, 0.97])
    return d, t, g.astype(np.float32), ground.astype(np.float32)


def _sample_window(corners_px: np.ndarray, scale: float, offset: float, n: int):
    """Index range [lo, hi) of grid samples whose centre coordinate a*k+b lies in the box."""
    lo = int(math.floor((corners_px.min() - offset) / scale)) - 1
    hi = int(math.ceil((corners_px.max() - offset) / scale)) + 2
    return max(lo, 0), min(hi, n)


def _primary(scene: dict, camera: Camera, width: int, height: int, dirs: np.ndarray,
             scale: float, offset: float, want_normals: bool):
    """Nearest object per ray: depth (h, w), ids (h, w) int16, normals (h, w, 3) or None.

    `dirs[k, l]` must be the ray through output-pixel coordinates (scale*l + offset,
    scale*k + offset), so each object's screen box maps to a window of the grid.
    """
    h, w = dirs.shape[:2]
    depth = np.full((h, w), _HIDDEN, dtype=np.float32)
    ids = np.full((h, w), -1, dtype=np.int16)
    normals = np.zeros((h, w, 3), dtype=np.float32) if want_normals else None
    origin = np.asarray(camera.location, dtype=np.float32)
    for i, obj in enumerate(scene["objects"]):
        px, py, z = camera.project(object_bounds(obj), width, height)
        if (z <= 0).any():
            continue  # behind the camera: never happens for CLEVR scenes
        y0, y1 = _sample_window(py, scale, offset, h)
        x0, x1 = _sample_window(px, scale, offset, w)
        if y0 >= y1 or x0 >= x1:
            continue
        base = np.array([obj["3d_coords"][0], obj["3d_coords"][1], 0.0], dtype=np.float32)
        t, n = _hit(obj, origin - base, dirs[y0:y1, x0:x1])
        win = depth[y0:y1, x0:x1]
        closer = t < win
        win[closer] = t[closer]
        ids[y0:y1, x0:x1][closer] = i
        if want_normals:
            normals[y0:y1, x0:x1][closer] = n[closer]
    return depth, ids, normals


def object_ids(scene: dict, camera: Camera, width: int, height: int, *,
               supersample: int = 2) -> np.ndarray:
    """The `object_ids` buffer of `render_scene` (H, W) int16 without shading (cheap).

    Each output pixel reports the object hit by sample (s // 2, s // 2) of its s x s block
    (its centre when s is odd); the rays are the very same floats, so the two buffers are equal.
    """
    s = supersample
    dirs = _grid(camera, width, height, s)[0][s // 2::s, s // 2::s]
    return _primary(scene, camera, width, height, dirs, 1.0, (s // 2 + 0.5) / s, False)[1]


def _ground_shadow(scene, camera, width, height, s, t_ground, gxy, light) -> np.ndarray:
    """1 where the key light is blocked at the ground point of a sample, else 0 (h, w)."""
    h, w = t_ground.shape
    shadow = np.zeros((h, w), dtype=np.float32)
    lz = light[2]
    for obj in scene["objects"]:
        box = object_bounds(obj)
        # The shadow's footprint: the box swept along the light down to the ground.
        foot = np.concatenate([box, box - (box[:, 2:3] / lz) * light[None, :]])
        foot[:, 2] = 0.0
        px, py, _ = camera.project(foot, width, height)
        y0, y1 = _sample_window(py, 1.0 / s, 0.5 / s, h)
        x0, x1 = _sample_window(px, 1.0 / s, 0.5 / s, w)
        if y0 >= y1 or x0 >= x1:
            continue
        base = np.array([obj["3d_coords"][0], obj["3d_coords"][1], 0.0], dtype=np.float32)
        g = gxy[y0:y1, x0:x1]
        o = np.concatenate([g - base[:2], np.full(g.shape[:2] + (1,), 1e-3, np.float32)], -1)
        d = np.broadcast_to(light.astype(np.float32), o.shape)
        t, _ = _hit(obj, o, d)
        shadow[y0:y1, x0:x1] = np.maximum(shadow[y0:y1, x0:x1], (t < _HIDDEN).astype(np.float32))
    return shadow


def _box_blur(img: np.ndarray, radius: int) -> np.ndarray:
    """Separable box filter (2 * radius + 1 wide) of a 2-D array, edges clamped."""
    if radius <= 0:
        return img
    k = 2 * radius + 1
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis, dtype=np.float32)
        hi = np.take(c, np.arange(k, c.shape[axis]), axis=axis)
        lo = np.take(c, np.arange(0, c.shape[axis] - k), axis=axis)
        img = (hi - lo) / k
    return img


def render_scene(scene: dict, camera: Camera, width: int = 480, height: int = 320, *,
                 supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Render a CLEVR scene dict: (rgb uint8 (H, W, 3), object_ids int16 (H, W), -1 = ground).

    `supersample` s renders an s-times finer grid and box-averages it (anti-aliasing);
    `object_ids` is read at one sample per pixel (see `object_ids`).
    """
    s = int(supersample)
    if s < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    dirs, t_ground, gxy, ground = _grid(camera, width, height, s)
    depth, ids, normals = _primary(scene, camera, width, height, dirs, 1.0 / s, 0.5 / s, True)
    key = _to_world(camera, _KEY).astype(np.float32)

    # Ground: cached base colour times a softened shadow term.
    shadow = _ground_shadow(scene, camera, width, height, s, t_ground, gxy, key)
    shadow = _box_blur(shadow, radius=max(1, round(0.02 * width * s)))
    rgb = ground * (1.0 - _SHADOW_DARKNESS * shadow)[..., None]

    # Objects: shade only the samples that hit one.
    sel = ids >= 0
    if sel.any():
        rgb[sel] = _shade(scene, camera, ids[sel], normals[sel], dirs[sel], key)

    if s > 1:
        rgb = rgb.reshape(height, s, width, s, 3).mean(axis=(1, 3))
    rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgb, ids[s // 2::s, s // 2::s].copy()


def _shade(scene, camera, obj_ids, n, d, key) -> np.ndarray:
    """Colours (P, 3) of object samples from their ids (P,), normals (P, 3), rays (P, 3)."""
    objs = scene["objects"]
    albedo = np.array([COLOR_RGB[o["color"]] for o in objs], dtype=np.float32)[obj_ids] / 255.0
    albedo = _SATURATION * albedo + (1 - _SATURATION) * albedo.mean(1, keepdims=True)
    metal = np.array([o["material"] == "metal" for o in objs])[obj_ids]
    fill = _to_world(camera, _FILL).astype(np.float32)
    rim = _to_world(camera, _RIM).astype(np.float32)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
    ndl_k = np.clip(n @ key, 0.0, 1.0)
    diffuse = (_AMBIENT + 0.08 * n[:, 2] + _KEY_I * ndl_k + _FILL_I * np.clip(n @ fill, 0.0, 1.0)
               + _RIM_I * np.clip(n @ rim, 0.0, 1.0))
    refl = d - 2.0 * (d * n).sum(1, keepdims=True) * n  # mirror direction

    def highlight(light, power):
        return np.clip(refl @ light, 0.0, 1.0) ** power

    # Rubber: Lambert plus a faint broad sheen.
    rubber = albedo * diffuse[:, None] + 0.06 * highlight(key, 8)[:, None]
    # Metal: the environment seen in the mirror direction (floor below the horizon, a bright
    # studio above), tinted by the colour, a dim diffuse base and sharp highlights.
    # The floor seen in the mirror is darker far away (rz near 0) and near the horizon line.
    rz = refl[:, 2]
    side = refl @ np.asarray(camera.ground_directions()["right"], dtype=np.float32)
    behind = refl @ np.asarray(camera.ground_directions()["behind"], dtype=np.float32)
    bands = 0.65 + 0.35 * np.cos(2.0 * np.arctan2(side, behind))  # the studio's walls and lamps
    env = np.where(rz < 0.0, 0.14 + 0.45 * (1 - np.exp(rz * 3.0)) * bands,
                   0.3 + 0.9 * np.clip(rz, 0, 1) ** 0.7)
    tint = 0.1 + 1.2 * albedo
    spec = 2.5 * highlight(key, 300) + 0.8 * highlight(fill, 120) + 0.25 * highlight(key, 12)
    shiny = (0.15 * albedo * diffuse[:, None] + tint * env[:, None]
             + (0.6 + 0.4 * albedo) * spec[:, None])
    return np.where(metal[:, None], shiny, rubber).astype(np.float32)
