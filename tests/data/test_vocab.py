"""Tokenisation and the vocabulary: the community's conventions, files, fine-tuning growth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qgmrn.clevr import ANSWERS
from qgmrn.data.vocab import END, NULL, SPECIALS, START, UNK, Vocab, VocabFormatError, tokenize

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "clevr-samples"
TBD_VOCAB = SAMPLES / "tbdnets_clevr_vocab.json"


def test_tokenize_separates_semicolon_and_comma_drops_question_mark_and_period():
    assert tokenize("Is it red; what shape is it?") == [
        "Is", "it", "red", ";", "what", "shape", "is", "it",
    ]  # fmt: skip
    assert tokenize("A cube, a ball.") == ["A", "cube", ",", "a", "ball"]


def test_tokenize_keeps_case_and_never_emits_empty_tokens():
    """The real vocabulary is case-sensitive; doubled spaces give no "" token here."""
    assert tokenize("What  color   is it ?") == ["What", "color", "is", "it"]


def test_build_puts_specials_first_then_sorted_words():
    v = Vocab.build(["the cube?", "The ball; the cube", {"question": "a cube"}])
    assert v.idx_to_token == [*SPECIALS, ";", "The", "a", "ball", "cube", "the"]
    assert (v.token_to_idx["<NULL>"], v.token_to_idx["<UNK>"]) == (NULL, UNK)
    assert len(v) == 10


def test_build_min_count_drops_rare_words():
    v = Vocab.build(["a a b", "a c"], min_count=2)
    assert v.idx_to_token == [*SPECIALS, "a"]


def test_encode_wraps_in_start_end_and_counts_unknown_words():
    v = Vocab.build(["is there a cube"])
    ids = v.encode_question("Is there a sphere?")
    assert ids[0] == START and ids[-1] == END
    assert ids[1:-1] == [UNK, v.token_to_idx["there"], v.token_to_idx["a"], UNK]
    assert v.unk_count == 2 and v.unk_words == {"Is": 1, "sphere": 1}
    assert v.decode(ids) == "<UNK> there a <UNK>"
    v.reset_unk_counts()
    assert v.unk_count == 0 and not v.unk_words


def test_answers_are_the_28_clevr_answers_in_fixed_order():
    v = Vocab.build([])
    assert v.num_answers == 28 and v.answers == ANSWERS
    assert [v.encode_answer(a) for a in ANSWERS] == list(range(28))
    assert v.decode_answer(v.encode_answer("cyan")) == "cyan"
    with pytest.raises(ValueError, match="unknown answer 'maybe'"):
        v.encode_answer("maybe")


def test_extend_appends_without_moving_existing_indices():
    v = Vocab.build(["is there a cube"])
    before = dict(v.token_to_idx)
    assert v.extend(["cube", "shiny", "globe", "shiny"]) == 2
    assert {t: v.token_to_idx[t] for t in before} == before
    assert v.idx_to_token[-2:] == ["shiny", "globe"]
    assert UNK not in v.encode_question("shiny globe")


def test_save_load_round_trip(tmp_path):
    v = Vocab.build(["is there a cube;", "What color"])
    v.extend(["globe"])
    path = tmp_path / "sub" / "vocab.json"
    v.save(path)
    assert Vocab.load(path) == v
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temporary left over


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON"),
        ("[1, 2]", "no 'question_token_to_idx'"),
        ('{"question_token_to_idx": {"<NULL>": 0}}', "neither a qgmrn vocabulary"),
        (
            '{"format": "qgmrn-vocab", "version": 1, "answers": [],'
            ' "question_token_to_idx": {"<NULL>": 0, "<START>": 2}}',
            "without gaps",
        ),
        (
            '{"format": "qgmrn-vocab", "version": 1, "answers": [],'
            ' "question_token_to_idx": {"a": 0}}',
            "must start with",
        ),
        (
            '{"question_token_to_idx": {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3},'
            ' "answer_token_to_idx": {"yes": 0}}',
            "answers differ",
        ),
    ],
)
def test_load_rejects_bad_files_naming_them(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(VocabFormatError, match=message) as err:
        Vocab.load(path)
    assert str(path) in str(err.value)


@pytest.mark.skipif(not TBD_VOCAB.exists(), reason="shared/clevr-samples not present")
def test_loads_the_real_tbdnets_vocabulary_and_reads_a_real_question():
    v = Vocab.load(TBD_VOCAB)
    raw = json.loads(TBD_VOCAB.read_text())["question_token_to_idx"]
    assert len(v) == 93 and all(v.token_to_idx[t] == i for t, i in raw.items())
    assert v.answers == ANSWERS
    real = json.loads((SAMPLES / "CLEVR_train_questions_excerpt.json").read_text())
    for q in real["questions"]:
        assert UNK not in v.encode_question(q["question"])
    assert v.unk_count == 0
