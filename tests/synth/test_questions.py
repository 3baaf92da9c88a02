"""Question families and their instantiation (qgmrn.synth.families / qgmrn.synth.questions)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from qgmrn.clevr import (
    ANSWERS,
    ATTRIBUTE_VALUES,
    SUBTYPE_TO_TYPE,
    SUBTYPES,
    compute_relationships,
    execute_program,
    execute_program_trace,
)
from qgmrn.synth import questions as qmod
from qgmrn.synth.families import FAMILIES, GROUPS, families_by_group
from qgmrn.synth.questions import (
    CLEVR_TYPE_MIX,
    allot_types,
    generate_questions,
    instantiate,
    render_text,
)


def random_scene(rng: np.random.Generator, n: int) -> dict:
    """A hand-made scene: random attributes, x, y uniform in (-3, 3), real relationships."""
    objects = []
    for _ in range(n):
        obj = {a: str(v[rng.integers(len(v))]) for a, v in ATTRIBUTE_VALUES.items()}
        x, y = rng.uniform(-3, 3, size=2)
        obj.update(
            {"3d_coords": [float(x), float(y), 0.35], "pixel_coords": [0, 0, 0.0], "rotation": 0.0}
        )
        objects.append(obj)
    return {"objects": objects, "relationships": compute_relationships(objects)}


def random_scenes(count: int, seed: int = 0, lo: int = 3, hi: int = 10) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [random_scene(rng, int(rng.integers(lo, hi + 1))) for _ in range(count)]


@pytest.fixture(scope="module")
def sample() -> list[tuple[dict, dict]]:
    """(scene, question) pairs: 150 hand-made scenes, 12 questions each."""
    rng = np.random.default_rng(1)
    return [
        (scene, q)
        for scene in random_scenes(150, seed=1)
        for q in generate_questions(scene, rng, 12)
    ]


def test_family_table_matches_real_clevr_counts():
    """90 families; per group and per type as the real generator (CLEVR.md)."""
    assert len(FAMILIES) == 90
    assert [f.index for f in FAMILIES] == list(range(90))
    want_groups = dict(
        zero_hop=6,
        one_hop=6,
        two_hop=6,
        three_hop=6,
        single_and=5,
        single_or=8,
        same_relate=28,
        comparison=16,
        compare_integer=9,
    )
    assert {g: len(fs) for g, fs in families_by_group().items()} == want_groups
    assert tuple(want_groups) == GROUPS
    by_type = Counter(SUBTYPE_TO_TYPE[f.subtype] for f in FAMILIES)
    assert by_type == dict(
        query_attribute=32, count=21, compare_attribute=16, exist=12, compare_numbers=9
    )
    assert {f.subtype for f in FAMILIES} == set(SUBTYPES)
    assert all(len(f.texts) >= 3 for f in FAMILIES)


def test_every_answer_is_rederived_by_the_executor(sample):
    """The stored answer is what qgmrn.clevr.execute_program computes on the scene."""
    assert len(sample) > 1500
    for scene, q in sample:
        assert q["answer"] in ANSWERS
        assert execute_program(q["program"], scene) == q["answer"]


def test_programs_are_in_the_released_dialect(sample):
    for _, q in sample:
        assert set(q) == {"question_family_index", "question", "answer", "program"}
        for k, node in enumerate(q["program"]):
            assert set(node) == {"function", "inputs", "value_inputs"}
            assert all(0 <= i < k for i in node["inputs"])
        assert q["program"][-1]["function"] == FAMILIES[q["question_family_index"]].subtype
        assert "<" not in q["question"] and "  " not in q["question"]
        assert q["question"][0].isupper() and q["question"].endswith("?")


def test_all_subtypes_and_most_families_appear_in_a_sample(sample):
    assert {q["program"][-1]["function"] for _, q in sample} == set(SUBTYPES)
    assert len({q["question_family_index"] for _, q in sample}) >= 85


def test_every_family_can_be_instantiated():
    """Each of the 90 families yields a correct question on some small set of scenes."""
    rng = np.random.default_rng(2)
    scenes = random_scenes(40, seed=2, lo=6, hi=10)
    for family in FAMILIES:
        q = next(
            (
                q
                for scene in scenes
                for _ in range(5)
                if (q := instantiate(family, scene, rng)) is not None
            ),
            None,
        )
        assert q is not None, family.name
        assert q["question_family_index"] == family.index


def test_references_are_unique_and_distinct(sample):
    """Every `unique` meets one object (no AmbiguousReferenceError) and no object is named
    twice in one question (the real generator's OUT_NEQ constraint)."""
    for scene, q in sample:
        trace = execute_program_trace(q["program"], scene)
        objs = [
            v for node, v in zip(q["program"], trace, strict=True) if node["function"] == "unique"
        ]
        assert len(objs) == len(set(objs)), q["question"]


def test_query_never_names_the_attribute_it_asks_for(sample):
    """NULL constraint: "What color is the red cube?" is never asked."""
    for _, q in sample:
        last = q["program"][-1]["function"]
        if not last.startswith("query_"):
            continue
        attr = last[len("query_") :]
        node = q["program"][q["program"][-1]["inputs"][0]]  # unique
        i = node["inputs"][0]
        while q["program"][i]["function"].startswith("filter_"):
            assert q["program"][i]["function"] != f"filter_{attr}", q["question"]
            i = q["program"][i]["inputs"][0]


def test_ambiguous_references_are_rejected(monkeypatch):
    """A referring expression that fits two objects is never emitted."""
    twin = {
        "size": "large",
        "color": "red",
        "material": "metal",
        "shape": "cube",
        "pixel_coords": [0, 0, 0.0],
        "rotation": 0.0,
    }
    objects = [
        dict(twin, **{"3d_coords": [-2.0, 0.0, 0.7]}),
        dict(twin, **{"3d_coords": [2.0, 0.0, 0.7]}),
        dict(twin, color="blue", **{"3d_coords": [0.0, 2.0, 0.7]}),
    ]
    scene = {"objects": objects, "relationships": compute_relationships(objects)}
    rng = np.random.default_rng(0)
    zero_hop_color = FAMILIES[3]
    assert zero_hop_color.name == "zero_hop.query_color"
    for _ in range(50):
        q = instantiate(zero_hop_color, scene, rng)
        if q is not None:  # only the blue cube can be asked about
            assert execute_program(q["program"], scene) == "blue"
    # force an ambiguous choice: the guide must reject it before any question is produced
    monkeypatch.setattr(qmod, "_pick_unique", lambda objects, ids, allowed, rng: {})
    assert all(instantiate(zero_hop_color, scene, rng) is None for _ in range(20))


@pytest.mark.parametrize("k", [1, 4, 10, 12])
def test_allot_types_follows_the_mix_in_expectation_and_per_scene(k):
    """Each scene gets floor(k * share) or one more of each type; over many scenes the shares
    are CLEVR's within three standard errors of a multinomial draw (far less for k > 1)."""
    rng = np.random.default_rng(0)
    total = Counter()
    for _ in range(2000):
        types = allot_types(k, CLEVR_TYPE_MIX, rng)
        assert len(types) == k
        c = Counter(types)
        for t, share in CLEVR_TYPE_MIX.items():
            assert int(k * share / 1.001) <= c[t] <= int(k * share / 1.001) + 1, (t, c)
        total.update(c)
    n = sum(total.values())
    for t, share in CLEVR_TYPE_MIX.items():
        assert abs(total[t] / n - share / 1.001) < 3 * np.sqrt(0.25 / n), (t, total[t] / n)


def test_every_sample_has_the_clevr_type_mix(sample):
    """Scenes of 3-10 objects, 12 questions each: every type within 1.5 points of CLEVR's."""
    c = Counter(SUBTYPE_TO_TYPE[q["program"][-1]["function"]] for _, q in sample)
    n = sum(c.values())
    for t, share in CLEVR_TYPE_MIX.items():
        assert abs(c[t] / n - share) < 0.015, (t, c[t] / n, share)


def test_counts_are_balanced_towards_a_flat_answer_distribution(sample):
    """No count answer takes more than 40% of the count questions (a flat target over 0..6)."""
    c = Counter(q["answer"] for _, q in sample if q["program"][-1]["function"] == "count")
    assert max(c.values()) / sum(c.values()) < 0.4, c
    assert {"0", "1", "2", "3", "4"} <= set(c)


def test_balancing_evens_out_yes_no(sample):
    """Within the yes/no families answers stay within a factor 2 of each other."""
    for qtype in ("exist", "compare_attribute", "compare_numbers"):
        c = Counter(
            q["answer"] for _, q in sample if SUBTYPE_TO_TYPE[q["program"][-1]["function"]] == qtype
        )
        assert max(c.values()) <= 2 * min(c.values()), (qtype, c)


def test_generation_is_deterministic():
    scene = random_scenes(1, seed=5)[0]
    a = generate_questions(scene, np.random.default_rng(3), 10)
    b = generate_questions(scene, np.random.default_rng(3), 10)
    assert a == b and len(a) == 10
    assert len({q["question_family_index"] for q in a}) == 10  # one question per family


def test_too_many_questions_per_scene_is_an_error():
    with pytest.raises(ValueError, match="at most 90"):
        generate_questions(random_scenes(1)[0], np.random.default_rng(0), 91)


def test_render_text_synonyms_and_articles():
    rng = np.random.default_rng(0)
    slots = {"Z": "large", "C": None, "M": "metal", "S": None}
    seen = {render_text("Is there a <Z> <C> <M> <S>?", slots, rng) for _ in range(60)}
    assert "Is there a large metal thing?" in seen and "Is there a big shiny object?" in seen
    assert render_text("Is there a <M> <S>?", {"M": "rubber", "S": "sphere"}, rng) in {
        "Is there a rubber sphere?",
        "Is there a matte ball?",
        "Is there a rubber ball?",
        "Is there a matte sphere?",
    }
    assert render_text("Is there a <C> <S>?", {"C": None, "S": None}, rng) in {
        "Is there a thing?",
        "Is there an object?",
    }
