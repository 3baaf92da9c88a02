"""Property-based tests of the CLEVR readers: corrupted files are read right or refused
with a ClevrFormatError that names the file, the entry and the field.

Real excerpts (shared/clevr-samples) and generated files (mini-CLEVR questions, random scenes, the
public generator's dialect) are corrupted at random: keys deleted, values retyped, lists shuffled,
program inputs rewired, numbers made NaN, infinite or huge, raw text that is not JSON spliced in,
bytes cut, flipped or inserted. Every read is compared with an oracle written here from the format
(CLEVR.md and the readers' documented rules): a file the oracle accepts must read to exactly the
oracle's (normalised) entries; any other file must raise `ClevrFormatError`, at the first bad
entry, with a field the oracle also finds wrong; no other exception may escape. An exhaustive
sweep adds every single fault (each field deleted, repeated or given each kind of wrong value),
which random search meets too rarely to rely on.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import currently_in_test_context, event, given, note
from hypothesis import strategies as st

from qgmrn.clevr import (
    ANSWERS,
    ATTRIBUTE_VALUES,
    RELATIONS,
    AmbiguousReferenceError,
    ClevrFormatError,
    ProgramError,
    execute_program,
    load_humans_questions,
    load_questions,
    load_scenes,
    read_info,
    save_questions,
    save_scenes,
)

from ._clevr_fixtures import SAMPLES, make_scene
from ._fuzz import (
    ATTRS,
    FLOAT_MAX,
    INDEX_LIMIT,
    NUMBERS,
    SPEC,
    STRUCTURE,
    VALUES,
    corrupt,
    dump,
    fuzz,
    programs,
    scenes,
    single_faults,
)

QFILE = "CLEVR_val_questions.json"
SFILE = "CLEVR_val_scenes.json"
MISSING = object()

# The released numbering of the generator's template files (CLEVR.md): global family index =
# offset of the file + index within it.
TEMPLATE_OFFSETS = {
    "compare_integer.json": 0,
    "comparison.json": 9,
    "one_hop.json": 25,
    "same_relate.json": 31,
    "single_and.json": 59,
    "single_or.json": 64,
    "three_hop.json": 72,
    "two_hop.json": 78,
    "zero_hop.json": 84,
}


# ----------------------------------------------------------------------------- the oracle


def _is_index(value: Any) -> bool:
    return type(value) is int and 0 <= value < INDEX_LIMIT


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and -FLOAT_MAX <= value <= FLOAT_MAX  # False for NaN


def _triple(value: Any) -> bool:
    return type(value) is list and len(value) == 3 and all(map(_finite, value))


def _image_problems(entry: dict) -> set:
    bad = set()
    if not _is_index(entry.get("image_index")):
        bad.add("'image_index'")
    name = entry.get("image_filename")
    if type(name) is not str or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        bad.add("'image_filename'")
    return bad


def _answer(value: Any) -> Any:
    """The released spelling of an answer, or MISSING when it is none of the 28."""
    if type(value) is str:
        return value if value in ANSWERS else MISSING
    if type(value) is bool:
        return "yes" if value else "no"
    if type(value) is int and 0 <= value <= 10:
        return str(value)
    return MISSING


def program_problems(program: Any) -> tuple[set, Any]:
    """(bad fields of the first bad node, or of the program; the released-dialect program)."""
    if type(program) is not list or not program:
        return {"'program'"}, None
    kinds: list[str] = []
    out = []
    for k, node in enumerate(program):
        where = f"'program'[{k}]"
        if type(node) is not dict:
            return {where}, None
        bad = set()
        if "function" in node:
            function = node["function"]
            values = node.get("value_inputs", MISSING)
            if values is MISSING:
                bad.add(f"{where}.value_inputs")
        elif "type" in node:  # the public generator's dialect
            function = node["type"]
            values = node.get("value_inputs", node.get("side_inputs", []))
        else:
            return {f"{where}.function"}, None
        spec = SPEC.get(function) if type(function) is str else None
        if spec is None:
            return bad | {f"{where}.function"}, None
        wanted, vocab, output = spec
        inputs = node.get("inputs")
        if type(inputs) is not list or len(inputs) != len(wanted):
            bad.add(f"{where}.inputs")
        elif not all(
            type(i) is int and 0 <= i < k and kinds[i] == want
            for i, want in zip(inputs, wanted, strict=True)
        ):
            bad.add(f"{where}.inputs")
        if values is not MISSING:
            if type(values) is not list:
                bad.add(f"{where}.value_inputs")
            elif vocab is None and values:
                bad.add(f"{where}.value_inputs")
            elif vocab is not None and (len(values) != 1 or values[0] not in vocab):
                bad.add(f"{where}.value_inputs")
        if bad:
            return bad, None
        kinds.append(output)
        if "function" in node:
            out.append(node)
        else:
            out.append({"function": function, "inputs": inputs, "value_inputs": values})
    if kinds[-1] in ("set", "object"):
        return {f"'program'[{len(program) - 1}].function"}, None
    return set(), out


def question_problems(entry: Any, humans: bool = False) -> tuple[set, Any]:
    """(bad fields of a question entry, {None} when it is no object; its normalised form)."""
    if type(entry) is not dict:
        return {None}, None
    out = dict(entry)
    bad = _image_problems(entry)
    if type(entry.get("question")) is not str:
        bad.add("'question'")
    if not humans:
        if not _is_index(entry.get("question_index")):
            bad.add("'question_index'")
        if "split" in entry and type(entry["split"]) is not str:
            bad.add("'split'")
        if "question_family_index" in entry:
            family, template = entry["question_family_index"], entry.get("template_filename")
            if not _is_index(family):
                bad.add("'question_family_index'")
            elif type(template) is str and os.path.basename(template) in TEMPLATE_OFFSETS:
                out["question_family_index"] = TEMPLATE_OFFSETS[os.path.basename(template)] + family
                del out["template_filename"]
        if "program" in entry:
            program_bad, out["program"] = program_problems(entry["program"])
            bad |= program_bad
    if "answer" in entry:
        out["answer"] = _answer(entry["answer"])
        if out["answer"] is MISSING:
            bad.add("'answer'")
    return bad, out


def scene_problems(scene: Any) -> tuple[set, Any]:
    """(bad fields of a scene entry, {None} when it is no object; the scene)."""
    if type(scene) is not dict:
        return {None}, None
    bad = _image_problems(scene)
    if "split" in scene and type(scene["split"]) is not str:
        bad.add("'split'")
    objects = scene.get("objects")
    if type(objects) is not list:
        bad.add("'objects'")
    else:
        for k, obj in enumerate(objects):
            where = f"'objects'[{k}]"
            if type(obj) is not dict:
                bad.add(where)
                continue
            for attr in ATTRS:
                if obj.get(attr, MISSING) not in ATTRIBUTE_VALUES[attr]:
                    bad.add(f"{where}.{attr}")
            for key in ("3d_coords", "pixel_coords"):
                if not _triple(obj.get(key)):
                    bad.add(f"{where}.{key}")
            if "rotation" in obj and not _finite(obj["rotation"]):
                bad.add(f"{where}.rotation")
    relationships = scene.get("relationships")
    if type(relationships) is not dict:
        bad.add("'relationships'")
    elif type(objects) is list:
        n = len(objects)
        for rel in RELATIONS:
            lists = relationships.get(rel)
            where = f"'relationships'.{rel}"
            if type(lists) is not list or len(lists) != n:
                bad.add(where)
                continue
            for i, related in enumerate(lists):
                if (
                    type(related) is not list
                    or not all(type(j) is int and 0 <= j < n and j != i for j in related)
                    or len(set(related)) != len(related)  # an object listed twice
                ):
                    bad.add(f"{where}[{i}]")
    directions = scene.get("directions", MISSING)
    if directions is not MISSING:
        if type(directions) is not dict:
            bad.add("'directions'")
        else:
            bad |= {f"'directions'.{k}" for k, vector in directions.items() if not _triple(vector)}
    return bad, scene


def oracle(raw: bytes, key: str, entry_problems) -> tuple:
    """("file",) | ("entry", index, bad fields) | ("ok", normalised entries) for a file."""
    try:
        text = raw.decode("utf-8-sig")
        data = json.loads(text)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, an int beyond 4300 digits
        return ("file",)
    if type(data) is not dict or type(data.get(key)) is not list:
        return ("file",)
    if data.get("info") is not None and type(data["info"]) is not dict:
        return ("file",)
    out = []
    for i, entry in enumerate(data[key]):
        bad, normal = entry_problems(entry)
        if bad:
            return ("entry", i, bad)
        out.append(normal)
    return ("ok", out)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _event(name: str) -> None:
    """Count an outcome in hypothesis' statistics (--hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(name)


