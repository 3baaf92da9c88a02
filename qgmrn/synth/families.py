"""The 90 mini-CLEVR question families: program templates, text templates and constraints.

Our own templates (own wording), laid out like the real CLEVR generator's: 9 groups, 90 families,
all 13 subtypes, and the real per-type counts (Query Attribute 32, Count 21, Compare Attribute 16,
Exist 12, Compare Numbers 9). `FAMILIES[i].index == i` is the global `question_family_index`.

A *template* is a topologically sorted list of `TNode`s. Two of its functions are compact forms
that `qgmrn.synth.questions` expands when it instantiates the family:

- ``filter`` with slot suffix ``s``: zero to four real nodes ``filter_size <Zs>``,
  ``filter_color <Cs>``, ``filter_material <Ms>``, ``filter_shape <Ss>`` (an empty slot adds no
  node), in that order, as the released programs have them;
- ``relate`` with slot suffix ``s``: one ``relate`` node whose value input is ``<Rs>``.

Text templates name the same slots: ``<Zs> <Cs> <Ms> <Ss>`` (``<Ss>`` is the noun, "thing" or
"object" when the shape slot is empty) and ``<Ss:p>`` for its plural; ``<Rs>`` is a relation
phrase. Slot constraints mirror the real generator's: `null` slots stay empty (NULL: a question
may not name the attribute it asks about), `distinct` pairs of template nodes must have different
values (OUT_NEQ), `narrowing` filters must change their input set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROUPS: tuple[str, ...] = (
    "zero_hop",
    "one_hop",
    "two_hop",
    "three_hop",
    "single_and",
    "single_or",
    "same_relate",
    "comparison",
    "compare_integer",
)

ATTRS: tuple[str, ...] = ("size", "color", "material", "shape")
# slot letter of each attribute in the text templates (as the real generator's Z C M S)
ATTR_SLOT: dict[str, str] = {"size": "Z", "color": "C", "material": "M", "shape": "S"}


@dataclass(frozen=True)
class TNode:
    """One node of a program template; `slot` is the suffix of a filter chain or relation."""

    function: str
    inputs: tuple[int, ...] = ()
    slot: str | None = None


@dataclass(frozen=True)
class Family:
    """A question family: one program template with several text templates."""

    index: int
    group: str
    name: str
    template: tuple[TNode, ...]
    texts: tuple[str, ...]
    null: frozenset[str] = frozenset()  # slot names that must stay empty, e.g. "C2"
    distinct: tuple[tuple[int, int], ...] = ()  # template nodes whose values must differ
    narrowing: tuple[int, ...] = ()  # filter template nodes that must change their input
    subtype: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "subtype", self.template[-1].function)


@dataclass(frozen=True)
class _Spec:
    """What a family builder returns: a `Family` before it has its index."""

    group: str
    name: str
    template: _Template
    texts: tuple[str, ...]
    null: tuple[str, ...] = ()
    distinct: tuple[tuple[int, int], ...] = ()
    narrowing: tuple[int, ...] = ()


class _Template:
    """Builds a template node by node; every method returns the new node's index."""

    def __init__(self) -> None:
        self.nodes: list[TNode] = []

    def add(self, function: str, *inputs: int, slot: str | None = None) -> int:
        self.nodes.append(TNode(function, tuple(inputs), slot))
        return len(self.nodes) - 1

    def filter(self, inp: int, s: str) -> int:
        return self.add("filter", inp, slot=s)

    def obj(self, s: str) -> int:
        """unique(filter_s(scene)): "the <Zs> <Cs> <Ms> <Ss>"."""
        return self.add("unique", self.filter(self.add("scene"), s))

    def hop(self, anchor: int, r: str, s: str) -> int:
        """filter_s(relate_r(anchor)): the things <Rr> the anchor (a set)."""
        return self.filter(self.add("relate", anchor, slot=r), s)


def _np(s: str, plural: bool = False) -> str:
    """The noun phrase of filter slot suffix `s` in a text template."""
    noun = f"<S{s}:p>" if plural else f"<S{s}>"
    return f"<Z{s}> <C{s}> <M{s}> {noun}"


