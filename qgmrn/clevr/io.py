"""Read and write CLEVR question, scene and CLEVR-Humans files, with validation.

Readers return plain lists of dicts in the released CLEVR v1.0 dialect (CLEVR.md): program nodes
carry `function`, `inputs` and `value_inputs`; answers are strings. Files written by the public
generator (`type` nodes with `side_inputs` or `value_inputs` and `_output` caches, raw
True/False/int answers, per-template-file family indices with `template_filename`) are accepted
and normalised to that form: generator nodes keep only the released keys; other keys of an
entry (the generator's `image`, say) are kept as they are.

Every problem is reported as a `ClevrFormatError` naming the file, the entry's position in its
list (0-based, not `question_index`), the field and the problem. Validation is one linear pass
with no exception raised on the happy path, so the real val file (150k questions) loads at JSON
parsing speed plus a little.

Writers are atomic (`qgmrn.fileio`: a temporary file in the destination directory, then
`os.replace`), validate what they write, and emit the released dialect in the released compact
JSON style.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from itertools import chain
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_json
from .constants import ANSWERS, ATTRIBUTE_VALUES, RELATIONS
from .errors import ClevrFormatError
from .signatures import SIGNATURES

PathLike = str | os.PathLike

# Global family index = offset of the generator's template file + index within the file. The
# released data numbers the 90 families with the template files in sorted order (train question
# 0 is compare_integer's family 2, val question 0 same_relate's 39 = 31 + 8).
_TEMPLATE_OFFSETS = {
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

# Key order of a written question entry (CLEVR.md's example); other keys follow.
_QUESTION_KEY_ORDER = (
    "image_index",
    "image_filename",
    "split",
    "question_index",
    "question_family_index",
    "question",
    "answer",
    "program",
)

_ANSWER_SET = frozenset(ANSWERS)
_SEQUENCE_TYPES = (list, tuple)  # tuples are accepted from Python callers of the writers
_NUMBER_TYPES = (int, float)
_JSON_NUMBERS = frozenset({int, float})  # exact types: bool is excluded
_JSON_INT = frozenset({int})
_ATTRIBUTE_ITEMS = tuple(ATTRIBUTE_VALUES.items())
_MISSING = object()
_TYPE_NAMES = {int: "an integer", str: "a string"}
_INDEX_LIMIT = 2**63  # indices are stored in int64 arrays (qgmrn.data.dataset)
_FLOAT_MAX = sys.float_info.max  # -max <= x <= max is False for NaN, infinities, huge ints


class _Bad(Exception):
    """Internal: a problem in one entry, located by field; the loader adds path and index."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _kind(value: Any) -> str:
    """JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, _SEQUENCE_TYPES):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    """A value for a message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------- reading JSON


