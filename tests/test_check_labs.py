"""deploy/check-labs.py fails a lab that leaves a process or a listening port behind, and passes one that stops
what it started (LABS.md: real components a lab starts are stopped at the end)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _check_labs():
    spec = importlib.util.spec_from_file_location("check_labs", ROOT / "deploy" / "check-labs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


START = ("import subprocess, sys, socket, time\n"
         "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
         "server = subprocess.Popen([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1'])\n"
         "for _ in range(100):\n"
         "    try:\n"
         "        socket.create_connection(('127.0.0.1', port), timeout=0.2).close(); break\n"
         "    except OSError:\n"
         "        time.sleep(0.1)\n")


def _lab(tmp_path, name, stop: bool) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import labkit.runtime\nlabkit.runtime.require_memory('600M', 'a test lab')"),
                nbformat.v4.new_code_cell(START)]
    if stop:
        nb.cells.append(nbformat.v4.new_code_cell("server.terminate(); server.wait()"))
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path


@pytest.mark.slow
def test_a_lab_that_leaves_a_server_running_fails_and_one_that_stops_it_passes(tmp_path):
    mod = _check_labs()
    bad = mod.run_lab(_lab(tmp_path, "90_leaves.ipynb", stop=False))
    assert bad["error"] and "left running" in bad["error"], bad
    assert any("http.server" in x for x in bad["left_running"]) and any("port" in x for x in bad["left_running"])
    good = mod.run_lab(_lab(tmp_path, "91_stops.ipynb", stop=True))
    assert good["error"] is None and good["left_running"] == [], good