def check_read(loader, path, raw: bytes, key: str, kind: str, entry_problems) -> list | None:
    """Write `raw` to `path`, read it with `loader`, compare with the oracle.

    Returns the entries read, or None when the file was refused (as it had to be).
    """
    path.write_bytes(raw)
    expected = oracle(raw, key, entry_problems)
    try:
        got = loader(path)
    except ClevrFormatError as err:  # any other exception fails the test
        message = str(err)
        assert err.path == str(path) and err.problem, message
        assert " object at 0x" not in message, message  # no internal sentinel in the words
        assert expected[0] != "ok", f"a valid file was refused: {message}"
        if expected[0] == "file":
            assert err.index is None, (message, expected)
            assert message == f"{path}: " + (f"field {err.field}: " if err.field else "") + (
                err.problem
            )
        else:
            _, index, fields = expected
            assert (err.index, err.entry) == (index, kind), (message, expected)
            assert err.field in fields, (message, fields)
            field = f"field {err.field}: " if err.field is not None else ""
            assert message == f"{path}: {kind} {index}: {field}{err.problem}"
        _event(f"refused ({expected[0]})")
        return None
    assert expected[0] == "ok", f"accepted a wrong value; the oracle finds {expected}"
    assert _canon(got) == _canon(expected[1])
    _event("read")
    return got