# Text pieces for attribute questions (query_*): (question about "{x}", ...) per attribute.
_QUERY_TEXTS: dict[str, tuple[str, ...]] = {
    "size": ("What size is {x}?", "How big is {x}?", "What is the size of {x}?"),
    "color": ("What color is {x}?", "What is the color of {x}?", "{X} has what color?"),
    "material": ("What material is {x}?", "What is {x} made of?", "{X} is made of what material?"),
    "shape": ("What shape is {x}?", "What is the shape of {x}?", "{X} has what shape?"),
}
# The same questions about an object introduced earlier with "There is ...; ".
_QUERY_IT: dict[str, str] = {
    "size": "what size is it?",
    "color": "what color is it?",
    "material": "what is it made of?",
    "shape": "what shape is it?",
}


def _query_texts(attr: str, x: str, intro: str | None = None) -> tuple[str, ...]:
    """Text variants asking for `attr` of the object described by `x` ("the ...")."""
    out = [t.format(x=x, X=x[0].upper() + x[1:]) for t in _QUERY_TEXTS[attr]]
    if intro is not None:
        out.append(f"There is {intro}; {_QUERY_IT[attr]}")
    return tuple(out)


def _hop_chain(t: _Template, hops: int) -> tuple[int, str, str]:
    """Anchor plus `hops - 1` uniquely identified hops; returns (object node, its text, suffix).

    The text of hop k reads "the <Z> ... <S> [that is] <R> <previous>" with slot suffixes "",
    "2", "3", ... and relation suffixes "", "2", ...
    """
    node = t.obj("")
    text = f"the {_np('')}"
    for k in range(1, hops):
        s, r = str(k + 1), "" if k == 1 else str(k)
        node = t.add("unique", t.hop(node, r, s))
        text = f"the {_np(s)} that is <R{r}> {text}"
    suffix = str(hops + 1) if hops else ""
    return node, text, suffix


# count and exist over a set: "{things}" / "{thing}" its noun phrase, "{where}" the relation to
# an anchor (" <R> the ...") or nothing, "{where_or_there}" the same or " there".
_SET_TEXTS: dict[str, tuple[str, ...]] = {
    "count": (
        "How many {things} are there{where}?",
        "What number of {things} are{where_or_there}?",
        "How many {things} are visible{where}?",
    ),
    "exist": (
        "Are there any {things}{where}?",
        "Is there a {thing}{where}?",
        "Does a {thing} exist{where}?",
    ),
}


def _hop_families(group: str, hops: int) -> list[_Spec]:
    """count, exist and the four queries over the things `hops` relations from an anchor."""
    out = []

    def target() -> tuple[_Template, int, str, str]:
        t = _Template()
        if hops == 0:
            return t, t.filter(t.add("scene"), ""), "", ""
        anchor, anchor_text, s = _hop_chain(t, hops)
        r = "" if hops == 1 else str(hops)
        return t, t.hop(anchor, r, s), s, f"<R{r}> {anchor_text}"

    for function in ("count", "exist"):
        t, node, s, where = target()
        t.add(function, node)
        where_sp = f" {where}" if where else ""
        texts = tuple(
            x.format(
                things=_np(s, True),
                thing=_np(s),
                where=where_sp,
                where_or_there=where_sp or " there",
            )
            for x in _SET_TEXTS[function]
        )
        out.append(_Spec(group, function, t, texts))
    for attr in ATTRS:
        t, node, s, where = target()
        t.add(f"query_{attr}", t.add("unique", node))
        x = f"the {_np(s)} that is {where}" if where else f"the {_np(s)}"
        intro = f"a {_np(s)} {where}" if where else None
        out.append(
            _Spec(
                group,
                f"query_{attr}",
                t,
                _query_texts(attr, x, intro),
                (f"{ATTR_SLOT[attr]}{s}",),
            )
        )
    return out


