"""docs/internals.md walks knobs through the code by `file.py:LINE`; the lines must still hold
what the walk quotes, so that the walk cannot go stale unnoticed when the code moves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERNALS = ROOT / "docs" / "internals.md"
REF = re.compile(r"((?:[a-z_]+/)*[a-z_]+\.py):(\d+)\s+(\S[^\n]*?)(?:\s{2,}|$)")
WORD = re.compile(r"[A-Za-z_]{4,}")


def _code_blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in re.findall(r"```\n(.*?)```", text, flags=re.S)]


def _walk_refs() -> list[tuple[str, int, str]]:
    """(path under qgmrn/, line, quoted text) of every reference in the walks; in a
    before/after block only the "after" column is today's code."""
    refs = []
    for block in _code_blocks(INTERNALS.read_text(encoding="utf-8")):
        if not block:
            continue
        start = block[0].find("after") if block[0].startswith("before") else 0
        for line in block:
            for m in REF.finditer(line):
                if m.start() >= start and (ROOT / "qgmrn" / m.group(1)).is_file():
                    refs.append((m.group(1), int(m.group(2)), m.group(3)))
    return refs


def test_the_walks_quote_lines_that_still_hold_what_they_quote():
    refs = _walk_refs()
    assert len(refs) >= 12, "the walks of --scene-reuse and --num-workers were not found"
    stale = []
    for path, lineno, quoted in refs:
        lines = (ROOT / "qgmrn" / path).read_text(encoding="utf-8").splitlines()
        line = lines[lineno - 1] if lineno <= len(lines) else ""
        words = WORD.findall(quoted)
        if not any(w in line for w in words):
            stale.append(f"{path}:{lineno} quotes {quoted!r}, the line is {line.strip()!r}")
    assert not stale, "docs/internals.md's walks are stale:\n" + "\n".join(stale)
