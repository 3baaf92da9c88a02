"""compute_relationships reproduces the relationships stored in the real CLEVR scenes."""

from __future__ import annotations

import json

import pytest

from qgmrn.clevr import DIRECTIONS, RELATIONS, compute_relationships

from ._clevr_fixtures import SAMPLES


def _real_scenes() -> list[dict]:
    if not SAMPLES.is_dir():
        pytest.skip("shared/clevr-samples not present")
    scenes = []
    for split in ("train", "val"):
        doc = json.loads((SAMPLES / f"CLEVR_{split}_scenes_excerpt.json").read_text())
        scenes.extend(doc["scenes"])
    return scenes


def test_matches_stored_relationships_of_every_excerpt_scene():
    """Both with the scene's own directions and with the DIRECTIONS constant (same camera)."""
    scenes = _real_scenes()
    assert len(scenes) == 6
    for scene in scenes:
        stored = {rel: scene["relationships"][rel] for rel in RELATIONS}
        assert compute_relationships(scene["objects"], scene["directions"]) == stored
        assert compute_relationships(scene["objects"]) == stored


def test_directions_constant_is_the_real_camera():
    for scene in _real_scenes():
        assert {k: list(v) for k, v in DIRECTIONS.items()} == scene["directions"]


def test_eps_and_self_exclusion():
    """j is right of i only when the projected offset exceeds eps; never i of itself."""
    objects = [{"3d_coords": [0.0, 0.0, 0.35]}, {"3d_coords": [0.3, 0.0, 0.35]}]
    directions = {"right": (1, 0, 0), "left": (-1, 0, 0), "front": (0, -1, 0), "behind": (0, 1, 0)}
    rels = compute_relationships(objects, directions)
    assert rels == {"left": [[], [0]], "right": [[1], []], "front": [[], []], "behind": [[], []]}
    assert compute_relationships(objects, directions, eps=0.5)["right"] == [[], []]
