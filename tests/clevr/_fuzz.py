"""Shared pieces of the property-based (hypothesis) tests of qgmrn.clevr.

- `fuzz(n)`: deterministic hypothesis settings (`derandomize`, no example database, no deadline).
- `SPEC`: the typed signature of the 26 program functions, written here from CLEVR.md rather than
  imported from `qgmrn.clevr.signatures`, so the tests check the package against an independent
  reading of the format.
- `scenes()`, `programs(scene)`: strategies for valid scenes and well-typed random programs.
- `corrupt(data, doc, ...)`: a JSON document with one or two random corruptions (delete,
  retype, shuffle, repeat, out of range, NaN, huge numbers, raw text that is not JSON, ...);
  `single_faults(doc)`: every single corruption of each field, for exhaustive sweeps.
- `dump(doc)`: the document as JSON text, with `Raw` values spliced in verbatim.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from qgmrn.clevr import ATTRIBUTE_VALUES, COLORS, DIRECTIONS, MATERIALS, RELATIONS, SHAPES, SIZES
from qgmrn.clevr import compute_relationships as _compute_relationships

ATTRS = ("size", "color", "material", "shape")
INDEX_LIMIT = 2**63  # indices end up in int64 arrays (qgmrn.data.dataset)
FLOAT_MAX = sys.float_info.max


def fuzz(max_examples: int) -> settings:
    """Settings for a fuzz test: same examples on every run, no `.hypothesis/` folder."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # one scratch folder, rewritten by each example
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# ----------------------------------------------------------------------------- the spec


def _spec() -> dict[str, tuple[tuple[str, ...], tuple[str, ...] | None, str]]:
    """function -> (input kinds, value vocabulary or None, output kind), from CLEVR.md."""
    spec = {
        "scene": ((), None, "set"),
        "unique": (("set",), None, "object"),
        "relate": (("object",), tuple(RELATIONS), "set"),
        "union": (("set", "set"), None, "set"),
        "intersect": (("set", "set"), None, "set"),
        "count": (("set",), None, "integer"),
        "exist": (("set",), None, "bool"),
        "equal_integer": (("integer", "integer"), None, "bool"),
        "less_than": (("integer", "integer"), None, "bool"),
        "greater_than": (("integer", "integer"), None, "bool"),
    }
    for attr, vocab in zip(ATTRS, (SIZES, COLORS, MATERIALS, SHAPES), strict=True):
        spec["filter_" + attr] = (("set",), tuple(vocab), "set")
        spec["query_" + attr] = (("object",), None, attr)
        spec["same_" + attr] = (("object",), None, "set")
        spec["equal_" + attr] = ((attr, attr), None, "bool")
    return spec


SPEC = _spec()


# ----------------------------------------------------------------------------- strategies


_LOOKS = st.sampled_from(list(itertools.product(SIZES, COLORS, MATERIALS, SHAPES)))


@st.composite
def scenes(draw, min_objects: int = 0, max_objects: int = 8, geometric: bool | None = None):
    """A valid scene in the released form. Relationships are computed from the coordinates
    (`geometric`) or drawn at random (any sets of other objects), which the readers and the
    executor must take as given."""
    n = draw(st.integers(min_objects, max_objects))
    coord = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
    objects = []
    for _ in range(n):
        size, color, material, shape = draw(_LOOKS)
        x, y = draw(coord), draw(coord)
        objects.append(
            {
                "color": color,
                "size": size,
                "rotation": draw(st.floats(0.0, 360.0)),
                "shape": shape,
                "3d_coords": [x, y, 0.7 if size == "large" else 0.35],
                "material": material,
                "pixel_coords": [round(240 + 50 * x), round(160 - 30 * y), 10.0 + y],
            }
        )
    if geometric is None:
        geometric = draw(st.booleans())
    if geometric:
        relationships = _compute_relationships(objects)
    else:

        def related(i: int) -> list[int]:
            mask = draw(st.integers(0, 2**n - 1))  # bit j: object j is related to object i
            return [j for j in range(n) if j != i and mask >> j & 1]

        relationships = {rel: [related(i) for i in range(n)] for rel in RELATIONS}
    index = draw(st.integers(0, 999_999))
    return {
        "image_index": index,
        "objects": objects,
        "relationships": relationships,
        "image_filename": f"CLEVR_val_{index:06d}.png",
        "split": "val",
        "directions": {name: list(vec) for name, vec in DIRECTIONS.items()},
    }