def _single_and() -> list[_Spec]:
    """Things that are both <R> one object and <R2> another: count and the four queries."""
    out = []

    def target() -> tuple[_Template, int, int, int]:
        t = _Template()
        a, b = t.obj(""), t.obj("2")
        both = t.add("intersect", t.add("relate", a, slot=""), t.add("relate", b, slot="2"))
        return t, t.filter(both, "3"), a, b

    both_text = f"<R> the {_np('')} and <R2> the {_np('2')}"
    t, node, a, b = target()
    t.add("count", node)
    out.append(
        _Spec(
            "single_and",
            "count",
            t,
            (
                f"How many {_np('3', True)} are both {both_text}?",
                f"What number of {_np('3', True)} are {both_text}?",
                f"How many {_np('3', True)} are there that are both {both_text}?",
            ),
            (),
            ((a, b),),
        )
    )
    for attr in ATTRS:
        t, node, a, b = target()
        t.add(f"query_{attr}", t.add("unique", node))
        x = f"the {_np('3')} that is both {both_text}"
        out.append(
            _Spec(
                "single_and",
                f"query_{attr}",
                t,
                _query_texts(attr, x, f"a {_np('3')} that is both {both_text}"),
                (f"{ATTR_SLOT[attr]}3",),
                ((a, b),),
            )
        )
    return out


# The two operands of a union or a comparison: (anchor slot, relation slot, operand slot) each.
_OPERAND_SLOTS: tuple[tuple[str, str, str], ...] = (("", "", "3"), ("2", "2", "4"))
# Which of the two operands go through a relation to an anchor object: (left, right).
_RELATED: tuple[tuple[bool, bool], ...] = (
    (False, False),
    (True, False),
    (False, True),
    (True, True),
)


def _related_code(related: tuple[bool, bool]) -> str:
    """The end of a family name that says which operands are related (r) or plain (p)."""
    return "".join("r" if rel else "p" for rel in related)


def _operand_sets(t: _Template, related: tuple[bool, bool]) -> list[tuple[int, str]]:
    """The two sets a union or a comparison of counts reads, left first, as (node, plural noun
    phrase): the things of the operand's slot that are <Rr> its anchor object when `related`,
    else those of the whole scene."""
    out = []
    for rel, (anchor_s, r, s) in zip(related, _OPERAND_SLOTS, strict=True):
        if rel:
            out.append((t.hop(t.obj(anchor_s), r, s), f"{_np(s, True)} <R{r}> the {_np(anchor_s)}"))
        else:
            out.append((t.filter(t.add("scene"), s), _np(s, True)))
    return out


def _single_or() -> list[_Spec]:
    """Counts of a union of two sets, each plain or through a relation, optionally narrowed."""
    out = []
    for narrowed in (False, True):
        for related in _RELATED:
            t = _Template()
            (left, a), (right, b) = _operand_sets(t, related)
            union = t.add("union", left, right)
            null: tuple[str, ...] = ()
            narrowing: tuple[int, ...] = ()
            if narrowed:
                # "How many large metal things are either red cubes or cylinders?": the narrowing
                # filter (slot "5") names size/material only, the operands colour/shape only.
                node = t.filter(union, "5")
                null = ("C5", "S5", "Z3", "M3", "Z4", "M4")
                narrowing = (node,)
                texts = (
                    f"How many <Z5> <M5> things are either {a} or {b}?",
                    f"What number of <Z5> <M5> objects are {a} or {b}?",
                    f"How many <Z5> <M5> things are there that are {a} or {b}?",
                )
            else:
                node = union
                texts = (
                    f"How many things are either {a} or {b}?",
                    f"What number of objects are {a} or {b}?",
                    f"How many {a} or {b} are there?",
                )
            t.add("count", node)
            name = ("narrowed_" if narrowed else "") + "count_" + _related_code(related)
            out.append(_Spec("single_or", name, t, texts, null, ((left, right),), narrowing))
    return out


