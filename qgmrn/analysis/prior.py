"""The question-type prior: the score of answering every question with the most common answer of
its subtype in the training questions (no image, no words beyond the subtype).

The floor any VQA model must clear: a model at the prior has learned which answers each kind of
question takes and nothing about the image. Every table and by-type plot shows it as a row or a
line.
"""

from __future__ import annotations

import json
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


def data_set_prior(data_dir: PathLike, split: str = "val", *, cache: bool = True) -> dict:
    """The prior of a CLEVR-layout data set: fitted on its train questions, scored on `split`
    (the test split reads its answers from questions/CLEVR_test_answers.json).

    `cache`: keep the scores in `DATA_DIR/cache/prior_<split>.json` (beside the image caches),
    keyed by the size and modification time of the two question files, so the notebooks that
    print the prior under every table and plot do not read the 50k training questions each time
    (several seconds); a changed file is scored anew, and a data set that cannot be written to
    is simply scored every time.
    """
    from qgmrn import clevr
    from qgmrn.fileio import atomic_write_json

    q = Path(data_dir) / "questions"
    name = "CLEVR_test_answers.json" if split == "test" else f"CLEVR_{split}_questions.json"
    files = (q / "CLEVR_train_questions.json", q / name)
    key = [[f.name, st.st_size, st.st_mtime_ns] for f in files for st in (f.stat(),)]
    cached = Path(data_dir) / "cache" / f"prior_{split}.json"
    if cache:
        try:
            saved = json.loads(cached.read_text())
            if saved.get("files") == key:
                return saved["scores"]
        except (OSError, ValueError, AttributeError):
            pass  # none yet, or not ours: score anew
    scores = prior_scores(clevr.load_questions(files[0]), clevr.load_questions(files[1]))
    if cache:
        try:
            cached.parent.mkdir(exist_ok=True)
            atomic_write_json(cached, {"files": key, "scores": scores}, indent=1, fsync=False)
        except OSError:
            pass  # a read-only data set: nothing kept, the scores stand
    return scores


def runs_prior(run_dirs) -> dict | None:
    """The question-type prior of the data set the runs trained on (their config.json), with
    its folder as "data_dir", or None when that data set is not on this machine."""
    from qgmrn.fileio import locate

    for run_dir in run_dirs:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
        data_dir = cfg.get("data", {}).get("data_dir")
        if data_dir is None:
            continue
        try:
            located = locate(data_dir)  # recorded relative to the project root when inside it
            return {**data_set_prior(located), "data_dir": located}
        except FileNotFoundError:
            return None
    return None
