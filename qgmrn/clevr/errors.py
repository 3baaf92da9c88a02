"""Exceptions of the CLEVR layer.

`ClevrFormatError` is what every loader raises for a file it cannot accept: its message says which
file, which entry, which field and what is wrong, so a user can fix the file without a debugger.
"""

from __future__ import annotations

import os


class ClevrFormatError(ValueError):
    """A CLEVR JSON file (questions, scenes, CLEVR-Humans) that does not follow the format.

    Attributes:
        path: the file, as given to the loader.
        index: position of the offending entry in its list, or None for a file-level problem.
        field: the offending field (e.g. ``'program'[3].inputs``), or None.
        problem: what is wrong, in words.
        entry: the kind of entry ("question", "scene"), used in the message.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        problem: str,
        *,
        index: int | None = None,
        field: str | None = None,
        entry: str = "entry",
    ) -> None:
        self.path = os.fspath(path)
        self.index = index
        self.field = field
        self.problem = problem
        self.entry = entry
        parts = [self.path]
        if index is not None:
            parts.append(f"{entry} {index}")
        if field is not None:
            parts.append(f"field {field}")
        parts.append(problem)
        super().__init__(": ".join(parts))


class ProgramError(ValueError):
    """A functional program that cannot be executed on a scene (bad node, input or value)."""


class AmbiguousReferenceError(ProgramError):
    """`unique` met a set whose size is not 1; question generators catch it to reject a question."""
