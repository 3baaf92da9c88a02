"""Execute CLEVR functional programs on scenes (the 26 functions of CLEVR.md).

Node values during execution: a set is a list of object indices, an object is an int index, a
count is an int, a boolean a bool and an attribute value a str. The executor is pure: it never
mutates the program or the scene and the values it returns share no list with the scene.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import AmbiguousReferenceError, ProgramError
from .signatures import SIGNATURES


def _node_parts(node: Mapping[str, Any], k: int) -> tuple[str, Sequence[int], Sequence[str]]:
    """Return (function, inputs, value_inputs) of node k, accepting the generator dialect too."""
    if not isinstance(node, Mapping):
        raise ProgramError(f"node {k} is not a dict: {node!r}")
    function = node.get("function", node.get("type"))
    values = node.get("value_inputs", node.get("side_inputs", ()))
    return function, node.get("inputs", ()), values


def execute_program_trace(program: Sequence[Mapping[str, Any]], scene: Mapping[str, Any]) -> list:
    """Run `program` on `scene` and return the value of every node, in program order.

    Raises:
        AmbiguousReferenceError: a `unique` node met a set whose size is not 1.
        ProgramError: anything else that makes the program meaningless on this scene (unknown
            function, input not before its node, wrong input kind, unknown value input).
    """
    objects = scene["objects"]
    n = len(objects)
    values: list = []
    kinds: list[str] = []
    for k, node in enumerate(program):
        function, inputs, value_inputs = _node_parts(node, k)
        sig = SIGNATURES.get(function)
        if sig is None:
            raise ProgramError(f"node {k}: unknown function {function!r}")
        if len(inputs) != len(sig.inputs):
            raise ProgramError(
                f"node {k} ({function}): takes {len(sig.inputs)} inputs, got {len(inputs)}"
            )
        args = []
        for i, want in zip(inputs, sig.inputs, strict=True):
            if not isinstance(i, int) or not 0 <= i < k:
                raise ProgramError(f"node {k} ({function}): input {i!r} is not an earlier node")
            if kinds[i] != want:
                raise ProgramError(
                    f"node {k} ({function}): input {i} is a {kinds[i]}, expected a {want}"
                )
            args.append(values[i])
        value = None
        if sig.values is not None:
            if len(value_inputs) != 1 or value_inputs[0] not in sig.values:
                raise ProgramError(
                    f"node {k} ({function}): value inputs {list(value_inputs)!r} are not one of "
                    f"{', '.join(sig.values)}"
                )
            value = value_inputs[0]
        values.append(_apply(function, args, value, scene, objects, n))
        kinds.append(sig.output)
    return values


def _apply(function: str, args: list, value: str | None, scene, objects, n: int):
    """The value of one node, given its function, evaluated inputs and value input."""
    if function == "scene":
        return list(range(n))
    head, _, attr = function.partition("_")
    if head == "filter":
        return [j for j in args[0] if objects[j][attr] == value]
    if function == "unique":
        if len(args[0]) != 1:
            raise AmbiguousReferenceError(
                f"unique: the set {args[0]} has {len(args[0])} objects, not exactly 1"
            )
        return args[0][0]
    if function == "relate":
        try:
            related = scene["relationships"][value][args[0]]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProgramError(f"relate: scene has no relationships[{value!r}][{args[0]}]") from exc
        return list(related)  # a copy: callers may mutate trace values
    if function == "union":
        return sorted(set(args[0]) | set(args[1]))
    if function == "intersect":
        return sorted(set(args[0]) & set(args[1]))
    if function == "count":
        return len(args[0])
    if function == "exist":
        return len(args[0]) > 0
    if head == "query":
        return objects[args[0]][attr]
    if head == "same":
        i = args[0]
        mine = objects[i][attr]
        return [j for j in range(n) if j != i and objects[j][attr] == mine]
    if head == "equal":  # equal_<attribute> and equal_integer
        return args[0] == args[1]
    if function == "less_than":
        return args[0] < args[1]
    if function == "greater_than":
        return args[0] > args[1]
    raise AssertionError(f"unhandled function {function}")  # SIGNATURES and _apply disagree


def answer_string(value: Any) -> str:
    """The CLEVR answer spelling of a final node value: "yes"/"no", decimal ints, attributes."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, str)):
        return str(value)
    raise ProgramError(f"program ends in {value!r}, which is not an answer")


def execute_program(program: Sequence[Mapping[str, Any]], scene: Mapping[str, Any]) -> str:
    """The answer of `program` on `scene`, spelled as in CLEVR's answer vocabulary.

    Raises AmbiguousReferenceError or ProgramError as `execute_program_trace` does, and
    ProgramError for an empty program or one whose last node is a set or an object.
    """
    if not program:
        raise ProgramError("empty program")
    last = _node_parts(program[-1], len(program) - 1)[0]
    if SIGNATURES.get(last) is not None and SIGNATURES[last].output in ("set", "object"):
        raise ProgramError(f"program ends in {last}, whose value is not an answer")
    return answer_string(execute_program_trace(program, scene)[-1])