def node(function: str, inputs=(), values=()) -> dict:
    return {"function": function, "inputs": list(inputs), "value_inputs": list(values)}


_SET_MAKERS = ("scene", "filter", "filter", "relate", "relate", "same", "union", "intersect")


@st.composite
def programs(draw, scene: dict, max_depth: int = 4, function: str | None = None):
    """A well-typed program (released dialect) ending in an answer, built around `function`
    (drawn when None) as a random expression over `scene`. Filter values are mostly those of
    objects present and `unique` often reads a filter chain naming one object, so references
    are sometimes unambiguous; comparisons sometimes compare a node with itself (ties); a few
    nodes are shared (the program is then a DAG)."""
    objects = scene["objects"]
    program: list[dict] = []
    made: dict[str, list[int]] = {}

    def emit(function: str, inputs: list[int], values=()) -> int:
        program.append(node(function, inputs, values))
        made.setdefault(SPEC[function][2], []).append(len(program) - 1)
        return len(program) - 1

    def value(attr: str) -> str:
        if objects and draw(st.integers(0, 3)):
            return objects[draw(st.integers(0, len(objects) - 1))][attr]
        return draw(st.sampled_from(ATTRIBUTE_VALUES[attr]))

    def pair(first: int, kind: str, depth: int) -> int:
        """The second operand of a comparison: now and then the first one again (ties)."""
        return first if draw(st.integers(0, 3)) == 0 else build(kind, depth)

    def build(kind: str, depth: int) -> int:
        if made.get(kind) and draw(st.integers(0, 9)) == 0:  # share an earlier node
            return draw(st.sampled_from(made[kind]))
        if kind == "set":
            choice = draw(st.sampled_from(_SET_MAKERS)) if depth > 0 else "scene"
            if choice == "scene":
                return emit("scene", [])
            if choice == "filter":
                attr = draw(st.sampled_from(ATTRS))
                return emit(f"filter_{attr}", [build("set", depth - 1)], [value(attr)])
            if choice == "relate":
                relation = draw(st.sampled_from(RELATIONS))
                return emit("relate", [build("object", depth - 1)], [relation])
            if choice == "same":
                return emit(f"same_{draw(st.sampled_from(ATTRS))}", [build("object", depth - 1)])
            a = build("set", depth - 1)
            return emit(choice, [a, build("set", depth - 1)])  # union, intersect
        if kind == "object":
            ref = build("set", depth - 1) if depth > 0 else emit("scene", [])
            if objects and draw(st.integers(0, 3)):  # name attributes of one object present
                target = objects[draw(st.integers(0, len(objects) - 1))]
                for attr in draw(st.lists(st.sampled_from(ATTRS), min_size=1, unique=True)):
                    ref = emit(f"filter_{attr}", [ref], [target[attr]])
            return emit("unique", [ref])
        if kind == "integer":
            return emit("count", [build("set", depth)])
        if kind == "bool":
            choice = draw(st.integers(0, 2))
            if choice == 0:
                return emit("exist", [build("set", depth)])
            if choice == 1:
                fn = draw(st.sampled_from(("equal_integer", "less_than", "greater_than")))
                a = build("integer", depth - 1)
                return emit(fn, [a, pair(a, "integer", depth - 1)])
            attr = draw(st.sampled_from(ATTRS))
            a = build(attr, depth - 1)
            return emit(f"equal_{attr}", [a, pair(a, attr, depth - 1)])
        return emit(f"query_{kind}", [build("object", depth)])  # an attribute

    # The function under test (given, or one of the 26), fed by random operands; a set or an
    # object it gives is then counted, tested or queried so that the program ends in an answer.
    if function is None:
        function = draw(st.sampled_from(sorted(SPEC)), label="function")
    wanted, vocab, _ = SPEC[function]
    depth = draw(st.integers(1, max_depth))
    if function == "unique":
        last = build("object", depth)
    else:
        inputs: list[int] = []
        for want in wanted:
            inputs.append(pair(inputs[0], want, depth - 1) if inputs else build(want, depth - 1))
        if vocab is None:
            values = []
        elif function == "relate":
            values = [draw(st.sampled_from(vocab))]
        else:
            values = [value(function.partition("_")[2])]
        last = emit(function, inputs, values)
    output = SPEC[program[last]["function"]][2]
    if output == "set":
        emit(draw(st.sampled_from(("count", "exist"))), [last])
    elif output == "object":
        emit(f"query_{draw(st.sampled_from(ATTRS))}", [last])
    return program


