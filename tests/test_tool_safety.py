"""Hostile inputs to the calculator and the python sandbox: each is refused or stopped with a clear error, the
test process lives on, and nothing is left behind (no files outside the sandbox, no temp dirs, no processes)."""
from __future__ import annotations

import glob
import os
import tempfile

import pytest

from labkit.agent.sandbox import SandboxLimits, ToolError, calculate, calculator_text, run_python

# ----------------------------------------------------------------------------------------------- calculator
CALC_HOSTILE = {
    "import": ("__import__('os').system('ls')", "underscores"),
    "dunder class walk": ("().__class__.__bases__[0].__subclasses__()", "underscores"),
    "builtin attribute": ("abs.__self__", "underscores"),
    "name": ("os", "name 'os'"),
    "open call": ("open('/etc/passwd')", "function call"),
    "eval call": ("eval('1+1')", "function call"),
    "lambda": ("(lambda: 1)()", "not allowed"),
    "string repeat": ("'a'*10**9", "only numbers"),
    "list repeat": ("[1]*10**9", "not allowed"),
    "huge exponent": ("2**100000", "exponent"),
    "power tower": ("9**9**9", "exponent"),
    "huge product": ("10**999*10**999*10**999*10**999*10**999", "too large"),
    "negative exponent": ("2**-5000", "exponent"),
    "float overflow": ("1e308*10", "finite"),
    "division by zero": ("1/0", "division by zero"),
    "too long": ("1+" * 400 + "1", "too long"),
    "comprehension": ("[x for x in range(10**9)]", "not allowed"),
    "attribute": ("(1).real", "attribute"),
    "bool smuggling": ("True*5", "only numbers"),
    "walrus": ("(x:=5)", "not allowed"),
    "syntax": ("2 +* 3", "not valid"),
}


@pytest.mark.parametrize("name", list(CALC_HOSTILE))
def test_calculator_refuses(name):
    expr, words = CALC_HOSTILE[name]
    with pytest.raises(ToolError) as info:
        calculate(expr)
    assert words in str(info.value), str(info.value)


def test_calculator_computes():
    assert calculate("347*86") == 29842
    assert calculate("(12+3)*4 - 2**10") == 60 - 1024
    assert calculate("sqrt(16) + max(1, 7)") == 11
    assert calculator_text("7/2") == "3.5"
    assert calculator_text("6/3") == "2"


def test_calculator_deep_nesting_is_refused_not_crashing():
    with pytest.raises(ToolError):
        calculate("-(" * 100 + "1" + ")" * 100)


# ---------------------------------------------------------------------------------------------- python sandbox
LIMITS = SandboxLimits(cpu_seconds=1, memory_mb=256, wall_seconds=3.0, output_chars=2000, file_mb=1)

