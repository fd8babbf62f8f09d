"""Classroom sizing, measured on a real JupyterHub (loopback, the harness of tests/test_hub.py).

For every lab in labs/ (or those named on the command line), a fresh single-user server is spawned for one student
(CPU_LIMIT=1, as a hub would set it), the labs are copied with ``labkit labs copy``, and the lab runs cell by cell
through the kernels websocket. Measured per lab:

- spawn: POST /users/NAME/server until the hub reports the server ready;
- first result: from that POST to the lab's first output (what a student waits for after logging in);
- lab: running every cell;
- peak memory of the student's process tree (single-user server + kernel): RSS (what a container's memory limit
  sees, upper bound) and PSS (shared library pages split between processes).

From the heaviest lab that ran: the recommended per-student memory limit (peak RSS x 1.25, rounded up to 256 MiB)
and students per 64 GB node at that limit (guarantee = limit, 4 GB kept for the system and the hub).

    nice -n 10 .venv/bin/python benchmarks/bench_hub.py [LAB ...] [--timeout 300] [--json test-artifacts/bench-hub.json]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_hub import BIN, LoopbackHub, TreeSampler, WsKernel, find_chp  # noqa: E402

NODE_GB = 64
RESERVED_GB = 4  # kubelet, system daemons, the hub and proxy pods
HEADROOM = 1.25
MEM_LIMIT_FOR_BENCH = "6G"  # generous, so that require_memory never refuses during a measurement
GiB = 1024**3


def human(n: float) -> str:
    return f"{n / 1024**2:,.0f} MB"


def round_up(n: float, step: int = 256 * 1024**2) -> int:
    return int(math.ceil(n / step) * step)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server and its kernel(s)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root] + root.children(recursive=True):
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def measure_lab(hub: LoopbackHub, name: str, token: str, lab: str, timeout: float) -> dict:
    t0 = hub.request_spawn(name)
    spawn_s = hub.wait_ready(name, t0)
    pid = hub.server_pids[name]
    sampler = TreeSampler({name: pid}, interval=0.2)
    sampler.sample(with_pss=True)
    idle_rss = sampler.peak_rss[name]
    sampler.start()
    row = {"lab": lab, "spawn_s": round(spawn_s, 2), "idle_server_rss": idle_rss}
    kernel = None
    try:
        done = hub.as_student(name, [str(BIN / "labkit"), "labs", "copy", str(hub.home(name) / "labs")])
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        kernel = WsKernel(hub.server_url(name), token, f"labs/{lab}")
        start = time.perf_counter()
        runs = kernel.run_notebook(hub.home(name) / "labs" / lab, timeout_per_cell=timeout)
        row["lab_s"] = round(time.perf_counter() - start, 2)
        row["first_result_s"] = round((kernel.first_output_at or time.perf_counter()) - t0, 2)
        row["cpu_s"] = round(tree_cpu_seconds(pid), 1)
        bad = [r for r in runs if r.status != "ok"]
        evalue = " ".join(bad[0].evalue.split())[:80] if bad else ""
        row["status"] = "ok" if not bad else f"error in cell {len(runs)}: {bad[0].ename}: {evalue}"
    except Exception as exc:  # a lab still being written: record it and go on
        row["status"] = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:100]}"
    finally:
        sampler.stop()
        if kernel is not None:
            try:
                kernel.close()
            except Exception:
                pass
        hub.api("DELETE", f"/users/{name}/server", timeout=60)
        deadline = time.time() + 60
        while hub.api("GET", f"/users/{name}").json().get("servers") and time.time() < deadline:
            time.sleep(0.3)
        hub.server_pids.pop(name, None)
    row["peak_rss"] = sampler.peak_rss[name]
    row["peak_pss"] = sampler.peak_pss[name]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("labs", nargs="*", help="lab notebooks (names in labs/); default: every lab")
    p.add_argument("--timeout", type=float, default=300, help="seconds per cell before giving up on a lab")
    p.add_argument("--json", default=str(ROOT / "test-artifacts" / "bench-hub.json"))
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown (for INSTRUCTOR.md)")
    args = p.parse_args(argv)
    chp = find_chp()
    if chp is None:
        print("configurable-http-proxy is missing: run deploy/install-test-deps.sh")
        return 1
    labs = args.labs or sorted(q.name for q in (ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
    root = Path(tempfile.mkdtemp(prefix="labkit-bench-hub-"))
    hub = LoopbackHub(root, chp, mem_limit=MEM_LIMIT_FOR_BENCH, students=("student",))
    rows = []
    try:
        hub.start()
        hub.create_users(["student"])
        token = hub.user_token("student")
        for lab in labs:
            print(f"... {lab}", flush=True)
            rows.append(measure_lab(hub, "student", token, lab, args.timeout))
    finally:
        hub.close()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nJupyterHub classroom sizing ({hub.mode} isolation, CPU_LIMIT=1, one student at a time, 2-core host)")
    print(f"{'lab':34s} {'spawn':>7s} {'1st result':>11s} {'lab run':>8s} {'CPU':>7s} {'peak RSS':>10s} "
          f"{'peak PSS':>10s}  status")
    for r in rows:
        print(f"{r['lab']:34s} {r['spawn_s']:6.1f}s {r.get('first_result_s', float('nan')):10.1f}s "
              f"{r.get('lab_s', float('nan')):7.1f}s {r.get('cpu_s', float('nan')):6.1f}s "
              f"{human(r['peak_rss']):>10s} {human(r['peak_pss']):>10s}  {r['status']}")
    ok = [r for r in rows if r["status"] == "ok"]
    summary = {"labs": rows, "node_gb": NODE_GB, "reserved_gb": RESERVED_GB, "headroom": HEADROOM}
    if ok:
        heaviest = max(ok, key=lambda r: r["peak_rss"])
        limit = round_up(heaviest["peak_rss"] * HEADROOM)
        idle = max(r["idle_server_rss"] for r in rows)
        per_node = int((NODE_GB - RESERVED_GB) * GiB // limit)
        median = sorted(r["peak_rss"] for r in ok)[(len(ok) - 1) // 2]
        guarantee = round_up(median)
        per_node_overcommit = int((NODE_GB - RESERVED_GB) * GiB // guarantee)
        print(f"\nidle single-user server (no kernel): {human(idle)}")
        print(f"heaviest lab: {heaviest['lab']} at {human(heaviest['peak_rss'])} peak RSS "
              f"({human(heaviest['peak_pss'])} PSS)")
        print(f"recommended memory limit per student: {limit / GiB:.2f} GiB (heaviest peak x {HEADROOM})")
        print(f"students per {NODE_GB} GB node, guarantee = limit = {limit / GiB:.2f} GiB: {per_node}")
        print(f"students per {NODE_GB} GB node, guarantee = median lab peak ({guarantee / GiB:.2f} GiB), "
              f"limit {limit / GiB:.2f} GiB: {per_node_overcommit} (overcommitted: fine while students are on "
              f"different labs, not when all run the heaviest at once)")
        print(f"spawn-to-first-result: median {sorted(r['first_result_s'] for r in ok)[(len(ok) - 1) // 2]:.1f} s, "
              f"max {max(r['first_result_s'] for r in ok):.1f} s")
        summary.update(recommended_limit_bytes=limit, students_per_node=per_node, idle_server_rss=idle,
                       guarantee_overcommit_bytes=guarantee, students_per_node_overcommit=per_node_overcommit,
                       heaviest_lab=heaviest["lab"])
    if args.markdown:
        print("\n| lab | spawn | spawn to first result | lab run | CPU | peak RSS | peak PSS | status |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for r in rows:
            print(f"| {r['lab']} | {r['spawn_s']:.1f} s | {r.get('first_result_s', float('nan')):.1f} s | "
                  f"{r.get('lab_s', float('nan')):.1f} s | {r.get('cpu_s', float('nan')):.1f} s | "
                  f"{human(r['peak_rss'])} | {human(r['peak_pss'])} | {r['status']} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=1))
    print(f"\nwritten: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
