"""The question-type prior: the score of answering every question with the most common answer of
its subtype in the training questions (no image, no words beyond the subtype).

The floor any VQA model must clear: a model at the prior has learned which answers each kind of
question takes and nothing about the image. Every table and by-type plot shows it as a row or a
line (issue 11).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from qgmrn.clevr import ANSWERS, SUBTYPES, question_subtype
from qgmrn.metrics import accuracy

PathLike = str | os.PathLike


def majority_answers(train: Sequence[dict]) -> dict[str, str]:
    """The most common answer of each subtype among `train` questions (ties: CLEVR's answer
    order, so the result does not depend on the order of the file)."""
    counts: dict[str, Counter] = {}
    for q in train:
        counts.setdefault(question_subtype(q["program"]), Counter())[q["answer"]] += 1
    return {s: max(c, key=lambda a: (c[a], -ANSWERS.index(a))) for s, c in counts.items()}


def prior_scores(train: Sequence[dict], questions: Sequence[dict]) -> dict:
    """Scores (the eval.json layout of `qgmrn.metrics.accuracy`) of the prior fitted on `train`,
    on `questions` (which need answers and programs)."""
    best = majority_answers(train)
    index = {a: i for i, a in enumerate(ANSWERS)}
    subtypes = [question_subtype(q["program"]) for q in questions]
    predictions = [index.get(best.get(s, ""), -2) for s in subtypes]  # -2: never right
    answers = [index[q["answer"]] for q in questions]
    return accuracy(predictions, answers, [SUBTYPES.index(s) for s in subtypes])


def data_set_prior(data_dir: PathLike, split: str = "val") -> dict:
    """The prior of a CLEVR-layout data set: fitted on its train questions, scored on `split`
    (the test split reads its answers from questions/CLEVR_test_answers.json)."""
    from qgmrn import clevr

    q = Path(data_dir) / "questions"
    train = clevr.load_questions(q / "CLEVR_train_questions.json")
    name = "CLEVR_test_answers.json" if split == "test" else f"CLEVR_{split}_questions.json"
    return prior_scores(train, clevr.load_questions(q / name))
