"""Runtime limits: CPU threads and the memory budget, as a JupyterHub spawner sets them.

Spawners (KubeSpawner, SystemdSpawner, DockerSpawner, ...) export ``CPU_LIMIT`` (cores, may be fractional) and
``MEM_LIMIT`` (bytes). Under a 1-CPU quota, torch would otherwise start one thread per *host* core and thrash;
a model load that does not fit ``MEM_LIMIT`` would get the kernel OOM-killed with no explanation.
No heavy imports here: this module is imported at ``%load_ext labkit``.
"""
from __future__ import annotations

import math
import os
import re

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def labkit_home():
    """labkit's own folder: ``$LABKIT_HOME``, else ``~/.cache/labkit`` (fine-tuning runs live in ``runs/``)."""
    from pathlib import Path

    return Path(os.path.expanduser(os.environ.get("LABKIT_HOME", "~/.cache/labkit")))


def runs_dir():
    """Where saved fine-tuning runs live: ``labkit_home()/runs`` (a run ``NAME``'s model: ``runs/NAME/model``)."""
    return labkit_home() / "runs"


def parse_bytes(text: str | int | float) -> int:
    """'2G', '512M', '1.5GiB', '2147483648' -> bytes (binary units, as Kubernetes and JupyterHub use)."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", str(text))
    if not m:
        raise ValueError(f"cannot read {text!r} as a size in bytes (examples: 2G, 512M, 2147483648)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def cpu_limit() -> float | None:
    """The CPU quota from ``CPU_LIMIT`` (cores), or None when unset or unreadable."""
    raw = os.environ.get("CPU_LIMIT", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def thread_count() -> int:
    """Threads torch/BLAS should use: floor(CPU_LIMIT) (at least 1) under a quota, else the cores we may run on."""
    limit = cpu_limit()
    if limit is not None:
        return max(1, math.floor(limit))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def apply_thread_env() -> int:
    """Set the BLAS/OpenMP thread variables before torch/numpy are imported (no-op for those already set)."""
    n = thread_count()
    if cpu_limit() is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM"):
            if var == "TOKENIZERS_PARALLELISM":
                os.environ.setdefault(var, "true" if n > 1 else "false")
            else:
                os.environ.setdefault(var, str(n))
    return n


def configure_torch() -> int:
    """Make an already-imported (or about-to-be-imported) torch follow the CPU quota. Returns the thread count."""
    n = apply_thread_env()
    import torch  # lazy: only engine functions that need torch call this

    if cpu_limit() is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def host_reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """Does ``host:port`` accept a connection within ``timeout``? Probed in a daemon thread, so a slow DNS lookup
    on an offline classroom network cannot hang the caller."""
    import socket
    import threading

    ok = [False]

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok[0] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return ok[0]


def mem_limit() -> int | None:
    """``MEM_LIMIT`` in bytes, or None when unset or unreadable."""
    raw = os.environ.get("MEM_LIMIT", "").strip()
    if not raw:
        return None
    try:
        value = parse_bytes(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def process_rss() -> int:
    """Resident memory of this process in bytes (0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def memory_budget() -> int:
    """Bytes a new model load may use now.

    ``LABKIT_MEM_BUDGET`` (explicit, for tests and instructors) wins; else, under ``MEM_LIMIT``, 90 % of the limit
    minus what this kernel already holds; else the machine's available memory.
    """
    explicit = os.environ.get("LABKIT_MEM_BUDGET", "").strip()
    if explicit:
        return parse_bytes(explicit)
    limit = mem_limit()
    if limit is not None:
        return max(0, int(limit * 0.9) - process_rss())
    available = _meminfo("MemAvailable")
    return available if available is not None else 8 * 1024**3


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def check_memory(estimate: int, what: str) -> None:
    """Refuse (MemoryBudgetError) a load whose estimated size does not fit the budget, before it starts."""
    from .errors import MemoryBudgetError

    budget = memory_budget()
    if estimate > budget:
        source = (
            "LABKIT_MEM_BUDGET" if os.environ.get("LABKIT_MEM_BUDGET") else
            "MEM_LIMIT (set by your JupyterHub)" if mem_limit() else "the machine's free memory"
        )
        raise MemoryBudgetError(
            f"Not loading {what}: it needs about {human_bytes(estimate)} but only {human_bytes(budget)} is left "
            f"under {source}. Free memory first (restart the kernel, or `labkit.unload()`), pick a smaller model "
            f"(`labkit models` lists them with sizes), or ask your instructor for a larger memory limit."
        )


# ------------------------------------------------------------------------------------------------ per-lab check
def cgroup_memory() -> tuple[int | None, int | None]:
    """(usage, limit) in bytes of this process's memory cgroup (a Kubernetes/Docker container, a systemd slice),
    or None for what cannot be read or is unlimited. cgroup v2 first, then v1."""
    def read_int(path: str) -> int | None:
        try:
            with open(path) as fh:
                raw = fh.read().strip()
        except OSError:
            return None
        if not raw or raw == "max":
            return None
        try:
            value = int(raw)
        except ValueError:
            return None
        return value if value < 2**60 else None  # v1 reports "unlimited" as a huge number

    rel = ""
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3 and parts[0] == "0" and parts[1] == "":  # the v2 unified hierarchy
                    rel = parts[2]
    except OSError:
        pass
    for base in (f"/sys/fs/cgroup{rel}", "/sys/fs/cgroup"):
        usage, limit = read_int(f"{base}/memory.current"), read_int(f"{base}/memory.max")
        if usage is not None or limit is not None:
            return usage, limit
    return read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes"), read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")


