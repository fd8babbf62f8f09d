"""The training playground in a real JupyterLab (headless Chromium), every request off the machine refused: it
renders a run trained from code, Train starts a run the kernel trains in the background (the loss curve grows
while the notebook stays idle), and Stop ends it."""
from __future__ import annotations

import json

import pytest

from conftest import only_loopback, run_all, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATE = "() => document.querySelector('.lk-pg').dataset.state"
LOSS_N = "() => Number(document.querySelector('.lk-pg canvas.lk-pg-loss').dataset.n)"
STEP = "() => document.querySelector('.lk-pg [data-key=step]').textContent"


def _step(page) -> int:
    return int(page.evaluate(STEP).replace("step", "").split("/")[0])


def test_playground_renders_trains_live_and_stops(lab_server, page):
    blocked = only_loopback(page)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [],
                     "source": "from labkit import playground\nrun = playground.train(dataset='xor', steps=60)\nrun"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (lab_server.root / "playground_browser.ipynb").write_text(json.dumps(nb))
    run_all(page, lab_server, "playground_browser.ipynb")

    pg = page.locator(".lk-pg").first
    pg.wait_for(timeout=60_000)
    assert page.locator("text=Error displaying widget").count() == 0
    # the run trained from code: its boundary, its points, its loss curve and its settings in the controls
    boundary = pg.locator("canvas.lk-pg-boundary")
    assert boundary.get_attribute("data-grid") == "60" and boundary.get_attribute("data-points") == "200"
    assert page.evaluate(LOSS_N) == 60 and page.evaluate(STATE) == "done"
    assert pg.locator("select.lk-pg-dataset option:checked").text_content() == "xor"
    before = boundary.evaluate("c => c.toDataURL()")

    # a spiral, long enough to watch; Train: the kernel trains in a thread, so the notebook is idle meanwhile
    pg.locator("select.lk-pg-dataset").select_option(label="spiral")
    pg.locator("select.lk-pg-steps").select_option(label="10000")
    pg.locator("button.lk-pg-train").click()
    try:
        page.wait_for_function(f"() => ({STATE})() === 'running' && ({LOSS_N})() >= 50", timeout=60_000)
    except Exception:
        screenshot(page, "playground_train_failed.png")
        pytest.fail("Train did not start a visible run; the widget shows: " + pg.inner_text())
    first = page.evaluate(LOSS_N)
    page.wait_for_function(f"() => ({LOSS_N})() > {first}", timeout=30_000)  # the curve grows while it trains
    assert boundary.evaluate("c => c.toDataURL()") != before              # and the boundary is redrawn
    assert pg.locator("button.lk-pg-stop").is_enabled() and not pg.locator("button.lk-pg-train").is_enabled()
    kernel = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status")
    assert kernel == "idle"  # the cell ended long ago: training runs beside the kernel, not in a cell
    pg.scroll_into_view_if_needed()
    screenshot(page, "playground_training.png")

    pg.locator("button.lk-pg-stop").click()
    page.wait_for_function(f"() => ({STATE})() === 'stopped'", timeout=30_000)
    stopped_at = _step(page)
    assert 0 < stopped_at < 10_000
    page.wait_for_timeout(1500)
    assert _step(page) == stopped_at and page.evaluate(STATE) == "stopped"  # nothing trains after Stop
    assert pg.locator("button.lk-pg-train").is_enabled()
    screenshot(page, "playground_stopped.png")
    assert not errors, errors
    assert not blocked, blocked  # the widget's code ships with labkit: nothing was fetched from elsewhere
