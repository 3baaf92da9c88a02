"""The typed signature of each of the 26 program functions (CLEVR.md, "Program functions").

Both the file validator and the executor check programs against this one table, so a program the
loader accepts is one the executor can run (on a scene where its `unique` nodes are unambiguous).

Value kinds: "set" (list of object indices), "object" (one index), "integer", "bool", and the four
attribute kinds "size", "color", "material", "shape" (an attribute value).
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import ATTRIBUTE_VALUES, FUNCTIONS, RELATIONS


@dataclass(frozen=True)
class Signature:
    """Inputs (kinds of the input nodes), value-input vocabulary (or None) and output kind."""

    inputs: tuple[str, ...]
    values: tuple[str, ...] | None
    output: str


def _build() -> dict[str, Signature]:
    table = {
        "scene": Signature((), None, "set"),
        "unique": Signature(("set",), None, "object"),
        "relate": Signature(("object",), RELATIONS, "set"),
        "union": Signature(("set", "set"), None, "set"),
        "intersect": Signature(("set", "set"), None, "set"),
        "count": Signature(("set",), None, "integer"),
        "exist": Signature(("set",), None, "bool"),
        "equal_integer": Signature(("integer", "integer"), None, "bool"),
        "less_than": Signature(("integer", "integer"), None, "bool"),
        "greater_than": Signature(("integer", "integer"), None, "bool"),
    }
    for attr, vocab in ATTRIBUTE_VALUES.items():
        table[f"filter_{attr}"] = Signature(("set",), vocab, "set")
        table[f"query_{attr}"] = Signature(("object",), None, attr)
        table[f"same_{attr}"] = Signature(("object",), None, "set")
        table[f"equal_{attr}"] = Signature((attr, attr), None, "bool")
    assert set(table) == set(FUNCTIONS), "signature table out of step with FUNCTIONS"
    return {name: table[name] for name in FUNCTIONS}


SIGNATURES: dict[str, Signature] = _build()
