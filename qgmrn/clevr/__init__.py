"""The CLEVR world, without torch: file I/O with validation, the program executor, question types.

See docs/internals.md for the contract and /work/shared/CLEVR.md (or the README) for the facts.
"""

from .constants import (
    ANSWERS,
    ATTRIBUTE_VALUES,
    COLOR_RGB,
    COLORS,
    DIRECTIONS,
    FUNCTIONS,
    MATERIALS,
    QUESTION_TYPES,
    RELATIONS,
    SHAPES,
    SIZE_RADIUS,
    SIZES,
    SUBTYPE_LABELS,
    SUBTYPE_TO_TYPE,
    SUBTYPES,
    TYPE_LABELS,
)
from .errors import AmbiguousReferenceError, ClevrFormatError, ProgramError
from .executor import execute_program, execute_program_trace
from .io import (
    load_humans_questions,
    load_questions,
    load_scenes,
    read_info,
    save_questions,
    save_scenes,
)
from .question_types import question_subtype, question_type, relational_depth
from .relationships import compute_relationships

__all__ = [
    "ANSWERS",
    "ATTRIBUTE_VALUES",
    "COLORS",
    "COLOR_RGB",
    "DIRECTIONS",
    "FUNCTIONS",
    "MATERIALS",
    "QUESTION_TYPES",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SIZE_RADIUS",
    "SUBTYPES",
    "SUBTYPE_LABELS",
    "SUBTYPE_TO_TYPE",
    "TYPE_LABELS",
    "AmbiguousReferenceError",
    "ClevrFormatError",
    "ProgramError",
    "compute_relationships",
    "execute_program",
    "execute_program_trace",
    "load_humans_questions",
    "load_questions",
    "load_scenes",
    "question_subtype",
    "question_type",
    "read_info",
    "relational_depth",
    "save_questions",
    "save_scenes",
]