# ----------------------------------------------------------------------------- base files


@dataclass(frozen=True)
class Base:
    name: str
    doc: dict
    scene: dict | None = None  # the scene the questions are about


def _real(name: str) -> dict | None:
    path = SAMPLES / name
    return json.loads(path.read_text()) if path.exists() else None


def _generator_dialect(question: dict) -> dict:
    """A released question as the public generator writes it (type/side_inputs/_output nodes,
    raw answers, per-template-file family index)."""
    out = dict(question)
    answer = question["answer"]
    out["answer"] = {"yes": True, "no": False}.get(
        answer, int(answer) if answer.isdigit() else answer
    )
    template, offset = max(
        ((t, o) for t, o in TEMPLATE_OFFSETS.items() if o <= question["question_family_index"]),
        key=lambda item: item[1],
    )
    out["template_filename"] = template
    out["question_family_index"] -= offset
    out["program"] = []
    for k, node in enumerate(question["program"]):
        generated = {"type": node["function"], "inputs": node["inputs"], "_output": k}
        if node["value_inputs"]:
            generated["side_inputs" if k % 2 else "value_inputs"] = node["value_inputs"]
        out["program"].append(generated)
    return out


@cache
def question_bases() -> tuple[Base, ...]:
    """Real question excerpts, and mini-CLEVR questions (released and generator dialect) about
    the real scenes and the hand-made one."""
    from qgmrn.synth.questions import generate_questions

    bases = []
    about = [make_scene()]
    for split in ("train", "val", "test"):
        doc = _real(f"CLEVR_{split}_questions_excerpt.json")
        scenes_doc = _real(f"CLEVR_{split}_scenes_excerpt.json")
        if doc is not None:
            bases.append(Base(f"real {split}", doc, scenes_doc and scenes_doc["scenes"][0]))
        if scenes_doc is not None:
            about += scenes_doc["scenes"]
    for k, scene in enumerate(about):
        questions = generate_questions(scene, np.random.default_rng(k), 5)
        for i, q in enumerate(questions):
            q.update(image_index=scene["image_index"], question_index=i, split="val")
            q["image_filename"] = scene["image_filename"]
        info = {"split": "val", "version": "1.0"}
        bases.append(Base(f"generated {k}", {"info": info, "questions": questions}, scene))
        dialect = [_generator_dialect(q) for q in questions]
        bases.append(Base(f"generator dialect {k}", {"questions": dialect}, scene))
    return tuple(bases)


