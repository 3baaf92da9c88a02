"""Property-based tests of `Vocab.load`: a corrupted vocabulary file is read right or
refused with a VocabFormatError naming the file; no other exception escapes.

Bases: the real tbd-nets vocabulary (shared/clevr-samples) and our own format (what
`Vocab.save` writes). Corruptions: keys deleted, values retyped (str for int, list for dict, None,
NaN, huge numbers, unicode garbage), indices shuffled or out of range, raw text that is not JSON,
bytes cut, flipped or inserted, and an exhaustive sweep of single faults. The oracle below
restates the two formats' rules.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from qgmrn.clevr import ANSWERS
from qgmrn.data.vocab import SPECIALS, Vocab, VocabFormatError

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "clevr-samples"
TBD_VOCAB = SAMPLES / "tbdnets_clevr_vocab.json"

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run
    database=None,  # no .hypothesis/ folder
    print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _bases() -> list[dict]:
    ours = Vocab.build(["What color is the big ball?", "Is there a cube; how many are left?"])
    bases = [json.loads(json.dumps(ours.to_dict()))]
    if TBD_VOCAB.exists():
        bases.append(json.loads(TBD_VOCAB.read_text()))
    return bases


BASES = _bases()

# ----------------------------------------------------------------------------- the oracle


def _int(value: Any) -> bool:
    return type(value) is int


def expected(raw: bytes) -> list | None:
    """(question tokens, answers) of a file Vocab.load must accept, or None."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if type(data) is not dict or type(data.get("question_token_to_idx")) is not dict:
        return None
    mapping = data["question_token_to_idx"]
    if not all(map(_int, mapping.values())) or sorted(mapping.values()) != list(
        range(len(mapping))
    ):
        return None
    tokens = sorted(mapping, key=mapping.get)
    if tuple(tokens[:4]) != SPECIALS:
        return None
    if data.get("format") == "qgmrn-vocab":
        answers = data.get("answers")
        if not _int(data.get("version")) or data["version"] != 1:
            return None
        if type(answers) is not list or not all(type(a) is str for a in answers):
            return None
        if len(set(answers)) != len(answers):
            return None
    elif "answer_token_to_idx" in data:
        table = data["answer_token_to_idx"]
        if type(table) is not dict or not all(map(_int, table.values())):
            return None
        if set(table) - set(SPECIALS) != set(ANSWERS):
            return None
        answers = list(ANSWERS)
    else:
        return None
    return [tokens, answers]


# ----------------------------------------------------------------------------- corruptions

_GARBAGE = (None, True, 0, -1, 1.5, 2**64, math.nan, math.inf, "", "\ud800", "🙂", [], {}, [0])
_RAW = ("NaN", "-Infinity", "1e400", "9" * 5000, "[" * 20_000 + "]" * 20_000)


def _paths(doc: Any, path: tuple = ()):
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*path, i))


def _corrupt(data: st.DataObject, doc: dict) -> str:
    """JSON text of `doc` after 1-3 random corruptions."""
    doc = copy.deepcopy(doc)
    raws: dict[str, str] = {}
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(doc))))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        value = parent[path[-1]] if path else doc
        op = data.draw(st.sampled_from(("delete", "garbage", "retype", "raw", "shuffle", "add")))
        if op == "delete" and path:
            del parent[path[-1]]
            continue
        if op == "shuffle" and isinstance(value, dict) and value:
            keys = list(value)  # the same indices, given to other tokens (or keys in new order)
            new = dict(zip(keys, data.draw(st.permutations(list(value.values()))), strict=True))
        elif op == "add" and isinstance(value, dict):
            key = data.draw(st.sampled_from(("<NULL>", "red", "", "format", "answers", "yes")))
            value[key] = copy.copy(
                data.draw(st.sampled_from((*_GARBAGE, len(value), len(value) + 1)))
            )
            continue
        elif op == "raw":
            new = f"\x00raw{len(raws)}"
            raws[new] = data.draw(st.sampled_from(_RAW))
        elif op == "retype":
            new = data.draw(
                st.sampled_from([str(value), [value], {"v": value}, -1 if value == 0 else 0])
            )
        else:
            new = copy.copy(data.draw(st.sampled_from(_GARBAGE)))  # a fresh [] or {}
        if path:
            parent[path[-1]] = new
        else:
            doc = new
    text = json.dumps(doc)
    for key, raw in raws.items():
        text = text.replace(json.dumps(key), raw)
    return text


