"""Question, scene and CLEVR-Humans files: round trips, the generator dialect, bad input."""

from __future__ import annotations

import copy
import json
import os

import pytest

from qgmrn.clevr import (
    ClevrFormatError,
    execute_program,
    load_humans_questions,
    load_questions,
    load_scenes,
    read_info,
    save_questions,
    save_scenes,
)

from ._clevr_fixtures import SAMPLES, make_scene, node

INFO = {"split": "val", "version": "1.0", "date": "2/14/2017", "license": "CC BY 4.0"}
QFILE = "CLEVR_val_questions.json"
SFILE = "CLEVR_val_scenes.json"


def _questions() -> list[dict]:
    """Two released-dialect questions on make_scene() and one test entry."""
    exist = [
        node("scene"),
        node("filter_size", [0], ["large"]),
        node("filter_material", [1], ["metal"]),
        node("unique", [2]),
        node("same_shape", [3]),
        node("exist", [4]),
    ]
    count = [node("scene"), node("filter_color", [0], ["red"]), node("count", [1])]
    base = {"image_index": 0, "image_filename": "CLEVR_val_000000.png", "split": "val"}
    return [
        dict(base, question_index=0, question_family_index=39, answer="yes", program=exist,
             question="Are there any other things that are the same shape as the big metal thing?"),
        dict(base, question_index=1, question_family_index=6, answer="2", program=count,
             question="How many red things are there?"),
        {"image_index": 0, "image_filename": "CLEVR_test_000000.png", "split": "test",
         "question_index": 2, "question": "What color is the ball?"},
    ]  # fmt: skip


def _write(path, document) -> None:
    path.write_text(json.dumps(document))


def test_round_trip_questions_and_scenes(tmp_path):
    questions, scene = _questions(), make_scene()
    before = copy.deepcopy(questions)
    save_questions(tmp_path / QFILE, questions, INFO)
    save_scenes(tmp_path / SFILE, [scene], INFO)
    assert questions == before  # the writer does not touch the caller's objects
    assert load_questions(tmp_path / QFILE) == questions
    assert load_scenes(tmp_path / SFILE) == [scene]
    assert read_info(tmp_path / QFILE) == INFO == read_info(tmp_path / SFILE)
    assert sorted(os.listdir(tmp_path)) == [QFILE, SFILE]  # no temporary files left
    for q in load_questions(tmp_path / QFILE)[:2]:
        assert execute_program(q["program"], scene) == q["answer"]


def test_written_file_is_the_released_dialect(tmp_path):
    save_questions(tmp_path / QFILE, _questions(), INFO)
    doc = json.loads((tmp_path / QFILE).read_text())
    assert list(doc) == ["info", "questions"]
    assert list(doc["questions"][0])[:4] == [
        "image_index",
        "image_filename",
        "split",
        "question_index",
    ]
    assert "answer" not in doc["questions"][2] and "program" not in doc["questions"][2]


def test_failed_save_keeps_the_old_file(tmp_path):
    """Validation runs before writing: a bad entry leaves the previous file intact."""
    save_questions(tmp_path / QFILE, _questions(), INFO)
    old = (tmp_path / QFILE).read_bytes()
    bad = _questions()
    bad[1]["answer"] = "maybe"
    with pytest.raises(ClevrFormatError, match="question 1: field 'answer'"):
        save_questions(tmp_path / QFILE, bad)
    assert (tmp_path / QFILE).read_bytes() == old and os.listdir(tmp_path) == [QFILE]


def test_generator_dialect_is_normalised(tmp_path):
    """`type`/`side_inputs`, raw answers, per-file families and `_output` become released form."""
    entries = [
        {
            "image_index": 0,
            "image_filename": "CLEVR_new_000000.png",
            "split": "new",
            "question_index": i,
            "question": text,
            "answer": answer,
            "template_filename": template,
            "question_family_index": family,
            "program": [
                {"type": "scene", "inputs": [], "_output": [0, 1, 2, 3]},
                {"type": "filter_size", "inputs": [0], "side_inputs": ["large"]},
                {"type": "filter_color", "inputs": [1], "value_inputs": ["red"], "_output": [0]},
                {"type": last, "inputs": [2], "value_inputs": [], "_output": answer},
            ],
        }
        for i, (text, answer, template, family, last) in enumerate(
            [
                ("How many big red things are there?", 1, "compare_integer.json", 2, "count"),
                ("Are there any big red things?", True, "same_relate.json", 8, "exist"),
            ]
        )
    ]
    _write(tmp_path / "generated.json", {"info": {}, "questions": entries})
    loaded = load_questions(tmp_path / "generated.json")
    assert [q["answer"] for q in loaded] == ["1", "yes"]
    assert [q["question_family_index"] for q in loaded] == [2, 39]  # global, as released
    assert all("template_filename" not in q for q in loaded)
    assert loaded[1]["program"][1:3] == [
        node("filter_size", [0], ["large"]),
        node("filter_color", [1], ["red"]),
    ]
    save_questions(tmp_path / QFILE, entries)
    written = (tmp_path / QFILE).read_text()
    assert '"type"' not in written and '"_output"' not in written
    assert entries[0]["answer"] == 1  # caller's entries untouched
    assert execute_program(loaded[0]["program"], make_scene()) == "1"


