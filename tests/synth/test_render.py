"""The renderer's outputs: shapes, determinism, ids, and metal looking unlike rubber."""

import numpy as np

from qgmrn.synth.camera import Camera
from qgmrn.synth.render import render_scene
from qgmrn.synth.scene import sample_scene


def _one(shape="sphere", material="rubber", color="red", size="large"):
    return {"objects": [{"shape": shape, "material": material, "color": color, "size": size,
                         "rotation": 30.0, "3d_coords": [0.0, 0.0, 0.7 if size == "large" else
                                                         0.35]}]}


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
    assert lum["metal"].max() > lum["rubber"].max() + 20      # sharp highlight
    assert lum["metal"].std() > lum["rubber"].std()           # reflections vary more


def test_each_shape_fills_a_plausible_area():
    """A large sphere shows less area than a large cube (half side = radius) at the centre."""
    cam = Camera.clevr()
    area = {s: (render_scene(_one(shape=s), cam, 96, 64)[1] == 0).sum()
            for s in ("sphere", "cylinder", "cube")}
    assert 0 < area["sphere"] < area["cylinder"] and area["sphere"] < area["cube"]


def test_colour_survives_shading():
    cam = Camera.clevr()
    for color, channel in (("red", 0), ("green", 1), ("blue", 2)):
        rgb, ids = render_scene(_one(color=color), cam, 96, 64)
        assert rgb[ids == 0].mean(0).argmax() == channel
