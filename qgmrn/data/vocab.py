"""Question and answer vocabularies, and the community's CLEVR tokenisation.

Tokenisation (as clevr-iep / tbd-nets / FiLM do it): `;` and `,` become tokens of their own,
`?` and `.` are dropped, then the text is split on whitespace. Case is kept: the released
vocabulary built from the real train questions is case-sensitive (it holds both "Are" and "are",
"What" and "what"; see shared/clevr-samples/tbdnets_clevr_vocab.json).

One deliberate difference: the community splits on a single space (`str.split(" ")`), so a doubled
space yields an empty token, which is why the tbd-nets vocabulary contains `""` (index 4). We split
on runs of whitespace and never emit `""`; loading the tbd-nets file keeps its `""` entry so every
index stays where it was.

Question-token indices: `<NULL>=0` (padding), `<START>=1`, `<END>=2`, `<UNK>=3`, then the words.
Answer indices: the 28 answers of `qgmrn.clevr.ANSWERS`, in that fixed order, with no specials, so
answer index == classifier output index.
"""

from __future__ import annotations

import json
import os
import reprlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qgmrn.clevr import ANSWERS
from qgmrn.fileio import atomic_write_json

NULL, START, END, UNK = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = ("<NULL>", "<START>", "<END>", "<UNK>")

_KEEP_PUNCT = (";", ",")  # become tokens of their own
_DROP_PUNCT = ("?", ".")  # removed

FORMAT = "qgmrn-vocab"
VERSION = 1


class VocabFormatError(ValueError):
    """A vocabulary file that cannot be read; the message names the file and the problem."""


def tokenize(text: str) -> list[str]:
    """Split a question into tokens: `;`/`,` kept as tokens, `?`/`.` dropped, case kept.

    >>> tokenize("Is it red; what shape is it?")
    ['Is', 'it', 'red', ';', 'what', 'shape', 'is', 'it']
    """
    for p in _KEEP_PUNCT:
        text = text.replace(p, f" {p} ")
    for p in _DROP_PUNCT:
        text = text.replace(p, "")
    return text.split()


def _question_text(q: str | Mapping[str, Any]) -> str:
    return q if isinstance(q, str) else q["question"]


