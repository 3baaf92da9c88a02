"""Question type and subtype by the last function; the constants' fixed orders."""

from __future__ import annotations

import pytest

from qgmrn.clevr import (
    ANSWERS,
    FUNCTIONS,
    QUESTION_TYPES,
    SUBTYPE_LABELS,
    SUBTYPE_TO_TYPE,
    SUBTYPES,
    TYPE_LABELS,
    ProgramError,
    question_subtype,
    question_type,
)

EXPECTED_TYPE = {
    "count": "count",
    "exist": "exist",
    "equal_integer": "compare_numbers",
    "less_than": "compare_numbers",
    "greater_than": "compare_numbers",
    "query_size": "query_attribute",
    "query_color": "query_attribute",
    "query_material": "query_attribute",
    "query_shape": "query_attribute",
    "equal_size": "compare_attribute",
    "equal_color": "compare_attribute",
    "equal_material": "compare_attribute",
    "equal_shape": "compare_attribute",
}


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_type_and_subtype_from_last_function(subtype):
    program = [{"function": "scene", "inputs": [], "value_inputs": []}] * 3
    program = program + [{"function": subtype, "inputs": [1, 2], "value_inputs": []}]
    assert question_subtype(program) == subtype
    assert question_type(program) == EXPECTED_TYPE[subtype] == SUBTYPE_TO_TYPE[subtype]


@pytest.mark.parametrize("program", [[], [{"function": "scene"}], [{"function": "unique"}]])
def test_non_questions_raise(program):
    with pytest.raises(ProgramError):
        question_subtype(program)


def test_fixed_orders():
    """The orders are stored in result files (answer and subtype indices): they must not move."""
    assert " ".join(ANSWERS) == (
        "yes no 0 1 2 3 4 5 6 7 8 9 10 large small gray red blue green brown purple cyan yellow "
        "rubber metal cube cylinder sphere"
    )
    assert QUESTION_TYPES == (
        "count",
        "exist",
        "compare_numbers",
        "query_attribute",
        "compare_attribute",
    )
    assert SUBTYPES[:5] == ("count", "exist", "equal_integer", "less_than", "greater_than")
    assert len(SUBTYPES) == 13 and set(SUBTYPES) <= set(FUNCTIONS)
    assert list(TYPE_LABELS) == list(QUESTION_TYPES) and list(SUBTYPE_LABELS) == list(SUBTYPES)
    assert TYPE_LABELS["compare_numbers"] == "Compare Numbers"


def test_relational_depth_counts_relate_and_same_steps_in_either_dialect():
    from qgmrn.clevr import relational_depth

    zero_hop = [{"function": "scene"}, {"function": "filter_size", "value_inputs": ["large"]},
                {"function": "unique"}, {"function": "query_color"}]  # fmt: skip
    assert relational_depth(zero_hop) == 0
    two_hop = [{"type": "scene"}, {"type": "unique"}, {"type": "relate"},
               {"type": "same_color"}, {"type": "count"}]  # fmt: skip
    assert relational_depth(two_hop) == 2