# ----------------------------------------------------------------------------- corruptions


@dataclass(frozen=True)
class Raw:
    """A value written into the JSON text verbatim (NaN, 1e400, a 5000-digit integer, ...)."""

    text: str


_RAW = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1" * 400,  # an integer beyond float range
    "9" * 5000,  # beyond Python's 4300-digit limit for int()
    "[" * 50 + "]" * 50,
    "[" * 20_000 + "]" * 20_000,  # beyond the recursion limit of any parser stack
    "{" + '"a": {' * 30 + "}" * 31,
)

_GARBAGE_TEXT = (
    "",
    ".",
    "..",
    "../x.png",
    "a/b.png",
    "a\\b.png",
    "x\x00.png",
    "\ud800",  # a lone surrogate (JSON allows the escape)
    "\ufeff",
    "\u202eevil",
    "e\u0301",
    "🙂",
    "yes",
    "11",
    "red",
    "pink",
    "filter_color",
    "unique",
    "type",
    "function",
    "inputs",
    "value_inputs",
    "side_inputs",
)


def json_values(max_leaves: int = 6) -> st.SearchStrategy:
    """Arbitrary JSON values, NaN and infinities included."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats()
        | st.text(max_size=6)
        | st.sampled_from(_GARBAGE_TEXT)
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.text(max_size=5) | st.sampled_from(_GARBAGE_TEXT), inner, max_size=3
            )
        ),
        max_leaves=max_leaves,
    )


def _variants(value: Any) -> list[Any]:
    """Plausible wrong (or, by chance, right) values derived from the original one."""
    if isinstance(value, Raw):
        return [None, value.text, [value], {"value": value}, 0]
    out: list[Any] = [None, str(value), [value], {"value": value}, Raw(dump(value) + " ")]
    if isinstance(value, bool):
        out += [not value, int(value), "true"]
    elif isinstance(value, int):
        out += [value + 1, value - 1, -value - 1, value + 50, float(value), True, 2**63, 2**64]
    elif isinstance(value, float):
        out += [math.nan, math.inf, -math.inf, -value, value * 1e308, str(value)]
        out += [int(value)] if math.isfinite(value) else []
    elif isinstance(value, str):
        out += [value.upper(), value + " ", value[:-1], value + "\x00", 0]
        out.append(value.encode("utf-8", "surrogatepass").hex())
    elif isinstance(value, list):
        out += [value[:-1], value + value[:1], value[::-1], [], [[]], value[1:] or [0]]
        out += [[str(v) for v in value], [v + 1 if type(v) is int else v for v in value]]
    elif isinstance(value, dict):
        out += [list(value), list(value.values()), {}, {k: None for k in value}]
    return out


def locations(doc: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths (tuples of keys and indices) to every value of `doc`, the root included."""
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from locations(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from locations(value, (*path, i))


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


# Special numbers for fields that want an index, a count or a coordinate (and for any other).
_NUMBERS = (math.nan, math.inf, -math.inf, -1, -0.0, 0, 1, 3.5, 2**63 - 1, 2**63, 2**64, True)
_NUMBERS += (Raw("1e400"), Raw("-1e400"), Raw("1" * 400), Raw("9" * 5000))

# Corruptions, by family (the tests give each family its own examples).
STRUCTURE = ("delete", "add_key", "duplicate", "shuffle")
VALUES = ("replace", "variant")
NUMBERS = ("number", "raw")
OPS = STRUCTURE + VALUES + NUMBERS


def _shape(path: tuple) -> tuple:
    """The path with list indices as '*': 'objects'[3].color and [5].color share a shape."""
    return tuple("*" if type(key) is int else key for key in path)


def corrupt(
    data: st.DataObject, doc: Any, within: tuple = (), ops: tuple = OPS, n_max: int = 2
) -> tuple[Any, list]:
    """A deep copy of `doc` with 1..n_max random corruptions (of the kinds `ops`) at or below
    the path `within`.

    The place is drawn uniformly among the shapes of the paths first (`_shape`), so that a
    scene's few coordinates get as much attention as its many relationship indices. Returns
    (new document, list of (op, path)); `Raw` values may appear in it: write it with `dump`.
    """
    doc = copy.deepcopy(doc)
    done = []
    for _ in range(data.draw(st.integers(1, n_max))):
        try:
            _get(doc, within)
        except (KeyError, IndexError, TypeError):  # an earlier corruption removed `within`
            break
        groups: dict[tuple, list[tuple]] = {}
        for path in locations(_get(doc, within), within):
            groups.setdefault(_shape(path), []).append(path)
        path = data.draw(st.sampled_from(groups[data.draw(st.sampled_from(list(groups)))]))
        op = data.draw(st.sampled_from(ops))
        value = _get(doc, path)
        if op == "replace":
            new = data.draw(json_values())
        elif op == "variant":
            new = data.draw(st.sampled_from(_variants(value)))
        elif op == "number":
            new = data.draw(st.sampled_from(_NUMBERS))
        elif op == "raw":
            new = Raw(data.draw(st.sampled_from(_RAW)))
        elif op == "shuffle" and isinstance(value, list) and len(value) > 1:
            new = data.draw(st.permutations(value))
        elif op == "add_key" and isinstance(value, dict):
            key = data.draw(st.text(max_size=6) | st.sampled_from(_GARBAGE_TEXT))
            value[key] = data.draw(json_values())
            done.append((op, path))
            continue
        elif op == "duplicate" and isinstance(value, list) and value:
            value.insert(data.draw(st.integers(0, len(value))), copy.deepcopy(value[-1]))
            done.append((op, path))
            continue
        elif op == "delete" and path:
            del _get(doc, path[:-1])[path[-1]]
            done.append((op, path))
            continue
        else:  # the op does not apply here: retype the value instead
            op, new = "variant", data.draw(st.sampled_from(_variants(value)))
        if path:
            _get(doc, path[:-1])[path[-1]] = new
        else:
            doc = new
        done.append((op, path))
    return doc, done


# One of each kind of wrong value, for the exhaustive single-fault sweep.
BAD_VALUES = (
    None, -1, 0, 2**63, True, 3.5, math.nan, math.inf, -math.inf, "", "0", "\ud800", "../x",
    [], {}, Raw("1e400"), Raw("9" * 5000), Raw("[" * 20_000 + "]" * 20_000),
)  # fmt: skip


def single_faults(doc: Any) -> Iterator[tuple[str, Any]]:
    """Every single fault of `doc` at the first path of each shape: the value deleted, replaced
    by each of BAD_VALUES, or (a list) its last item repeated. Yields (what, new document)."""
    seen = set()
    for path in list(locations(doc)):
        if _shape(path) in seen:
            continue
        seen.add(_shape(path))
        value = _get(doc, path)
        if path:
            new = copy.deepcopy(doc)
            del _get(new, path[:-1])[path[-1]]
            yield f"delete {path}", new
        if isinstance(value, list) and value:
            new = copy.deepcopy(doc)
            _get(new, path).append(copy.deepcopy(value[-1]))
            yield f"repeat the last item of {path}", new
        for bad in BAD_VALUES:
            if path:
                new = copy.deepcopy(doc)
                _get(new, path[:-1])[path[-1]] = copy.copy(bad)
            else:
                new = copy.copy(bad)
            yield f"{path} = {bad!r:.20}", new


def dump(doc: Any, indent: int | None = None) -> str:
    """JSON text of `doc`; each `Raw` value is written verbatim (hence may not be JSON)."""
    raws: list[str] = []

    def default(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        raise TypeError(type(value).__name__)

    text = json.dumps(doc, default=default, indent=indent)
    for k, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{k}\x00"), raw, 1)
    return text
