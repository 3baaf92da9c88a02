"""The program executor against a brute-force oracle, on random scenes and programs.

The oracle below is written from CLEVR.md's function table, not from `qgmrn.clevr.executor`:
sets are frozensets, every node is evaluated by looping over the scene's objects, and `relate`
reads the scene's stored relationships (which the random scenes draw at random, or compute from
the coordinates). Programs come from two sources: random well-typed expressions (`programs`) and
the repository's own mini-CLEVR question families (`qgmrn.synth`), both as the generator
instantiates them and with filter values re-drawn at random, so that `unique` often meets a set
that is not a singleton: the executor must then raise AmbiguousReferenceError, as the oracle says.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from qgmrn.clevr import (
    FUNCTIONS,
    RELATIONS,
    AmbiguousReferenceError,
    execute_program,
    execute_program_trace,
)
from qgmrn.clevr.signatures import SIGNATURES
from qgmrn.synth.families import ATTRS as FAMILY_ATTRS
from qgmrn.synth.families import FAMILIES
from qgmrn.synth.questions import instantiate

from ._clevr_fixtures import SAMPLES
from ._fuzz import ATTRS, SPEC, fuzz, node, programs, scenes


class Ambiguous(Exception):
    """Oracle: a `unique` node met a set of size other than one."""


def oracle(program: list[dict], scene: dict) -> list:
    """Every node's value: frozenset for a set, int for an object or a count, bool, str."""
    objects = scene["objects"]
    everything = range(len(objects))
    values: list = []
    for entry in program:
        f, args = entry["function"], [values[i] for i in entry["inputs"]]
        v = entry["value_inputs"][0] if entry["value_inputs"] else None
        kind, _, attr = f.partition("_")
        if f == "scene":
            out = frozenset(everything)
        elif kind == "filter":
            out = frozenset(o for o in everything if o in args[0] and objects[o][attr] == v)
        elif f == "unique":
            members = sorted(args[0])
            if len(members) != 1:
                raise Ambiguous
            out = members[0]
        elif f == "relate":
            out = frozenset(o for o in everything if o in scene["relationships"][v][args[0]])
        elif f == "union":
            out = frozenset(o for o in everything if o in args[0] or o in args[1])
        elif f == "intersect":
            out = frozenset(o for o in everything if o in args[0] and o in args[1])
        elif f == "count":
            out = sum(1 for o in everything if o in args[0])
        elif f == "exist":
            out = any(o in args[0] for o in everything)
        elif kind == "query":
            out = objects[args[0]][attr]
        elif kind == "same":
            me = args[0]
            out = frozenset(
                o for o in everything if o != me and objects[o][attr] == objects[me][attr]
            )
        elif kind == "equal":  # equal_<attribute> and equal_integer
            out = args[0] == args[1]
        elif f == "less_than":
            out = args[0] < args[1]
        elif f == "greater_than":
            out = args[0] > args[1]
        else:
            raise AssertionError(f"the oracle does not know {f}")
        values.append(out)
    return values


def spelled(value) -> str:
    """CLEVR's answer spelling."""
    if value is True or value is False:
        return {True: "yes", False: "no"}[value]
    return f"{value}"


def check(program: list[dict], scene: dict) -> None:
    """execute_program(_trace) == oracle, node by node; AmbiguousReferenceError iff Ambiguous."""
    before = json.dumps([program, scene])
    try:
        expected = oracle(program, scene)
    except Ambiguous:
        expected = None
    if expected is None:
        event("ambiguous unique")
        for run in (execute_program_trace, execute_program):
            try:
                run(program, scene)
            except AmbiguousReferenceError:
                pass
            else:
                raise AssertionError(f"{run.__name__} gave a value where unique is ambiguous")
    else:
        event("answered")
        trace = execute_program_trace(program, scene)
        assert len(trace) == len(program)
        for k, (got, want) in enumerate(zip(trace, expected, strict=True)):
            kind = SPEC[program[k]["function"]][2]
            if kind == "set":  # a list of distinct indices, in increasing order (CLEVR's)
                assert type(got) is list and got == sorted(want), (k, got, want)
            elif kind in ("object", "integer"):
                assert type(got) is int and got == want, (k, got, want)
            elif kind == "bool":
                assert type(got) is bool and got == want, (k, got, want)
            else:
                assert type(got) is str and got == want, (k, got, want)
        assert execute_program(program, scene) == spelled(expected[-1])
    assert json.dumps([program, scene]) == before  # the executor changed nothing


