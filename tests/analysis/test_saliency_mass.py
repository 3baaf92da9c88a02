"""Share of saliency mass on the objects a question refers to (Fig. 4 caption).

Scene of `make_scene` (tests/clevr/_clevr_fixtures.py): 0 large red metal cube, 1 small red
rubber sphere, 2 large blue rubber cylinder, 3 small gray metal cube; left of 3 are 0, 1, 2;
right of 0 are 1, 2, 3.
"""

import math

import numpy as np
import pytest
from PIL import Image

from qgmrn.analysis import saliency
from qgmrn.clevr import AmbiguousReferenceError, load_questions, load_scenes
from qgmrn.synth.camera import Camera
from qgmrn.synth.render import render_scene
from qgmrn.synth.scene import sample_scene

from ..clevr._clevr_fixtures import SAMPLES, make_scene, node

# ----------------------------------------------------------------------------- referred_objects


def _gray_cube() -> list[dict]:
    """Nodes 0-3: the unique small gray cube (object 3)."""
    return [
        node("scene"),
        node("filter_color", [0], ["gray"]),
        node("filter_shape", [1], ["cube"]),
        node("unique", [2]),
    ]


def test_unique_then_query_refers_to_that_object():
    program = [
        node("scene"),
        node("filter_size", [0], ["large"]),
        node("filter_shape", [1], ["cube"]),
        node("unique", [2]),
        node("query_color", [3]),
    ]
    assert saliency.referred_objects(program, make_scene()) == {0}


def test_count_refers_to_the_counted_set_and_count_all_to_nothing():
    red = [node("scene"), node("filter_color", [0], ["red"]), node("count", [1])]
    assert saliency.referred_objects(red, make_scene()) == {0, 1}
    everything = [node("scene"), node("count", [0])]  # "How many objects are there?"
    assert saliency.referred_objects(everything, make_scene()) == set()


def test_exist_on_an_empty_set_refers_to_nothing():
    program = [
        node("scene"),
        node("filter_color", [0], ["blue"]),
        node("filter_shape", [1], ["cube"]),
        node("exist", [2]),
    ]
    assert saliency.referred_objects(program, make_scene()) == set()


def test_relate_region_counts_only_through_later_filters():
    # "Is there a red sphere left of the gray cube?": 0, 1, 2 are left of it; only 1 is named
    sphere = [
        *_gray_cube(),
        node("relate", [3], ["left"]),
        node("filter_color", [4], ["red"]),
        node("filter_shape", [5], ["sphere"]),
        node("exist", [6]),
    ]
    assert saliency.referred_objects(sphere, make_scene()) == {1, 3}
    # "How many things are left of the gray cube?": the region names none of its objects
    region = [*_gray_cube(), node("relate", [3], ["left"]), node("count", [4])]
    assert saliency.referred_objects(region, make_scene()) == {3}
    # "What size is the red thing left of the gray cube?" would be ambiguous (0 and 1)
    ambiguous = [
        *_gray_cube(),
        node("relate", [3], ["left"]),
        node("filter_color", [4], ["red"]),
        node("unique", [5]),
        node("query_size", [6]),
    ]
    with pytest.raises(AmbiguousReferenceError):
        saliency.referred_objects(ambiguous, make_scene())


def test_comparisons_refer_to_both_sides():
    more = [
        node("scene"),
        node("filter_color", [0], ["red"]),
        node("count", [1]),
        node("scene"),
        node("filter_color", [3], ["blue"]),
        node("count", [4]),
        node("greater_than", [2, 5]),
    ]
    assert saliency.referred_objects(more, make_scene()) == {0, 1, 2}
    same_colour = [
        node("scene"),
        node("filter_shape", [0], ["sphere"]),
        node("unique", [1]),
        node("scene"),
        node("filter_shape", [3], ["cylinder"]),
        node("unique", [4]),
        node("query_color", [2]),
        node("query_color", [5]),
        node("equal_color", [6, 7]),
    ]
    assert saliency.referred_objects(same_colour, make_scene()) == {1, 2}