def test_humans_questions(tmp_path):
    entries = [
        {"question": "What is the shiny block's colour?", "answer": "red",
         "image_filename": "CLEVR_val_000000.png", "image_index": 0, "extra": 1},
        {"question": "Is anything purple?", "image_filename": "CLEVR_val_000001.png",
         "image_index": 1},
    ]  # fmt: skip
    _write(tmp_path / "CLEVR-Humans-val.json", {"questions": entries})
    assert load_humans_questions(tmp_path / "CLEVR-Humans-val.json") == entries
    entries[1]["answer"] = "violet"
    _write(tmp_path / "CLEVR-Humans-val.json", {"questions": entries})
    with pytest.raises(ClevrFormatError) as info:
        load_humans_questions(tmp_path / "CLEVR-Humans-val.json")
    assert (info.value.index, info.value.field) == (1, "'answer'")


def test_read_info_with_info_last_or_absent(tmp_path):
    (tmp_path / "late.json").write_text(json.dumps({"questions": [], "info": INFO}))
    (tmp_path / "none.json").write_text(json.dumps({"questions": []}))
    assert read_info(tmp_path / "late.json") == INFO
    assert read_info(tmp_path / "none.json") == {}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_real_excerpts_load(split):
    if not SAMPLES.is_dir():
        pytest.skip("shared/clevr-samples not present")
    questions = load_questions(SAMPLES / f"CLEVR_{split}_questions_excerpt.json")
    raw = json.loads((SAMPLES / f"CLEVR_{split}_questions_excerpt.json").read_text())
    assert questions == raw["questions"]
    if split != "test":
        scenes = load_scenes(SAMPLES / f"CLEVR_{split}_scenes_excerpt.json")
        assert read_info(SAMPLES / f"CLEVR_{split}_scenes_excerpt.json")["version"] == "1.0"
        assert execute_program(questions[0]["program"], scenes[0]) == questions[0]["answer"]


# ----------------------------------------------------------------------------- bad input


def _set(path: tuple, value):
    """A corruption of question 1 (or scene 0): set the value at `path` (None: delete)."""

    def corrupt(entry: dict) -> None:
        *parents, last = path
        target = entry
        for key in parents:
            target = target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value

    return corrupt


# name -> (corruption of question 1, expected field, words in the problem)
BAD_QUESTIONS = {
    "missing key": (_set(("question",), None), "'question'", "missing"),
    "wrong type": (_set(("image_index",), "0"), "'image_index'", "expected an integer"),
    "input after node": (
        _set(("program", 2, "inputs"), [5]),
        "'program'[2].inputs",
        "input 5 is not before node 2",
    ),
    "input is itself": (
        _set(("program", 1, "inputs"), [1]),
        "'program'[1].inputs",
        "input 1 is not before node 1",
    ),
    "negative input": (
        _set(("program", 1, "inputs"), [-1]),
        "'program'[1].inputs",
        "not a node index",
    ),
    "wrong input kind": (
        _set(("program", 2, "function"), "query_color"),
        "'program'[2].inputs",
        "input 1 gives a set, query_color needs an object",
    ),
    "unknown function": (
        _set(("program", 1, "function"), "filter_texture"),
        "'program'[1].function",
        "unknown function 'filter_texture'",
    ),
    "missing value_inputs": (
        _set(("program", 0, "value_inputs"), None),
        "'program'[0].value_inputs",
        "missing",
    ),
    "unknown filter value": (
        _set(("program", 1, "value_inputs"), ["pink"]),
        "'program'[1].value_inputs",
        "filter_color needs one of gray, red",
    ),
    "image path": (
        _set(("image_filename",), "images/CLEVR_val_000000.png"),
        "'image_filename'",
        "not a plain file name",
    ),
    "image parent": (
        _set(("image_filename",), "../CLEVR_val_000000.png"),
        "'image_filename'",
        "not a plain file name",
    ),
    "image dotdot": (_set(("image_filename",), ".."), "'image_filename'", "not a plain file"),
    "unknown answer": (_set(("answer",), "maybe"), "'answer'", "not one of the 28 CLEVR answers"),
    "answer 11": (_set(("answer",), 11), "'answer'", "not one of the 28 CLEVR answers"),
    "program ends in a set": (
        lambda q: q["program"].pop(),
        "'program'[1].function",
        "ends in filter_color, whose value (a set) is no answer",
    ),
}


