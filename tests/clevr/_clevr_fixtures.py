"""Hand-made CLEVR scene and program helpers shared by the qgmrn.clevr tests."""

from __future__ import annotations

from pathlib import Path

from qgmrn.clevr import DIRECTIONS, compute_relationships

# The real CLEVR excerpts live next to the repository: /work/shared/clevr-samples.
SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "clevr-samples"


def node(function: str, inputs=(), values=()) -> dict:
    """One program node in the released dialect."""
    return {"function": function, "inputs": list(inputs), "value_inputs": list(values)}


def _obj(shape, color, size, material, x, y) -> dict:
    z = 0.7 if size == "large" else 0.35
    return {
        "shape": shape,
        "color": color,
        "size": size,
        "material": material,
        "3d_coords": [x, y, z],
        "rotation": 30.0,
        "pixel_coords": [240, 160, 10.5],
    }


def make_scene() -> dict:
    """Four objects chosen so every attribute value is shared by exactly two or one of them.

    0 large red metal cube, 1 small red rubber sphere, 2 large blue rubber cylinder,
    3 small gray metal cube.
    """
    objects = [
        _obj("cube", "red", "large", "metal", -2.0, 0.0),
        _obj("sphere", "red", "small", "rubber", 0.0, 1.5),
        _obj("cylinder", "blue", "large", "rubber", 1.5, -1.0),
        _obj("cube", "gray", "small", "metal", 2.5, 2.0),
    ]
    return {
        "image_index": 0,
        "image_filename": "CLEVR_val_000000.png",
        "split": "val",
        "objects": objects,
        "relationships": compute_relationships(objects),
        "directions": {name: list(vec) for name, vec in DIRECTIONS.items()},
    }
