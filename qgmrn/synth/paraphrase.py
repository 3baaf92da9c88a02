"""Synthetic CLEVR-Humans-style paraphrases of generated questions.

CLEVR-Humans (Johnson et al. 2017b) holds questions people wrote about CLEVR images; they use
words and sentence forms the CLEVR templates never produce, which is what makes fine-tuning on
them a test of generalisation. The real set cannot be downloaded here, so mini-CLEVR writes a
stand-in: every paraphrase is produced by a program, NOT by a person. It re-words the question
from its functional program with a vocabulary of its own ("How many glossy items can you see?",
"What hue is the little orb?", "Is the colour of the box identical to that of the tube?"), so a
model trained on the CLEVR-style text meets unknown words and unfamiliar phrasing while the
answers stay among CLEVR's 28 and are exactly those of the source question.

`NEW_WORDS` lists the paraphrase words that no CLEVR-style mini-CLEVR question contains
(checked by tests/synth/test_paraphrase.py against `template_vocabulary()`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qgmrn.clevr import ANSWERS

from .families import FAMILIES
from .questions import RELATION_PHRASES, SYNONYMS

_SIZE = {"large": ("huge", "giant"), "small": ("little", "mini")}
_MATERIAL = {"metal": ("glossy", "reflective"), "rubber": ("dull", "plastic")}
_COLOR = {
    "gray": ("grey",),
    "red": ("red",),
    "blue": ("blue",),
    "green": ("green",),
    "brown": ("brown",),
    "purple": ("purple", "violet"),
    "cyan": ("teal", "turquoise"),
    "yellow": ("yellow",),
}
_SHAPE = {
    "cube": (("box", "boxes"), ("cuboid", "cuboids")),
    "sphere": (("orb", "orbs"), ("globe", "globes")),
    "cylinder": (("tube", "tubes"), ("can", "cans")),
    None: (("item", "items"), ("piece", "pieces")),
}
_RELATION = {
    "left": ("further left than", "more to the left than"),
    "right": ("further right than", "more to the right than"),
    "front": ("closer to the camera than", "nearer to the viewer than"),
    "behind": ("farther away than", "further back than"),
}
_ATTR_NOUN = {
    "size": ("size", "dimensions"),
    "color": ("colour", "hue"),
    "material": ("texture", "surface"),
    "shape": ("form", "geometry"),
}

_QUERY = {
    "size": ("How large is {x}?", "Would you call {x} big or little?", "Tell me the size of {x}."),
    "color": ("What hue is {x}?", "Which colour is {x}?", "What colour does {x} have?"),
    "material": (
        "What is {x} made out of?",
        "Which texture does {x} have?",
        "What kind of surface does {x} have?",
    ),
    "shape": (
        "What form does {x} have?",
        "What kind of geometry is {x}?",
        "Which geometric form is {x}?",
    ),
}
_EQUAL = (
    "Do {a} and {b} share the same {attr}?",
    "Is the {attr} of {a} identical to that of {b}?",
    "Do {a} and {b} look alike in {attr}?",
)
_COUNT = (
    "How many {s} can you see?",
    "What is the total number of {s}?",
    "Tell me how many {s} you can find.",
)
_EXIST = ("Can you see any {s}?", "Do you notice any {s}?", "Is at least one of the {s} present?")
_INTEGER = {
    "equal_integer": (
        "Do you see exactly as many {a} as {b}?",
        "Is the amount of {a} identical to the amount of {b}?",
    ),
    "less_than": (
        "Is the amount of {a} smaller than the amount of {b}?",
        "Can you find fewer {a} than {b}?",
    ),
    "greater_than": (
        "Is the amount of {a} bigger than the amount of {b}?",
        "Can you find more {a} than {b}?",
    ),
}


class _Renderer:
    """Renders a released-dialect program as an English question with the paraphrase lexicon."""

    def __init__(self, program: Sequence[Mapping[str, Any]], rng: np.random.Generator) -> None:
        self.program = program
        self.rng = rng

    def pick(self, options: Sequence):
        return options[self.rng.integers(len(options))]

    def fn(self, i: int) -> str:
        return self.program[i]["function"]

    def inp(self, i: int, k: int = 0) -> int:
        return self.program[i]["inputs"][k]

    def value(self, i: int) -> str:
        return self.program[i]["value_inputs"][0]

    def the(self, i: int) -> str:
        """'the ...' for a unique node."""
        assert self.fn(i) == "unique"
        return "the " + self.np(self.inp(i), plural=False)

    def np(self, i: int, plural: bool) -> str:
        """A noun phrase for the set computed by node `i`."""
        attrs: dict[str, str] = {}
        while self.fn(i).startswith("filter_"):
            attrs[self.fn(i)[7:]] = self.value(i)
            i = self.inp(i)
        words = []
        if "size" in attrs:
            words.append(self.pick(_SIZE[attrs["size"]]))
        if "color" in attrs:
            words.append(self.pick(_COLOR[attrs["color"]]))
        if "material" in attrs:
            words.append(self.pick(_MATERIAL[attrs["material"]]))
        words.append(self.pick(_SHAPE[attrs.get("shape")])[1 if plural else 0])
        head = " ".join(words)
        base = self.fn(i)
        be = "are" if plural else "is"
        if base == "scene":
            return head
        if base == "relate":
            return f"{head} {self.pick(_RELATION[self.value(i)])} {self.the(self.inp(i))}"
        if base.startswith("same_"):
            noun = self.pick(_ATTR_NOUN[base[5:]])
            share = "share" if plural else "shares"
            return f"{head} that {be} not {self.the(self.inp(i))} but {share} its {noun}"
        if base == "union":
            a, b = (self.np(self.inp(i, k), plural=True) for k in (0, 1))
            return f"{head} that {be} either {a} or {b}"
        if base == "intersect":
            parts = []
            for k in (0, 1):
                rel = self.inp(i, k)
                parts.append(f"{self.pick(_RELATION[self.value(rel)])} {self.the(self.inp(rel))}")
            return f"{head} that {be} both {parts[0]} and {parts[1]}"
        raise ValueError(f"cannot paraphrase a set computed by {base!r}")

    def question(self) -> str:
        last = len(self.program) - 1
        f = self.fn(last)
        if f == "count":
            return self.pick(_COUNT).format(s=self.np(self.inp(last), plural=True))
        if f == "exist":
            return self.pick(_EXIST).format(s=self.np(self.inp(last), plural=True))
        if f.startswith("query_"):
            return self.pick(_QUERY[f[6:]]).format(x=self.the(self.inp(last)))
        if f in _INTEGER:
            a, b = (self.np(self.inp(self.inp(last, k)), plural=True) for k in (0, 1))
            return self.pick(_INTEGER[f]).format(a=a, b=b)
        if f.startswith("equal_"):
            a, b = (self.the(self.inp(self.inp(last, k))) for k in (0, 1))
            return self.pick(_EQUAL).format(a=a, b=b, attr=self.pick(_ATTR_NOUN[f[6:]]))
        raise ValueError(f"cannot paraphrase a question ending in {f!r}")


def paraphrase(program: Sequence[Mapping[str, Any]], rng: np.random.Generator) -> str:
    """A CLEVR-Humans-style wording (synthetic) of the question that `program` asks."""
    text = re.sub(r"\s+", " ", _Renderer(program, rng).question()).strip()
    return text[0].upper() + text[1:]


def _tokens(text: str) -> list[str]:
    """The community tokenisation (CLEVR.md): split `;` and `,`, drop `?` and `.`, lower-case."""
    text = text.replace(";", " ; ").replace(",", " , ").replace("?", "").replace(".", "")
    return text.lower().split()


def template_vocabulary() -> frozenset[str]:
    """Every (lower-cased) word a CLEVR-style mini-CLEVR question can contain."""
    words: set[str] = set()
    slot = re.compile(r"<[ZCMSR]\d*(:p)?>")
    for fam in FAMILIES:
        for text in fam.texts:
            words.update(_tokens(slot.sub(" ", text)))
    for value, options in SYNONYMS.items():
        for w in options:
            words.add(w)
            if value in ("cube", "sphere", "cylinder", ""):  # nouns also appear in the plural
                words.add(w + "s")
    for options in RELATION_PHRASES.values():
        for phrase in options:
            words.update(_tokens(phrase))
    words.update(ANSWERS)
    words.update(("a", "an"))
    return frozenset(words)


def _lexicon() -> set[str]:
    words: set[str] = set()
    tables = [_SIZE, _MATERIAL, _COLOR, _RELATION, _ATTR_NOUN]
    for table in tables:
        for options in table.values():
            for phrase in options:
                words.update(_tokens(phrase))
    for options in _SHAPE.values():
        for pair in options:
            words.update(pair)
    for frames in (_COUNT, _EXIST, _EQUAL, *_QUERY.values(), *_INTEGER.values()):
        for frame in frames:
            words.update(_tokens(re.sub(r"\{\w+\}", " ", frame)))
    words.update(
        (
            "that",
            "is",
            "are",
            "not",
            "but",
            "share",
            "shares",
            "its",
            "either",
            "or",
            "both",
            "and",
            "the",
        )
    )
    return words


NEW_WORDS: frozenset[str] = frozenset(_lexicon() - template_vocabulary())
