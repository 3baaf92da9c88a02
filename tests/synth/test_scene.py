"""Sampled scenes obey CLEVR's placement rules and visibility threshold."""

import math

import numpy as np
import pytest

from qgmrn.clevr import DIRECTIONS, SIZE_RADIUS, compute_relationships
from qgmrn.synth.camera import Camera
from qgmrn.synth.render import object_bounds, object_ids, render_scene
from qgmrn.synth.scene import frame_margin, sample_scene

W, H = 64, 48


def _scenes(n=12, camera=None, **kw):
    rng = np.random.default_rng(0)
    cam = camera or Camera.clevr()
    return [sample_scene(rng, camera=cam, width=W, height=H, **kw) for _ in range(n)]


def test_constraints_hold():
    right, behind = np.array(DIRECTIONS["right"][:2]), np.array(DIRECTIONS["behind"][:2])
    for scene in _scenes():
        objs = scene["objects"]
        assert 3 <= len(objs) <= 10
        for o in objs:
            x, y, z = o["3d_coords"]
            assert -3 < x < 3 and -3 < y < 3
            assert z == SIZE_RADIUS[o["size"]]  # resting on the ground
            assert 0 <= o["rotation"] < 360
        for i, a in enumerate(objs):
            for b in objs[i + 1 :]:
                d = np.subtract(b["3d_coords"][:2], a["3d_coords"][:2])
                gap = math.hypot(*d) - a["3d_coords"][2] - b["3d_coords"][2]
                assert gap >= 0.25
                assert abs(d @ right) >= 0.4 and abs(d @ behind) >= 0.4
        assert scene["relationships"] == compute_relationships(objs, DIRECTIONS, eps=0.2)
        assert scene["directions"]["right"] == list(DIRECTIONS["right"])


@pytest.mark.parametrize("camera", [Camera.clevr(), Camera.close()])
def test_every_object_visible(camera):
    for scene in _scenes(6, camera=camera, min_pixels=10):
        _, ids = render_scene(scene, camera, W, H)
        counts = np.bincount(ids[ids >= 0], minlength=len(scene["objects"]))
        assert counts.min() >= 10
        np.testing.assert_array_equal(ids, object_ids(scene, camera, W, H))


@pytest.mark.parametrize("camera", [Camera.clevr(), Camera.close(), Camera.close(0.7)])
def test_no_object_cut_off_by_the_frame(camera):
    margin = frame_margin(W, H)
    for scene in _scenes(8, camera=camera, min_pixels=4):
        for o in scene["objects"]:
            px, py, _ = camera.project(object_bounds(o), W, H)
            assert px.min() >= margin and px.max() <= W - margin
            assert py.min() >= margin and py.max() <= H - margin
        _, ids = render_scene(scene, camera, W, H)
        assert (ids[0] < 0).all() and (ids[-1] < 0).all()  # nothing touches the border
        assert (ids[:, 0] < 0).all() and (ids[:, -1] < 0).all()


def test_pixel_coords_from_camera():
    cam = Camera.clevr()
    for o in _scenes(2)[0]["objects"]:
        assert o["pixel_coords"] == cam.pixel_coords(o["3d_coords"], W, H)


def test_same_seed_same_scene():
    assert _scenes(3) == _scenes(3)


@pytest.mark.parametrize(
    "kw",
    [
        {"min_objects": 0},
        {"min_objects": 5, "max_objects": 4},
        {"max_objects": 40},
        {"min_pixels": 10_000},
    ],
)
def test_impossible_settings_raise(kw):
    with pytest.raises(ValueError):
        sample_scene(np.random.default_rng(0), width=W, height=H, **kw)


def test_unsatisfiable_visibility_raises_with_advice():
    with pytest.raises(ValueError, match="min_pixels"):
        sample_scene(
            np.random.default_rng(0),
            width=W,
            height=H,
            min_objects=3,
            max_objects=3,
            min_pixels=900,
            max_attempts=5,
        )
