"""The renderer's outputs: shapes, determinism, ids, and metal looking unlike rubber."""

import numpy as np
import pytest

from qgmrn.synth.camera import Camera
from qgmrn.synth.render import object_bounds, render_scene
from qgmrn.synth.scene import sample_scene


def _one(shape="sphere", material="rubber", color="red", size="large"):
    return {
        "objects": [
            {
                "shape": shape,
                "material": material,
                "color": color,
                "size": size,
                "rotation": 30.0,
                "3d_coords": [0.0, 0.0, 0.7 if size == "large" else 0.35],
            }
        ]
    }


def test_shapes_and_dtypes():
    rgb, ids = render_scene(_one(), Camera.clevr(), 40, 30, supersample=3)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert ids.shape == (30, 40) and ids.dtype == np.int16
    assert set(np.unique(ids)) == {-1, 0}


def test_deterministic_bytes():
    cam = Camera.clevr()
    a = render_scene(sample_scene(np.random.default_rng(3), width=48, height=32), cam, 48, 32)
    b = render_scene(sample_scene(np.random.default_rng(3), width=48, height=32), cam, 48, 32)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def test_metal_brighter_highlights_than_rubber():
    cam = Camera.clevr()
    out = {m: render_scene(_one(material=m), cam, 96, 64)[0] for m in ("rubber", "metal")}
    ids = render_scene(_one(), cam, 96, 64)[1] == 0
    lum = {m: img[ids].astype(float).mean(1) for m, img in out.items()}
    assert lum["metal"].max() > lum["rubber"].max() + 20  # sharp highlight
    assert lum["metal"].std() > lum["rubber"].std()  # reflections vary more


@pytest.mark.parametrize("shape", ["cube", "cylinder", "sphere"])
@pytest.mark.parametrize("color", ["blue", "gray", "yellow"])
def test_metal_differs_clearly_from_rubber_on_every_shape(shape, color):
    """Flat and curved metal faces reflect: a brighter peak and a much wider spread of
    intensity over the object's pixels than rubber of the same colour."""
    cam = Camera.clevr()
    stats = {}
    for m in ("rubber", "metal"):
        rgb, ids = render_scene(_one(shape=shape, material=m, color=color), cam, 96, 64)
        lum = rgb[ids == 0].astype(float).mean(1)
        stats[m] = lum.max(), lum.std()
    assert stats["metal"][0] > stats["rubber"][0] + 25
    assert stats["metal"][1] > 1.4 * stats["rubber"][1]


def test_object_pixels_inside_projected_bounds():
    """`object_bounds` (used for culling and framing) encloses every pixel of the object."""
    cam = Camera.clevr()
    for shape in ("sphere", "cylinder", "cube"):
        for rot in (0.0, 30.0, 45.0, 200.0):
            scene = _one(shape=shape)
            scene["objects"][0]["rotation"] = rot
            _, ids = render_scene(scene, cam, 96, 64, supersample=1)
            ys, xs = np.nonzero(ids == 0)
            px, py, _ = cam.project(object_bounds(scene["objects"][0]), 96, 64)
            assert px.min() - 1 <= xs.min() and xs.max() <= px.max()
            assert py.min() - 1 <= ys.min() and ys.max() <= py.max()


def test_each_shape_fills_a_plausible_area():
    """A large sphere shows less area than a large cube (half side = radius) at the centre."""
    cam = Camera.clevr()
    area = {
        s: (render_scene(_one(shape=s), cam, 96, 64)[1] == 0).sum()
        for s in ("sphere", "cylinder", "cube")
    }
    assert 0 < area["sphere"] < area["cylinder"] and area["sphere"] < area["cube"]


def test_colour_survives_shading():
    cam = Camera.clevr()
    for color, channel in (("red", 0), ("green", 1), ("blue", 2)):
        rgb, ids = render_scene(_one(color=color), cam, 96, 64)
        assert rgb[ids == 0].mean(0).argmax() == channel
