"""The project's packaging stays coherent: one dependency list, one console script."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pip_requirements() -> list[str]:
    """The `pip:` list of environment.yml, read without a YAML dependency."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not stripped.startswith("- "):
            break
        req = stripped[2:].strip()
        if not req.startswith("-e"):
            reqs.append(req)
    return reqs


def test_environment_yml_matches_pyproject():
    """environment.yml installs exactly pyproject's library dependencies and every extra (the
    extras that name qgmrn's own are expanded), same ranges."""
    project = _pyproject()["project"]
    wanted = set(project["dependencies"])
    for reqs in project["optional-dependencies"].values():
        wanted |= {r for r in reqs if _name(r) != "qgmrn"}
    assert set(_environment_pip_requirements()) == wanted


# what the notebooks and the analysis need, and the library must not import
EXTRAS_ONLY = ("pandas", "matplotlib", "seaborn", "scipy", "sklearn", "papermill", "ipywidgets")


def test_the_library_imports_without_the_notebook_and_analysis_extras():
    """`pip install qgmrn` (no extras) gives a library that generates, trains and evaluates: none
    of those commands imports an extra's package."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import qgmrn.cli, qgmrn.engine.trainer, qgmrn.engine.evaluate, qgmrn.engine.finetuning\n"
        "import qgmrn.engine.pretrain\n"
        "import qgmrn.synth, qgmrn.model, qgmrn.data\n"
        "from qgmrn import cli\n"
        "import importlib\n"
        "for name in cli.COMMANDS:\n"
        "    if name != 'reproduce':\n"
        "        importlib.import_module(cli.COMMANDS[name][0])\n"
        f"print(sorted(m for m in {EXTRAS_ONLY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_extras_name_the_packages_the_analysis_and_notebooks_import():
    extras = _pyproject()["project"]["optional-dependencies"]
    analysis = {_name(r) for r in extras["analysis"]}
    assert {"pandas", "matplotlib", "scipy", "scikit-learn", "seaborn"} <= analysis
    notebooks = {_name(r) for r in extras["notebooks"]}
    assert {"qgmrn", "papermill", "jupyterlab", "ipywidgets", "ipykernel"} <= notebooks


def test_console_script_points_at_cli_main(capsys):
    """The script entry is `qgmrn.cli:main`, and main's help lists every sub-command."""
    import pytest

    from qgmrn import cli

    assert _pyproject()["project"]["scripts"]["qgmrn"] == "qgmrn.cli:main"
    assert cli.main(["--help"]) == 0
    helptext = capsys.readouterr().out
    assert all(name in helptext for name in cli.COMMANDS)
    with pytest.raises(SystemExit):  # an unknown command is a usage error
        cli.main(["no-such-command"])


def test_every_cli_command_module_exists():
    """Each sub-command named by the dispatcher imports and has configure/run."""
    import importlib

    from qgmrn.cli import COMMANDS

    for name, (module_name, _help) in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(module.configure), name
        assert callable(module.run), name


def test_readme_leads_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n\n", 3)[:3]
    text = "\n".join(head)
    assert "make reproduce" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
