"""The Labkit panel (the JupyterLab extension built from labextension/) in a real JupyterLab + headless Chromium, every
request off the machine refused: it lists every lab the kit ships, a click opens a lab (copied into the learner's
folder first), a check run in a cell turns its chapter to "in progress" and then "done" without a page reload, and
"reset" keeps the old copy beside the fresh one.

The server is this module's own: an empty learner folder (not conftest's instructor copies) and a progress store of
its own (LABKIT_HOME), with LABKIT_STRICT_EXERCISES=0 so checks are recorded. Measured and printed: the extension's
bundle size and the time from a check cell finishing to the panel showing the new status
(test-artifacts/labkit_panel.json); the panel's screenshot is test-artifacts/labkit_panel.png.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ARTIFACTS, ROOT, LabServer, _free_port, _need_browser, only_loopback

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LAB = "00_welcome"
SHIPPED = sorted(p.stem for p in (ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
MEASURED: dict = {}


def _installed_extension() -> Path | None:
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("labextensions"):
        path = Path(base) / "labkit"
        if (path / "package.json").is_file():
            return path
    return None


@pytest.fixture(scope="module")
def learner_server(tmp_path_factory):
    _need_browser()
    root = tmp_path_factory.mktemp("learner")
    home = tmp_path_factory.mktemp("labkit-home")
    port, token = _free_port(), secrets.token_hex(16)
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "jupyterlab-panel.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", JUPYTER_CONFIG_DIR=str(root / ".jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(root / ".jupyter-runtime"), LABKIT_STRICT_EXERCISES="0",
               LABKIT_HOME=str(home))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
           "--LabServerApp.workspaces_dir=" + str(root / ".workspaces")]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    server = LabServer(root, port, token, proc, log)
    server.home = home
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(server.url("api/status"), timeout=2).read()
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
                pytest.fail("JupyterLab did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.5)
    yield server
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except Exception:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def lab(browser, learner_server):
    """One page for the module's steps, in order: the panel's state carries from one test to the next."""
    context = browser.new_context(viewport={"width": 1400, "height": 1500})
    page = context.new_page()
    page.blocked = only_loopback(page)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(learner_server.url(f"lab/workspaces/p{secrets.token_hex(4)}?reset"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands.hasCommand('labkit:open-panel')",
                           timeout=90_000)
    page.evaluate("() => { window.__lkMarker = 'no reload'; "
                  "return window.jupyterapp.commands.execute('labkit:open-panel'); }")
    page.wait_for_function("() => document.querySelectorAll('#labkit-panel .lk-chapter').length > 0",
                           timeout=60_000)
    yield page
    context.close()


def _row(lab: str) -> str:
    return f'#labkit-panel .lk-chapter[data-lab="{lab}"]'


def _show_panel(page) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('labkit:open-panel').then(() => null)")
    page.wait_for_selector("#labkit-panel .lk-chapter", state="visible", timeout=30_000)


def _status(page, lab: str) -> dict:
    return page.evaluate("""(sel) => { const r = document.querySelector(sel);
                                       return r ? {...r.dataset} : null; }""", _row(lab))


def test_the_extension_is_installed_prebuilt():
    ext = _installed_extension()
    assert ext is not None, "share/jupyter/labextensions/labkit is missing: make setup builds and installs it"
    meta = json.loads((ext / "package.json").read_text())
    assert meta["name"] == "labkit" and (ext / meta["jupyterlab"]["_build"]["load"]).is_file()
    js = list((ext / "static").glob("*.js"))
    MEASURED["bundle_bytes"] = sum(p.stat().st_size for p in js)
    MEASURED["bundle_files"] = len(js)
    print(f"\nlabkit labextension: {len(js)} JS files, {MEASURED['bundle_bytes'] / 1024:.1f} KiB in {ext / 'static'}")
    # nothing in the bundle reaches for the internet (the SVG namespace is a name, not a fetch)
    text = "\n".join(p.read_text(errors="replace") for p in js)
    urls = set(re.findall(r"https?://[^\s'\"`)]+", text)) - {"http://www.w3.org/2000/svg"}
    assert not [u for u in urls if "labkit" in u or "cdn" in u or "fonts" in u], urls


def test_the_panel_lists_every_shipped_lab(lab, learner_server):
    page = lab
    labs = page.eval_on_selector_all("#labkit-panel .lk-chapter[data-lab]", "rows => rows.map(r => r.dataset.lab)")
    assert sorted(labs) == SHIPPED
    numbers = page.eval_on_selector_all("#labkit-panel .lk-chapter", "rows => rows.map(r => Number(r.dataset.number))")
    assert numbers == list(range(23))  # the welcome and the roadmap's 22 chapters, in order
    parts = page.eval_on_selector_all("#labkit-panel .lk-part-name", "hs => hs.map(h => h.textContent)")
    assert len(parts) == 5 and parts[0] == "Welcome" and all(p.startswith(f"Part {i}") for i, p in enumerate(parts[1:], 1))
    statuses = {lab_: _status(page, lab_)["status"] for lab_ in SHIPPED}
    assert set(statuses.values()) == {"not started"}, statuses  # a fresh progress store
    assert page.locator("#labkit-panel .lk-nolab").count() == 23 - len(SHIPPED)
    assert all(t == "no lab yet" for t in page.eval_on_selector_all(
        "#labkit-panel .lk-nolab .lk-badge", "bs => bs.map(b => b.textContent)"))
    # launcher cards (category Labkit) and palette commands for the labs
    page.evaluate("() => window.jupyterapp.commands.execute('launcher:create').then(() => null)")
    cards = page.wait_for_function(
        """() => { const s = [...document.querySelectorAll('.jp-Launcher-section')]
                         .filter(s => s.querySelector('.jp-Launcher-sectionTitle')?.textContent === 'Labkit');
                   return s.length && s[s.length - 1].querySelectorAll('.jp-LauncherCard').length; }""",
        timeout=30_000).json_value()
    assert cards == len(SHIPPED)
    for cmd in ("labkit:open-panel", "labkit:open-lab", "labkit:refresh"):
        assert page.evaluate(f"() => window.jupyterapp.commands.hasCommand('{cmd}')")
    label = page.evaluate("() => window.jupyterapp.commands.label('labkit:open-lab', {lab: '03_tokenization'})")
    assert label == "Open lab 03 · Tokenization"


def test_the_machine_section_shows_doctor(lab):
    page = lab
    _show_panel(page)
    page.locator("#labkit-panel details.lk-machine summary").click()
    page.wait_for_selector("#labkit-panel details.lk-machine[data-ok]", timeout=60_000)
    text = page.locator("#labkit-panel details.lk-machine").inner_text()
    for fact in ("Threads (torch/BLAS)", "Memory budget for models", "Offline assets"):
        assert fact in text
    from labkit.serverext import doctor_state

    assert page.get_attribute("#labkit-panel details.lk-machine", "data-ok") == str(doctor_state()["ok"]).lower()


def test_a_click_opens_the_lab_copied_into_the_learners_folder(lab, learner_server):
    page = lab
    _show_panel(page)
    assert not (learner_server.root / f"{LAB}.ipynb").exists()
    page.locator(f"{_row(LAB)} button.lk-open").click()
    page.wait_for_function(
        """(name) => { const w = window.jupyterapp.shell.currentWidget;
                       return w && w.context && w.context.path === name; }""", arg=f"{LAB}.ipynb", timeout=60_000)
    assert (learner_server.root / f"{LAB}.ipynb").is_file()
    copied = json.loads((learner_server.root / f"{LAB}.ipynb").read_text())
    assert "### BEGIN SOLUTION" not in json.dumps(copied)  # the student version
    page.wait_for_selector(f"{_row(LAB)} button.lk-reset", timeout=15_000)  # present now: it can be reset
    page.wait_for_function(
        """() => { const w = window.jupyterapp.shell.currentWidget;
                   const k = w.sessionContext.session && w.sessionContext.session.kernel;
                   return k && k.status === 'idle'; }""", timeout=120_000)


# Starts the cell and records, in window.__lkRun, when its execution count arrives (the kernel's reply: [*] turns
# to [n]) and when the kernel goes idle. The waiting is Playwright's own (wait_for_function with a timeout, polling
# on a timer): a promise awaited inside page.evaluate has no timeout, and a requestAnimationFrame loop stops in a
# page the browser considers hidden, so a run that never finishes would hang the suite rather than fail it.
START_RUN = """(source) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const nb = panel.content;
  const index = nb.model.cells.length;
  nb.model.sharedModel.insertCell(index, {cell_type: 'code', source});
  nb.activeCellIndex = index;
  const run = window.__lkRun = {index, started: performance.now(), finished: null, idle: null, busy: false};
  nb.widgets[index].model.stateChanged.connect((_, change) => {
    if (change.name === 'executionCount' && change.newValue && run.finished === null) run.finished = performance.now();
  });
  const kernel = panel.sessionContext.session.kernel;
  kernel.statusChanged.connect((_, status) => {
    if (status === 'busy') run.busy = true;
    if (status === 'idle' && run.busy && run.idle === null) run.idle = performance.now();
  });
  void app.commands.execute('notebook:run-cell');
}"""

RUN_STATE = """([sel, want, done]) => {
  const run = window.__lkRun;
  const row = document.querySelector(sel);
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[run.index];
  // the cell's output from its model, not the page: a cell the notebook's windowing has not laid out (or whose
  // HTML is still rendering) has no text on the page yet, while its model holds the output before the reply comes
  const output = cell.model.outputs.toJSON().map(o => [].concat(o.text || [], (o.data || {})['text/plain'] || [])
                                                      .join('')).join(' ');
  const ok = run.finished !== null && !!row && row.dataset.status === want;
  if (done && !ok) return {ok: false, finished: run.finished !== null, row: row ? {...row.dataset} : null, output};
  if (!ok) return false;
  if (run.seen === undefined) run.seen = performance.now();
  return {ok: true, ran_ms: run.finished - run.started, latency_ms: run.seen - run.finished,
          idle_ms: run.idle === null ? null : run.idle - run.finished, row: {...row.dataset}, output};
}"""


def _check_source(names: list[str]) -> str:
    calls = "\n".join(f"check({n!r}, 2, expected=2)" for n in names)
    return f"from labkit.exercises import check\n{calls}"


def _run_and_watch(page, names: list[str], want: str) -> dict:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate(START_RUN, _check_source(names))
    try:
        # polled every 50 ms: latency_ms (cell finished -> panel shows the status) is measured to within that
        return page.wait_for_function(RUN_STATE, arg=[_row(LAB), want, False], polling=50,
                                      timeout=90_000).json_value()
    except PlaywrightTimeout:
        result = page.evaluate(RUN_STATE, [_row(LAB), want, True])
        raise AssertionError(f"the chapter did not turn {want!r} within 90 s: {result}") from None


def test_a_check_turns_the_chapter_in_progress_then_done_without_a_reload(lab, learner_server):
    from labkit.exercises import lab_exercises

    page = lab
    names = [ex.name for ex in lab_exercises(LAB)]
    assert len(names) >= 2
    assert _status(page, LAB)["status"] == "not started"

    first = _run_and_watch(page, names[:1], "in progress")
    assert "correct" in first["output"], first
    assert first["row"]["solved"] == "1" and first["row"]["exercises"] == str(len(names))
    MEASURED["in_progress_ms"] = round(first["latency_ms"])
    print("\nfirst:", {k: v for k, v in first.items() if k != "output"})

    done = _run_and_watch(page, names, "done")
    assert done["row"]["solved"] == str(len(names))
    MEASURED["done_ms"] = round(done["latency_ms"])
    print("\ndone:", {k: v for k, v in done.items() if k != "output"})
    assert page.evaluate("() => window.__lkMarker") == "no reload"  # the same page all along
    # the store the kernel wrote is this server's own (LABKIT_HOME), under the lab's name
    store = json.loads((learner_server.home / "progress.json").read_text())
    assert set(store["labs"][LAB]) >= set(names)
    summary = page.locator("#labkit-panel .lk-summary").inner_text()
    assert summary.startswith(f"1 of {len(SHIPPED)} labs done"), summary
    print(f"\ncheck cell finished -> panel shows the new status: {MEASURED['in_progress_ms']} ms (in progress), "
          f"{MEASURED['done_ms']} ms (done); the panel polls every 4 s, so this is the cell-executed refresh")
    # the panel reacts to the cell finishing, not to its polling alone
    assert max(MEASURED["in_progress_ms"], MEASURED["done_ms"]) < 4000, MEASURED



def test_progress_from_elsewhere_shows_up_by_polling(lab, learner_server, monkeypatch):
    """A check run outside JupyterLab (a script, a terminal) writes the same store: the panel's polling finds it."""
    from labkit import progress

    page = lab
    stem = next(s for s in SHIPPED if s.startswith("03_"))
    monkeypatch.setenv("LABKIT_HOME", str(learner_server.home))
    progress.record_attempt(stem, "Exercise 1", True)
    progress.record_attempt(stem, "Exercise 2", False)
    started = time.monotonic()
    page.wait_for_function("(sel) => document.querySelector(sel).dataset.status === 'in progress'",
                           arg=_row(stem), timeout=15_000)
    MEASURED["poll_pickup_s"] = round(time.monotonic() - started, 1)
    assert _status(page, stem)["solved"] == "1"
    _screenshot_panel(page)


