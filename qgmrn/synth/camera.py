"""The CLEVR camera: a pinhole that looks at the origin, fitted to the released scenes.

How the real camera was recovered (docs/renderer.md has the numbers): the official generator
jitters the camera's location by up to 0.5 per axis for every image and a Track-To constraint
keeps it aimed at the world origin (roll 0). Fitting one location per real excerpt scene, with
the look-at point and the focal length shared, reproduces every stored `pixel_coords` within
0.6 px (the stored values are rounded) and every depth within 0.03; the fitted focal length is
Blender's default 35 mm lens on a 32 mm sensor (horizontal FOV 49.13 deg at 480x320).
The scene files' `directions` were taken from the un-jittered camera, and they fix its azimuth:
`right = (0.6563, 0.7545, 0)` means the camera sits on the ray (0.7545, -0.6563). We put it
10 units out on that ray (the mean fitted distance is 10.0) at the mean fitted height 5.30.

Pixel convention (CLEVR's `get_camera_coords`): `px` grows to the right from 0 at the left
edge, `py` grows downward from 0 at the top edge, `depth` is the distance along the view axis;
pixel (i, j) covers [i, i + 1) x [j, j + 1) and its centre ray passes through (i + .5, j + .5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

# The released `directions.right` fixes the azimuth; distance and height are fitted (see above).
_RIGHT_XY = (0.6563112735748291, 0.7544902563095093)
CLEVR_LOCATION = (10.0 * _RIGHT_XY[1], -10.0 * _RIGHT_XY[0], 5.30)
CLEVR_FOV_DEG = math.degrees(2.0 * math.atan(16.0 / 35.0))  # 35 mm lens, 32 mm sensor
CLEVR_JITTER = 0.5  # the generator's default --camera_jitter (uniform, per axis)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera aimed at `target` with the horizon level (Blender's Track-To, up = +z).

    `fov_deg` spans the larger image side (Blender's sensor fit AUTO). `framing` is the name
    written to a scene file's `info["framing"]`.
    """

    location: tuple[float, float, float] = CLEVR_LOCATION
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov_deg: float = CLEVR_FOV_DEG
    framing: str = "clevr"

    @classmethod
    def clevr(cls) -> Camera:
        """The real CLEVR camera at its un-jittered location."""
        return cls()

    @classmethod
    def close(cls, distance_scale: float = 0.85, fov_deg: float = CLEVR_FOV_DEG) -> Camera:
        """The CLEVR camera moved toward the origin along its own line of sight.

        Objects look `1 / distance_scale` times larger, so small demo images (e.g. 96x64) still
        show every object clearly; the azimuth, hence the ground-plane `directions`, is unchanged.
        Objects near the arena's corners can fall outside the frame: the scene sampler places
        such scenes again.
        """
        if not 0.0 < distance_scale <= 1.0:
            raise ValueError(f"distance_scale must be in (0, 1], got {distance_scale}")
        loc = tuple(float(c) * distance_scale for c in CLEVR_LOCATION)
        return cls(location=loc, fov_deg=fov_deg, framing=f"close{distance_scale:g}")

    @classmethod
    def from_framing(cls, name: str) -> Camera:
        """Inverse of `framing`: "clevr", "close" or "close<scale>" (e.g. "close0.75")."""
        if name == "clevr":
            return cls.clevr()
        if name.startswith("close"):
            return cls.close(float(name[5:])) if name[5:] else cls.close()
        raise ValueError(f"unknown framing {name!r}; use 'clevr' or 'close[<distance scale>]'")

    def jittered(self, rng: np.random.Generator, amount: float = CLEVR_JITTER) -> Camera:
        """A copy moved by uniform(-amount, amount) per axis, like the real generator's camera."""
        shift = rng.uniform(-amount, amount, size=3)
        return replace(self, location=tuple(float(c) for c in np.add(self.location, shift)))

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, forward) unit vectors, float64 (3,) each (fresh copies)."""
        return tuple(v.copy() for v in _basis(self.location, self.target)[:3])

    def ground_directions(self) -> dict[str, tuple[float, float, float]]:
        """CLEVR's `directions` seen from this camera (right/behind projected on the ground)."""
        return dict(_ground_directions(self.location, self.target))

    def focal_px(self, width: int, height: int) -> float:
        """Focal length in pixels for an image of `width` x `height`."""
        return 0.5 * max(width, height) / math.tan(math.radians(self.fov_deg) / 2.0)

    def project(
        self, points: np.ndarray, width: int = 480, height: int = 320
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (N, 3) -> continuous (px, py, depth), each (N,), float64."""
        m = _basis(self.location, self.target)[3]  # rows right, up, forward
        d = np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.location
        x, y, depth = (d @ m.T).T
        f = self.focal_px(width, height)
        px = width / 2.0 + f * x / depth
        py = height / 2.0 - f * y / depth
        return px, py, depth

    def pixel_coords(self, point, width: int = 480, height: int = 320) -> list:
        """CLEVR's stored `pixel_coords` of one point: [round(px), round(py), depth]."""
        px, py, depth = self.project(np.asarray(point)[None], width, height)
        return [int(round(px[0])), int(round(py[0])), float(depth[0])]

    def rays(self, width: int, height: int, supersample: int = 1) -> np.ndarray:
        """Unit ray directions (height * s, width * s, 3) float32 through the sample centres.

        Sample (k, l) of the `s`-times finer grid sits at output-pixel coordinates
        ((l + .5) / s, (k + .5) / s).
        """
        s = supersample
        right, up, forward = self.basis()
        f = self.focal_px(width, height)
        u = (np.arange(width * s) + 0.5) / s - width / 2.0
        v = (np.arange(height * s) + 0.5) / s - height / 2.0
        d = (
            forward * f
            + u[None, :, None] * right[None, None, :]
            - v[:, None, None] * up[None, None, :]
        )
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        return d.astype(np.float32)


@lru_cache(maxsize=256)
def _basis(location: tuple, target: tuple):
    """Cached (right, up, forward, 3x3 matrix of those rows); read-only float64 arrays."""
    forward = np.subtract(target, location).astype(np.float64)
    forward /= np.linalg.norm(forward)
    right = np.array([forward[1], -forward[0], 0.0])  # forward x (0, 0, 1)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    m = np.stack([right, up, forward])
    for a in (right, up, forward, m):
        a.flags.writeable = False
    return right, up, forward, m


@lru_cache(maxsize=256)
def _ground_directions(location: tuple, target: tuple) -> dict:
    right, _, forward, _ = _basis(location, target)
    r = np.array([right[0], right[1], 0.0]) / math.hypot(right[0], right[1])
    b = np.array([forward[0], forward[1], 0.0]) / math.hypot(forward[0], forward[1])
    out = {"right": r, "left": -r, "behind": b, "front": -b}
    out = {k: tuple(float(x) + 0.0 for x in v) for k, v in out.items()}
    out["above"], out["below"] = (0.0, 0.0, 1.0), (0.0, 0.0, -1.0)
    return out


def fit_location(
    camera: Camera,
    points: np.ndarray,
    pixels: np.ndarray,
    width: int = 480,
    height: int = 320,
    iterations: int = 30,
) -> tuple[Camera, np.ndarray]:
    """Least-squares camera location (Gauss-Newton) reproducing `pixels` (N, 2) from `points`.

    Used to recover each real image's jittered camera. Returns the fitted camera and the
    residuals (N, 2) in pixels.
    """
    pts = np.asarray(points, dtype=np.float64)
    target = np.asarray(pixels, dtype=np.float64)[:, :2]

    def residual(loc: np.ndarray) -> np.ndarray:
        px, py, _ = replace(camera, location=tuple(loc)).project(pts, width, height)
        return np.stack([px, py], 1) - target

    loc = np.asarray(camera.location, dtype=np.float64)
    for _ in range(iterations):
        r0 = residual(loc).ravel()
        jac = np.stack([(residual(loc + h).ravel() - r0) / 1e-6 for h in np.eye(3) * 1e-6], 1)
        step = np.linalg.lstsq(jac, -r0, rcond=None)[0]
        loc = loc + step
        if np.abs(step).max() < 1e-9:
            break
    fitted = replace(camera, location=tuple(float(c) for c in loc))
    return fitted, residual(loc)
