"""The program executor: all 26 functions on a hand-made scene, errors, purity, real excerpts."""

from __future__ import annotations

import copy
import json

import pytest

from qgmrn.clevr import (
    FUNCTIONS,
    AmbiguousReferenceError,
    ProgramError,
    execute_program,
    execute_program_trace,
)

from ._clevr_fixtures import SAMPLES, make_scene, node


def _ref(**attrs: str) -> list[dict]:
    """scene -> filter_<attr>[value]... -> unique: a reference to one object."""
    program = [node("scene")]
    for attr, value in attrs.items():
        program.append(node(f"filter_{attr}", [len(program) - 1], [value]))
    return program + [node("unique", [len(program) - 1])]


def _filtered(attr: str, value: str) -> list[dict]:
    return [node("scene"), node(f"filter_{attr}", [0], [value])]


def _count(attr: str, value: str) -> list[dict]:
    return _filtered(attr, value) + [node("count", [1])]


def _then(prefix: list[dict], function: str, values=()) -> list[dict]:
    """Append one unary node reading the last node of `prefix`."""
    return prefix + [node(function, [len(prefix) - 1], values)]


def _pair(left: list[dict], right: list[dict], function: str) -> list[dict]:
    """Join two sub-programs with a binary function, as the released programs do."""
    shifted = [dict(n, inputs=[i + len(left) for i in n["inputs"]]) for n in right]
    return left + shifted + [node(function, [len(left) - 1, len(left) + len(right) - 1])]


def _query_pair(attr: str, a: dict, b: dict) -> list[dict]:
    return _pair(
        _then(_ref(**a), f"query_{attr}"), _then(_ref(**b), f"query_{attr}"), f"equal_{attr}"
    )


BLUE = {"color": "blue"}  # 2: large blue rubber cylinder
SPHERE = {"shape": "sphere"}  # 1: small red rubber sphere
GRAY = {"color": "gray"}  # 3: small gray metal cube
RED_CUBE = {"color": "red", "shape": "cube"}  # 0: large red metal cube

# function -> (program ending in it, value of its last node) on make_scene().
CASES = {
    "scene": ([node("scene")], [0, 1, 2, 3]),
    "filter_size": (_filtered("size", "large"), [0, 2]),
    "filter_color": (_filtered("color", "red"), [0, 1]),
    "filter_material": (_filtered("material", "rubber"), [1, 2]),
    "filter_shape": (_filtered("shape", "cube"), [0, 3]),
    "unique": (_ref(**BLUE), 2),
    # Object 0 is the only one whose offset from 2, on the camera's left vector, exceeds 0.2.
    "relate": (_then(_ref(**BLUE), "relate", ["left"]), [0]),
    "union": (_pair(_filtered("color", "gray"), _filtered("shape", "sphere"), "union"), [1, 3]),
    "intersect": (_pair(_filtered("color", "red"), _filtered("size", "small"), "intersect"), [1]),
    "count": (_count("color", "red"), 2),
    "exist": (_then(_filtered("color", "yellow"), "exist"), False),
    "query_size": (_then(_ref(**BLUE), "query_size"), "large"),
    "query_color": (_then(_ref(**SPHERE), "query_color"), "red"),
    "query_material": (_then(_ref(**BLUE), "query_material"), "rubber"),
    "query_shape": (_then(_ref(**BLUE), "query_shape"), "cylinder"),
    # same_* lists every OTHER object sharing the value: never the object itself.
    "same_size": (_then(_ref(**BLUE), "same_size"), [0]),
    "same_color": (_then(_ref(**SPHERE), "same_color"), [0]),
    "same_material": (_then(_ref(**BLUE), "same_material"), [1]),
    "same_shape": (_then(_ref(**GRAY), "same_shape"), [0]),
    "equal_size": (_query_pair("size", BLUE, GRAY), False),
    "equal_color": (_query_pair("color", SPHERE, RED_CUBE), True),
    "equal_material": (_query_pair("material", GRAY, SPHERE), False),
    "equal_shape": (_query_pair("shape", GRAY, RED_CUBE), True),
    "equal_integer": (
        _pair(_count("color", "red"), _count("shape", "cube"), "equal_integer"),
        True,
    ),
    "less_than": (_pair(_count("color", "blue"), _count("color", "red"), "less_than"), True),
    "greater_than": (_pair(_count("color", "blue"), _count("color", "red"), "greater_than"), False),
}


