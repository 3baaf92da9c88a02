"""The camera reproduces the real CLEVR projection (stored pixel_coords of the excerpts)."""

import json
from pathlib import Path

import numpy as np
import pytest

from qgmrn.clevr import DIRECTIONS
from qgmrn.synth.camera import CLEVR_JITTER, Camera, fit_location

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "clevr-samples"


def _real_scenes():
    if not SHARED.is_dir():
        pytest.skip("/work/shared/clevr-samples absent")
    return [
        s
        for name in ("CLEVR_train_scenes_excerpt.json", "CLEVR_val_scenes_excerpt.json")
        for s in json.loads((SHARED / name).read_text())["scenes"]
    ]


def test_real_pixel_coords_reproduced_by_jittered_camera():
    """Each real image's camera = ours moved by <= 0.5 per axis (the generator's jitter)."""
    for scene in _real_scenes():
        pts = np.array([o["3d_coords"] for o in scene["objects"]])
        pix = np.array([o["pixel_coords"] for o in scene["objects"]], dtype=float)
        cam, res = fit_location(Camera.clevr(), pts, pix)
        assert np.abs(res).max() < 1.0  # stored values are rounded
        shift = np.subtract(cam.location, Camera.clevr().location)
        assert np.abs(shift).max() < CLEVR_JITTER + 0.25  # our centre is itself a fit
        _, _, depth = cam.project(pts)
        np.testing.assert_allclose(depth, pix[:, 2], atol=0.05)


def test_unjittered_camera_within_jitter_error():
    for scene in _real_scenes():
        pts = np.array([o["3d_coords"] for o in scene["objects"]])
        pix = np.array([o["pixel_coords"] for o in scene["objects"]], dtype=float)
        px, py, _ = Camera.clevr().project(pts)
        assert np.abs(px - pix[:, 0]).max() < 40 and np.abs(py - pix[:, 1]).max() < 40


@pytest.mark.parametrize("camera", [Camera.clevr(), Camera.close()])
def test_ground_directions_are_the_real_ones(camera):
    got = camera.ground_directions()
    for rel in ("right", "left", "front", "behind"):
        np.testing.assert_allclose(got[rel], DIRECTIONS[rel], atol=1e-6)


def test_project_and_rays_agree():
    """The ray through a pixel's centre projects back to that centre."""
    cam = Camera.close()
    d = cam.rays(32, 24, supersample=2)
    assert d.shape == (48, 64, 3) and d.dtype == np.float32
    p = np.asarray(cam.location) + 10.0 * d[7, 11].astype(np.float64)
    px, py, depth = cam.project(p[None], 32, 24)
    assert px[0] == pytest.approx((11 + 0.5) / 2, abs=1e-3)
    assert py[0] == pytest.approx((7 + 0.5) / 2, abs=1e-3)
    assert depth[0] > 0


def test_framing_names_round_trip():
    for cam in (Camera.clevr(), Camera.close(), Camera.close(0.6)):
        assert Camera.from_framing(cam.framing) == cam
    with pytest.raises(ValueError):
        Camera.from_framing("fisheye")
