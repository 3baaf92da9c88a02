"""Question type and subtype of a CLEVR question, given by the last function of its program."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .constants import SUBTYPE_TO_TYPE
from .errors import ProgramError


def question_subtype(program: Sequence[Mapping[str, Any]]) -> str:
    """The subtype (a key of SUBTYPES) of a question: its program's last function.

    Raises ProgramError for an empty program or one that ends in a non-answer function.
    """
    if not program:
        raise ProgramError("empty program has no question subtype")
    last = program[-1]
    function = last.get("function", last.get("type"))  # the generator dialect says "type"
    if function not in SUBTYPE_TO_TYPE:
        raise ProgramError(f"a program ending in {function!r} is not a question")
    return function


def question_type(program: Sequence[Mapping[str, Any]]) -> str:
    """The question type (a key of QUESTION_TYPES) of a question's program."""
    return SUBTYPE_TO_TYPE[question_subtype(program)]


def relational_depth(program: Sequence[Mapping[str, Any]]) -> int:
    """The number of `relate` and `same_*` steps of a program: 0 for a question about one
    object's attributes or a set filtered from the scene ("What color is the large cube?")."""
    functions = (node.get("function", node.get("type", "")) for node in program)
    return sum(f == "relate" or f.startswith("same_") for f in functions)