def _screenshot_panel(page) -> None:
    """The panel, widened and tall enough to show every chapter and the machine's state."""
    page.set_viewport_size({"width": 1400, "height": 2000})
    page.locator("#labkit-panel details.lk-machine").evaluate("d => d.open = true")
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    if box:
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 300)
        page.mouse.down()
        page.mouse.move(box["x"] + 130, box["y"] + 300, steps=5)
        page.mouse.up()
    page.wait_for_timeout(500)
    shot = ARTIFACTS / "labkit_panel.png"
    box = page.locator("#labkit-panel").bounding_box()
    bottom = page.locator("#labkit-panel details.lk-machine").evaluate("d => d.getBoundingClientRect().bottom")
    page.screenshot(path=str(shot), clip={"x": box["x"], "y": box["y"], "width": box["width"],
                                          "height": min(box["height"], bottom - box["y"] + 10)})
    page.screenshot(path=str(ARTIFACTS / "labkit_panel_lab.png"))
    MEASURED["screenshot"] = str(shot)
    page.set_viewport_size({"width": 1400, "height": 1500})


def test_reset_keeps_the_old_copy_beside_a_fresh_one(lab, learner_server):
    page = lab
    path = learner_server.root / f"{LAB}.ipynb"
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
    before = path.read_bytes()
    assert b"expected=2" in before  # the learner's edits (the check cells) are in their copy
    page.locator(f"{_row(LAB)} button.lk-reset").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=15_000)
    assert "kept" in dialog.inner_text()
    dialog.locator("button.jp-mod-accept").click()
    message = page.locator("#labkit-panel .lk-message")
    page.wait_for_function("() => /old copy is kept as/.test(document.querySelector('#labkit-panel .lk-message').textContent)",
                           timeout=30_000)
    old = re.search(r"kept as (\S+?\.ipynb)", message.inner_text()).group(1)
    assert re.fullmatch(rf"{LAB}\.old-[\w.-]+\.ipynb", old), old
    assert (learner_server.root / old).read_bytes() == before  # the learner's copy, kept
    fresh = path.read_text()
    assert "expected=2" not in fresh and "### BEGIN SOLUTION" not in fresh  # a fresh student copy
    # the open editor shows the fresh copy (reloaded from disk), not the old content
    page.wait_for_function(
        """(n) => window.jupyterapp.shell.currentWidget.content.model.cells.length === n""",
        arg=len(json.loads(fresh)["cells"]), timeout=15_000)
    # progress is the learner's, not the file's: the chapter stays done
    assert _status(page, LAB)["status"] == "done"