def test_same_attribute_and_set_operations():
    # "Are there other things of the same colour as the sphere?": the sphere and the red cube
    same = [
        node("scene"),
        node("filter_shape", [0], ["sphere"]),
        node("unique", [1]),
        node("same_color", [2]),
        node("exist", [3]),
    ]
    assert saliency.referred_objects(same, make_scene()) == {0, 1}
    union = [
        node("scene"),
        node("filter_color", [0], ["blue"]),
        node("scene"),
        node("filter_material", [2], ["metal"]),
        node("union", [1, 3]),
        node("count", [4]),
    ]
    assert saliency.referred_objects(union, make_scene()) == {0, 2, 3}
    # "How many things are left of the gray cube and right of the red cube?": two regions
    both = [
        *_gray_cube(),
        node("relate", [3], ["left"]),
        node("scene"),
        node("filter_color", [5], ["red"]),
        node("filter_shape", [6], ["cube"]),
        node("unique", [7]),
        node("relate", [8], ["right"]),
        node("intersect", [4, 9]),
        node("count", [10]),
    ]
    assert saliency.referred_objects(both, make_scene()) == {0, 3}
    spheres = [*both[:11], node("filter_shape", [10], ["sphere"]), node("count", [11])]
    assert saliency.referred_objects(spheres, make_scene()) == {0, 1, 3}


def test_generator_dialect_and_empty_program():
    program = [
        {"type": "scene", "inputs": [], "side_inputs": []},
        {"type": "filter_material", "inputs": [0], "side_inputs": ["rubber"]},
        {"type": "count", "inputs": [1], "side_inputs": []},
    ]
    assert saliency.referred_objects(program, make_scene()) == {1, 2}
    assert saliency.referred_objects([], make_scene()) == set()


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/clevr-samples not present")
@pytest.mark.parametrize("split", ["train", "val"])
def test_real_clevr_programs(split):
    scenes = load_scenes(SAMPLES / f"CLEVR_{split}_scenes_excerpt.json")
    question = load_questions(SAMPLES / f"CLEVR_{split}_questions_excerpt.json")[0]
    scene = scenes[question["image_index"]]
    got = saliency.referred_objects(question["program"], scene)
    # train 0: "more big green things than large purple shiny cubes?": the one big green thing
    # (no large purple metal cube); val 0: "other things of the same shape as the big metallic
    # object?" (answer no): that object alone
    assert got == {"train": {1}, "val": {3}}[split]


# ----------------------------------------------------------------------------- object masks


def _scene(seed: int, camera: Camera, width: int, height: int) -> dict:
    rng = np.random.default_rng(seed)
    return sample_scene(
        rng, min_objects=3, max_objects=5, camera=camera, width=width, height=height
    )


def test_object_masks_equal_the_renderers_id_buffer():
    camera = Camera.close()
    scene = _scene(3, camera, 48, 32)
    _, ids = render_scene(scene, camera, 48, 32)
    masks = saliency.object_masks(scene, camera, 32, 48, render_size=(48, 32))
    assert masks.dtype == np.int16 and masks.shape == (32, 48)
    np.testing.assert_array_equal(masks, ids)
    assert set(np.unique(masks)) == {-1, *range(len(scene["objects"]))}
    # a smaller image of the same aspect ratio is rendered at that size, not resampled
    _, small = render_scene(scene, camera, 24, 16)
    np.testing.assert_array_equal(saliency.object_masks(scene, camera, 16, 24), small)


def test_object_masks_follow_a_stretched_cache():
    camera = Camera.close()
    scene = _scene(5, camera, 96, 64)
    _, native = render_scene(scene, camera, 96, 64)
    square = saliency.object_masks(scene, camera, 64, 64, render_size=(96, 64))
    assert square.shape == (64, 64)
    # stretching keeps each object's share of the area (up to the edge pixels)
    for i in range(len(scene["objects"])):
        assert abs((square == i).mean() - (native == i).mean()) < 0.01


def test_scenes_camera_rebuilds_the_generated_camera(mini_clevr_dir, mini_clevr_settings):
    path = mini_clevr_dir / "scenes" / "CLEVR_val_scenes.json"
    camera, size = saliency.scenes_camera(path)
    assert size == tuple(mini_clevr_settings["render_size"])
    assert camera == Camera.close()
    scene = load_scenes(path)[0]
    w, h = size
    rgb, ids = render_scene(scene, camera, w, h)
    png = np.asarray(Image.open(mini_clevr_dir / "images" / "val" / scene["image_filename"]))
    np.testing.assert_array_equal(rgb, png[..., :3])  # the very camera the images were made with
    np.testing.assert_array_equal(saliency.object_masks(scene, camera, h, w), ids)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/clevr-samples not present")