def _read_json(path: PathLike) -> Any:
    """Parse a JSON file; anything unreadable becomes a ClevrFormatError (OSErrors pass through)."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ClevrFormatError(
            path, f"not UTF-8 text (bad byte at offset {exc.start}); is this a JSON file?"
        ) from None
    if not text.strip():
        raise ClevrFormatError(path, "the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        # A file cut short fails at its very end, or inside a string that never closes.
        if exc.msg.startswith("Unterminated string"):
            problem = f"the file ends inside a string that starts at {where}; is it truncated?"
        elif exc.pos >= len(text.rstrip()):
            problem = f"the JSON ends early at {where} ({exc.msg}); is the file truncated?"
        else:
            problem = f"not valid JSON at {where}: {exc.msg}"
        raise ClevrFormatError(path, problem) from None
    except RecursionError:
        problem = "the JSON is nested too deeply to parse; is this a CLEVR file?"
        raise ClevrFormatError(path, problem) from None
    except ValueError as exc:  # an integer literal beyond Python's int-string digit limit
        problem = str(exc).split(";")[0]
        raise ClevrFormatError(path, f"a number in the file cannot be read ({problem})") from None


def _entries(path: PathLike, data: Any, key: str) -> list:
    """The top-level list `data[key]`, or a ClevrFormatError saying what was found instead."""
    if not isinstance(data, dict):
        raise ClevrFormatError(
            path, f"expected a JSON object with a {key!r} list at the top, found {_kind(data)}"
        )
    entries = data.get(key, _MISSING)
    if entries is _MISSING:
        keys = ", ".join(map(repr, data)) or "none"
        hint = ""
        if key == "questions" and "scenes" in data:
            hint = " (this looks like a scene file)"
        elif key == "scenes" and "questions" in data:
            hint = " (this looks like a question file)"
        raise ClevrFormatError(path, f"no {key!r} list at the top (keys: {keys}){hint}")
    if not isinstance(entries, list):
        raise ClevrFormatError(path, f"expected a list, found {_kind(entries)}", field=repr(key))
    info = data.get("info")
    if info is not None and not isinstance(info, dict):
        raise ClevrFormatError(path, f"expected an object, found {_kind(info)}", field="'info'")
    return entries


# ----------------------------------------------------------------------------- field checks


def _require(entry: Mapping, key: str, typ: type) -> Any:
    """entry[key], which must exist and be exactly of type `typ` (so True is not an int)."""
    value = entry.get(key, _MISSING)
    if type(value) is not typ:
        if value is _MISSING:
            raise _Bad(repr(key), "missing")
        raise _Bad(repr(key), f"expected {_TYPE_NAMES[typ]}, found {_kind(value)} {_short(value)}")
    return value


def _optional(entry: Mapping, key: str, typ: type) -> None:
    """entry[key] must be of type `typ` when present."""
    value = entry.get(key, _MISSING)
    if value is not _MISSING and type(value) is not typ:
        raise _Bad(repr(key), f"expected {_TYPE_NAMES[typ]}, found {_kind(value)} {_short(value)}")


def _require_index(entry: Mapping, key: str) -> int:
    """entry[key], which must be an int in 0 .. 2**63 - 1 (it is stored as an int64)."""
    value = _require(entry, key, int)
    if value < 0:
        raise _Bad(repr(key), f"{value} is negative")
    if value >= _INDEX_LIMIT:
        raise _Bad(repr(key), f"{_short(value)} is too large for an index (at most 2**63 - 1)")
    return value


def _check_image(entry: Mapping) -> None:
    """`image_index` a non-negative int, `image_filename` a plain file name (no path)."""
    _require_index(entry, "image_index")
    name = _require(entry, "image_filename", str)
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise _Bad(
            "'image_filename'",
            f"{name!r} is not a plain file name (no directories, no '..', not empty)",
        )


def _normalise_answer(value: Any) -> str:
    """A string answer among ANSWERS; the generator's True/False/int are spelled as released."""
    if type(value) is str:
        if value in _ANSWER_SET:
            return value
    elif type(value) is bool:
        return "yes" if value else "no"
    elif type(value) is int and str(value) in _ANSWER_SET:
        return str(value)
    raise _Bad("'answer'", f"{_short(value)} is not one of the 28 CLEVR answers")


# Per function: (number of inputs, input kinds, value vocabulary or None, output kind), as plain
# tuples: the fast path below unpacks them for every node of every question.
_FAST_SIGNATURES = {
    name: (len(sig.inputs), sig.inputs, frozenset(sig.values) if sig.values else None, sig.output)
    for name, sig in SIGNATURES.items()
}
_NO_ANSWER = frozenset({"set", "object"})


def _normalise_program(program: Any) -> list:
    """Check a program (typed, topologically sorted); return it in the released dialect.

    A well-formed released-dialect program passes the fast loop and is returned as is; anything
    else (a problem, or the generator dialect) goes through `_normalise_program_slow`, which
    finds and words the problem, or normalises the dialect.
    """
    if type(program) is list and program:
        kinds: list[str] = []
        try:  # KeyError / TypeError: a missing key or an odd type, worded by the slow path
            for k, node in enumerate(program):
                n_in, in_kinds, vocab, output = _FAST_SIGNATURES[node["function"]]
                inputs = node["inputs"]
                values = node["value_inputs"]
                if type(inputs) is not list or len(inputs) != n_in or type(values) is not list:
                    break
                if n_in:  # at most two inputs: unrolled, this loop runs 1.3M times on val
                    i = inputs[0]
                    if type(i) is not int or not 0 <= i < k or kinds[i] != in_kinds[0]:
                        break
                    if n_in == 2:
                        i = inputs[1]
                        if type(i) is not int or not 0 <= i < k or kinds[i] != in_kinds[1]:
                            break
                if vocab is None:
                    if values:
                        break
                elif len(values) != 1 or values[0] not in vocab:
                    break
                kinds.append(output)
            else:
                if kinds[-1] not in _NO_ANSWER:
                    return program
        except (KeyError, TypeError):
            pass
    return _normalise_program_slow(program)