_SAME_TEXTS: dict[str, tuple[str, str]] = {
    # (adjective phrase "the same <attr> as", verb phrase "has the same <attr> as")
    "size": ("the same size as", "has the same size as"),
    "color": ("the same color as", "has the same color as"),
    "material": ("made of the same material as", "has the same material as"),
    "shape": ("the same shape as", "has the same shape as"),
}


def _same_relate() -> list[_Spec]:
    """Objects sharing an attribute with a reference object (same_*): 7 families per attribute."""
    out = []
    ref = f"the {_np('')}"
    for attr in ATTRS:
        adj, verb = _SAME_TEXTS[attr]
        verb_pl = verb.replace("has", "have", 1)

        def start(filtered: bool, attr: str = attr):
            t = _Template()
            node = t.add(f"same_{attr}", t.obj(""))
            return t, (t.filter(node, "2") if filtered else node)

        # exist and count over the other objects, all of them or those of filter slot "2"
        # (which may not name the shared attribute): (function, filtered, texts)
        sets = (
            (
                "exist",
                False,
                (
                    f"Is there anything else that is {adj} {ref}?",
                    f"Are there any other things {adj} {ref}?",
                    f"Does anything else have the same {attr} as {ref}?",
                ),
            ),
            (
                "exist",
                True,
                (
                    f"Is there another {_np('2')} that {verb} {ref}?",
                    f"Are there any other {_np('2', True)} {adj} {ref}?",
                    f"Is there any other {_np('2')} that is {adj} {ref}?",
                ),
            ),
            (
                "count",
                False,
                (
                    f"How many other things are {adj} {ref}?",
                    f"What number of other objects {verb_pl} {ref}?",
                    f"How many other objects {verb_pl} {ref}?",
                ),
            ),
            (
                "count",
                True,
                (
                    f"How many other {_np('2', True)} are {adj} {ref}?",
                    f"What number of other {_np('2', True)} {verb_pl} {ref}?",
                    f"How many other {_np('2', True)} {verb_pl} {ref}?",
                ),
            ),
        )
        for function, filtered, texts in sets:
            t, node = start(filtered)
            t.add(function, node)
            name = f"same_{attr}.{function}" + ("_filtered" if filtered else "")
            null = (f"{ATTR_SLOT[attr]}2",) if filtered else ()
            out.append(_Spec("same_relate", name, t, texts, null))
        for other in ATTRS:
            if other == attr:
                continue
            t, node = start(True)
            t.add(f"query_{other}", t.add("unique", node))
            x = f"the other {_np('2')} that is {adj} {ref}"
            out.append(
                _Spec(
                    "same_relate",
                    f"same_{attr}.query_{other}",
                    t,
                    _query_texts(other, x, f"another {_np('2')} that {verb} {ref}"),
                    (f"{ATTR_SLOT[attr]}2", f"{ATTR_SLOT[other]}2"),
                )
            )
    return out


_EQUAL_TEXTS: dict[str, tuple[str, ...]] = {
    "size": (
        "Is {a} the same size as {b}?",
        "Does {a} have the same size as {b}?",
        "Are {a} and {b} the same size?",
    ),
    "color": (
        "Is {a} the same color as {b}?",
        "Does {a} have the same color as {b}?",
        "Are {a} and {b} the same color?",
    ),
    "material": (
        "Is {a} made of the same material as {b}?",
        "Does {a} have the same material as {b}?",
        "Are {a} and {b} made of the same material?",
    ),
    "shape": (
        "Is {a} the same shape as {b}?",
        "Does {a} have the same shape as {b}?",
        "Are {a} and {b} the same shape?",
    ),
}
_EQUAL_IT: dict[str, str] = {
    "size": "is it the same size as {b}?",
    "color": "does it have the same color as {b}?",
    "material": "is it made of the same material as {b}?",
    "shape": "does it have the same shape as {b}?",
}


