"""Accuracy overall, by question type (5) and by subtype (13), and module execution ratios.

Subtypes are integer indices into `qgmrn.clevr.SUBTYPES` (-1 = unknown, e.g. CLEVR-Humans); a
subtype's type follows `qgmrn.clevr.SUBTYPE_TO_TYPE`. Questions whose answer is unknown
(answer < 0, e.g. the test split) are not scored.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from qgmrn.clevr.constants import QUESTION_TYPES, SUBTYPE_TO_TYPE, SUBTYPES


def _as_array(x) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _frac(correct: np.ndarray) -> float | None:
    return float(correct.mean()) if correct.size else None


def accuracy(predictions, answers, subtypes=None) -> dict:
    """Scores in the `eval.json` layout: `{"n", "overall", "by_type", "by_subtype", "count_*"}`.

    predictions, answers: (N,) answer indices; subtypes: (N,) indices into SUBTYPES or None.
    Accuracies are fractions in [0, 1]; a type or subtype with no questions gets None (JSON null).
    `count_by_type` / `count_by_subtype` give how many questions each fraction is over.
    """
    pred = _as_array(predictions).astype(np.int64).reshape(-1)
    ans = _as_array(answers).astype(np.int64).reshape(-1)
    if pred.shape != ans.shape:
        raise ValueError(f"predictions {pred.shape} and answers {ans.shape} differ in shape")
    sub = (
        np.full_like(ans, -1)
        if subtypes is None
        else _as_array(subtypes).astype(np.int64).reshape(-1)
    )
    if sub.shape != ans.shape:
        raise ValueError(f"subtypes {sub.shape} and answers {ans.shape} differ in shape")
    known = ans >= 0
    pred, ans, sub = pred[known], ans[known], sub[known]
    correct = pred == ans
    subtype_names = list(SUBTYPES)
    by_subtype, count_by_subtype = {}, {}
    for i, name in enumerate(subtype_names):
        mask = sub == i
        by_subtype[name] = _frac(correct[mask])
        count_by_subtype[name] = int(mask.sum())
    by_type, count_by_type = {}, {}
    for qtype in QUESTION_TYPES:
        idx = [i for i, name in enumerate(subtype_names) if SUBTYPE_TO_TYPE[name] == qtype]
        mask = np.isin(sub, idx)
        by_type[qtype] = _frac(correct[mask])
        count_by_type[qtype] = int(mask.sum())
    return {
        "n": int(correct.size),
        "overall": _frac(correct),
        "by_type": by_type,
        "by_subtype": by_subtype,
        "count_by_type": count_by_type,
        "count_by_subtype": count_by_subtype,
    }