def test_real_clevr_has_no_camera():
    path = SAMPLES / "CLEVR_val_scenes_excerpt.json"
    with pytest.raises(ValueError, match="CLEVR_val_scenes_excerpt.json.*generated data set"):
        saliency.scenes_camera(path)


# ----------------------------------------------------------------------------- saliency mass

MASKS = np.array(
    [
        [-1, -1, 0, 0],
        [-1, 1, 1, -1],
        [2, 2, -1, -1],
        [-1, -1, -1, -1],
    ],
    dtype=np.int16,
)  # 16 pixels: object 0 two, object 1 two, object 2 two, ground ten


def test_saliency_mass_on_synthetic_maps():
    on_referred = np.isin(MASKS, [0, 1]).astype(float)  # 1 exactly on the referred pixels
    uniform = np.full(MASKS.shape, 0.3)
    rng = np.random.default_rng(0)
    noise = rng.random(MASKS.shape)
    maps = np.stack([on_referred, uniform, noise])
    mass = saliency.saliency_mass(maps, MASKS, [{0, 1}, {0, 1}, set()])
    assert mass["on_referred"][0] == 1.0 and mass["on_objects"][0] == 1.0
    assert mass["referred_of_objects"][0] == 1.0
    assert mass["chance"].tolist()[:2] == [4 / 16, 4 / 16]
    assert mass["on_referred"][1] == pytest.approx(4 / 16)  # a uniform map gives chance
    assert mass["on_objects"][1] == pytest.approx(6 / 16) == mass["objects_chance"][1]
    assert mass["referred_of_objects"][1] == pytest.approx(4 / 6)
    assert mass["referred_of_objects_chance"][1] == pytest.approx(4 / 6)
    assert mass["referred"].tolist() == [2, 2, 0]
    assert math.isnan(mass["on_referred"][2]) and math.isnan(mass["chance"][2])
    assert mass["on_objects"][2] == pytest.approx(noise[MASKS >= 0].sum() / noise.sum())


def test_saliency_mass_nan_for_invisible_referents_and_checks_shapes():
    mass = saliency.saliency_mass(np.ones((1, 4, 4)), MASKS, [{7}])  # object 7 has no pixel
    assert math.isnan(mass["on_referred"][0])
    with pytest.raises(ValueError, match="do not match"):
        saliency.saliency_mass(np.ones((2, 4, 4)), MASKS, [{0}])
    with pytest.raises(ValueError, match="do not match"):
        saliency.saliency_mass(np.ones((1, 3, 4)), MASKS, [{0}])


def test_caption_states_the_numbers_and_the_verdicts():
    focused = np.isin(MASKS, [2]).astype(float)
    maps = np.stack([focused, focused, np.ones((4, 4))])
    mass = saliency.saliency_mass(maps, MASKS, [{2}, {2}, set()])
    text = saliency.saliency_mass_caption(mass, correct=[True, False, True])
    assert "Over 2 questions (1 left out" in text
    assert "100.0% of its mass" in text and "12.5%" in text and "8.00 times chance" in text
    assert "2 of 3 questions correctly" in text
    assert "does concentrate on the referred objects (test: more than 1.5 times chance)" in text
    assert "does single them out among the objects (test: more than 1.2 times" in text
    assert "3.00 times their share" in text  # all object mass on 2 of the 6 object pixels
    flat = saliency.saliency_mass(np.ones((2, 4, 4)), MASKS, [{2}, {0, 1}])
    assert "does not concentrate" in saliency.saliency_mass_caption(flat)
    assert "does not single them out" in saliency.saliency_mass_caption(flat)
    none = saliency.saliency_mass(np.ones((1, 4, 4)), MASKS, [set()])
    assert "not measured" in saliency.saliency_mass_caption(none)


def test_caption_tells_objects_in_general_from_the_referred_ones():
    """A map on every object (not only the referred one) passes the first test, not the second."""
    on_objects = (MASKS >= 0).astype(float)
    mass = saliency.saliency_mass(on_objects[None], MASKS, [{2}])
    text = saliency.saliency_mass_caption(mass)
    assert "does concentrate" in text and "does not single them out" in text
    assert "objects drawing saliency in general, not from the question" in text