@cache
def scene_bases() -> tuple[Base, ...]:
    bases = [Base("hand-made", {"info": {}, "scenes": [make_scene(), make_scene()]})]
    for split in ("train", "val"):
        doc = _real(f"CLEVR_{split}_scenes_excerpt.json")
        if doc is not None:
            bases.append(Base(f"real {split}", doc))
    return tuple(bases)


def _within(data, doc: dict, key: str) -> tuple:
    """Where to corrupt: mostly one entry, sometimes the list, the info block or the file."""
    n = len(doc[key])
    return data.draw(st.sampled_from([(), (key,), ("info",)] + [(key, i) for i in range(n)] * 3))


FAMILIES = {"structure": STRUCTURE, "values": VALUES, "numbers": NUMBERS}


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("family", FAMILIES)
@fuzz(50)
@given(data=st.data())
def test_corrupted_question_files_are_read_right_or_refused(scratch, family, data):
    """Structured corruptions of question files; an accepted program runs on its scene."""
    base = data.draw(st.sampled_from(question_bases()), label="base")
    if "info" not in base.doc:
        base = Base(base.name, {"info": {"split": "val"}, **base.doc}, base.scene)
    doc, ops = corrupt(data, base.doc, _within(data, base.doc, "questions"), FAMILIES[family])
    note(f"corruptions: {ops}")
    raw = dump(doc, indent=data.draw(st.sampled_from([None, 1]))).encode()
    path = scratch / QFILE
    got = check_read(load_questions, path, raw, "questions", "question", question_problems)
    _check_read_info(path, raw)
    for q in got or ():
        if "program" in q and base.scene is not None:
            try:  # what the loader accepts, the executor runs (CLEVR.md: same signatures)
                assert execute_program(q["program"], base.scene) in ANSWERS
            except AmbiguousReferenceError:
                pass


@pytest.mark.parametrize("family", FAMILIES)
@fuzz(45)
@given(data=st.data())
def test_corrupted_scene_files_are_read_right_or_refused(scratch, family, data):
    """Structured corruptions of real, hand-made and random scene files."""
    if data.draw(st.booleans(), label="random scenes"):
        scene_list = data.draw(st.lists(scenes(), min_size=1, max_size=3))
        base = Base("random", {"info": {}, "scenes": scene_list})
    else:
        base = data.draw(st.sampled_from(scene_bases()), label="base")
    doc, ops = corrupt(data, base.doc, _within(data, base.doc, "scenes"), FAMILIES[family])
    note(f"corruptions: {ops}")
    raw = dump(doc, indent=data.draw(st.sampled_from([None, 1]))).encode()
    path = scratch / SFILE
    check_read(load_scenes, path, raw, "scenes", "scene", scene_problems)
    _check_read_info(path, raw)


def _sweep_bases() -> list[tuple]:
    """Small files for the single-fault sweep: (loader, key, kind, oracle, document)."""
    questions = [b for b in question_bases() if b.name.startswith(("real val", "generated 0"))]
    questions += [b for b in question_bases() if b.name.startswith("generator dialect 0")]
    out = [
        (load_questions, "questions", "question", question_problems,
         {"info": {"split": "val"}, "questions": b.doc["questions"][:1]})
        for b in questions
    ]  # fmt: skip
    scene = scene_bases()[-1].doc["scenes"][0]  # a real one when the excerpts are there
    out.append((load_scenes, "scenes", "scene", scene_problems, {"info": {}, "scenes": [scene]}))
    return out


