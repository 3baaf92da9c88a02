"""The question-type prior (qgmrn.analysis.prior)."""

from __future__ import annotations

import pytest

from qgmrn.analysis.prior import majority_answers, prior_scores


def _q(subtype: str, answer: str) -> dict:
    return {"program": [{"function": "scene", "inputs": [], "value_inputs": []},
                        {"function": subtype, "inputs": [0], "value_inputs": []}],
            "answer": answer}  # fmt: skip


def test_majority_answer_per_subtype_with_a_stable_tie_break():
    train = [_q("exist", "yes"), _q("exist", "yes"), _q("exist", "no"), _q("count", "2"),
             _q("count", "1")]  # fmt: skip
    assert majority_answers(train) == {"exist": "yes", "count": "1"}  # tie: CLEVR's order
    assert majority_answers(list(reversed(train))) == {"exist": "yes", "count": "1"}


def test_prior_scores_by_type_and_unseen_subtypes_are_wrong():
    train = [_q("exist", "no"), _q("count", "3")]
    val = [_q("exist", "no"), _q("exist", "yes"), _q("count", "3"), _q("query_color", "red")]
    ev = prior_scores(train, val)
    assert ev["n"] == 4 and ev["overall"] == pytest.approx(0.5)
    assert ev["by_type"]["exist"] == pytest.approx(0.5) and ev["by_type"]["count"] == 1.0
    assert ev["by_type"]["query_attribute"] == 0.0