def lab_headroom() -> tuple[int, str]:
    """Bytes a lab's kernel may grow to in total (its current size included), and where that figure comes from.

    ``LABKIT_MEM_BUDGET`` wins (an explicit figure, counted on top of what the kernel holds now). Under
    ``MEM_LIMIT`` (the hub's per-user limit, which covers the single-user server and every kernel of that user):
    90 % of the limit minus what the rest of the user's container uses where the cgroup says so. Else the cgroup
    limit, else the machine's available memory plus this kernel.
    """
    rss = process_rss()
    explicit = os.environ.get("LABKIT_MEM_BUDGET", "").strip()
    if explicit:
        return parse_bytes(explicit) + rss, "LABKIT_MEM_BUDGET"
    usage, cg_limit = cgroup_memory()
    others = max(0, usage - rss) if usage is not None and cg_limit is not None else 0
    limit = mem_limit()
    if limit is not None:
        return max(0, int(limit * 0.9) - others), "MEM_LIMIT (set by your JupyterHub)"
    if cg_limit is not None:
        return max(0, int(cg_limit * 0.9) - others), "the container's memory limit"
    available = _meminfo("MemAvailable")
    return (available if available is not None else 8 * 1024**3) + rss, "the machine's free memory"


from .errors import MemoryBudgetError as _MemoryBudgetError  # noqa: E402  (light: no heavy imports)


class LabMemoryBudgetError(_MemoryBudgetError):
    """Raised by ``require_memory``. IPython prints ``_render_traceback_()`` instead of a traceback, so the learner
    sees one clear message (nbclient/nbmake still see an error)."""

    def _render_traceback_(self):
        return [f"MemoryBudgetError: {self}"]


class MemoryCheck(str):
    """The verdict of ``require_memory`` (a string; ``.ok``, ``.needed``, ``.available``)."""

    ok: bool
    needed: int
    available: int

    def __repr__(self):
        return str(self)


def require_memory(estimate: str | int | float, what: str = "this lab") -> MemoryCheck:
    """Stop a lab in its first cell when its measured peak memory will not fit, instead of letting the kernel be
    OOM-killed half-way with no explanation.

        import labkit.runtime
        labkit.runtime.require_memory("1.2G", "lab 07")   # the lab's measured peak (see deploy/INSTRUCTOR.md)

    ``estimate`` is the lab kernel's peak resident memory (a size like ``"1.2G"``, ``"900M"``, or bytes).
    Returns a MemoryCheck (displayed as one line) when it fits; raises ``MemoryBudgetError`` (shown as one
    sentence in Jupyter, no traceback) when it does not. ``LABKIT_SKIP_MEMORY_CHECK=1`` turns the check off.
    """
    from .errors import LabkitUsageError

    try:
        need = parse_bytes(estimate)
    except ValueError as exc:
        raise LabkitUsageError(f"require_memory: {exc}") from None
    if need <= 0:
        raise LabkitUsageError(f"require_memory: the estimate must be positive, got {estimate!r} (e.g. '1.2G')")
    headroom, source = lab_headroom()
    skip = os.environ.get("LABKIT_SKIP_MEMORY_CHECK", "") not in ("", "0", "false", "no")
    ok = need <= headroom
    if not ok and not skip:
        raise LabMemoryBudgetError(
            f"{what} needs about {human_bytes(need)} of memory, but only {human_bytes(headroom)} is available under "
            f"{source}; running it would get the kernel killed part-way. Shut down other kernels (Kernel > Shut "
            f"Down All Kernels) and restart this one, or ask your instructor for a memory limit of at least "
            f"{human_bytes(need / 0.9 + 200 * 1024**2)} (deploy/INSTRUCTOR.md lists each lab's needs).")
    verdict = "fits" if ok else "does NOT fit (check skipped: LABKIT_SKIP_MEMORY_CHECK)"
    out = MemoryCheck(f"memory: {what} needs about {human_bytes(need)}; {human_bytes(headroom)} available under "
                      f"{source}: {verdict}")
    out.ok, out.needed, out.available = ok, need, headroom
    return out