def _normalise_program_slow(program: Any) -> list:
    """`_normalise_program` for programs off the fast path: raise the precise _Bad or normalise."""
    if not isinstance(program, _SEQUENCE_TYPES):
        raise _Bad("'program'", f"expected a list, found {_kind(program)}")
    if not program:
        raise _Bad("'program'", "empty program")
    kinds: list[str] = []
    out = program
    for k, node in enumerate(program):
        where = f"'program'[{k}]"
        if not isinstance(node, dict):
            raise _Bad(where, f"expected an object, found {_kind(node)}")
        function = node.get("function", _MISSING)
        if function is not _MISSING:
            values = node.get("value_inputs", _MISSING)
            if values is _MISSING:
                raise _Bad(f"{where}.value_inputs", "missing (use [] when the node has none)")
        elif "type" in node:  # the public generator's dialect
            function = node["type"]
            # Its script renames side_inputs to value_inputs only when writing, and gives nodes
            # without values none: accept both names, default empty.
            values = node.get("value_inputs", node.get("side_inputs", []))
        else:
            raise _Bad(f"{where}.function", "missing")
        sig = SIGNATURES.get(function) if type(function) is str else None
        if sig is None:
            raise _Bad(f"{where}.function", f"unknown function {_short(function)}")
        inputs = node.get("inputs", _MISSING)
        if not isinstance(inputs, _SEQUENCE_TYPES):
            if inputs is _MISSING:
                raise _Bad(f"{where}.inputs", "missing")
            raise _Bad(f"{where}.inputs", f"expected a list, found {_kind(inputs)}")
        if len(inputs) != len(sig.inputs):
            raise _Bad(
                f"{where}.inputs",
                f"{function} takes {len(sig.inputs)} inputs, found {len(inputs)}",
            )
        for i, want in zip(inputs, sig.inputs, strict=True):
            if type(i) is not int or i < 0:
                raise _Bad(f"{where}.inputs", f"input {_short(i)} is not a node index")
            if i >= k:
                raise _Bad(f"{where}.inputs", f"input {i} is not before node {k}")
            if kinds[i] != want:
                raise _Bad(
                    f"{where}.inputs",
                    f"input {i} gives {_article(kinds[i])}, {function} needs {_article(want)}",
                )
        if not isinstance(values, _SEQUENCE_TYPES):
            raise _Bad(f"{where}.value_inputs", f"expected a list, found {_kind(values)}")
        if sig.values is None:
            if values:
                raise _Bad(f"{where}.value_inputs", f"{function} takes no value inputs")
        elif len(values) != 1 or values[0] not in sig.values:
            raise _Bad(
                f"{where}.value_inputs",
                f"{function} needs one of {', '.join(sig.values)}, found {_short(list(values))}",
            )
        kinds.append(sig.output)
        if "type" in node and "function" not in node:
            if out is program:
                out = list(program)
            # Keep only the released keys: the generator's `_output` caches are not data.
            out[k] = {"function": function, "inputs": list(inputs), "value_inputs": list(values)}
    if kinds[-1] in _NO_ANSWER:
        raise _Bad(
            f"'program'[{len(program) - 1}].function",
            f"the program ends in {function}, whose value ({_article(kinds[-1])}) is no answer",
        )
    return out


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _normalise_question(entry: Any) -> dict:
    """Check one question entry; return it (or a normalised copy) in the released dialect."""
    if not isinstance(entry, dict):
        raise _Bad(None, f"expected an object, found {_kind(entry)}")
    _require(entry, "question", str)
    _require_index(entry, "question_index")
    _check_image(entry)
    _optional(entry, "split", str)
    out = entry
    family = entry.get("question_family_index", _MISSING)
    if family is not _MISSING:
        if type(family) is not int or not 0 <= family < _INDEX_LIMIT:
            raise _Bad("'question_family_index'", f"{_short(family)} is not a family index")
        template = entry.get("template_filename")
        if type(template) is str:  # generator dialect: family index is per template file
            offset = _TEMPLATE_OFFSETS.get(os.path.basename(template))
            if offset is not None:
                out = dict(entry)
                del out["template_filename"]
                out["question_family_index"] = offset + family
    answer = entry.get("answer", _MISSING)
    if answer is not _MISSING:
        normal = _normalise_answer(answer)
        if normal is not answer:
            if out is entry:
                out = dict(entry)
            out["answer"] = normal
    program = entry.get("program", _MISSING)
    if program is not _MISSING:
        normal = _normalise_program(program)
        if normal is not program:
            if out is entry:
                out = dict(entry)
            out["program"] = normal
    return out


