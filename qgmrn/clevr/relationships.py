"""Spatial relationships between the objects of a scene, as the official CLEVR generator computes
them (`compute_all_relationships` in clevr-dataset-gen's render_images.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .constants import DIRECTIONS, RELATIONS


def compute_relationships(
    objects: Sequence[Mapping[str, Any]],
    directions: Mapping[str, Sequence[float]] = DIRECTIONS,
    eps: float = 0.2,
) -> dict[str, list[list[int]]]:
    """`relationships[rel][i]`: the sorted indices j != i with (coords_j - coords_i) . dir > eps.

    Object j is `rel` of object i when its displacement from i, projected on `directions[rel]`,
    exceeds `eps`. The dot product runs over all three coordinates in the generator's order
    (x, y, z) so float results match the released files bit for bit.
    """
    coords = [obj["3d_coords"] for obj in objects]
    out: dict[str, list[list[int]]] = {}
    for rel in RELATIONS:
        dx, dy, dz = directions[rel]
        per_object = []
        for i, (xi, yi, zi) in enumerate(coords):
            per_object.append(
                [
                    j
                    for j, (xj, yj, zj) in enumerate(coords)
                    if j != i and (xj - xi) * dx + (yj - yi) * dy + (zj - zi) * dz > eps
                ]
            )
        out[rel] = per_object
    return out