def test_every_single_fault_is_read_right_or_refused(scratch):
    """Exhaustive: each field of a real question, a generated one (both dialects) and a scene,
    deleted, repeated or replaced by each kind of wrong value (NaN, -1, 2**63, "", [], {}, a
    5000-digit integer, nesting beyond the recursion limit, ...)."""
    cases = 0
    for loader, key, kind, problems, doc in _sweep_bases():
        path = scratch / f"CLEVR_val_{key}.json"
        for what, bad in single_faults(doc):
            raw = dump(bad).encode()
            try:
                check_read(loader, path, raw, key, kind, problems)
                _check_read_info(path, raw)
            except AssertionError as err:
                raise AssertionError(f"{key}, {what}: {err}") from None
            cases += 1
    assert cases > 500


def _humans_doc(base: Base) -> dict:
    keep = ("question", "image_filename", "image_index", "answer")
    entries = [{k: q[k] for k in keep if k in q} for q in base.doc["questions"]]
    return {"info": {}, "questions": entries}


@fuzz(50)
@given(data=st.data())
def test_corrupted_humans_files_are_read_right_or_refused(scratch, data):
    doc = _humans_doc(data.draw(st.sampled_from(question_bases()), label="base"))
    doc, ops = corrupt(data, doc, _within(data, doc, "questions"))
    note(f"corruptions: {ops}")
    check_read(load_humans_questions, scratch / "CLEVR-Humans-val.json", dump(doc).encode(),
               "questions", "question", lambda e: question_problems(e, humans=True))  # fmt: skip


@fuzz(100)
@given(data=st.data())
def test_rewired_program_inputs_are_refused_unless_well_typed(scratch, data):
    """Program inputs pointing forward, at themselves, out of range or at the wrong kind; nodes
    shuffled, dropped or repeated. A refused program is one the executor refuses too."""
    bases = [b for b in question_bases() if b.scene is not None]
    base = data.draw(st.sampled_from(bases), label="base")
    doc = json.loads(json.dumps(base.doc))
    entry = data.draw(st.integers(0, len(doc["questions"]) - 1))
    program = doc["questions"][entry]["program"]
    n = len(program)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(("inputs", "inputs", "shuffle", "swap", "drop", "repeat")))
        k = data.draw(st.integers(0, len(program) - 1))
        if how == "inputs":
            program[k]["inputs"] = data.draw(st.lists(st.integers(-2, n + 2), max_size=3))
        elif how == "shuffle":
            program[:] = data.draw(st.permutations(program))
        elif how == "swap":
            j = data.draw(st.integers(0, len(program) - 1))
            program[k], program[j] = program[j], program[k]
        elif how == "drop" and len(program) > 1:
            del program[k]
        else:
            program.insert(k, dict(program[k]))
    got = check_read(load_questions, scratch / QFILE, dump(doc).encode(), "questions",
                     "question", question_problems)  # fmt: skip
    bad, _ = question_problems(doc["questions"][entry])
    if any(field and field.startswith("'program'") for field in bad):
        assert got is None
        with pytest.raises(ProgramError):
            execute_program(program, base.scene)
    elif got is not None:
        try:  # accepted: the executor runs it (or finds a reference ambiguous)
            assert execute_program(got[entry]["program"], base.scene) in ANSWERS
        except AmbiguousReferenceError:
            pass


_BYTE_OPS = ("truncate", "flip", "insert", "delete", "random", "bom", "bad utf-8", "splice")


