#!/usr/bin/env python3
"""Run every lab once more the way a classroom runs it, and hold each to its memory budget.

    python deploy/check-labs.py [LAB ...] [--report test-artifacts/lab-memory.json]

Each lab is executed top to bottom in a fresh kernel (nbclient, strict exercises: a failing check fails the lab)
while a sampler reads the kernel's resident memory (RSS) every 0.1 s, and beside it the kernel plus the unique
memory (USS) of its child processes (the agent's sandbox), reported only: that figure still jumps from run to run
in lab 19 (860-1650 MiB) for a reason not yet found. A lab fails when it errors, when it leaves a process or a listening port behind (a server it did not stop), or
when the kernel's peak exceeds
the budget it declares with ``labkit.runtime.require_memory("950M", ...)``.
The budgets carry a margin of about 200 MiB over a warm run's peak: the first run of the labs in a fresh clone and
a fresh venv (what CI does) peaks 60-160 MiB higher than any later run on the same machine (seen 2026-12-03: lab 19
1,022 vs 865 MiB, lab 08 604 vs 526), and a cold page cache alone does not explain it.
The figures go to a JSON report (lab, seconds, peak MiB, budget MiB), which deploy/INSTRUCTOR.md's sizing reads.

`make test` runs this inside a network namespace with only loopback up (deploy/offline.sh), so the same run also
proves that no lab downloads anything.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_RE = re.compile(r"require_memory\(\s*[\"']([0-9.]+)\s*([KMG])i?B?[\"']", re.I)
UNITS = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}


def budget_mib(nb) -> float | None:
    for cell in nb.cells:
        m = BUDGET_RE.search(cell.source) if cell.cell_type == "code" else None
        if m:
            return float(m.group(1)) * UNITS[m.group(2).upper()]
    return None


def _unique(proc) -> int:
    """A child's own memory (USS): a forked child (the agent's sandbox) shares most pages with the kernel, and
    adding its RSS would count them twice; a container's memory limit counts them once."""
    import psutil

    try:
        return proc.memory_full_info().uss
    except (psutil.AccessDenied, AttributeError):
        return proc.memory_info().rss


class PeakRSS(threading.Thread):
    """Samples the kernel's RSS (with its children) until stopped; ``peak`` in bytes."""

    def __init__(self, client, every: float = 0.1):
        super().__init__(daemon=True)
        self.client, self.every, self.peak, self.done = client, every, 0, threading.Event()
        self.peak_total = 0  # with the unique memory of child processes (reported, not held to the budget)
        self.ports = None  # the ports the kernel listens on when first seen

    def _pid(self):
        km = getattr(self.client, "km", None)
        prov = getattr(km, "provisioner", None) if km is not None else None
        proc = getattr(prov, "process", None) if prov is not None else None
        return getattr(proc, "pid", None)

    def run(self):
        import psutil

        while not self.done.is_set():
            pid = self._pid()
            if pid:
                try:
                    p = psutil.Process(pid)
                    rss = p.memory_info().rss
                    self.peak = max(self.peak, rss)
                    self.peak_total = max(self.peak_total, rss + sum(_unique(c) for c in p.children(recursive=True)))
                except psutil.Error:
                    pass
            self.done.wait(self.every)


def listening(pid) -> set[int]:
    """TCP ports the process and its children listen on."""
    import psutil

    ports = set()
    try:
        procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return ports
    for p in procs:
        try:
            ports |= {c.laddr.port for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        except (psutil.Error, AttributeError):
            pass
    return ports


def leftovers(pid, kernel_ports: set[int]) -> list[str]:
    """What a lab left behind when its last cell finished: child processes of the kernel still running (a server,
    a tracking store, a worker pool), and ports listening beyond the kernel's own (its ZMQ channels). Labs that
    start real components must stop them (LABS.md)."""
    import psutil

    if not pid:
        return []
    out = []
    try:
        kids = [c for c in psutil.Process(pid).children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        kids = []
    for c in kids:
        try:
            out.append(f"process {c.pid} ({' '.join(c.cmdline()[:4])[:80]})")
        except psutil.Error:
            pass
    extra = listening(pid) - kernel_ports
    out += [f"port {p} listening" for p in sorted(extra)]
    return out


def run_lab(path: Path) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    sampler = PeakRSS(client)

    def kernel_ports(**_):
        """The kernel's own ports: its connection file's, and what it listens on once up and after the first cell
        (ipykernel may open one lazily; a first cell is the lab's require_memory, never a server)."""
        ports = set(sampler.ports or ())
        try:
            info = client.km.get_connection_info()
            ports |= {int(v) for k, v in info.items() if k.endswith("_port") and v}
        except Exception:  # noqa: BLE001
            pass
        sampler.ports = ports | listening(sampler._pid())

    seen = {"cells": 0}

    def after_cell(**_):
        seen["cells"] += 1
        if seen["cells"] == 1:
            kernel_ports()

    client.on_notebook_start = kernel_ports
    client.on_cell_executed = after_cell
    sampler.start()
    t0, error = time.perf_counter(), None
    left: list[str] = []
    try:
        client.execute(cleanup_kc=False)  # the kernel stays up until what the lab left behind is looked at
    except CellExecutionError as exc:
        error = f"{exc.ename}: {str(exc.evalue)[:300]}"
    except Exception as exc:  # noqa: BLE001 - a kernel that died (killed for memory) is a failed lab too
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        sampler.done.set()
        sampler.join()
        left = leftovers(sampler._pid(), sampler.ports or set())
        try:
            from jupyter_core.utils import run_sync

            run_sync(client._async_cleanup_kernel)()
        except Exception:  # noqa: BLE001
            pass
    budget = budget_mib(nb)
    row = {"lab": path.name, "seconds": round(time.perf_counter() - t0, 1), "peak_mib": round(sampler.peak / 2**20),
           "peak_with_children_mib": round(sampler.peak_total / 2**20),
           "budget_mib": round(budget) if budget else None, "error": error}
    row["left_running"] = left
    if not error and left:
        row["error"] = "left running at the end: " + "; ".join(left)
    elif not error and budget is None:
        row["error"] = "declares no budget: add labkit.runtime.require_memory(...) near the top"
    elif not error and sampler.peak == 0:
        row["error"] = "the kernel's memory could not be read"
    elif not error and sampler.peak / 2**20 > budget:
        row["error"] = f"peak {row['peak_mib']} MiB is over the {row['budget_mib']} MiB the lab declares"
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("labs", nargs="*", help="lab notebooks (default: every labs/NN_*.ipynb)")
    ap.add_argument("--report", default=str(ROOT / "test-artifacts" / "lab-memory.json"))
    args = ap.parse_args(argv)
    labs = [Path(p) for p in args.labs] or sorted((ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
    os.environ.setdefault("LABKIT_STRICT_EXERCISES", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    for lab in labs:
        row = run_lab(lab)
        rows.append(row)
        verdict = "FAIL " + row["error"] if row["error"] else "ok"
        print(f"{row['lab']:32s} {row['seconds']:6.1f} s  peak {row['peak_mib']:5d} MiB "
              f"(+children {row['peak_with_children_mib']:5d})  budget "
              f"{row['budget_mib'] or '-':>5} MiB  {verdict}", flush=True)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"offline": os.environ.get("LABKIT_OFFLINE_RUN") == "1", "labs": rows}, indent=1))
    failed = [r for r in rows if r["error"]]
    print(f"{len(rows) - len(failed)}/{len(rows)} labs ran within their memory budgets; report: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
