"""Instantiate question families on a scene: slot sampling, constraints, balancing, text.

`generate_questions(scene, rng, k)` returns up to `k` questions about one scene, each a
released-dialect entry (``question_family_index, question, answer, program``) without the
`image_index` / `question_index` that the dataset writer fills in. It is a pure function of the
scene and the generator's state: no state crosses scenes, so the questions of scene i of a split
(or of the training stream, `qgmrn.data.stream`) depend on (seed, split, i) alone.

What a scene's questions are (ours, after the real generator's statistics):

- **The type mix.** Each scene's k questions are allotted to the five question types by
  `allot_types`, so that every split, whatever its size, has CLEVR's mix (`CLEVR_TYPE_MIX`) up to
  the rare scene where a type cannot be instantiated. The old per-split balancer drifted with the
  split's size (measured: Count 8.5% of a 5k train split, 5.7% of a 30k one).
- **The family** within a type: uniformly at random among those not yet used on this scene.
- **Answer balancing** inside a family, stateless: before instantiating, a target answer is drawn
  (yes/no: each 1/2; counts: uniform over 0..min(objects, `MAX_COUNT_TARGET`)); instantiations
  are sampled until one gives the target, up to `ATTEMPTS_PER_QUESTION`, else the first valid one
  is kept. Query answers are not targeted: uniform object sampling already spreads them.

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
4. keep it if it gives the slot's target answer (see above).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np

from qgmrn.clevr import AmbiguousReferenceError, execute_program_trace
from qgmrn.clevr.constants import ATTRIBUTE_VALUES, RELATIONS, SUBTYPE_TO_TYPE

from .families import ATTR_SLOT, ATTRS, FAMILIES, Family

# Fraction of instantiations with a relation that changes nothing that are kept anyway (the real
# generator keeps a few such "trivial" relate+filter options too).
TRIVIAL_RELATION_KEEP = 0.1
ATTEMPTS_PER_FAMILY = 6  # fresh slot samples tried for one family before moving on
ATTEMPTS_PER_QUESTION = 24  # instantiations tried (over families) to hit a slot's target answer
MAX_COUNT_TARGET = 6  # count targets are drawn from 0..min(objects, this)
# CLEVR's question-type mix: the public CLEVR question generator over 500 real CLEVR val scenes,
# 10 templates per image (measured on generated splits). Shares sum to 1.001 and are renormalised.
CLEVR_TYPE_MIX: dict[str, float] = {
    "count": 0.237,
    "exist": 0.136,
    "compare_numbers": 0.090,
    "query_attribute": 0.359,
    "compare_attribute": 0.179,
}
YES_NO_SUBTYPES = frozenset(
    s for s, t in SUBTYPE_TO_TYPE.items() if t in ("exist", "compare_numbers", "compare_attribute")
)
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
) -> dict | None:
    """One question of `family` about `scene`, or None when this attempt is rejected.

    The returned dict has ``question_family_index, question, answer, program``.
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


def allot_types(k: int, mix: Mapping[str, float], rng: np.random.Generator) -> list[str]:
    """The question types of one scene's `k` questions, in random order, following `mix`.

    Each type gets floor(k * share) questions; the remaining ones go to the types by systematic
    sampling over the fractional parts, so a type's expected count is exactly k * share and the
    count varies by at most one from scene to scene: a split of a few hundred scenes already has
    the mix to within a point.
    """
    total = sum(mix.values())
    types = list(mix)
    expected = np.array([k * mix[t] / total for t in types])
    base = np.floor(expected).astype(int)
    frac = expected - base
    rest = k - int(base.sum())
    if rest > 0:  # positions u, u+1, ... on the cumulative fractions (they sum to `rest`)
        edges = np.cumsum(frac)
        picks = np.searchsorted(edges, rng.random() + np.arange(rest), side="right")
        for j in np.minimum(picks, len(types) - 1):
            base[j] += 1
    out = [t for t, n in zip(types, base, strict=True) for _ in range(n)]
    return [out[j] for j in rng.permutation(len(out))]


def answer_target(family: Family, scene: Mapping[str, Any], rng: np.random.Generator):
    """The answer a question slot aims at (stateless balancing), or None for queries."""
    if family.subtype in YES_NO_SUBTYPES:
        return "yes" if rng.random() < 0.5 else "no"
    if family.subtype == "count":
        return str(rng.integers(min(len(scene["objects"]), MAX_COUNT_TARGET) + 1))
    return None


def _question_of_type(
    candidates: Sequence[Family],
    used: set[int],
    texts: set[str],
    scene: Mapping[str, Any],
    rng: np.random.Generator,
) -> dict | None:
    """One question from an unused family of `candidates`, aiming at a random target answer."""
    order = [candidates[j] for j in rng.permutation(len(candidates))]
    order = [f for f in order if f.index not in used]
    if not order:
        return None
    target = answer_target(order[0], scene, rng)
    fallback = None
    tries = 0
    for family in order:
        for _ in range(ATTEMPTS_PER_FAMILY):
            tries += 1
            q = instantiate(family, scene, rng)
            if q is not None and q["question"] not in texts:
                if target is None or q["answer"] == target:
                    return q
                fallback = fallback or q
            if tries >= ATTEMPTS_PER_QUESTION and fallback is not None:
                return fallback
    return fallback


@cache
def _families_by_type(families: tuple[Family, ...]) -> dict[str, tuple[Family, ...]]:
    out: dict[str, list[Family]] = {}
    for f in families:
        out.setdefault(SUBTYPE_TO_TYPE[f.subtype], []).append(f)
    return {t: tuple(fs) for t, fs in out.items()}


def generate_questions(
    scene: Mapping[str, Any],
    rng: np.random.Generator,
    k: int,
    *,
    families: Sequence[Family] = FAMILIES,
    type_mix: Mapping[str, float] = CLEVR_TYPE_MIX,
) -> list[dict]:
    """Up to `k` questions about `scene`, from distinct families, in random order.

    The types follow `type_mix` (`allot_types`, over the types that `families` can ask);
    within a type the family is random; each question aims at a random answer
    (`answer_target`). A scene too small for every family of a type (rare) yields fewer.
    """
    if k > len(families):
        raise ValueError(
            f"questions_per_scene={k} exceeds the {len(families)} families (one question per "
            f"family and scene); ask for at most {len(families)}"
        )
    by_type = _families_by_type(tuple(families))
    mix = {t: p for t, p in type_mix.items() if t in by_type and p > 0}
    if not mix:
        raise ValueError(f"no family of the types {sorted(type_mix)} among the families given")
    questions: list[dict] = []
    used: set[int] = set()
    texts: set[str] = set()
    for qtype in allot_types(k, mix, rng):
        q = _question_of_type(by_type[qtype], used, texts, scene, rng)
        if q is not None:
            questions.append(q)
            used.add(q["question_family_index"])
            texts.add(q["question"])
    return questions
