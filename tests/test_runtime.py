"""Runtime limits as a JupyterHub spawner sets them: CPU_LIMIT -> torch/BLAS threads, MEM_LIMIT -> budgets, and the
per-lab memory check ``require_memory``. The kernel tests start a real, fresh ipykernel with the hub's variables."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import runtime
from labkit.errors import LabkitUsageError, MemoryBudgetError

ROOT = Path(__file__).resolve().parent.parent
HUB_VARS = ("CPU_LIMIT", "MEM_LIMIT", "LABKIT_MEM_BUDGET", "LABKIT_SKIP_MEMORY_CHECK", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM")


@pytest.fixture
def clean_env(monkeypatch):
    for var in HUB_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.parametrize("value,threads", [("1", 1), ("1.5", 1), ("0.5", 1), ("2.0", 2), ("3", 3)])
def test_thread_count_follows_cpu_limit(clean_env, value, threads):
    clean_env.setenv("CPU_LIMIT", value)
    assert runtime.thread_count() == threads


@pytest.mark.parametrize("value", ["", "abc", "0", "-2"])
def test_unreadable_cpu_limit_is_ignored(clean_env, value):
    clean_env.setenv("CPU_LIMIT", value)
    assert runtime.cpu_limit() is None
    assert runtime.thread_count() == len(os.sched_getaffinity(0))


def test_apply_thread_env_sets_blas_variables(clean_env):
    clean_env.setenv("CPU_LIMIT", "1")
    assert runtime.apply_thread_env() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "1"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_mem_limit_sets_the_model_budget(clean_env):
    # a limit 2 GiB above what this process holds now (the test process itself grows past 2 GiB in a full run,
    # and a fixed "2G" then leaves a budget of 0)
    limit_mib = runtime.process_rss() // 2**20 + 2048
    clean_env.setenv("MEM_LIMIT", f"{limit_mib}M")
    budget = runtime.memory_budget()
    assert budget > 1024**3
    assert abs(budget - (int(limit_mib * 2**20 * 0.9) - runtime.process_rss())) < 64 * 1024**2
    clean_env.setenv("MEM_LIMIT", f"{runtime.process_rss() // 2**20 // 2}M")  # already over 90 % of it: nothing left
    assert runtime.memory_budget() == 0


def test_cgroup_memory_reads_numbers_or_none():
    usage, limit = runtime.cgroup_memory()
    assert usage is None or usage > 0
    assert limit is None or limit > 0


# ------------------------------------------------------------------------------------------------ require_memory
def test_require_memory_fits(clean_env):
    clean_env.setenv("LABKIT_MEM_BUDGET", "4G")
    verdict = runtime.require_memory("1.2G", "lab 07")
    assert verdict.ok and verdict.needed == int(1.2 * 1024**3)
    assert "lab 07" in verdict and "fits" in verdict


def test_require_memory_refuses_over_mem_limit(clean_env):
    clean_env.setenv("MEM_LIMIT", "512M")
    with pytest.raises(MemoryBudgetError) as info:
        runtime.require_memory("1.2G", "lab 07")
    msg = str(info.value)
    assert "lab 07 needs about 1.2 GB" in msg and "MEM_LIMIT" in msg and "at least" in msg
    assert isinstance(info.value, runtime.LabMemoryBudgetError)


def test_require_memory_can_be_skipped(clean_env):
    clean_env.setenv("MEM_LIMIT", "512M")
    clean_env.setenv("LABKIT_SKIP_MEMORY_CHECK", "1")
    verdict = runtime.require_memory("1.2G", "lab 07")
    assert not verdict.ok and "does NOT fit" in verdict


@pytest.mark.parametrize("bad", ["lots", "", "-1G", 0])
def test_require_memory_bad_estimate(clean_env, bad):
    with pytest.raises(LabkitUsageError):
        runtime.require_memory(bad, "lab 07")


def test_require_memory_shows_one_line_in_ipython(clean_env, ip, capsys):
    clean_env.setenv("MEM_LIMIT", "256M")
    result = ip.run_cell("import labkit.runtime\nlabkit.runtime.require_memory('2G', 'lab 09')")
    assert isinstance(result.error_in_exec, MemoryBudgetError)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "MemoryBudgetError: lab 09 needs about 2.0 GB" in text
    assert "Traceback" not in text and "File " not in text


# ------------------------------------------------------------------------------------------------ fresh kernels
def _kernel_run(env_extra: dict, code: str) -> str:
    """Run ``code`` in a fresh python3 ipykernel started with ``env_extra``; return its stdout."""
    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if k not in HUB_VARS}
    env.update(env_extra)
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    out: list[str] = []
    try:
        reply = kc.execute_interactive(
            code, timeout=120,
            output_hook=lambda msg: out.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return "".join(out)


@pytest.mark.slow
def test_cpu_limit_gives_torch_one_thread_in_a_fresh_kernel():
    out = _kernel_run({"CPU_LIMIT": "1"}, "%load_ext labkit\nimport os, torch\n"
                      "print('threads', torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'))")
    assert "threads 1 1" in out, out


@pytest.mark.slow
def test_cpu_limit_fixes_torch_imported_before_load_ext():
    # torch imported first starts one thread per core; %load_ext labkit must bring it down to the quota
    out = _kernel_run({"CPU_LIMIT": "1"}, "import torch\nbefore = torch.get_num_threads()\n%load_ext labkit\n"
                      "print('threads', torch.get_num_threads())")
    assert "threads 1" in out, out


@pytest.mark.slow
def test_doctor_reports_hub_limits():
    env = {k: v for k, v in os.environ.items() if k not in HUB_VARS}
    env.update(CPU_LIMIT="1", MEM_LIMIT="1G", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "labkit.cli", "doctor", "--quick"], env=env, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    text = proc.stdout
    assert "CPU_LIMIT" in text and "threads (torch/BLAS)" in text, proc.stdout + proc.stderr
    threads_line = next(line for line in text.splitlines() if "threads (torch/BLAS)" in line)
    assert threads_line.split()[-1] == "1"
    budget_line = next(line for line in text.splitlines() if "memory budget for model loads" in line)
    assert "MB" in budget_line  # 90 % of 1 GiB minus the process: some hundreds of MB, not the machine's GBs


# ------------------------------------------------------------------------------------------------ deploy files
def _measured_peaks() -> dict[str, int]:
    """Peak RSS per lab from the MEASURED table of deploy/INSTRUCTOR.md (written by benchmarks/bench_hub.py)."""
    import re

    text = (ROOT / "deploy" / "INSTRUCTOR.md").read_text()
    block = text.split("<!-- BEGIN MEASURED", 1)[1].split("<!-- END MEASURED", 1)[0]
    peaks = {}
    for line in block.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) == 8 and cols[0].endswith(".ipynb") and cols[7] == "ok":
            m = re.fullmatch(r"([\d,]+) MB", cols[5])
            peaks[cols[0]] = int(m.group(1).replace(",", "")) * 1024**2
    return peaks


def test_values_yaml_limits_follow_the_measurements(clean_env):
    """The Zero to JupyterHub memory guarantee covers the heaviest measured lab x 1.25 (limit >= guarantee), and a
    kernel under these limits gets 1 thread and a budget that admits that lab (as KubeSpawner would export them)."""
    import yaml
    from jupyterhub.traitlets import ByteSpecification

    values = yaml.safe_load((ROOT / "deploy" / "values.yaml").read_text())["singleuser"]
    limit = ByteSpecification().validate(None, values["memory"]["limit"])
    guarantee = ByteSpecification().validate(None, values["memory"]["guarantee"])
    assert guarantee <= limit
    peaks = _measured_peaks()
    assert peaks, "deploy/INSTRUCTOR.md has no measured labs"
    heaviest = max(peaks.values())
    assert guarantee >= heaviest * 1.25, (values["memory"], heaviest)  # the rule of INSTRUCTOR.md, "Sizing"
    assert values["cpu"]["guarantee"] <= values["cpu"]["limit"]
    clean_env.setenv("CPU_LIMIT", str(float(values["cpu"]["limit"])))
    clean_env.setenv("MEM_LIMIT", str(limit))
    assert runtime.thread_count() == max(1, int(values["cpu"]["limit"]))
    assert runtime.require_memory(heaviest, "the heaviest lab").ok
    assert values["extraEnv"]["HF_HUB_OFFLINE"] == "1"


def test_values_yaml_guarantee_covers_every_lab_budget():
    """Each lab declares a kernel budget (require_memory), and `make test` holds every lab to it
    (deploy/check-labs.py); the classroom's guarantee must fit the largest budget plus an idle single-user server
    (181 MB measured by benchmarks/bench_hub.py)."""
    import importlib.util

    import nbformat
    import yaml
    from jupyterhub.traitlets import ByteSpecification

    spec = importlib.util.spec_from_file_location("check_labs", ROOT / "deploy" / "check-labs.py")
    cl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cl)
    budgets = {p.name: cl.budget_mib(nbformat.read(str(p), 4)) for p in sorted((ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))}
    assert all(budgets.values()), [k for k, v in budgets.items() if not v]
    values = yaml.safe_load((ROOT / "deploy" / "values.yaml").read_text())["singleuser"]
    guarantee = ByteSpecification().validate(None, values["memory"]["guarantee"])
    assert guarantee >= (max(budgets.values()) + 181) * 2**20, (values["memory"], budgets)


def test_dockerfile_runs_only_tested_commands():
    """Each RUN step of deploy/Dockerfile is a command the test suite runs elsewhere."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    run = text.split("\nRUN ", 1)[1].split("\n\n", 1)[0]
    steps = [s.strip().rstrip("\\").strip() for s in run.split("&&")]
    tested = ("/opt/labkit/deploy/install.sh ", "/opt/labkit/deploy/readonly-models.sh ",
              '"${CONDA_DIR}/bin/labkit" student build ', 'HF_HUB_OFFLINE=1 "${CONDA_DIR}/bin/labkit" doctor --quick')
    for step in steps:
        assert step.startswith(tested), f"untested command in the Dockerfile: {step}"
    assert text.count("\nRUN ") == 1
    assert "HF_HUB_OFFLINE=1" in text.split("\nRUN ", 1)[1]