PY_HOSTILE = {
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "forking"),
    "subprocess": ("import subprocess\nsubprocess.run(['ls', '/'])", "not allowed"),
    "os.system": ("import os\nos.system('echo pwned > /tmp/labkit-pwned')", "shell"),
    "os.exec": ("import os\nos.execv('/bin/sh', ['sh', '-c', 'id'])", "running programs"),
    "posix_spawn": ("import os\nos.posix_spawn('/bin/ls', ['ls'], {})", "starting processes"),
    "multiprocessing": ("import multiprocessing\nmultiprocessing.Process(target=print).start()", "multiprocessing"),
    "ctypes fork": ("import ctypes\nctypes.CDLL(None).fork()", "ctypes"),
    "infinite loop": ("while True:\n    pass", "CPU-time"),
    "sleep": ("import time\ntime.sleep(60)", "time limit"),
    "memory bomb": ("x = bytearray(10**10)", "memory"),
    "growing memory": ("x = []\nwhile True:\n    x.append(bytearray(10**7))", "memory"),
    "string bomb": ("s = 'a' * (10**9)", "memory"),
    "read /etc/passwd": ("print(open('/etc/passwd').read())", "reading /etc/passwd"),
    "read project source": (f"print(open({os.path.abspath(__file__)!r}).read())", "outside the sandbox"),
    "read via symlink": ("import os\nos.symlink('/etc/passwd', 'p')\nprint(open('p').read())", "outside the sandbox"),
    "read via relative path": ("print(open('../../../../../etc/hostname').read())", "outside the sandbox"),
    "list root": ("import os\nprint(os.listdir('/'))", "outside the sandbox"),
    "write outside": ("open('/tmp/labkit-pwned', 'w').write('x')", "writing /tmp/labkit-pwned"),
    "delete outside": ("import os\nos.remove('/tmp/labkit-nonexistent')", "outside the sandbox"),
    "socket": ("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)", "network"),
    "dns": ("import socket\nsocket.getaddrinfo('pypi.org', 443)", "network"),
    "urllib": ("import urllib.request\nurllib.request.urlopen('http://example.com', timeout=2)", "network"),
    "enormous output": ("while True:\n    print('x' * 10000)", "size limit"),
    "enormous file": ("open('big', 'w').write('x' * 10**8)", "size limit"),
    "kill parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "signals"),
    "recursion": ("def f():\n    return f()\nf()", "recursion"),
    # the CPU limit's hard stop (SIGKILL) or the wall-clock limit, whichever comes first on a busy machine
    "signal ignore + loop": ("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass",
                             "stopped"),
    "thread loops": ("import threading\ndef spin():\n    while True:\n        pass\n"
                     "for _ in range(4):\n    threading.Thread(target=spin).start()", "stopped"),
    "memory in threads": ("import threading\nthreading.Thread(target=lambda: bytearray(10**10)).start()", "memory"),
}


@pytest.fixture
def no_leftovers():
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "labkit-sandbox-*")))
    yield
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "labkit-sandbox-*")))
    assert after <= before, f"sandbox dirs left behind: {after - before}"
    assert not os.path.exists("/tmp/labkit-pwned")


@pytest.mark.parametrize("name", list(PY_HOSTILE))
def test_python_sandbox_stops_hostile_code(name, no_leftovers):
    code, words = PY_HOSTILE[name]
    result = run_python(code, LIMITS)
    assert not result.ok, f"{name}: ran without error: {result.stdout[:200]!r}"
    assert words in result.error, f"{name}: {result.error}"
    text = result.observation()
    assert text.startswith("Error: ") and len(text) < 3000
    assert result.seconds < LIMITS.wall_seconds + 5


def test_python_sandbox_runs_ordinary_code(no_leftovers):
    r = run_python("import math\nprint(sum(i * i for i in range(10)), round(math.pi, 3))", LIMITS)
    assert r.ok, r.error
    assert r.observation() == "285 3.142"
    r = run_python("open('a.txt', 'w').write('hi')\nprint(open('a.txt').read())", LIMITS)
    assert r.ok and r.stdout.strip() == "hi"
    r = run_python("print(open('data.csv').read().count('\\n'))", LIMITS, files={"data.csv": "a\nb\nc\n"})
    assert r.stdout.strip() == "3"


def test_python_sandbox_error_is_reported():
    r = run_python("1/0", LIMITS)
    assert not r.ok and "ZeroDivisionError" in r.error


def test_network_blocked_even_without_namespace():
    r = run_python("import socket\nsocket.socket()", LIMITS, isolate_network=False)
    assert not r.ok and "network" in r.error


def test_output_is_capped():
    r = run_python("print('y' * 100000)", LIMITS)
    assert r.ok and r.truncated and len(r.stdout) <= LIMITS.output_chars
    assert r.observation().endswith("[output truncated]")


def test_no_process_survives_a_run():
    """A child that outlives the run would keep eating the machine: the whole process group is killed."""
    marker = "labkit-sandbox-"  # every sandboxed process has its sandbox folder on its command line
    run_python("import time\ntime.sleep(60)", SandboxLimits(wall_seconds=1.0))
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                assert marker.encode() not in fh.read()
        except OSError:
            pass