@pytest.mark.parametrize("name", BAD_QUESTIONS)
def test_bad_question_entry_names_file_entry_and_field(tmp_path, name):
    corrupt, field, problem = BAD_QUESTIONS[name]
    questions = _questions()
    corrupt(questions[1])
    _write(tmp_path / QFILE, {"info": INFO, "questions": questions})
    with pytest.raises(ClevrFormatError) as info:
        load_questions(tmp_path / QFILE)
    error = info.value
    assert (error.index, error.field) == (1, field)
    assert problem in error.problem
    message = str(error)
    assert f"{QFILE}: question 1: field {field}: " in message and problem in message


def test_message_format_matches_the_example(tmp_path):
    """The documented example: file, entry, field and problem, joined by ': '."""
    questions = _questions()
    questions[1]["program"][2]["inputs"] = [5]
    _write(tmp_path / QFILE, {"questions": questions})
    with pytest.raises(ClevrFormatError) as info:
        load_questions(tmp_path / QFILE)
    assert str(info.value) == (
        f"{tmp_path / QFILE}: question 1: field 'program'[2].inputs: input 5 is not before node 2"
    )
    assert info.value.path == str(tmp_path / QFILE)


BAD_SCENES = {
    "unknown colour": (
        _set(("objects", 1, "color"), "pink"),
        "'objects'[1].color",
        "'pink' is not one of gray, red, blue",
    ),
    "missing shape": (_set(("objects", 0, "shape"), None), "'objects'[0].shape", "missing"),
    "short 3d_coords": (
        _set(("objects", 2, "3d_coords"), [0.0, 1.0]),
        "'objects'[2].3d_coords",
        "expected a list of 3 numbers",
    ),
    "pixel_coords text": (
        _set(("objects", 2, "pixel_coords"), ["1", 2, 3]),
        "'objects'[2].pixel_coords",
        "expected a list of 3 numbers",
    ),
    "relationships length": (
        _set(("relationships", "left"), [[]]),
        "'relationships'.left",
        "expected one list per object (4)",
    ),
    "relationship index": (
        _set(("relationships", "front", 0), [7]),
        "'relationships'.front[0]",
        "7 is not another object's index",
    ),
    "image parent": (
        _set(("image_filename",), "../x.png"),
        "'image_filename'",
        "not a plain file name",
    ),
}


@pytest.mark.parametrize("name", BAD_SCENES)
def test_bad_scene_entry_names_file_entry_and_field(tmp_path, name):
    corrupt, field, problem = BAD_SCENES[name]
    scenes = [make_scene(), make_scene()]
    corrupt(scenes[1])
    _write(tmp_path / SFILE, {"info": INFO, "scenes": scenes})
    with pytest.raises(ClevrFormatError) as info:
        load_scenes(tmp_path / SFILE)
    assert f"{SFILE}: scene 1: field {field}: " in str(info.value)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "is it truncated?"),  # the valid file cut in half
        (b'{"questions": [{"question": "Is it re', "ends inside a string that starts at line 1"),
        (b'{"questions": [{"question": "Is it red?", ', "ends early at line 1, column 43"),
        (b"hello, world", "not valid JSON at line 1, column 1: Expecting value"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
        (b"", "the file is empty"),
        (b"[1, 2]", "expected a JSON object with a 'questions' list at the top, found a list"),
        (b'{"info": {}, "scenes": []}', "no 'questions' list at the top"),
        (b'{"questions": {"0": {}}}', "field 'questions': expected a list, found an object"),
        (b'{"questions": [3]}', "question 0: expected an object, found a number"),
    ],
    ids=[
        "truncated",
        "truncated-string",
        "truncated-between",
        "not-json",
        "binary",
        "empty",
        "top-list",
        "scene-file",
        "not-list",
        "entry",
    ],
)
def test_unreadable_files_raise_format_errors(tmp_path, content, words):
    path = tmp_path / QFILE
    if content is None:
        _write(path, {"info": INFO, "questions": _questions()})
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(ClevrFormatError) as info:
        load_questions(path)
    assert str(info.value).startswith(str(path) + ": ") and words in str(info.value)