def test_spec_agrees_with_the_signature_table():
    """The tests' reading of CLEVR.md and the package's table name the same 26 functions."""
    assert {
        f: (s.inputs, s.values and tuple(s.values), s.output) for f, s in SIGNATURES.items()
    } == {f: (i, v, o) for f, (i, v, o) in SPEC.items()}


@pytest.mark.parametrize("function", FUNCTIONS)
@fuzz(12)
@given(data=st.data())
def test_random_programs_on_random_scenes_match_the_oracle(function, data):
    """Each of the 26 functions, fed by random operands, on random scenes."""
    scene = data.draw(scenes(min_objects=1, max_objects=7), label="scene")
    check(data.draw(programs(scene, function=function), label="program"), scene)


def _real_scenes() -> list[dict]:
    out = []
    for split in ("train", "val"):
        path = SAMPLES / f"CLEVR_{split}_scenes_excerpt.json"
        if path.exists():
            out += json.loads(path.read_text())["scenes"]
    return out


REAL_SCENES = _real_scenes()


@fuzz(60)
@given(data=st.data())
def test_random_programs_on_real_scenes_match_the_oracle(data):
    if not REAL_SCENES:
        return  # shared/clevr-samples absent: the random scenes above still run
    scene = data.draw(st.sampled_from(REAL_SCENES), label="scene")
    check(data.draw(programs(scene, max_depth=5), label="program"), scene)


def expand(family, scene: dict, data) -> list[dict]:
    """A family's template as a released-dialect program, each compact `filter` expanded into
    0-4 filter_* nodes with values drawn at random (mostly from the scene), each `relate`
    given a random relation: CLEVR-shaped programs whose `unique` may be ambiguous."""
    objects = scene["objects"]
    program: list[dict] = []
    out: list[int] = []
    for t in family.template:
        ins = [out[i] for i in t.inputs]
        if t.function == "filter":
            prev = ins[0]
            for attr in FAMILY_ATTRS:
                if data.draw(st.integers(0, 2)) == 0:
                    if data.draw(st.booleans()):
                        value = objects[data.draw(st.integers(0, len(objects) - 1))][attr]
                    else:
                        value = data.draw(st.sampled_from(SPEC[f"filter_{attr}"][1]))
                    program.append(node(f"filter_{attr}", [prev], [value]))
                    prev = len(program) - 1
            out.append(prev)
            continue
        values = [data.draw(st.sampled_from(RELATIONS))] if t.function == "relate" else []
        program.append(node(t.function, ins, values))
        out.append(len(program) - 1)
    return program


@fuzz(100)
@given(data=st.data())
def test_generator_families_match_the_oracle(data):
    """The repository's question families: instantiated by qgmrn.synth (the oracle must give
    the generator's answer) and expanded with random filter values (ambiguity included)."""
    scene = data.draw(scenes(min_objects=1, max_objects=10), label="scene")
    family = data.draw(st.sampled_from(FAMILIES), label="family")
    question = instantiate(
        family, copy.deepcopy(scene), np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    )
    if question is not None:
        event("instantiated")
        assert spelled(oracle(question["program"], scene)[-1]) == question["answer"]
        check(question["program"], scene)
    check(expand(family, scene, data), scene)


def test_attribute_names_agree():
    assert tuple(FAMILY_ATTRS) == ATTRS