def _check_triple(value: Any, field: str) -> None:
    """A list of 3 finite numbers (fast for JSON lists of int/float; tuples and float subclasses
    ok). NaN, infinities and 1e400 parse as floats, so finiteness is checked too."""
    if type(value) is list and len(value) == 3 and _JSON_NUMBERS.issuperset(map(type, value)):
        x, y, z = value
        if -_FLOAT_MAX <= x <= _FLOAT_MAX and -_FLOAT_MAX <= y <= _FLOAT_MAX:
            if -_FLOAT_MAX <= z <= _FLOAT_MAX:
                return
    if not isinstance(value, _SEQUENCE_TYPES) or len(value) != 3:
        raise _Bad(field, f"expected a list of 3 numbers, found {_short(value)}")
    for x in value:
        if not isinstance(x, _NUMBER_TYPES) or isinstance(x, bool):
            raise _Bad(field, f"expected a list of 3 numbers, found {_short(value)}")
        if not -_FLOAT_MAX <= x <= _FLOAT_MAX:
            raise _Bad(field, f"expected a list of 3 finite numbers, found {_short(value)}")


def _check_relation(lists: Any, rel: str, n: int) -> None:
    """`relationships[rel]`: one list per object of other objects' indices."""
    if type(lists) is list and len(lists) == n and all(type(r) is list for r in lists):
        flat = list(chain.from_iterable(lists))  # C-level passes over ~180 ints per scene
        if not flat or (
            _JSON_INT.issuperset(map(type, flat))
            and min(flat) >= 0
            and max(flat) < n
            and not any(i in related for i, related in enumerate(lists))
            and sum(map(len, map(set, lists))) == len(flat)  # no object listed twice
        ):
            return
    where = f"'relationships'.{rel}"
    if lists is _MISSING:
        raise _Bad(where, "missing")
    if not isinstance(lists, _SEQUENCE_TYPES) or len(lists) != n:
        raise _Bad(where, f"expected one list per object ({n}), found {_short(lists)}")
    for i, related in enumerate(lists):
        if not isinstance(related, _SEQUENCE_TYPES):
            raise _Bad(f"{where}[{i}]", f"expected a list, found {_kind(related)}")
        for j in related:
            if type(j) is not int or not 0 <= j < n or j == i:
                raise _Bad(f"{where}[{i}]", f"{_short(j)} is not another object's index")
        if len(set(related)) != len(related):  # relate would return (and count) it twice
            twice = next(j for j in related if related.count(j) > 1)
            raise _Bad(f"{where}[{i}]", f"object {twice} is listed twice")


def _check_scene(scene: Any) -> None:
    """Check one scene entry: image, objects and their attributes, relationships' shape."""
    if not isinstance(scene, dict):
        raise _Bad(None, f"expected an object, found {_kind(scene)}")
    _check_image(scene)
    _optional(scene, "split", str)
    objects = scene.get("objects", _MISSING)
    if not isinstance(objects, _SEQUENCE_TYPES):
        raise _Bad("'objects'", "missing" if objects is _MISSING else f"found {_kind(objects)}")
    for k, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise _Bad(f"'objects'[{k}]", f"expected an object, found {_kind(obj)}")
        for attr, vocab in _ATTRIBUTE_ITEMS:
            value = obj.get(attr, _MISSING)
            if value not in vocab:
                where = f"'objects'[{k}].{attr}"
                if value is _MISSING:
                    raise _Bad(where, "missing")
                raise _Bad(where, f"{_short(value)} is not one of {', '.join(vocab)}")
        _check_triple(obj.get("3d_coords"), f"'objects'[{k}].3d_coords")
        _check_triple(obj.get("pixel_coords"), f"'objects'[{k}].pixel_coords")
        rotation = obj.get("rotation", 0.0)
        if not isinstance(rotation, _NUMBER_TYPES) or isinstance(rotation, bool):
            raise _Bad(f"'objects'[{k}].rotation", f"expected a number, found {_short(rotation)}")
        if not -_FLOAT_MAX <= rotation <= _FLOAT_MAX:
            raise _Bad(
                f"'objects'[{k}].rotation", f"expected a finite number, found {_short(rotation)}"
            )
    relationships = scene.get("relationships", _MISSING)
    if not isinstance(relationships, dict):
        raise _Bad(
            "'relationships'",
            "missing" if relationships is _MISSING else f"found {_kind(relationships)}",
        )
    n = len(objects)
    for rel in RELATIONS:
        _check_relation(relationships.get(rel, _MISSING), rel, n)
    directions = scene.get("directions", _MISSING)
    if directions is not _MISSING:
        if not isinstance(directions, dict):
            raise _Bad("'directions'", f"expected an object, found {_kind(directions)}")
        for name, vector in directions.items():
            _check_triple(vector, f"'directions'.{name}")


