"""The browser tests' notebook copies run under the parameters they ask for (no browser needed:
part of `make test`). A committed notebook keeps papermill's injected-parameters cell from
`make reproduce` (profile "demo"); a copy that edited only the parameters cell ran 02 under the
demo profile, which needs `data/mini-clevr`, absent from a fresh clone."""

from __future__ import annotations

import json

import pytest

from .conftest import ROOT, smoke_copy

pytest.importorskip("papermill")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _parameters(nb_path) -> dict:
    """The values the notebook's parameter cells leave, executed in order as the kernel would."""
    values: dict = {}
    for cell in json.loads(nb_path.read_text())["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            exec("".join(cell["source"]), {}, values)
    return values


@pytest.mark.parametrize("src", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_copy_overrides_the_committed_injected_cell(src, tmp_path):
    if "injected-parameters" not in src.read_text():
        pytest.skip("no injected cell committed")
    assert _parameters(src)["profile"] != "smoke"  # the committed values the copy must override
    dst = smoke_copy(src, tmp_path / src.name, profile="smoke", reference_dir="")
    values = _parameters(dst)
    assert values["profile"] == "smoke"
    assert values["reference_dir"] == ""
    cells = json.loads(dst.read_text())["cells"]
    injected = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
