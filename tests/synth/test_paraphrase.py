"""Synthetic CLEVR-Humans-style paraphrases (qgmrn.synth.paraphrase)."""

from __future__ import annotations

import numpy as np
import pytest

from qgmrn.clevr import ANSWERS, execute_program
from qgmrn.synth.families import FAMILIES
from qgmrn.synth.paraphrase import NEW_WORDS, _tokens, paraphrase, template_vocabulary
from qgmrn.synth.questions import generate_questions, instantiate

from .test_questions import random_scenes


@pytest.fixture(scope="module")
def pairs() -> list[tuple[dict, dict, str]]:
    """(scene, question, paraphrase) for 60 hand-made scenes, 10 questions each."""
    rng = np.random.default_rng(4)
    out = []
    for scene in random_scenes(60, seed=4):
        for q in generate_questions(scene, rng, 10):
            out.append((scene, q, paraphrase(q["program"], rng)))
    return out


def test_new_words_exist_and_are_unseen_in_clevr_style_text():
    """The paraphrase lexicon brings words no CLEVR-style question has (the vocabulary shift)."""
    assert len(NEW_WORDS) >= 30
    assert not NEW_WORDS & template_vocabulary()
    assert {"colour", "hue", "item", "glossy"} <= NEW_WORDS


def test_template_vocabulary_covers_generated_questions(pairs):
    vocab = template_vocabulary()
    for _, q, _ in pairs:
        assert set(_tokens(q["question"])) <= vocab, q["question"]


def test_paraphrases_use_new_words_and_differ_from_the_source(pairs):
    with_new = sum(bool(set(_tokens(p)) & NEW_WORDS) for _, _, p in pairs)
    assert with_new >= 0.95 * len(pairs)
    assert all(p != q["question"] for _, q, p in pairs)
    unseen = set().union(*(set(_tokens(p)) for _, _, p in pairs)) - template_vocabulary()
    assert len(unseen) >= 30


def test_answers_stay_clevr_answers(pairs):
    """A paraphrase keeps the source's program, hence its answer, one of CLEVR's 28."""
    for scene, q, _ in pairs:
        assert q["answer"] in ANSWERS
        assert execute_program(q["program"], scene) == q["answer"]


def test_every_family_can_be_paraphrased():
    rng = np.random.default_rng(5)
    scenes = random_scenes(40, seed=5, lo=6, hi=10)
    for family in FAMILIES:
        q = next(
            (
                q
                for scene in scenes
                for _ in range(5)
                if (q := instantiate(family, scene, rng)) is not None
            ),
            None,
        )
        text = paraphrase(q["program"], rng)
        assert text[0].isupper() and text[-1] in "?." and "{" not in text, text


def test_paraphrase_is_deterministic(pairs):
    _, q, _ = pairs[0]
    assert paraphrase(q["program"], np.random.default_rng(9)) == paraphrase(
        q["program"], np.random.default_rng(9)
    )