def _wait_open(page, path: str) -> None:
    page.wait_for_function(
        """(name) => { const w = window.jupyterapp.shell.currentWidget;
                       return w && w.context && w.context.path === name; }""", arg=path, timeout=60_000)


def test_the_courses_update_and_open_lab_n(lab, learner_server):
    page = lab
    # a newer course version of an edited lab is written beside it (labkit labs copy's rule); the panel offers it
    shutil.copy(learner_server.root / f"{LAB}.ipynb", learner_server.root / f"{LAB}.updated.ipynb")
    page.evaluate("() => window.jupyterapp.commands.execute('labkit:refresh').then(() => null)")
    update = page.locator(f"{_row(LAB)} button.lk-update")
    update.wait_for(timeout=15_000)
    update.click()
    _wait_open(page, f"{LAB}.updated.ipynb")
    # the palette's "open lab N": lab 03, copied into the folder first
    stem = next(s for s in SHIPPED if s.startswith("03_"))
    page.evaluate("() => window.jupyterapp.commands.execute('labkit:open-lab', {number: 3}).then(() => null)")
    _wait_open(page, f"{stem}.ipynb")
    assert (learner_server.root / f"{stem}.ipynb").is_file()


def test_nothing_left_the_machine_and_no_errors(lab):
    # offline manners: the kit's settings overrides turn JupyterLab's "get official news?" question off
    assert lab.get_by_text("official Jupyter news").count() == 0
    assert not lab.blocked, lab.blocked
    assert not lab.errors, lab.errors
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "labkit_panel.json").write_text(json.dumps(MEASURED, indent=1))
    print(f"\nlabkit panel measurements: {MEASURED}")
