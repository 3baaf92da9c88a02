"""Instantiate question families on a scene: slot sampling, constraints, balancing, text.

`generate_questions(scene, rng, k, balancer)` returns up to `k` questions about one scene, each a
released-dialect entry (``question_family_index, question, answer, program``) without the
`image_index` / `question_index` that the dataset writer fills in.

How one family is instantiated (the real CLEVR generator's checks, in our own code):

1. walk the template in order, expanding each compact ``filter`` into ``filter_*`` nodes and
   giving each ``relate`` a relation. A filter that feeds ``unique`` picks a target object of its
   input set and names just enough of its attributes to single it out (plus, sometimes, one
   more); any other filter names random attribute values (often those of an object present);
2. execute the program with `qgmrn.clevr.execute_program_trace` (the authority on answers);
   an ambiguous reference (`AmbiguousReferenceError`) rejects the instantiation;
3. reject degenerate questions: two references to the same object (OUT_NEQ), operands a family
   requires to differ that do not, a narrowing filter that keeps everything, a union one of
   whose operands adds nothing, and - except for a few (`TRIVIAL_RELATION_KEEP`) - a relation
   that changes nothing (its filter finds the same objects in the whole scene);
4. ask the `AnswerBalancer` whether the family has already had too many of this answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np

from qgmrn.clevr import AmbiguousReferenceError, execute_program_trace
from qgmrn.clevr.constants import ATTRIBUTE_VALUES, RELATIONS

from .families import ATTR_SLOT, ATTRS, FAMILIES, Family

# Fraction of instantiations with a relation that changes nothing that are kept anyway (the real
# generator keeps a few such "trivial" relate+filter options too).
TRIVIAL_RELATION_KEEP = 0.1
ATTEMPTS_PER_FAMILY = 6  # fresh slot samples tried for one family before moving on
EXTRA_ATTRIBUTE_PROB = 0.25  # chance a unique reference names one attribute more than needed
RANDOM_FILTER_PROB = 0.35  # chance a non-unique filter names a given attribute

SYNONYMS: dict[str, tuple[str, ...]] = {
    "large": ("large", "big"),
    "small": ("small", "tiny"),
    "metal": ("metal", "metallic", "shiny"),
    "rubber": ("rubber", "matte"),
    "cube": ("cube", "block"),
    "sphere": ("sphere", "ball"),
    "cylinder": ("cylinder",),
    "": ("thing", "object"),  # the noun of a filter chain that names no shape
}
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("left of", "to the left of", "on the left side of"),
    "right": ("right of", "to the right of", "on the right side of"),
    "front": ("in front of",),
    "behind": ("behind",),
}


class AnswerBalancer:
    """Keeps the answers of each family balanced by rejecting over-represented ones.

    An answer is accepted while its count in the family stays below
    ``slack + ratio * (mean count of the answers the family has produced so far)``: a family whose
    answers come out 80/20 on random scenes is pushed towards 50/50. Deterministic: its state is
    a function of the sequence of `record` calls.
    """

    def __init__(self, ratio: float = 1.1, slack: int = 2) -> None:
        self.ratio = ratio
        self.slack = slack
        self.counts: dict[int, dict[str, int]] = {}

    def accepts(self, family: int, answer: str) -> bool:
        counts = self.counts.get(family)
        if not counts:
            return True
        mean = sum(counts.values()) / len(counts)
        return counts.get(answer, 0) < self.slack + self.ratio * mean

    def record(self, family: int, answer: str) -> None:
        counts = self.counts.setdefault(family, {})
        counts[answer] = counts.get(answer, 0) + 1


@cache
def _feeds_unique(family_index: int) -> tuple[bool, ...]:
    """For each template node: is it consumed by a `unique` node?"""
    template = FAMILIES[family_index].template
    feeds = [False] * len(template)
    for node in template:
        if node.function == "unique":
            feeds[node.inputs[0]] = True
    return tuple(feeds)


def _answer(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _filter(objects: Sequence[Mapping], ids: Sequence[int], choice: Mapping[str, str]) -> list:
    return [j for j in ids if all(objects[j][a] == v for a, v in choice.items())]


def _pick_unique(objects, ids, allowed, rng) -> dict[str, str] | None:
    """Attribute values that single out one random object of `ids`, or None if none can."""
    if not ids:
        return None
    target = objects[ids[rng.integers(len(ids))]]
    choice: dict[str, str] = {}
    current = list(ids)
    for a in [allowed[j] for j in rng.permutation(len(allowed))]:
        if len(current) == 1:
            break
        choice[a] = target[a]
        current = [j for j in current if objects[j][a] == target[a]]
    if len(current) != 1:
        return None
    for a in allowed:
        if a not in choice and rng.random() < EXTRA_ATTRIBUTE_PROB:
            choice[a] = target[a]
            break
    return choice


def _pick_random(objects, ids, allowed, rng) -> dict[str, str]:
    """Random attribute values, mostly those of an object present so that counts vary."""
    choice = {}
    for a in allowed:
        if rng.random() < RANDOM_FILTER_PROB:
            if ids and rng.random() < 0.75:
                choice[a] = objects[ids[rng.integers(len(ids))]][a]
            else:
                vocab = ATTRIBUTE_VALUES[a]
                choice[a] = vocab[rng.integers(len(vocab))]
    return choice


def instantiate(
    family: Family,
    scene: Mapping[str, Any],
    rng: np.random.Generator,
    balancer: AnswerBalancer | None = None,
) -> dict | None:
    """One question of `family` about `scene`, or None when this attempt is rejected.

    The returned dict has ``question_family_index, question, answer, program``; the balancer is
    consulted but not updated (the caller records the questions it keeps).
    """
    objects = scene["objects"]
    n = len(objects)
    relationships = scene["relationships"]
    template = family.template
    feeds_unique = _feeds_unique(family.index)
    program: list[dict] = []
    out = [0] * len(template)  # program index holding each template node's value
    guide: list[Any] = [None] * len(template)  # our view of set/object values, for sampling
    slots: dict[str, str | None] = {}
    trivial = False

    def emit(function: str, inputs: list[int], value: str | None = None) -> int:
        program.append(
            {
                "function": function,
                "inputs": inputs,
                "value_inputs": [] if value is None else [value],
            }
        )
        return len(program) - 1

    for i, node in enumerate(template):
        f = node.function
        ins = [out[j] for j in node.inputs]
        if f == "scene":
            guide[i] = list(range(n))
            out[i] = emit("scene", [])
        elif f == "filter":
            source = guide[node.inputs[0]]
            allowed = [a for a in ATTRS if f"{ATTR_SLOT[a]}{node.slot}" not in family.null]
            if feeds_unique[i]:
                choice = _pick_unique(objects, source, allowed, rng)
                if choice is None:
                    return None
            else:
                choice = _pick_random(objects, source, allowed, rng)
            prev = ins[0]
            for a in ATTRS:  # released programs filter size, color, material, shape in order
                slots[f"{ATTR_SLOT[a]}{node.slot}"] = choice.get(a)
                if a in choice:
                    prev = emit(f"filter_{a}", [prev], choice[a])
            guide[i] = _filter(objects, source, choice)
            out[i] = prev
            if template[node.inputs[0]].function == "relate" and choice:
                # a relation that changes nothing: the filter alone finds the same objects
                trivial |= _filter(objects, range(n), choice) == guide[i]
        elif f == "relate":
            r = RELATIONS[rng.integers(len(RELATIONS))]
            slots[f"R{node.slot}"] = r
            guide[i] = list(relationships[r][guide[node.inputs[0]]])
            out[i] = emit("relate", ins, r)
        elif f == "unique":
            if len(guide[node.inputs[0]]) != 1:
                return None
            guide[i] = guide[node.inputs[0]][0]
            out[i] = emit("unique", ins)
        elif f.startswith("same_"):
            attr, me = f[5:], guide[node.inputs[0]]
            guide[i] = [j for j in range(n) if j != me and objects[j][attr] == objects[me][attr]]
            out[i] = emit(f, ins)
        elif f in ("union", "intersect"):
            a, b = set(guide[node.inputs[0]]), set(guide[node.inputs[1]])
            guide[i] = sorted(a | b if f == "union" else a & b)
            out[i] = emit(f, ins)
        else:  # count, exist, query_*, equal_*, integer comparisons: values come from the trace
            out[i] = emit(f, ins)

    if trivial and rng.random() >= TRIVIAL_RELATION_KEEP:
        return None
    try:
        trace = execute_program_trace(program, scene)
    except AmbiguousReferenceError:
        return None
    if not _acceptable(family, template, out, trace):
        return None
    answer = _answer(trace[-1])
    if balancer is not None and not balancer.accepts(family.index, answer):
        return None
    return {
        "question_family_index": family.index,
        "question": render_text(family.texts[rng.integers(len(family.texts))], slots, rng),
        "answer": answer,
        "program": program,
    }


def _acceptable(family: Family, template, out: list[int], trace: list) -> bool:
    """The OUT_NEQ / narrowing / union checks on the executed values."""
    uniques = [trace[out[i]] for i, node in enumerate(template) if node.function == "unique"]
    if len(set(uniques)) != len(uniques):  # one object referred to twice
        return False
    for a, b in family.distinct:
        if trace[out[a]] == trace[out[b]]:
            return False
    for i in family.narrowing:
        if trace[out[i]] == trace[out[template[i].inputs[0]]]:
            return False
    for i, node in enumerate(template):
        if node.function == "union":
            whole = trace[out[i]]
            if any(trace[out[j]] == whole for j in node.inputs):  # an operand adds nothing
                return False
    return True


_SLOT = re.compile(r"<([ZCMSR])(\d*)(:p)?>")


def render_text(text: str, slots: Mapping[str, str | None], rng: np.random.Generator) -> str:
    """Fill a text template's slots with (synonyms of) the sampled values."""

    def word(m: re.Match) -> str:
        letter, suffix, plural = m.group(1), m.group(2), m.group(3)
        value = slots.get(letter + suffix)
        if letter == "R":
            options = RELATION_PHRASES[value]
        elif letter == "S":
            options = SYNONYMS[value or ""]
        elif value is None:
            return ""
        else:
            options = SYNONYMS.get(value, (value,))
        w = options[rng.integers(len(options))]
        return w + "s" if plural else w

    s = _SLOT.sub(word, text)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r" ([?;:,])", r"\1", s)
    s = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", s)
    return s[0].upper() + s[1:]


def generate_questions(
    scene: Mapping[str, Any],
    rng: np.random.Generator,
    k: int,
    balancer: AnswerBalancer | None = None,
    *,
    families: Sequence[Family] = FAMILIES,
) -> list[dict]:
    """Up to `k` questions about `scene`, from distinct families, in the order generated.

    Families are tried in a random order, each up to `ATTEMPTS_PER_FAMILY` times; a scene too
    small for some families (a 3-object scene has no three-hop question) yields fewer. Kept
    questions are recorded in `balancer`, which persists across scenes.
    """
    if k > len(families):
        raise ValueError(
            f"questions_per_scene={k} exceeds the {len(families)} families (one question per "
            f"family and scene); ask for at most {len(families)}"
        )
    questions: list[dict] = []
    texts: set[str] = set()
    for fi in rng.permutation(len(families)):
        if len(questions) >= k:
            break
        family = families[fi]
        for _ in range(ATTEMPTS_PER_FAMILY):
            q = instantiate(family, scene, rng, balancer)
            if q is not None and q["question"] not in texts:
                questions.append(q)
                texts.add(q["question"])
                if balancer is not None:
                    balancer.record(family.index, q["answer"])
                break
    return questions
