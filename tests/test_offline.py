"""deploy/offline.sh: inside it nothing outside the machine is reachable while loopback works (the kernels need
it); deploy/check-labs.py reads each lab's declared memory budget and fails a lab over it."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ROOT / "deploy" / "offline.sh"

PROBE = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
c = socket.create_connection(srv.getsockname(), timeout=2); c.close()          # loopback works
try:
    socket.create_connection(("1.1.1.1", 443), timeout=2)                      # the outside does not
    sys.exit("the outside world is reachable")
except OSError as exc:
    print("blocked:", exc)
"""


def _namespaces() -> bool:
    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _namespaces(), reason="no unprivileged network namespaces on this machine")
def test_inside_offline_sh_only_loopback_is_reachable():
    res = subprocess.run([str(OFFLINE), sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "blocked:" in res.stdout


def test_offline_sh_passes_arguments_through_unchanged():
    res = subprocess.run([str(OFFLINE), sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "$HOME", "'q'"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == repr(["a b", "$HOME", "'q'"])


def _load_check_labs():
    import importlib.util
    spec = importlib.util.spec_from_file_location("check_labs", ROOT / "deploy" / "check-labs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_labs_reads_budgets_and_fails_a_lab_over_its_budget(tmp_path):
    cl = _load_check_labs()
    assert cl.budget_mib(nbformat.read(str(ROOT / "labs" / "07_pretraining.ipynb"), 4)) > 100
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('budget = "require_memory(\'20M\', \'t\')"  # declared, not called'),
                nbformat.v4.new_code_cell("x = bytearray(80 * 2**20); import time; time.sleep(0.5)")]
    path = tmp_path / "99_big.ipynb"
    nbformat.write(nb, str(path))
    assert cl.budget_mib(nb) == 20
    row = cl.run_lab(path)
    assert row["peak_mib"] > 80 and "over the 20 MiB" in row["error"]
    nb.cells[0].source = "pass"
    nbformat.write(nb, str(path))
    assert "declares no budget" in cl.run_lab(path)["error"]