def _event(name: str) -> None:
    if currently_in_test_context():  # hypothesis' statistics
        event(name)


def _check(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)
    want = expected(raw)
    try:
        vocab = Vocab.load(path)
    except VocabFormatError as err:  # any other exception fails the test
        assert str(err).startswith(f"{path}: ") and len(str(err)) > len(f"{path}: ")
        assert want is None, f"a valid vocabulary was refused: {err}"
        _event("refused")
        return
    assert want is not None, "accepted a wrong vocabulary"
    assert [vocab.idx_to_token, list(vocab.answers)] == want
    _event("read")


def _sweep_paths(doc: dict) -> list[tuple]:
    """The file, each top-level field, and the first and last item of each of them."""
    paths: list[tuple] = [()]
    for key, value in doc.items():
        paths.append((key,))
        if isinstance(value, dict) and value:
            paths += [(key, k) for k in dict.fromkeys([next(iter(value)), list(value)[-1]])]
        elif isinstance(value, list) and value:
            paths += [(key, i) for i in dict.fromkeys([0, len(value) - 1])]
    return paths


_BAD = (*_GARBAGE, "1", 1.0, 2, 4, -0.0, 2**63, "qgmrn-vocab", ["yes"], {"yes": 0})


def test_every_single_fault_is_read_right_or_refused(scratch):
    """Exhaustive: each field of both formats (and its first and last item) deleted or replaced
    by each kind of wrong value; raw text that is not JSON in its place."""
    cases = 0
    for base in BASES:
        for path in _sweep_paths(base):
            for bad in ("delete", *_BAD, *(f"\x00raw{k}" for k in range(len(_RAW)))):
                doc = copy.deepcopy(base)
                parent = doc
                for key in path[:-1]:
                    parent = parent[key]
                if bad == "delete":
                    if not path:
                        continue
                    del parent[path[-1]]
                elif path:
                    parent[path[-1]] = copy.copy(bad)
                else:
                    doc = copy.copy(bad)
                text = json.dumps(doc)
                for k, raw in enumerate(_RAW):
                    text = text.replace(json.dumps(f"\x00raw{k}"), raw)
                try:
                    _check(scratch / "vocab.json", text.encode())
                except AssertionError as err:
                    raise AssertionError(f"{path} = {bad!r:.30}: {err}") from None
                cases += 1
    assert cases > 120 * len(BASES)  # ours alone: 260; with the TBD vocabulary too: 549


@FUZZ
@given(data=st.data())
def test_corrupted_vocabularies_are_read_right_or_refused(scratch, data):
    base = data.draw(st.sampled_from(BASES), label="base")
    _check(scratch / "vocab.json", _corrupt(data, base).encode())


@FUZZ
@given(data=st.data())
def test_byte_level_damage_to_a_vocabulary_is_refused_or_read_right(scratch, data):
    raw = bytearray(json.dumps(data.draw(st.sampled_from(BASES)), indent=1).encode())
    at = data.draw(st.integers(0, len(raw)))
    op = data.draw(st.sampled_from(("truncate", "flip", "insert", "random")))
    if op == "truncate":
        del raw[at:]
    elif op == "flip" and at < len(raw):
        raw[at] = data.draw(st.integers(0, 255))
    elif op == "insert":
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    else:
        raw = bytearray(data.draw(st.binary(max_size=64)))
    _check(scratch / "vocab.json", bytes(raw))


def test_nesting_around_the_recursion_limit_is_a_format_error(scratch):
    """Values nested about as deep as the recursion limit, where the parser or a message's
    repr may hit it: a VocabFormatError either way."""
    path = scratch / "vocab.json"
    head = '{"question_token_to_idx": {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3}, '
    limit = sys.getrecursionlimit()
    for depth in range(limit - 120, limit + 10, 4):
        nested = "[" * depth + "]" * depth
        for tail in ('"format": "qgmrn-vocab", "version": X}', '"answer_token_to_idx": X}'):
            path.write_text(head + tail.replace("X", nested))
            try:
                Vocab.load(path)
            except VocabFormatError:
                continue
            raise AssertionError(f"accepted a vocabulary with a value nested {depth} deep")