def _comparison() -> list[_Spec]:
    """equal_<attr> of two uniquely described objects, each directly or through a relation."""
    out = []
    for attr in ATTRS:
        letter = ATTR_SLOT[attr]
        for related in _RELATED:
            t = _Template()
            objs, descs, null = [], [], []
            for rel, (anchor_s, r, s) in zip(related, _OPERAND_SLOTS, strict=True):
                if rel:
                    objs.append(t.add("unique", t.hop(t.obj(anchor_s), r, s)))
                    descs.append(
                        (
                            f"the {_np(s)} that is <R{r}> the {_np(anchor_s)}",
                            f"a {_np(s)} <R{r}> the {_np(anchor_s)}",
                        )
                    )
                    null.append(f"{letter}{s}")
                else:
                    objs.append(t.obj(anchor_s))
                    descs.append((f"the {_np(anchor_s)}", f"a {_np(anchor_s)}"))
                    null.append(f"{letter}{anchor_s}")
            qa = t.add(f"query_{attr}", objs[0])
            qb = t.add(f"query_{attr}", objs[1])
            t.add(f"equal_{attr}", qa, qb)
            (a, a_intro), (b, _) = descs
            texts = tuple(x.format(a=a, b=b) for x in _EQUAL_TEXTS[attr])
            texts += (f"There is {a_intro}; " + _EQUAL_IT[attr].format(b=b),)
            name = f"equal_{attr}_{_related_code(related)}"
            out.append(_Spec("comparison", name, t, texts, tuple(null), ((objs[0], objs[1]),)))
    return out


_INTEGER_TEXTS: dict[str, tuple[str, ...]] = {
    "equal_integer": (
        "Are there the same number of {a} and {b}?",
        "Is the number of {a} the same as the number of {b}?",
        "Are there as many {a} as {b}?",
    ),
    "less_than": (
        "Are there fewer {a} than {b}?",
        "Is the number of {a} less than the number of {b}?",
        "Are there less {a} than {b}?",
    ),
    "greater_than": (
        "Are there more {a} than {b}?",
        "Is the number of {a} greater than the number of {b}?",
        "Is the number of {a} more than the number of {b}?",
    ),
}


def _compare_integer() -> list[_Spec]:
    """equal_integer / less_than / greater_than of two counts, plain or through relations."""
    out = []
    for function, variants in _INTEGER_TEXTS.items():
        for related in ((False, False), (True, False), (True, True)):
            t = _Template()
            (left, a), (right, b) = _operand_sets(t, related)
            t.add(function, t.add("count", left), t.add("count", right))
            texts = tuple(x.format(a=a, b=b) for x in variants)
            name = f"{function}_{_related_code(related)}"
            out.append(_Spec("compare_integer", name, t, texts, (), ((left, right),)))
    return out


def _build() -> tuple[Family, ...]:
    specs: list[_Spec] = []
    for hops, group in enumerate(GROUPS[:4]):
        specs += _hop_families(group, hops)
    specs += _single_and() + _single_or() + _same_relate() + _comparison() + _compare_integer()
    return tuple(
        Family(
            index=index,
            group=spec.group,
            name=f"{spec.group}.{spec.name}",
            template=tuple(spec.template.nodes),
            texts=tuple(spec.texts),
            null=frozenset(spec.null),
            distinct=tuple(spec.distinct),
            narrowing=tuple(spec.narrowing),
        )
        for index, spec in enumerate(specs)
    )


FAMILIES: tuple[Family, ...] = _build()


def families_by_group() -> dict[str, list[Family]]:
    """The families of each group, in index order."""
    out: dict[str, list[Family]] = {g: [] for g in GROUPS}
    for fam in FAMILIES:
        out[fam.group].append(fam)
    return out


def max_hops(family: Family) -> int:
    """The relational depth of a family: its `relate` and `same_*` nodes (0 for zero-hop)."""
    return sum(n.function == "relate" or n.function.startswith("same_") for n in family.template)


def families_up_to(hops: int | None) -> tuple[Family, ...]:
    """The families of relational depth <= `hops` (all of them for None): the curriculum's
    stages (`qgmrn.data.stream`)."""
    if hops is None:
        return FAMILIES
    return tuple(f for f in FAMILIES if max_hops(f) <= hops)