class Vocab:
    """Question tokens <-> indices, and answers <-> indices.

    `unk_count` counts the unknown words met by `encode_question` (and `unk_words` per word), so a
    fine-tuning run on CLEVR-Humans can report how much of its text the model cannot read.
    """

    def __init__(self, question_tokens: Sequence[str], answers: Sequence[str] = ANSWERS) -> None:
        tokens = list(question_tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"question tokens must start with {SPECIALS}, got {tokens[:4]}")
        for name, seq in (("question token", tokens), ("answer", list(answers))):
            dup = [t for t, n in Counter(seq).items() if n > 1]
            if dup:
                raise ValueError(f"duplicate {name}(s) in vocabulary: {dup[:5]}")
        self.idx_to_token: list[str] = tokens
        self.token_to_idx: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.answers: tuple[str, ...] = tuple(answers)
        self.answer_to_idx: dict[str, int] = {a: i for i, a in enumerate(self.answers)}
        self.unk_count = 0
        self.unk_words: Counter[str] = Counter()

    # ---------------------------------------------------------------- building
    @classmethod
    def build(cls, questions: Iterable[str | Mapping[str, Any]], min_count: int = 1) -> Vocab:
        """Vocabulary of the tokens seen at least `min_count` times, sorted (deterministic).

        `questions`: question strings or question dicts (their `"question"` field).
        """
        counts: Counter[str] = Counter()
        for q in questions:
            counts.update(tokenize(_question_text(q)))
        words = sorted(w for w, n in counts.items() if n >= min_count and w not in SPECIALS)
        return cls([*SPECIALS, *words])

    def extend(self, words: Iterable[str]) -> int:
        """Append unseen words (e.g. CLEVR-Humans' new words); existing indices do not change.

        Returns the number of words added. Words are appended in first-seen order.
        """
        added = 0
        for w in words:
            if w and w not in self.token_to_idx:
                self.token_to_idx[w] = len(self.idx_to_token)
                self.idx_to_token.append(w)
                added += 1
        return added

    # ---------------------------------------------------------------- encoding
    def encode_question(self, text: str, *, count_unk: bool = True) -> list[int]:
        """`[<START>, w_1, ..., w_n, <END>]` as indices; unknown words map to `<UNK>`."""
        ids = [START]
        for tok in tokenize(text):
            idx = self.token_to_idx.get(tok, UNK)
            if idx == UNK and count_unk:
                self.unk_count += 1
                self.unk_words[tok] += 1
            ids.append(idx)
        ids.append(END)
        return ids

    def reset_unk_counts(self) -> None:
        self.unk_count = 0
        self.unk_words.clear()

    def encode_answer(self, answer: str) -> int:
        try:
            return self.answer_to_idx[str(answer)]
        except KeyError:
            raise ValueError(
                f"unknown answer {answer!r}; the vocabulary has {len(self.answers)} answers"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens of `ids` joined by spaces, without `<NULL>`/`<START>`/`<END>`."""
        skip = {NULL, START, END}
        return " ".join(self.idx_to_token[int(i)] for i in ids if int(i) not in skip)

    def decode_answer(self, idx: int) -> str:
        return self.answers[int(idx)]

    def __len__(self) -> int:
        """Number of question tokens, specials included (the embedding's row count)."""
        return len(self.idx_to_token)

    @property
    def num_answers(self) -> int:
        return len(self.answers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.idx_to_token == other.idx_to_token and self.answers == other.answers

    def __repr__(self) -> str:
        return f"Vocab({len(self)} question tokens, {self.num_answers} answers)"

    # ---------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "question_token_to_idx": dict(self.token_to_idx),
            "answers": list(self.answers),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (a temporary file in the same folder, then a rename)."""
        atomic_write_json(path, self.to_dict(), indent=1, trailing_newline=True, fsync=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Read our JSON format, or the tbd-nets/clevr-iep one (`question_token_to_idx`,
        `answer_token_to_idx`).

        For the tbd-nets format the question indices are kept as they are; its answers (which
        carry the 4 specials and are sorted) must be the 28 CLEVR answers and are put in our
        fixed `ANSWERS` order.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))  # `save` writes UTF-8
        except FileNotFoundError:
            raise
        except RecursionError:
            raise VocabFormatError(f"{path}: not a vocabulary (JSON nested too deeply)") from None
        # ValueError: UnicodeDecodeError, JSONDecodeError, an int beyond the 4300-digit limit
        except (OSError, ValueError) as e:
            raise VocabFormatError(f"{path}: not a readable JSON vocabulary ({e})") from None
        if not isinstance(data, dict) or "question_token_to_idx" not in data:
            raise VocabFormatError(f"{path}: no 'question_token_to_idx' mapping")
        tokens = _tokens_from_index(path, data["question_token_to_idx"])
        if data.get("format") == FORMAT:
            version = data.get("version")
            if type(version) is not int or version != VERSION:  # not True, not 1.0
                raise VocabFormatError(f"{path}: unsupported version {reprlib.repr(version)}")
            answers = data.get("answers")
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise VocabFormatError(f"{path}: 'answers' must be a list of strings")
        elif "answer_token_to_idx" in data:  # tbd-nets / clevr-iep
            table = data["answer_token_to_idx"]
            if not isinstance(table, dict) or not all(type(i) is int for i in table.values()):
                raise VocabFormatError(
                    f"{path}: 'answer_token_to_idx' must map strings to integers"
                )
            names = set(table) - set(SPECIALS)
            if names != set(ANSWERS):
                extra, missing = sorted(names - set(ANSWERS)), sorted(set(ANSWERS) - names)
                raise VocabFormatError(
                    f"{path}: answers differ from CLEVR's (extra {extra}, missing {missing})"
                )
            answers = list(ANSWERS)
        else:
            raise VocabFormatError(f"{path}: neither a qgmrn vocabulary nor a tbd-nets one")
        try:
            return cls(tokens, answers)
        except ValueError as e:
            raise VocabFormatError(f"{path}: {e}") from None


def _tokens_from_index(path: Path, mapping: Any) -> list[str]:
    """The token list of a token->index mapping whose indices must be exactly 0..n-1."""
    if not isinstance(mapping, dict) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in mapping.values()
    ):
        raise VocabFormatError(f"{path}: 'question_token_to_idx' must map strings to integers")
    tokens: list[str | None] = [None] * len(mapping)
    for tok, i in mapping.items():
        if not 0 <= i < len(tokens) or tokens[i] is not None:
            raise VocabFormatError(
                f"{path}: question token indices must be 0..{len(tokens) - 1} without gaps "
                f"or repeats (token {tok!r} has {i})"
            )
        tokens[i] = tok
    return tokens  # type: ignore[return-value]
