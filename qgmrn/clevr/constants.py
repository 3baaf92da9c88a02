"""The fixed vocabularies of the CLEVR world (values read from the released CLEVR v1.0 data).

Everything here is plain tuples and dicts so it can be written to JSON as is. The orders are part
of the contract (docs/internals.md): answer indices, question-type and subtype indices are stored
in result files, so reordering anything here breaks every saved run.
"""

SHAPES = ("cube", "cylinder", "sphere")
COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SIZES = ("large", "small")
MATERIALS = ("rubber", "metal")

# Object colours in RGB 0-255, as the official generator's properties.json gives them.
COLOR_RGB = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}

# Half the side of a cube / radius of a sphere or cylinder; the object rests at z = radius.
SIZE_RADIUS = {"large": 0.7, "small": 0.35}

RELATIONS = ("left", "right", "front", "behind")

# The real camera's ground-plane directions, copied bit for bit from the released scene files
# (every real scene stores the same vectors: the camera never rotates). Full precision matters:
# compute_relationships must reproduce the stored relationships exactly.
_RIGHT = (0.6563112735748291, 0.7544902563095093, -0.0)
_BEHIND = (-0.754490315914154, 0.6563112735748291, 0.0)
DIRECTIONS = {
    "right": _RIGHT,
    "behind": _BEHIND,
    "above": (0.0, 0.0, 1.0),
    "below": (-0.0, -0.0, -1.0),
    "left": (-_RIGHT[0], -_RIGHT[1], 0.0),
    "front": (-_BEHIND[0], -_BEHIND[1], -0.0),
}

# The 28 answers of CLEVR in the project's fixed order (answer index = position here).
ANSWERS = ("yes", "no") + tuple(str(i) for i in range(11)) + SIZES + COLORS + MATERIALS + SHAPES

# The 26 program functions used in the released questions.
FUNCTIONS = (
    "scene",
    "filter_size",
    "filter_color",
    "filter_material",
    "filter_shape",
    "unique",
    "relate",
    "union",
    "intersect",
    "count",
    "exist",
    "query_size",
    "query_color",
    "query_material",
    "query_shape",
    "same_size",
    "same_color",
    "same_material",
    "same_shape",
    "equal_size",
    "equal_color",
    "equal_material",
    "equal_shape",
    "equal_integer",
    "less_than",
    "greater_than",
)

QUESTION_TYPES = ("count", "exist", "compare_numbers", "query_attribute", "compare_attribute")

# A question's subtype is the last function of its program.
SUBTYPES = (
    "count",
    "exist",
    "equal_integer",
    "less_than",
    "greater_than",
    "query_size",
    "query_color",
    "query_material",
    "query_shape",
    "equal_size",
    "equal_color",
    "equal_material",
    "equal_shape",
)

SUBTYPE_TO_TYPE = {
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

# Display names, as the paper's tables print them.
TYPE_LABELS = {
    "count": "Count",
    "exist": "Exist",
    "compare_numbers": "Compare Numbers",
    "query_attribute": "Query Attribute",
    "compare_attribute": "Compare Attribute",
}

SUBTYPE_LABELS = {
    "count": "Count",
    "exist": "Exist",
    "equal_integer": "Equal Integer",
    "less_than": "Less Than",
    "greater_than": "Greater Than",
    "query_size": "Query Size",
    "query_color": "Query Color",
    "query_material": "Query Material",
    "query_shape": "Query Shape",
    "equal_size": "Equal Size",
    "equal_color": "Equal Color",
    "equal_material": "Equal Material",
    "equal_shape": "Equal Shape",
}

# The attribute vocabularies by object key, for validation and for the executor.
ATTRIBUTE_VALUES = {"size": SIZES, "color": COLORS, "material": MATERIALS, "shape": SHAPES}