def _check_humans(entry: Any) -> dict:
    """Check one CLEVR-Humans entry (no program); normalise its answer."""
    if not isinstance(entry, dict):
        raise _Bad(None, f"expected an object, found {_kind(entry)}")
    _require(entry, "question", str)
    _check_image(entry)
    answer = entry.get("answer", _MISSING)
    if answer is not _MISSING:
        normal = _normalise_answer(answer)
        if normal is not answer:
            entry = dict(entry)
            entry["answer"] = normal
    return entry


def _validate_all(path: PathLike, entries: Iterable, check, kind: str) -> list:
    """Apply `check` to every entry; the first problem becomes a located ClevrFormatError."""
    out: list = []
    try:  # one try around the loop: no per-entry exception machinery on the happy path
        for entry in entries:
            out.append(check(entry))
    except _Bad as bad:  # the failing entry is the one after those already checked
        raise ClevrFormatError(
            path, bad.problem, index=len(out), field=bad.field, entry=kind
        ) from None
    return out


def _check_scene_keep(scene: Any) -> Any:
    _check_scene(scene)
    return scene


# ----------------------------------------------------------------------------- public readers


def load_questions(path: PathLike) -> list[dict]:
    """The questions of a CLEVR question file, validated, in the released dialect.

    Test entries (no `answer`, `program`, `question_family_index`) are returned as they are.
    Raises ClevrFormatError for any malformed file or entry; OSError when it cannot be read.
    """
    entries = _entries(path, _read_json(path), "questions")
    return _validate_all(path, entries, _normalise_question, "question")


def load_scenes(path: PathLike) -> list[dict]:
    """The scenes of a CLEVR scene file, validated (attributes, coordinates, relationships)."""
    entries = _entries(path, _read_json(path), "scenes")
    return _validate_all(path, entries, _check_scene_keep, "scene")


def load_humans_questions(path: PathLike) -> list[dict]:
    """The questions of a CLEVR-Humans file (`{"questions": [...]}`, no programs), validated.

    Answers, where present, must be among CLEVR's 28 answers.
    """
    entries = _entries(path, _read_json(path), "questions")
    return _validate_all(path, entries, _check_humans, "question")


_INFO_HEAD = re.compile(r'\s*\{\s*"info"\s*:\s*')


def read_info(path: PathLike) -> dict:
    """The `info` block of a question or scene file ({} when it has none).

    The released files put `info` first, so it is read from the file's head without parsing
    the whole (possibly 100 MB) file; other files are parsed whole.
    """
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    try:  # strict, but a character cut at the end of the head is left out, not an error
        head = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        head = ""  # not UTF-8: the whole-file parse below words the problem
    match = _INFO_HEAD.match(head)
    if match:
        try:
            info, _ = json.JSONDecoder().raw_decode(head, match.end())
        except (ValueError, RecursionError):  # a longer info block, or a broken file
            info = _MISSING  # parse it whole below
        if isinstance(info, dict):
            return info
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ClevrFormatError(path, f"expected a JSON object at the top, found {_kind(data)}")
    info = data.get("info")
    if info is None:  # absent, or null (which the loaders accept too)
        return {}
    if not isinstance(info, dict):
        raise ClevrFormatError(path, f"expected an object, found {_kind(info)}", field="'info'")
    return info


# ----------------------------------------------------------------------------- writers


def _ordered_question(entry: dict) -> dict:
    """The entry with the released keys first, in CLEVR.md's order, then any others."""
    out = {key: entry[key] for key in _QUESTION_KEY_ORDER if key in entry}
    for key, value in entry.items():
        if key not in out:
            out[key] = value
    return out


def _atomic_write_json(path: PathLike, document: dict) -> None:
    """Write `document` as compact JSON to `path` atomically (readers never see half a file)."""
    try:
        atomic_write_json(path, document, allow_nan=False)
    except ValueError as exc:  # NaN/inf: would not be JSON other readers can parse
        raise ClevrFormatError(Path(path), f"cannot be written as JSON: {exc}") from None


def save_questions(path: PathLike, questions: Iterable[dict], info: dict | None = None) -> None:
    """Validate `questions` and write them to `path` in the released dialect, atomically.

    Generator-dialect entries are normalised first; the caller's objects are not modified.
    Raises ClevrFormatError (naming `path` and the entry) before writing anything.
    """
    normal = _validate_all(path, questions, _normalise_question, "question")
    document = {"info": dict(info or {}), "questions": [_ordered_question(q) for q in normal]}
    _atomic_write_json(path, document)


def save_scenes(path: PathLike, scenes: Iterable[dict], info: dict | None = None) -> None:
    """Validate `scenes` and write them to `path` as a released-style scene file, atomically."""
    checked = _validate_all(path, scenes, _check_scene_keep, "scene")
    _atomic_write_json(path, {"info": dict(info or {}), "scenes": checked})
