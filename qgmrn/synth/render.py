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
_KEY = (0.7, 0.25, 1.0)  # from the right, a little behind, high: shadows fall to the left
_FILL = (-0.7, -0.6, 0.6)  # from the left, in front: lifts the key light's shadow side
_RIM = (0.0, 1.0, 0.5)  # from behind: a bright edge on the far side
_AMBIENT, _KEY_I, _FILL_I, _RIM_I = 0.36, 0.5, 0.2, 0.18
_SHADOW_DARKNESS = 0.33  # fraction of light removed in full shadow on the ground
_SATURATION = 0.8  # Blender's lighting washes CLEVR's colours out somewhat
_HIDDEN = 1e30  # "no hit" distance; inf would make 0 * inf = nan in blends


def _to_world(camera: Camera, v) -> np.ndarray:
    dirs = camera.ground_directions()
    return _unit(
        v[0] * np.array(dirs["right"])
        + v[1] * np.array(dirs["behind"])
        + v[2] * np.array([0.0, 0.0, 1.0])
    )


def object_radius(obj: dict) -> float:
    """Radius of the object (half side for cubes): CLEVR's 0.7 (large) or 0.35 (small)."""
    return SIZE_RADIUS[obj["size"]]


def object_bounds(obj: dict) -> np.ndarray:
    """The 8 corners (8, 3) of a box enclosing the object (a cube's own rotated corners)."""
    x, y, _ = obj["3d_coords"]
    r = object_radius(obj)
    if obj["shape"] == "cube":
        a = math.radians(obj.get("rotation", 0.0))
        c, s = r * math.cos(a), r * math.sin(a)
        xy = [(c - s, s + c), (-c - s, -s + c), (-c + s, -s - c), (c + s, s - c)]
    else:
        xy = [(-r, -r), (-r, r), (r, -r), (r, r)]
    return np.array([[x + u, y + v, z] for u, v in xy for z in (0.0, 2 * r)])


# ----------------------------------------------------------------------------------------------
# Ray-solid intersections for camera rays: one origin o (3,) relative to the object's base
# centre, directions d (..., 3). They return t (...,) with _HIDDEN where missed; normals are
# computed afterwards from the hit points of the visible samples only (`_normals`).