@fuzz(160)
@given(data=st.data())
def test_byte_level_damage_is_refused_or_read_right(scratch, data):
    """Files cut at a random byte, bytes flipped, inserted or deleted, random binary, a BOM,
    invalid UTF-8, a chunk copied elsewhere; read_info too."""
    is_questions = data.draw(st.booleans(), label="questions")
    bases = question_bases() if is_questions else scene_bases()
    base = data.draw(st.sampled_from(bases), label="base")
    raw = bytearray(dump(base.doc, indent=data.draw(st.sampled_from([None, 1]))).encode())
    for _ in range(data.draw(st.integers(1, 2))):
        op = data.draw(st.sampled_from(_BYTE_OPS), label="op")
        at = data.draw(st.integers(0, len(raw)))
        if op == "truncate":
            del raw[at:]
        elif op == "flip" and at < len(raw):
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del raw[at : at + data.draw(st.integers(1, 8))]
        elif op == "random":
            raw = bytearray(data.draw(st.binary(max_size=64)))
        elif op == "bom":
            raw[0:0] = b"\xef\xbb\xbf"
        elif op == "bad utf-8":
            raw[at:at] = data.draw(
                st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])
            )
        else:
            j = data.draw(st.integers(0, len(raw)))
            raw[at:at] = raw[j : j + data.draw(st.integers(1, 40))]
    raw = bytes(raw)
    if is_questions:
        path = scratch / QFILE
        check_read(load_questions, path, raw, "questions", "question", question_problems)
    else:
        path = scratch / SFILE
        check_read(load_scenes, path, raw, "scenes", "scene", scene_problems)
    _check_read_info(path, raw)


def _check_read_info(path, raw: bytes) -> None:
    """read_info gives the file's info block ({} without one) or a file-level format error."""
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        data = MISSING
    try:
        info = read_info(path)
    except ClevrFormatError as err:
        assert err.index is None and str(err).startswith(f"{path}: "), str(err)
        assert (
            data is MISSING
            or not isinstance(data, dict)
            or (data.get("info") is not None and not isinstance(data["info"], dict))
        ), f"read_info refused a readable info block: {err}"
        return
    assert isinstance(info, dict)
    if isinstance(data, dict):  # when the whole file parses, the head's info is its info
        assert info == (data.get("info") or {})
    else:  # only a file that starts with an info object may give one without parsing
        assert raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and b'"info"' in raw[:64]


@fuzz(40)
@given(data=st.data())
def test_written_files_read_back_unchanged(scratch, data):
    """save_scenes/save_questions of random valid scenes and programs, then load: same data."""
    scene_list = data.draw(st.lists(scenes(min_objects=1), min_size=1, max_size=2))
    questions = []
    for i, scene in enumerate(scene_list):
        for k in range(data.draw(st.integers(0, 2))):
            program = data.draw(programs(scene))
            try:
                answer = execute_program(program, scene)
            except AmbiguousReferenceError:
                continue
            questions.append(
                {
                    "image_index": scene["image_index"],
                    "image_filename": scene["image_filename"],
                    "split": "val",
                    "question_index": len(questions),
                    "question_family_index": data.draw(st.integers(0, 89)),
                    "question": f"Question {i}.{k}?",
                    "answer": answer,
                    "program": program,
                }
            )
    save_scenes(scratch / SFILE, scene_list, {"split": "val"})
    save_questions(scratch / QFILE, questions, {"split": "val"})
    assert load_scenes(scratch / SFILE) == scene_list
    assert load_questions(scratch / QFILE) == questions


_DEEP_FIELDS = {  # X: a value the reader must refuse, quoting it in the message
    "questions": '{"questions": [{"question": "Is it?", "question_index": 0, "image_index": 0, '
    '"image_filename": "x.png", "answer": X}]}',
    "scenes": '{"scenes": [{"image_index": 0, "image_filename": "x.png", "objects": '
    '[{"size": X}], "relationships": {}}]}',
}


@pytest.mark.parametrize("kind", ["questions", "scenes"])
def test_nesting_around_the_recursion_limit_is_a_format_error(scratch, kind):
    """Arrays nested about as deep as the recursion limit: the parser, or the repr of the value
    in the message, may hit it; either way the reader answers with a ClevrFormatError."""
    path = scratch / "deep.json"
    limit = sys.getrecursionlimit()
    loader = load_questions if kind == "questions" else load_scenes
    for depth in range(limit - 120, limit + 10, 2):
        nested = "[" * depth + "]" * depth
        path.write_text(_DEEP_FIELDS[kind].replace("X", nested))
        with pytest.raises(ClevrFormatError):
            loader(path)
        path.write_text('{"info": {"a": X}, "scenes": []}'.replace("X", nested))
        try:
            assert list(read_info(path)) == ["a"]
        except ClevrFormatError as err:
            assert err.index is None and str(err).startswith(f"{path}: ")
