"""Shared fixtures: an IPython shell with labkit loaded, and a real JupyterLab + headless Chromium for browser tests.

Browser fixtures (tests marked ``@pytest.mark.browser``):

- ``lab_server``: JupyterLab on 127.0.0.1 (free port, token auth, ``window.jupyterapp`` exposed), its root a temp
  copy of ``labs/``; ``.url(path)``, ``.root``, ``.token``.
- ``browser``: Playwright Chromium from Debian's package (never ``playwright install``).
- ``run_all(page, lab_server, name)``: open a notebook, wait for its kernel, run all cells, wait until idle.
- ``only_loopback(page)``: refuse every request that leaves the machine (the list it returns fills with them).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def _learner_mode(monkeypatch):
    """Unit tests see labkit as a learner does (usage errors, exercise hints). ``make test`` sets
    LABKIT_STRICT_EXERCISES=1 for the labs run by nbmake; a test that wants strict mode sets it itself."""
    monkeypatch.delenv("LABKIT_STRICT_EXERCISES", raising=False)


@pytest.fixture
def ip():
    """A fresh IPython shell with ``%load_ext labkit``."""
    from IPython.core.getipython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = get_ipython()  # a process-wide singleton: a test may already have made a plain InteractiveShell,
    if shell is None:  # and start_ipython would then fail (MultipleInstanceError) making its terminal sibling
        start_ipython()
        shell = get_ipython()
    shell.run_line_magic("load_ext", "labkit")
    yield shell
    shell.user_ns.pop("_labkit_test", None)


# ------------------------------------------------------------------------------------------------ browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _need_browser():
    if chromium_path() is None:
        msg = "Chromium is not installed (deploy/install-test-deps.sh installs Debian's package)"
        if os.environ.get("LABKIT_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)


class LabServer:
    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.root, self.port, self.token, self.proc, self.log = root, port, token, proc, log

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    _need_browser()
    root = tmp_path_factory.mktemp("labroot")
    for nb in (ROOT / "labs").glob("*.ipynb"):
        shutil.copy(nb, root / nb.name)
    port, token = _free_port(), secrets.token_hex(16)
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "jupyterlab.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", JUPYTER_CONFIG_DIR=str(root / ".jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(root / ".jupyter-runtime"), LABKIT_STRICT_EXERCISES="0")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
           "--LabServerApp.workspaces_dir=" + str(root / ".workspaces")]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    server = LabServer(root, port, token, proc, log)
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


@pytest.fixture(scope="session")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium_path(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    yield pg
    context.close()


def run_all(page, server: LabServer, name: str, timeout_s: float = 240) -> None:
    """Open ``name`` in JupyterLab, wait for the kernel, run all cells and wait until the kernel is idle again."""
    # A workspace of its own, reset: JupyterLab would otherwise reopen what an earlier test left open and
    # "run all" could run that notebook instead of this one.
    page.goto(server.url(f"lab/workspaces/t{secrets.token_hex(4)}/tree/{name}?reset"))
    page.wait_for_function(
        """(name) => { const w = window.jupyterapp && window.jupyterapp.shell && window.jupyterapp.shell.currentWidget;
                       return w && w.sessionContext && w.context && w.context.path.endsWith(name); }""",
        arg=name, timeout=60_000)
    page.wait_for_function(
        """() => { const w = window.jupyterapp.shell.currentWidget;
                   const k = w.sessionContext.session && w.sessionContext.session.kernel;
                   return k && k.status === 'idle'; }""", timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # Busy first, then idle with no cell still queued ([*]).
    page.wait_for_timeout(1500)
    page.wait_for_function(
        """() => { const w = window.jupyterapp.shell.currentWidget;
                   const k = w.sessionContext.session.kernel;
                   const pending = [...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
                   return k.status === 'idle' && !pending; }""", timeout=int(timeout_s * 1000))


def only_loopback(page) -> list:
    """Refuse every request that leaves the machine; the list fills with what was refused."""
    from urllib.parse import urlparse

    blocked = []

    def route_it(route):
        host = urlparse(route.request.url).hostname or ""
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            return route.continue_()
        blocked.append(route.request.url)
        return route.abort()

    page.route("**/*", route_it)
    return blocked


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    return path


@pytest.fixture
def run_student_version(tmp_path):
    """``run(lab_name) -> (report, outputs_text)``: `labkit student build`'s version of a lab (every exercise
    ``...``), executed to the end in strict mode with a fresh LABKIT_HOME; the joined text of its outputs."""
    def run(lab_name: str):
        import nbformat
        from nbclient import NotebookClient

        from labkit import grading

        report = grading.write_student_versions(tmp_path, None, [lab_name])[0]
        student = tmp_path / lab_name
        assert "### BEGIN SOLUTION" not in student.read_text()
        nb = nbformat.read(str(student), as_version=4)
        env = {"LABKIT_STRICT_EXERCISES": "1", "LABKIT_HOME": str(tmp_path / "home")}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(tmp_path)}}).execute()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        text = "\n".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", ""))
                         for c in nb.cells for o in c.get("outputs", []))
        return report, text

    return run


def lab_checkers(lab, ns: dict) -> dict:
    """A lab's exercise checkers (the code between each `### END SOLUTION` and its `check(` call), run on their own
    in ``ns`` (the names they need), so a test can feed them right and wrong answers."""
    import nbformat

    for cell in nbformat.read(str(lab), as_version=4).cells:
        src = cell.source
        if cell.cell_type == "code" and "### END SOLUTION" in src:
            body = src.split("### END SOLUTION", 1)[1]
            exec(body[: body.index("\ncheck(")], ns)
    return ns