def _rot(theta: float) -> np.ndarray:
    """World -> cube-local rotation (by -theta about z), float32 (3, 3)."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)


def _t_sphere(o, d, r):
    oc = (o - np.array([0.0, 0.0, r])).astype(np.float32)
    b = d @ oc
    disc = b * b - float(oc @ oc - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc > 0) & (t > 1e-4), t, np.float32(_HIDDEN))


def _t_cylinder(o, d, r):
    ox, oy, oz = (float(v) for v in o)
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    disc = b * b - a * (ox * ox + oy * oy - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        z_side = oz + t_side * dz
        t_cap = (2 * r - oz) / dz
    side = (disc > 0) & (t_side > 1e-4) & (z_side >= 0) & (z_side <= 2 * r)
    cx, cy = ox + t_cap * dx, oy + t_cap * dy
    cap = (t_cap > 1e-4) & (cx * cx + cy * cy <= r * r)
    return np.minimum(
        np.where(side, t_side, np.float32(_HIDDEN)), np.where(cap, t_cap, np.float32(_HIDDEN))
    )


def _t_cube(o, d, r, theta):
    rot = _rot(theta)
    lo = rot @ (o - np.array([0.0, 0.0, r])).astype(np.float32)  # centred at half height
    ld = d @ rot.T
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / ld
        t1 = (-r - lo) * inv
        t2 = (r - lo) * inv
    t_in = np.minimum(t1, t2).max(-1)
    t_out = np.maximum(t1, t2).min(-1)
    return np.where((t_in < t_out) & (t_in > 1e-4), t_in, np.float32(_HIDDEN))


def _t(obj: dict, o, d):
    r = object_radius(obj)
    shape = obj["shape"]
    if shape == "sphere":
        return _t_sphere(o, d, r)
    if shape == "cylinder":
        return _t_cylinder(o, d, r)
    if shape == "cube":
        return _t_cube(o, d, r, math.radians(obj["rotation"]))
    raise ValueError(f"unknown shape {shape!r}; expected one of {tuple(_SHAPES)}")


_BEVEL = 0.12  # width of the rounded edges of cubes and cylinder rims, as a fraction of r


def _normals(obj: dict, p: np.ndarray) -> np.ndarray:
    """Unit normals (P, 3) at surface points p (P, 3) relative to the base centre.

    Edges are rounded over `_BEVEL * r` (like CLEVR's bevelled SmoothCube and the cylinders'
    rims): there the normal turns toward the neighbouring face, so edges catch highlights.
    """
    r = object_radius(obj)
    shape = obj["shape"]
    if shape == "sphere":
        n = p - np.array([0.0, 0.0, r], dtype=np.float32)
    elif shape == "cylinder":
        rho = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) + 1e-6
        radial = p[:, :2] / rho[:, None]
        on_cap = p[:, 2] > 2 * r * (1 - 1e-4)
        # Side: tilt up near the top rim; cap: tilt outward near the rim.
        w_side = np.clip((p[:, 2] / r - (2 - _BEVEL)) / _BEVEL, 0.0, 1.0) ** 2
        w_cap = np.clip((rho / r - (1 - _BEVEL)) / _BEVEL, 0.0, 1.0) ** 2
        w_r = np.where(on_cap, w_cap, 1.0)
        w_z = np.where(on_cap, 1.0, w_side)
        n = np.concatenate([radial * w_r[:, None], w_z[:, None]], 1)
    elif shape == "cube":
        rot = _rot(math.radians(obj["rotation"]))
        lp = (p - np.array([0.0, 0.0, r], dtype=np.float32)) @ rot.T
        q = np.abs(lp) / r
        w = np.clip((q - (1 - _BEVEL)) / _BEVEL, 0.0, 1.0)
        face = q.argmax(1)
        w[np.arange(len(q)), face] = 1.0
        n = (w * np.sign(lp)) @ rot  # back to world
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {tuple(_SHAPES)}")
    return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Shadow tests: does the ray from ground point g (..., 2), relative to the base centre, toward
# the light l (3,) (unit, l_z > 0) meet the solid? Boolean (...,).


def _blocks_sphere(gx, gy, r, l):
    b = l[0] * gx + l[1] * gy - l[2] * r
    return (b < 0) & (b * b > gx * gx + gy * gy)


def _blocks_cylinder(gx, gy, r, l):
    top = 2 * r / l[2]  # ray parameter where it leaves the height range [0, 2r]
    lxy2 = l[0] ** 2 + l[1] ** 2
    t = np.clip(-(gx * l[0] + gy * l[1]) / lxy2, 0.0, top)
    qx, qy = gx + t * l[0], gy + t * l[1]
    return qx * qx + qy * qy <= r * r


def _blocks_cube(gx, gy, r, l, theta):
    c, s = math.cos(theta), math.sin(theta)
    lx, ly = c * gx + s * gy, -s * gx + c * gy
    dx, dy = c * l[0] + s * l[1], -s * l[0] + c * l[1]
    near, far = np.float32(0.0), np.float32(2 * r / l[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        for g, dd in ((lx, dx), (ly, dy)):
            if abs(dd) < 1e-9:
                inside = np.abs(g) <= r
                near = np.where(inside, near, np.float32(_HIDDEN))
                continue
            t1, t2 = (-r - g) / dd, (r - g) / dd
            near = np.maximum(near, np.minimum(t1, t2))
            far = np.minimum(far, np.maximum(t1, t2))
    return near <= far


def _blocks(obj, gx, gy, l):
    r = object_radius(obj)
    shape = obj["shape"]
    if shape == "sphere":
        return _blocks_sphere(gx, gy, r, l)
    if shape == "cylinder":
        return _blocks_cylinder(gx, gy, r, l)
    return _blocks_cube(gx, gy, r, l, math.radians(obj["rotation"]))


# ----------------------------------------------------------------------------------------------
# Per-camera caches: rays, ground geometry and lights do not depend on the scene.


@lru_cache(maxsize=16)
def _grid(camera: Camera, width: int, height: int, supersample: int):
    """Rays (h, w, 3), ground distance (h, w), ground points xy (h, w, 2), base ground rgb.

    Read-only; shared by every scene rendered with this camera, size and supersampling.
    """
    d = camera.rays(width, height, supersample)
    o = np.asarray(camera.location, dtype=np.float32)
    with np.errstate(divide="ignore"):
        t = np.where(d[..., 2] < -1e-6, -o[2] / d[..., 2], _HIDDEN).astype(np.float32)
    g = o[:2] + np.minimum(t, 1e3)[..., None] * d[..., :2]
    # CLEVR's floor: mid grey, darker far away, a broad bright pool in front-right of centre.
    key = _to_world(camera, _KEY)
    near = np.exp(-np.minimum(t, 60.0) / 14.0)
    pool = np.exp(
        -((g[..., 0] - 3.5 - 2 * key[0]) ** 2 + (g[..., 1] - 2 * key[1] + 3.5) ** 2) / 60.0
    )
    grey = 0.37 + 0.2 * near + 0.12 * pool
    ground = (np.repeat(grey[..., None], 3, -1) * np.array([1.0, 0.99, 0.97])).astype(np.float32)
    s = supersample
    ground_px = ground.reshape(height, s, width, s, 3).mean(axis=(1, 3))
    out = (d, t, g.astype(np.float32), ground, ground_px.astype(np.float32))
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def _lights(camera: Camera) -> dict[str, np.ndarray]:
    """World-space unit vectors (float32) of the lights and the ground axes for `camera`."""
    dirs = camera.ground_directions()
    out = {
        "key": _to_world(camera, _KEY),
        "fill": _to_world(camera, _FILL),
        "rim": _to_world(camera, _RIM),
        "right": np.array(dirs["right"]),
        "behind": np.array(dirs["behind"]),
    }
    return {k: v.astype(np.float32) for k, v in out.items()}


def _sample_window(corners_px: np.ndarray, scale: float, offset: float, n: int):
    """Index range [lo, hi) of grid samples whose centre coordinate a*k+b lies in the box."""
    lo = int(math.floor((corners_px.min() - offset) / scale)) - 1
    hi = int(math.ceil((corners_px.max() - offset) / scale)) + 2
    return max(lo, 0), min(hi, n)


def _primary(
    scene: dict,
    camera: Camera,
    width: int,
    height: int,
    dirs: np.ndarray,
    scale: float,
    offset: float,
):
    """Nearest object per ray: depth (h, w) float32 and ids (h, w) int16 (-1: none).

    `dirs[k, l]` must be the ray through output-pixel coordinates (scale*l + offset,
    scale*k + offset), so each object's screen box maps to a window of the grid.
    """
    h, w = dirs.shape[:2]
    depth = np.full((h, w), _HIDDEN, dtype=np.float32)
    ids = np.full((h, w), -1, dtype=np.int16)
    origin = np.asarray(camera.location, dtype=np.float64)
    for i, obj in enumerate(scene["objects"]):
        px, py, z = camera.project(object_bounds(obj), width, height)
        if (z <= 0).any():
            continue  # behind the camera: never happens for CLEVR scenes
        y0, y1 = _sample_window(py, scale, offset, h)
        x0, x1 = _sample_window(px, scale, offset, w)
        if y0 >= y1 or x0 >= x1:
            continue
        base = np.array([obj["3d_coords"][0], obj["3d_coords"][1], 0.0])
        t = _t(obj, origin - base, dirs[y0:y1, x0:x1])
        win = depth[y0:y1, x0:x1]
        closer = t < win
        win[closer] = t[closer]
        ids[y0:y1, x0:x1][closer] = i
    return depth, ids


def object_ids(
    scene: dict, camera: Camera, width: int, height: int, *, supersample: int = 2
) -> np.ndarray:
    """The `object_ids` buffer of `render_scene` (H, W) int16 without shading (cheap).

    Each output pixel reports the object hit by sample (s // 2, s // 2) of its s x s block
    (its centre when s is odd); the rays are the very same floats, so the two buffers are equal.
    """
    s = supersample
    dirs = _grid(camera, width, height, s)[0][s // 2 :: s, s // 2 :: s]
    return _primary(scene, camera, width, height, dirs, 1.0, (s // 2 + 0.5) / s)[1]


def _ground_shadow(scene, camera, width, height, gxy, light) -> np.ndarray:
    """1 where the key light is blocked at a pixel's ground point, else 0 (H, W) float32.

    One ray per output pixel (the shadow is blurred afterwards, so supersampling it would buy
    nothing), tested only within each object's shadow footprint on the screen.
    """
    shadow = np.zeros((height, width), dtype=bool)
    lz = float(light[2])
    for obj in scene["objects"]:
        box = object_bounds(obj)
        # The shadow's footprint: the box swept along the light down to the ground.
        foot = np.concatenate([box, box - (box[:, 2:3] / lz) * light[None, :]])
        foot[:, 2] = 0.0
        px, py, _ = camera.project(foot, width, height)
        y0, y1 = _sample_window(py, 1.0, 0.5, height)
        x0, x1 = _sample_window(px, 1.0, 0.5, width)
        if y0 >= y1 or x0 >= x1:
            continue
        x, y = obj["3d_coords"][0], obj["3d_coords"][1]
        g = gxy[y0:y1, x0:x1]
        shadow[y0:y1, x0:x1] |= _blocks(obj, g[..., 0] - x, g[..., 1] - y, light)
    return shadow.astype(np.float32)


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


def render_scene(
    scene: dict, camera: Camera, width: int = 480, height: int = 320, *, supersample: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Render a CLEVR scene dict: (rgb uint8 (H, W, 3), object_ids int16 (H, W), -1 = ground).

    `supersample` s renders an s-times finer grid and box-averages it (anti-aliasing);
    `object_ids` is read at one sample per pixel (see `object_ids`).
    """
    s = int(supersample)
    if s < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    dirs, _, _, ground, ground_px = _grid(camera, width, height, s)
    depth, ids = _primary(scene, camera, width, height, dirs, 1.0 / s, 0.5 / s)
    key = _lights(camera)["key"]

    # Ground: the cached pixel-averaged floor times a softened shadow term (per pixel).
    gxy = _grid(camera, width, height, 1)[2]
    shadow = _ground_shadow(scene, camera, width, height, gxy, key)
    shadow = _box_blur(shadow, radius=max(1, round(0.02 * width)))
    lit = (1.0 - _SHADOW_DARKNESS * shadow)[..., None]
    rgb = ground_px * lit

    # Objects: shade only the samples that hit one, then replace their share of the pixel's
    # ground colour: pixel += (object - ground) / s^2 for each object sample in it.
    k, l = np.nonzero(ids >= 0)
    if len(k):
        oid = ids[k, l]
        d = dirs[k, l]
        p = np.asarray(camera.location, dtype=np.float32) + depth[k, l][:, None] * d
        colour = _shade(scene, camera, oid, p, d)
        pix = (k // s) * width + (l // s)
        delta = (colour - ground[k, l] * lit.reshape(-1, 1)[pix]) / (s * s)
        flat = rgb.reshape(-1, 3)
        for c in range(3):
            flat[:, c] += np.bincount(pix, weights=delta[:, c], minlength=flat.shape[0])
    rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgb, ids[s // 2 :: s, s // 2 :: s].copy()


def _shade(scene, camera, obj_ids, p, d) -> np.ndarray:
    """Colours (P, 3) of object samples from their ids (P,), world hit points and rays (P, 3)."""
    objs = scene["objects"]
    n = np.empty_like(p)
    for i, obj in enumerate(objs):
        m = obj_ids == i
        if m.any():
            base = np.array([obj["3d_coords"][0], obj["3d_coords"][1], 0.0], dtype=np.float32)
            n[m] = _normals(obj, p[m] - base)
    local_z = p[:, 2]
    albedo = np.array([COLOR_RGB[o["color"]] for o in objs], dtype=np.float32)[obj_ids] / 255.0
    albedo = _SATURATION * albedo + (1 - _SATURATION) * albedo.mean(1, keepdims=True)
    metal = np.array([o["material"] == "metal" for o in objs])[obj_ids]
    lights = _lights(camera)
    key, fill, rim = lights["key"], lights["fill"], lights["rim"]
    diffuse = (
        _AMBIENT
        + 0.08 * n[:, 2]
        + _KEY_I * np.clip(n @ key, 0.0, 1.0)
        + _FILL_I * np.clip(n @ fill, 0.0, 1.0)
        + _RIM_I * np.clip(n @ rim, 0.0, 1.0)
    )
    cos_v = np.clip(-(d * n).sum(1), 0.0, 1.0)
    refl = d + (2.0 * cos_v)[:, None] * n  # mirror direction

    out = albedo * diffuse[:, None]
    # Rubber: Lambert plus a faint broad sheen.
    rub = ~metal
    if rub.any():
        out[rub] += 0.06 * (np.clip(refl[rub] @ key, 0.0, 1.0) ** 8)[:, None]
    if metal.any():
        out[metal] = _metal(
            albedo[metal], diffuse[metal], refl[metal], cos_v[metal], local_z[metal], lights
        )
    return out


def _metal(albedo, diffuse, refl, cos_v, z, lights) -> np.ndarray:
    """A mirror-like surface: a fake studio environment seen in the mirror direction.

    Below the horizon the floor, bright close to the object and darkening with the distance
    the reflected ray travels (so flat faces show a gradient, bright at their foot); a dark
    band at the horizon; a bright studio sky above. Vertical soft boxes at the lights'
    azimuths make streaks on cylinders and bright/dark faces on cubes. The environment is tinted
    by the colour and whitens at grazing angles (Fresnel); the key and fill lights add sharp
    white highlights, and the diffuse base is dim.
    """
    rz = refl[:, 2]
    horiz = np.sqrt(np.maximum(1.0 - rz * rz, 1e-6))
    travel = z * horiz / np.maximum(-rz, 0.05)  # ground distance to the reflected floor point
    near = np.exp(-travel / 1.2)
    floor = 0.06 + 0.55 * near
    sky = 0.35 + 0.75 * np.clip(rz, 0.0, 1.0) ** 0.6
    env = np.where(rz < 0.0, floor, sky) * (1.0 - 0.45 * np.exp(-((rz / 0.08) ** 2)))
    # Soft boxes: lobes in azimuth around the horizontal directions of the lights, brightest
    # close by (so they also fade up flat faces).
    rxy = refl[:, :2] / horiz[:, None]
    boxes = 0.0
    for name, gain in (("key", 1.0), ("fill", 0.6), ("rim", 0.7)):
        lxy = lights[name][:2] / np.linalg.norm(lights[name][:2])
        boxes = boxes + gain * np.exp((rxy @ lxy - 1.0) / 0.04)
    fade = np.where(rz < 0.0, 0.3 + 0.7 * near, 1.0)
    env = env + 0.8 * boxes * fade
    fresnel = (1.0 - cos_v) ** 5
    tint = 0.08 + 1.15 * albedo
    reflect = env[:, None] * (tint * (1.0 - fresnel[:, None]) + 0.8 * fresnel[:, None])
    spec = (
        2.5 * np.clip(refl @ lights["key"], 0.0, 1.0) ** 300
        + 0.8 * np.clip(refl @ lights["fill"], 0.0, 1.0) ** 120
        + 0.25 * np.clip(refl @ lights["key"], 0.0, 1.0) ** 12
    )
    return 0.12 * albedo * diffuse[:, None] + reflect + (0.6 + 0.4 * albedo) * spec[:, None]
