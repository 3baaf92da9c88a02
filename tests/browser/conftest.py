"""A JupyterLab server and a headless Chromium driven by Playwright, for `make test-browser`.

The browser: `QGMRN_BROWSER` (a Chromium/Chrome executable), else `chromium`,
`chromium-browser` or `google-chrome` on the PATH; `make test-browser` installs Debian's
`chromium` where the user is root. Playwright drives it through `executable_path` (its own
`playwright install` download is not needed). The server: `jupyter lab` of this environment on
127.0.0.1, a free port, a random token, `--allow-root`, its own settings folders (no
"Jupyter news" prompt, no user state), serving a temporary folder that holds the notebooks under
test; its log goes to the results folder and is quoted on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "results" / "browser"
BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
LAB_USER_SETTINGS = {  # what `make lab` writes into the venv's overrides.json
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True},
}
# the test also attaches every cell to the page (JupyterLab 4 otherwise skips offscreen cells),
# so that outputs below the fold are there to be checked
TEST_ONLY_SETTINGS = {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}}
INSTALL_HINT = (
    "no Chromium found: set QGMRN_BROWSER to a Chromium/Chrome executable, or install one "
    "(Debian/Ubuntu as root: `apt-get install -y chromium`; `make test-browser` does this when "
    "run as root), and `pip install playwright` (no `playwright install` needed)"
)


def find_browser() -> str | None:
    """A Chromium-family executable: $QGMRN_BROWSER, else one on the PATH."""
    named = os.environ.get("QGMRN_BROWSER")
    if named:
        return named if Path(named).exists() or shutil.which(named) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def open_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?reset&token={self.token}"  # reset: no old tabs

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"


def smoke_copy(src: Path, dst: Path, **params) -> Path:
    """`src` parameterised with `params` (e.g. profile="smoke") and written to `dst`, by
    papermill itself (prepared, not executed): its injected-parameters cell replaces the one the
    committed notebook keeps from `make reproduce`, which would otherwise run after the
    parameters cell and put the demo profile back."""
    import papermill

    papermill.execute_notebook(
        str(src), str(dst), parameters=params, prepare_only=True, kernel_name="python3",
        progress_bar=False,
    )  # fmt: skip
    return dst


@pytest.fixture(scope="session")
def smoke_data() -> Path:
    """The smoke mini-CLEVR and its val image cache (what notebook 02 reads under smoke)."""
    data = ROOT / "data" / "mini-clevr-smoke"
    qgmrn = [sys.executable, "-m", "qgmrn.cli"]
    if not (data / "summary.json").exists():
        subprocess.run([*qgmrn, "generate", str(data), "--profile", "smoke", "--humans",
                        "--no-progress"], check=True, cwd=ROOT)  # fmt: skip
    subprocess.run([*qgmrn, "prepare", str(data), "--image-size", "32", "48", "--splits", "train",
                    "val", "--no-progress"], check=True, cwd=ROOT, capture_output=True)  # fmt: skip
    return data


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    token, port = secrets.token_hex(16), _free_port()
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = SHOTS / "jupyterlab.log"
    settings = root / ".settings"
    user = {k: {**v, **TEST_ONLY_SETTINGS.get(k, {})} for k, v in LAB_USER_SETTINGS.items()}
    for plugin, values in user.items():  # no news prompt, no kernel dialog
        path = settings / "user" / (plugin.replace(":", "/") + ".jupyterlab-settings")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings / "user"),
        "JUPYTERLAB_WORKSPACES_DIR": str(settings / "workspaces"),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
    ]  # fmt: skip
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:  # the server answers its status API once it is up
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"JupyterLab did not start; its log:\n{tail}") from None
            time.sleep(0.5)
    try:
        yield Lab(url, token, root, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    exe = find_browser()
    if exe is None:
        pytest.fail(INSTALL_HINT)
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=BROWSER_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, lab, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        page.screenshot(path=str(SHOTS / f"FAILED_{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