def test_cases_cover_all_26_functions():
    assert sorted(CASES) == sorted(FUNCTIONS) and len(FUNCTIONS) == 26


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_semantics(function):
    """Each function's value on the hand-made scene (CLEVR.md's table)."""
    program, expected = CASES[function]
    assert program[-1]["function"] == function
    value = execute_program_trace(program, make_scene())[-1]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("function", "answer"),
    [("count", "2"), ("exist", "no"), ("query_shape", "cylinder"), ("equal_color", "yes")],
)
def test_answers_are_released_strings(function, answer):
    """Booleans become yes/no, integers decimal strings, attributes stay as they are."""
    assert execute_program(CASES[function][0], make_scene()) == answer


def test_filter_keeps_input_order_and_union_sorts():
    scene = make_scene()
    scene["relationships"]["right"][0] = [3, 1]  # stored order, deliberately unsorted
    relate = _then(_ref(**RED_CUBE), "relate", ["right"])
    assert execute_program_trace(_then(relate, "filter_size", ["small"]), scene)[-1] == [3, 1]
    union = _pair(relate, _filtered("color", "blue"), "union")
    assert execute_program_trace(union, scene)[-1] == [1, 2, 3]


def test_relate_reads_the_scene_relationships():
    """relate uses scene["relationships"] as stored, not a recomputation from coordinates."""
    scene = make_scene()
    scene["relationships"]["behind"][2] = [1, 3]
    assert execute_program_trace(_then(_ref(**BLUE), "relate", ["behind"]), scene)[-1] == [1, 3]


@pytest.mark.parametrize("colour", ["red", "yellow"])
def test_unique_on_a_non_singleton_is_ambiguous(colour):
    """unique on 2 objects (red) or none (yellow) raises AmbiguousReferenceError."""
    with pytest.raises(AmbiguousReferenceError):
        execute_program(_then(_ref(color=colour), "query_shape"), make_scene())
    assert issubclass(AmbiguousReferenceError, ProgramError)


@pytest.mark.parametrize(
    "program",
    [
        [],
        [node("scene"), node("filter_texture", [0], ["soft"]), node("count", [1])],
        [node("scene"), node("count", [1])],  # input not before its node
        [node("scene"), node("query_color", [0])],  # a set where an object is needed
        [node("scene"), node("filter_color", [0], ["pink"]), node("count", [1])],
        [node("scene"), node("relate", [0], ["above"])],
        _filtered("color", "red"),  # ends in a set: no answer
    ],
    ids=["empty", "unknown", "forward", "kind", "value", "relation", "no-answer"],
)
def test_bad_programs_raise_program_error(program):
    with pytest.raises(ProgramError) as info:
        execute_program(program, make_scene())
    assert not isinstance(info.value, AmbiguousReferenceError)


def test_executor_is_pure():
    """No program or scene is modified, and trace values share no list with the scene."""
    scene = make_scene()
    scene_before = copy.deepcopy(scene)
    for function, (program, expected) in CASES.items():
        before = copy.deepcopy(program)
        trace = execute_program_trace(program, scene)
        if function != "unique" and not isinstance(expected, list):  # programs with an answer
            execute_program(program, scene)
        for value in trace:
            if isinstance(value, list):
                value.append(99)  # a caller scribbling on the trace
        assert program == before
    assert scene == scene_before


def test_generator_dialect_nodes_execute():
    """`type` / `side_inputs` nodes of the public generator run too."""
    program = [
        {"type": "scene", "inputs": []},
        {"type": "filter_color", "inputs": [0], "side_inputs": ["red"], "_output": [0, 1]},
        {"type": "count", "inputs": [1]},
    ]
    assert execute_program(program, make_scene()) == "2"


@pytest.mark.parametrize(("split", "answer"), [("train", "yes"), ("val", "no")])
def test_real_excerpt_question_zero(split, answer):
    """Real question 0 of train/val evaluates to its released answer on real scene 0."""
    if not SAMPLES.is_dir():
        pytest.skip("shared/clevr-samples not present")
    question = json.loads((SAMPLES / f"CLEVR_{split}_questions_excerpt.json").read_text())
    scenes = json.loads((SAMPLES / f"CLEVR_{split}_scenes_excerpt.json").read_text())
    entry = question["questions"][0]
    assert entry["answer"] == answer
    assert execute_program(entry["program"], scenes["scenes"][entry["image_index"]]) == answer
