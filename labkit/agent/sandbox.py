"""The two tools that evaluate what a model wrote: a restricted calculator and a sandboxed Python process.

Both are written by hand because the *limits* are the lesson: what exactly an agent's tool may do, and what
stops it when it tries more. They are classroom-grade, not a security boundary for hostile strangers: for that,
run tools in a container or a microVM (gVisor, Firecracker, e2b) with a seccomp profile.

``calculate(expression)`` (one implementation, in ``labkit.calculator``)
    Parses the expression with :mod:`ast` and evaluates only numbers, ``+ - * / // % **``, unary signs,
    parentheses and a few named functions (``sqrt abs round min max``). Names, attributes, subscripts, strings,
    lambdas and everything else are refused before anything runs. Bounds: expression length, node count and depth,
    exponent size, result size (in bits) and a time limit checked at every node.

``run_python(code)``
    Runs ``code`` in a fresh ``python -I`` subprocess, working in an empty temporary directory that is deleted
    afterwards, with layered limits:

    - OS limits (``resource.setrlimit`` in the child): CPU seconds, address space (memory), file size (so output
      and files cannot fill the disk), open files; a wall-clock timeout kills the whole process group;
    - no network: a new user + network namespace (``unshare -rn``) where the machine allows it, and in any case
      a Python audit hook (PEP 578) that refuses sockets;
    - the audit hook also refuses process creation (``fork``, ``subprocess``, ``os.system``), ``ctypes``, signals
      to other processes, reads outside the sandbox (except Python's own library) and writes outside it;
    - stdout and stderr go to files capped by the file-size limit; only the first ``output_chars`` come back.

Every refusal or stop is a :class:`ToolError` (calculator) or a :class:`SandboxResult` whose ``error`` says in
one sentence what was stopped and why; the calling process is never at risk.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache

# the calculator has one implementation, labkit.calculator (the zoo's training traces use it too); re-exported
from ..calculator import (CALC_TIME_LIMIT, MAX_DEPTH, MAX_EXPONENT, MAX_EXPRESSION_CHARS, MAX_NODES,  # noqa: F401
                          MAX_RESULT_BITS, calculate, calculator_text)
from ..errors import ToolError  # noqa: F401


# ---------------------------------------------------------------------------------------------- python sandbox
@dataclass
class SandboxLimits:
    cpu_seconds: int = 1
    memory_mb: int = 256
    wall_seconds: float = 5.0
    output_chars: int = 4000
    file_mb: int = 2  # largest file (also stdout/stderr) the code may write
    open_files: int = 64


@dataclass
class SandboxResult:
    """What a sandboxed run gave: its output and, when it was refused or stopped, ``error`` (one sentence)."""

    stdout: str
    stderr: str
    returncode: int | None
    error: str | None
    seconds: float
    truncated: bool = False
    network_isolated: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def observation(self) -> str:
        """The text an agent sees."""
        if self.ok:
            out = self.stdout.rstrip("\n") or "(no output; use print() to show a result)"
            return out + ("\n[output truncated]" if self.truncated else "")
        tail = self.stderr.strip().splitlines()[-1:] if self.stderr.strip() else []
        detail = f" ({tail[0][:300]})" if tail and not self.error.startswith(("refused", "the code raised")) else ""
        partial = f"\nOutput before the stop:\n{self.stdout[:500]}" if self.stdout.strip() else ""
        return f"Error: {self.error}{detail}{partial}"


_BOOT = r'''
import sys, os
_SANDBOX = os.path.realpath(sys.argv[1])
_READ = tuple(os.path.realpath(p) for p in __import__("json").loads(sys.argv[3]))
_BLOCKED = {
    "os.system": "running shell commands", "os.exec": "running programs", "os.posix_spawn": "starting processes",
    "os.spawn": "starting processes", "os.fork": "forking processes", "os.forkpty": "forking processes",
    "subprocess.Popen": "starting processes", "pty.spawn": "starting processes", "os.kill": "sending signals",
    "os.killpg": "sending signals", "os.setuid": "changing user", "os.chroot": "chroot",
    "ctypes.dlopen": "ctypes (native code)", "ctypes.dlsym": "ctypes (native code)",
    "ctypes.call_function": "ctypes (native code)", "ctypes.cdata": "ctypes (native code)",
    "urllib.Request": "network access", "ftplib.connect": "network access", "http.client.connect": "network access",
    "smtplib.connect": "network access", "webbrowser.open": "opening a browser",
}
_BANNED_MODULES = {"ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "_multiprocessing", "pty", "mmap"}
_busy = [False]

def _inside(path, roots):
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

def _real(path):
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return os.path.realpath(os.path.join(_SANDBOX, path) if not os.path.isabs(path) else path)

def _deny(what):
    raise PermissionError(f"sandbox: {what} is not allowed here")

def _hook(event, args):
    if _busy[0]:
        return
    _busy[0] = True
    try:
        if event in _BLOCKED:
            _deny(_BLOCKED[event])
        if event.startswith("socket."):
            _deny("network access")
        if event == "import" and args[0].split(".")[0] in _BANNED_MODULES:
            raise ImportError(f"sandbox: importing {args[0]} is not allowed here")
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            real = _real(path)
            writing = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC))
            if writing and not _inside(real, (_SANDBOX,)):
                _deny(f"writing {path} (outside the sandbox directory)")
            if not _inside(real, (_SANDBOX,) + _READ) and real not in ("/dev/null", "/dev/urandom"):
                _deny(f"reading {path} (outside the sandbox directory)")
        elif event in ("os.listdir", "os.scandir", "os.chdir"):
            path = args[0] if args and args[0] is not None else "."
            if not isinstance(path, int) and not _inside(_real(path), (_SANDBOX,) + _READ):
                _deny(f"looking at {path} (outside the sandbox directory)")
        elif event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                       "os.link", "os.symlink", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"):
            for p in args:
                if isinstance(p, (str, bytes, os.PathLike)) and not _inside(_real(os.fspath(p)), (_SANDBOX,)):
                    _deny(f"changing {os.fspath(p)} (outside the sandbox directory)")
    finally:
        _busy[0] = False

sys.addaudithook(_hook)
del sys.argv[0]
_path = sys.argv[1]
with open(_path, encoding="utf-8") as _f:
    _code = compile(_f.read(), "main.py", "exec")
sys.argv = ["main.py"]
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
'''


@lru_cache(maxsize=1)
def network_namespace_available() -> bool:
    """True when ``unshare -rn`` can give a child its own (empty) network namespace on this machine."""
    exe = shutil.which("unshare")
    if not exe:
        return False
    try:
        return subprocess.run([exe, "-rn", sys.executable, "-c", "pass"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _read_roots() -> list[str]:
    import sysconfig

    roots = {os.path.dirname(os.__file__)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            roots.add(p)
    return sorted(roots)


def _limiter(limits: SandboxLimits):
    import resource

    mem = limits.memory_mb * 1024 * 1024
    fsize = limits.file_mb * 1024 * 1024
    cpu = max(1, int(limits.cpu_seconds))

    def apply():  # runs in the child between fork and exec: only system calls, no imports
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:  # ignored for root, effective for ordinary users
            resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
        except (ValueError, OSError):
            pass

    return apply


def _read_capped(path: str, limit: int) -> tuple[str, bool]:
    with open(path, "rb") as fh:
        data = fh.read(limit * 4 + 4)
    text = data.decode("utf-8", errors="replace")
    big = os.path.getsize(path) > len(data) or len(text) > limit
    return text[:limit], big


def run_python(code: str, limits: SandboxLimits | None = None, *, files: dict[str, str] | None = None,
               isolate_network: bool | None = None) -> SandboxResult:
    """Run ``code`` in the sandbox (see the module docstring); never raises for what the code does.

    ``files``: name -> text written into the sandbox directory first (data for the code to read).
    """
    limits = limits or SandboxLimits()
    if not isinstance(code, str):
        raise ToolError(f"the code must be text, got {type(code).__name__}")
    if len(code) > 100_000:
        return SandboxResult("", "", None, "the code is too long (more than 100,000 characters)", 0.0)
    use_ns = network_namespace_available() if isolate_network is None else isolate_network
    outer = tempfile.mkdtemp(prefix="labkit-sandbox-")
    try:
        box = os.path.join(outer, "work")
        os.mkdir(box)
        with open(os.path.join(box, "main.py"), "w", encoding="utf-8") as fh:
            fh.write(code)
        for name, text in (files or {}).items():
            if os.path.basename(name) != name or name in ("", ".", ".."):
                raise ToolError(f"sandbox file names must be plain names, not {name!r}")
            with open(os.path.join(box, name), "w", encoding="utf-8") as fh:
                fh.write(text)
        out_path, err_path = os.path.join(outer, "stdout"), os.path.join(outer, "stderr")
        cmd = [sys.executable, "-I", "-X", "utf8", "-c", _BOOT, box, os.path.join(box, "main.py"),
               json.dumps(_read_roots())]
        if use_ns:
            cmd = [shutil.which("unshare") or "unshare", "-rn"] + cmd
        env = {"PATH": "/usr/bin:/bin", "HOME": box, "TMPDIR": box, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "no_proxy": "*"}
        t0 = time.monotonic()
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=box, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    preexec_fn=_limiter(limits), start_new_session=True, close_fds=True)
            try:
                proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # whatever happened, nothing of the run survives it
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        seconds = time.monotonic() - t0
        stdout, t1 = _read_capped(out_path, limits.output_chars)
        stderr, _ = _read_capped(err_path, limits.output_chars)
        rc = proc.returncode
        error = _diagnose(rc, stderr, timed_out, limits, os.path.getsize(out_path))
        if use_ns and rc == 1 and "unshare:" in stderr and not stdout:
            error = f"could not start the sandbox ({stderr.strip()[:200]})"
        return SandboxResult(stdout, stderr, rc, error, seconds, t1, use_ns)
    finally:
        for _ in range(3):  # a just-killed child may still hold a file for a moment
            shutil.rmtree(outer, ignore_errors=True)
            if not os.path.exists(outer):
                break
            time.sleep(0.1)


def _diagnose(rc, stderr: str, timed_out: bool, limits: SandboxLimits, out_size: int) -> str | None:
    if timed_out:
        return f"stopped: the code ran longer than the {limits.wall_seconds:g} s time limit (an endless loop or a wait?)"
    if rc in (-signal.SIGXCPU, -signal.SIGKILL) or (rc == 128 + signal.SIGXCPU):
        return f"stopped: the code used more than the {limits.cpu_seconds} s CPU-time limit"
    if rc == -signal.SIGXFSZ or out_size >= limits.file_mb * 1024 * 1024 or "File too large" in stderr:
        return f"stopped: the output or a file went over the {limits.file_mb} MB size limit"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if "MemoryError" in last or "\nMemoryError" in stderr or "Cannot allocate memory" in stderr or rc == -signal.SIGSEGV and "memory" in stderr:
        return f"stopped: the code needed more than the {limits.memory_mb} MB memory limit"
    if "sandbox:" in last:
        return "refused: " + last.split("sandbox:", 1)[1].strip()
    if "RecursionError" in last:
        return "stopped: too deep recursion (RecursionError)"
    if rc is not None and rc < 0:
        return f"stopped by signal {signal.Signals(-rc).name}"
    if rc:
        return f"the code raised an error: {last[:300]}" if last else f"the code exited with status {rc}"
    return None
