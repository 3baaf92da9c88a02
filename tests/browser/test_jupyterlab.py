"""Notebooks in a real browser: JupyterLab serves notebook 02 under the smoke profile,
headless Chromium runs all its cells, and the explorer answers a typed question with a table, a
saliency map and a routing-path picture; notebook 06 opens with its figures rendered.
Screenshots go to results/browser/. Run with `make test-browser` (`pytest -m browser`)."""

from __future__ import annotations

import shutil

import pytest

from .conftest import ROOT, SHOTS, smoke_copy

pytestmark = pytest.mark.browser
RUN_TIMEOUT_MS = 300_000  # running every cell of 02 under smoke: seconds here, minutes on CI


def _open(page, lab, name: str) -> None:
    page.goto(lab.open_url(name))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    # the kernel starts by itself (autoStartDefaultKernel); should a kernel dialog still come
    # up, accept the notebook's own kernel
    try:
        page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=3_000).click()
    except Exception:
        pass


def _run_all(page) -> None:
    page.click("li.lm-MenuBar-item >> text=Run")
    page.click("li.lm-Menu-item >> text=Run All Cells")


def _errors(page) -> list[str]:
    return [
        t
        for t in page.locator(".jp-OutputArea-output").all_inner_texts()
        if "Traceback" in t or "Error:" in t.split("\n", 1)[0]
    ]


def test_walkthrough_runs_and_the_explorer_answers(page, lab, smoke_data):
    src = ROOT / "notebooks" / "02_model_walkthrough.ipynb"
    smoke_copy(src, lab.root / "02_smoke.ipynb", profile="smoke", reference_dir="")
    _open(page, lab, "02_smoke.ipynb")
    _run_all(page)
    try:
        page.wait_for_selector(".widget-slider", timeout=RUN_TIMEOUT_MS)  # the explorer's slider
        page.wait_for_function(  # every code cell has run: no "[*]" prompt left
            "() => [...document.querySelectorAll('.jp-InputPrompt')]"
            ".every(p => !p.textContent.includes('*'))",
            timeout=RUN_TIMEOUT_MS,
        )
    except Exception as e:
        pytest.fail(f"02 did not finish: {e}\nJupyterLab log:\n{lab.log_tail()}")
    assert not _errors(page), _errors(page)

    # the explorer: another image, a typed question, the answer button
    handle = page.locator(".widget-slider .noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    question = "How many cubes are there?"
    page.locator(".widget-text input").first.fill(question)
    page.locator("button.jupyter-button", has_text="answer").click()
    box = page.locator(".widget-vbox").last
    answered = """() => {  // the table and both pictures, or a traceback, in the explorer
        const boxes = document.querySelectorAll('.widget-vbox');
        const out = boxes.length ? boxes[boxes.length - 1].querySelector('.widget-output') : null;
        if (!out) return false;
        if (out.innerText.includes('Traceback')) return true;
        return !!out.querySelector('table') && out.querySelectorAll('img').length >= 2;
    }"""
    try:
        try:
            page.wait_for_function(answered, timeout=60_000)
        except Exception:  # seen once on a loaded CPU: the pictures never came; ask once more
            page.locator("button.jupyter-button", has_text="answer").click()
            page.wait_for_function(answered, timeout=120_000)
    except Exception as e:
        seen = page.evaluate(
            "() => [...document.querySelectorAll('.widget-output')].map(o => [o.querySelectorAll"
            "('img').length, !!o.querySelector('table'), o.innerText.slice(0, 300)])"
        )
        pytest.fail(
            f"the explorer did not answer: {e}\nexplorer outputs (images, table, text): {seen}"
            f"\nJupyterLab log:\n{lab.log_tail()}"
        )
    output = box.locator(".widget-output").first.inner_text()
    if "Traceback" in output:
        pytest.fail(f"the explorer raised:\n{output[-2000:]}")
    table = box.locator(".widget-output table").first.inner_text()
    assert question in table and "answer" in table
    images = box.locator(".widget-output img")
    assert images.count() >= 2  # the saliency map and the routing-path picture
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.naturalWidth > 0 && img.naturalHeight > 0")
    box.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "02_explorer.png"))


def test_figures_notebook_shows_its_figures(page, lab):
    shutil.copy(ROOT / "notebooks" / "06_figures.ipynb", lab.root / "06_figures.ipynb")
    _open(page, lab, "06_figures.ipynb")
    # the visible notebook panel only: the lab may still hold 02 in a hidden tab
    figures = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedImage img")
    figures.nth(2).wait_for(timeout=60_000)
    n = figures.count()
    assert n >= 3, f"06 shows {n} figures"
    for i in range(n):
        assert figures.nth(i).evaluate("img => img.naturalWidth > 0"), f"figure {i} is empty"
    figures.nth(0).scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "06_figures.png"))
