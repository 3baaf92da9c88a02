"""Accuracy overall / by type / by subtype, and execution ratios, on a hand-made example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qgmrn.clevr.constants import QUESTION_TYPES, SUBTYPES
from qgmrn.metrics import accuracy

S = {name: i for i, name in enumerate(SUBTYPES)}


def test_accuracy_by_type_and_subtype():
    #               count      count     exist      query_color  query_size  equal_color  (test)
    subtypes = [S["count"], S["count"], S["exist"], S["query_color"], S["query_size"],
                S["equal_color"], S["exist"]]  # fmt: skip
    answers = [2, 3, 0, 18, 14, 1, -1]  # the last has no answer (test split): not scored
    predictions = [2, 4, 0, 18, 13, 1, 5]
    r = accuracy(np.array(predictions), torch.tensor(answers), subtypes)
    assert r["n"] == 6
    assert r["overall"] == pytest.approx(4 / 6)
    assert r["by_subtype"]["count"] == 0.5
    assert r["by_subtype"]["exist"] == 1.0
    assert r["by_subtype"]["query_color"] == 1.0
    assert r["by_subtype"]["query_size"] == 0.0
    assert r["by_subtype"]["equal_color"] == 1.0
    assert r["by_subtype"]["less_than"] is None  # no questions of that subtype
    assert r["count_by_subtype"]["less_than"] == 0
    assert r["by_type"] == {
        "count": 0.5,
        "exist": 1.0,
        "compare_numbers": None,
        "query_attribute": 0.5,
        "compare_attribute": 1.0,
    }
    assert list(r["by_type"]) == list(QUESTION_TYPES)
    assert list(r["by_subtype"]) == list(SUBTYPES)
    assert sum(r["count_by_type"].values()) == 6


def test_accuracy_without_subtypes_is_overall_only():
    r = accuracy([1, 2, 3], [1, 2, 0])
    assert r["overall"] == pytest.approx(2 / 3)
    assert all(v is None for v in r["by_type"].values())
