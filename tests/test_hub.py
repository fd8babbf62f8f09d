"""A real multi-user JupyterHub on loopback: two students, their labs, their kernels, and the faults of a classroom.

What runs (all on 127.0.0.1, free ports, everything under one temp folder):

- ``configurable-http-proxy`` from npm (``deploy/install-test-deps.sh`` installs it), started by this test (as in
  Zero to JupyterHub, the proxy outlives a hub restart);
- ``jupyterhub`` from the venv with the DummyAuthenticator and jupyterhub's own ``SimpleLocalProcessSpawner`` (homes
  under the temp folder, ``cpu_limit``/``mem_limit`` set so the hub exports ``CPU_LIMIT``/``MEM_LIMIT``). When the
  test runs as root, each student's server additionally drops to its own uid (20001, 20002, no passwd entry needed),
  so file permissions are real: students cannot write the models or read each other's homes;
- ``jupyterhub-singleuser`` from the venv for each student, spawned through the REST API with an admin service token.

Each student copies the labs with ``labkit labs copy --instructor`` (run as that student; the test compares against ``labs/``), then ``03_tokenization.ipynb`` runs
cell by cell through the single-user server's sessions/kernels REST API and the websocket channels, as JupyterLab
would. Peak memory (RSS and PSS summed over each student's process tree: server + kernel) and spawn-to-first-result
times go to ``test-artifacts/hub-report.json`` and are printed.

``LoopbackHub`` and ``WsKernel`` are also used by ``benchmarks/bench_hub.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent
LAB = "03_tokenization.ipynb"
STUDENTS = ("alice", "bob")
FIRST_UID = 20001
MEM_LIMIT = "2G"  # what the hub exports; sized from the measured figures (deploy/INSTRUCTOR.md)
CPU_LIMIT = 1.0


# ------------------------------------------------------------------------------------------------ finding tools
def find_chp() -> str | None:
    """configurable-http-proxy: $CONFIGPROXY_PATH, PATH, or where deploy/install-test-deps.sh puts it."""
    for cand in (os.environ.get("CONFIGPROXY_PATH"), shutil.which("configurable-http-proxy"),
                 str(ROOT / ".labkit-cache" / "node" / "node_modules" / ".bin" / "configurable-http-proxy")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and ".ipynb_checkpoints" not in p.parts}


def _kill_tree(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM every process of these trees (children first seen now), wait, then SIGKILL what is left."""
    import psutil

    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs += [p] + p.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


# ------------------------------------------------------------------------------------------------ the hub
# How students are kept apart at the file level (the HTTP level, tokens and 403s, is the hub's in every mode):
#  "uid":  running as root, and the venv's interpreter is reachable by other users: each student's server runs as
#          its own uid (20001, 20002), like separate containers: they cannot write root's files nor read each other;
#  "caps": running as root, but the interpreter lives where other uids cannot reach it (e.g. under /root): the
#          servers keep uid 0 but lose every capability (setpriv), so file modes apply to them as to any user;
#  "same": not root: the servers run as this user; read-only means file modes, which apply to this user too.
CAPS_WRAPPER = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--"]


def isolation_mode() -> str:
    if os.geteuid() != 0:
        return "same"

    def drop():
        os.setgroups([])
        os.setgid(FIRST_UID)
        os.setuid(FIRST_UID)

    try:
        probe = subprocess.run([sys.executable, "-c", "import jupyterhub, labkit"], preexec_fn=drop, cwd="/",
                               capture_output=True, timeout=60)
        if probe.returncode == 0:
            return "uid"
    except PermissionError:  # the interpreter itself is out of reach
        pass
    if shutil.which("setpriv"):
        return "caps"
    return "same"


HUB_CONFIG = '''\
# Written by tests/test_hub.py (LoopbackHub). Everything on 127.0.0.1.
import os
from jupyterhub.spawner import SimpleLocalProcessSpawner

UIDS = {uids!r}  # student -> uid in "uid" mode (else empty: the hub's user)


class StudentSpawner(SimpleLocalProcessSpawner):
    """jupyterhub's SimpleLocalProcessSpawner; in "uid" mode each student's server also drops to its own uid."""

    def make_preexec_fn(self, name):
        home, uid = self.home_dir, UIDS.get(name)

        def preexec():
            os.makedirs(home, 0o700, exist_ok=True)
            if uid is not None:
                os.chown(home, uid, uid)
                os.chmod(home, 0o700)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.chdir(home)

        return preexec


c.JupyterHub.bind_url = "http://127.0.0.1:{proxy_port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.JupyterHub.cleanup_servers = False  # a hub restart must leave students' servers and kernels running
c.JupyterHub.cleanup_proxy = False
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = StudentSpawner
c.SimpleLocalProcessSpawner.home_dir_template = "{homes}/{{username}}"
c.Spawner.cmd = {cmd!r}
c.Spawner.args = {args!r}
c.Spawner.cpu_limit = {cpu_limit}
c.Spawner.mem_limit = {mem_limit!r}
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.JupyterHub.services = [
    {{"name": "classroom-admin", "api_token": {admin_token!r}}},
    # the instructor's class overview (labkit.classroom), as deploy/values.yaml declares it
    {{"name": "labkit-class", "url": "http://127.0.0.1:{class_port}", "command": {class_cmd!r},
     "environment": {{"LABKIT_CLASS_SERVERS_URL": "http://127.0.0.1:{proxy_port}"}}, "oauth_no_confirm": True}},
]
c.JupyterHub.load_roles = [
    {{"name": "admin", "services": ["classroom-admin"]}},
    {{"name": "labkit-class", "services": ["labkit-class"], "scopes": {class_scopes!r}}},
    {{"name": "instructor", "groups": ["instructors"], "scopes": {instructor_scopes!r}}},
]
c.JupyterHub.load_groups = {{"instructors": {{"users": ["teacher"]}}}}
'''


def classroom_scopes():
    from labkit.classroom import INSTRUCTOR_SCOPES, SCOPES

    return SCOPES, INSTRUCTOR_SCOPES


class LoopbackHub:
    """configurable-http-proxy + jupyterhub + one single-user server per student, on 127.0.0.1."""

    def __init__(self, root: Path, chp: str, *, cpu_limit: float = CPU_LIMIT, mem_limit: str = MEM_LIMIT,
                 extra_env: dict | None = None, students=STUDENTS):
        self.root = root
        self.homes = root / "homes"
        self.homes.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        os.chmod(self.homes, 0o755)
        self.chp = chp
        self.proxy_port, self.proxy_api_port, self.hub_port = free_port(), free_port(), free_port()
        self.proxy_token, self.admin_token = secrets.token_hex(24), secrets.token_hex(24)
        self.mode = isolation_mode()
        self.uids = {name: FIRST_UID + i for i, name in enumerate(students)} if self.mode == "uid" else {}
        self.wrapper = CAPS_WRAPPER if self.mode == "caps" else []
        env = {"HF_HUB_OFFLINE": "1", "LABKIT_STRICT_EXERCISES": "1", "MPLBACKEND": "Agg",
               "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(extra_env or {})
        (root / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            uids=self.uids, proxy_port=self.proxy_port, hub_port=self.hub_port, proxy_api_port=self.proxy_api_port,
            proxy_token=self.proxy_token, root=root, homes=self.homes,
            cmd=self.wrapper + [str(BIN / "jupyterhub-singleuser")],
            # readonly extension manager: no PyPI look-ups from the students' servers; allow_root for "caps" mode
            args=["--LabApp.extension_manager=readonly"] + (["--ServerApp.allow_root=True"] if self.mode == "caps"
                                                            else []),
            cpu_limit=cpu_limit, mem_limit=mem_limit, environment=env, admin_token=self.admin_token,
            class_port=free_port(), class_cmd=[sys.executable, "-m", "labkit.classroom"],
            class_scopes=classroom_scopes()[0], instructor_scopes=classroom_scopes()[1]))
        self.proxy_proc: subprocess.Popen | None = None
        self.hub_proc: subprocess.Popen | None = None
        self.server_pids: dict[str, int] = {}
        self.hub_starts = 0

    # -- processes
    def _log(self, name: str):
        return open(self.root / name, "ab")

    def start(self) -> None:
        self.start_proxy()
        self.start_hub()

    def start_proxy(self) -> None:
        env = dict(os.environ, CONFIGPROXY_AUTH_TOKEN=self.proxy_token)
        cmd = [self.chp, "--ip", "127.0.0.1", "--port", str(self.proxy_port), "--api-ip", "127.0.0.1",
               "--api-port", str(self.proxy_api_port), "--default-target", f"http://127.0.0.1:{self.hub_port}",
               "--error-target", f"http://127.0.0.1:{self.hub_port}/hub/error", "--log-level", "warn"]
        with self._log("proxy.log") as fh:
            self.proxy_proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True)
        self._wait(lambda: self._port_open(self.proxy_api_port), 30, "configurable-http-proxy", "proxy.log",
                   self.proxy_proc)

    def start_hub(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        with self._log("jupyterhub.log") as fh:
            self.hub_proc = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(self.root / "jupyterhub_config.py")],
                                             stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                             start_new_session=True)
        self.hub_starts += 1
        self._wait(self._hub_up, 120, "jupyterhub", "jupyterhub.log", self.hub_proc)

    def stop_hub(self, timeout: float = 30) -> None:
        if self.hub_proc and self.hub_proc.poll() is None:
            os.killpg(self.hub_proc.pid, signal.SIGTERM)
            try:
                self.hub_proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.hub_proc.pid, signal.SIGKILL)
                self.hub_proc.wait(timeout=10)

    def close(self) -> None:
        """Stop servers (through the hub while it is up), then the hub, the proxy, and anything left over."""
        if self.hub_proc and self.hub_proc.poll() is None:
            for name in list(self.server_pids):
                try:
                    self.api("DELETE", f"/users/{name}/server", timeout=30)
                except Exception:
                    pass
        try:
            self.stop_hub()
        except Exception:
            pass
        pids = list(self.server_pids.values())
        pids += [p.pid for p in (self.hub_proc, self.proxy_proc) if p and p.poll() is None]
        pids += self._stray_pids()
        _kill_tree(pids)
        for p in (self.hub_proc, self.proxy_proc):
            if p and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _stray_pids(self) -> list[int]:
        """Processes working inside the students' homes (a server whose spawn never reported its pid, a kernel)."""
        import psutil

        homes = str(self.homes)
        found = []
        for proc in psutil.process_iter(["pid", "cwd"]):
            cwd = proc.info.get("cwd") or ""
            if cwd == homes or cwd.startswith(homes + os.sep):
                found.append(proc.info["pid"])
        return found

    def log_tail(self, name: str = "jupyterhub.log", n: int = 4000) -> str:
        try:
            return (self.root / name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @staticmethod
    def _port_open(port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    def _hub_up(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _wait(self, ok, timeout, what, log, proc) -> None:
        deadline = time.time() + timeout
        while not ok():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{what} did not start (exit {proc.poll()}):\n{self.log_tail(log)}")
            time.sleep(0.3)

    # -- REST API
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def api(self, method: str, path: str, token: str | None = None, timeout: float = 30, **kw):
        import requests

        r = requests.request(method, f"{self.url}/hub/api{path}", timeout=timeout,
                             headers={"Authorization": f"token {token or self.admin_token}"}, **kw)
        return r

    def create_users(self, names) -> None:
        r = self.api("POST", "/users", json={"usernames": list(names)})
        assert r.status_code in (201, 409), r.text

    def user_token(self, name: str) -> str:
        r = self.api("POST", f"/users/{name}/tokens", json={"note": "loopback test", "expires_in": 7200})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def request_spawn(self, name: str) -> float:
        """Ask the hub to start the student's server (returns at once); returns the perf_counter time of asking."""
        t0 = time.perf_counter()
        r = self.api("POST", f"/users/{name}/server", timeout=180)
        assert r.status_code in (201, 202), f"{r.status_code} {r.text}\n{self.log_tail()}"
        return t0

    def spawn(self, name: str, timeout: float = 180) -> float:
        """Start the student's server; return seconds until the hub reports it ready."""
        t0 = self.request_spawn(name)
        return self.wait_ready(name, t0, timeout)

    def wait_ready(self, name: str, t0: float, timeout: float = 180) -> float:
        deadline = time.time() + timeout
        while True:
            model = self.api("GET", f"/users/{name}").json()
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                break
            if time.time() > deadline or (not server and model.get("pending") is None):
                raise RuntimeError(f"server of {name} did not become ready: {model}\n{self.log_tail()}")
            time.sleep(0.3)
        self.server_pids[name] = int(server["state"]["pid"])
        return time.perf_counter() - t0

    def server_ready(self, name: str) -> bool:
        server = self.api("GET", f"/users/{name}").json().get("servers", {}).get("", {})
        return bool(server.get("ready"))

    def server_url(self, name: str, path: str = "") -> str:
        return f"{self.url}/user/{name}/{path.lstrip('/')}"

    def home(self, name: str) -> Path:
        return self.homes / name

    def as_student(self, name: str, argv: list[str], timeout: float = 120,
                   env_extra: dict | None = None) -> subprocess.CompletedProcess:
        """Run a command as this student would in a terminal: their uid (when root), their HOME."""
        uid = self.uids.get(name)

        def preexec():
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)

        env = dict(os.environ, HOME=str(self.home(name)), USER=name, HF_HUB_OFFLINE="1", **(env_extra or {}))
        return subprocess.run(self.wrapper + argv, cwd=self.home(name), env=env, preexec_fn=preexec,
                              capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------------ memory
class TreeSampler(threading.Thread):
    """Peak RSS and PSS summed over each student's server process tree (the server and its kernels)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25):
        super().__init__(daemon=True)
        self.pids, self.interval = dict(pids), interval
        self.peak_rss = {n: 0 for n in pids}
        self.peak_pss = {n: 0 for n in pids}
        self._halt = threading.Event()

    def sample(self, with_pss: bool) -> None:
        import psutil

        for name, pid in self.pids.items():
            try:
                root = psutil.Process(pid)
                procs = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            rss = pss = 0
            for p in procs:
                try:
                    if with_pss:
                        info = p.memory_full_info()
                        rss += info.rss
                        pss += getattr(info, "pss", info.rss)
                    else:
                        rss += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_rss[name] = max(self.peak_rss[name], rss)
            if with_pss:
                self.peak_pss[name] = max(self.peak_pss[name], pss)

    def run(self) -> None:
        i = 0
        while not self._halt.is_set():
            self.sample(with_pss=i % 4 == 0)
            i += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sample(with_pss=True)


# ------------------------------------------------------------------------------------------------ kernels over websocket
def _decode_ws(frame) -> dict:
    """A Jupyter message from a websocket frame: JSON text, or jupyter_server's binary framing (messages carrying
    buffers, e.g. anywidget's binary traits): nbufs, offsets, then the JSON message first."""
    if isinstance(frame, str):
        return json.loads(frame)
    n = struct.unpack("!I", frame[:4])[0]
    offsets = struct.unpack(f"!{n}I", frame[4:4 + 4 * n])
    end = offsets[1] if n > 1 else len(frame)
    return json.loads(frame[offsets[0]:end].decode("utf-8"))


@dataclass
class CellRun:
    code: str
    status: str = "?"
    outputs: list = field(default_factory=list)
    ename: str = ""
    evalue: str = ""

    def text(self) -> str:
        parts = []
        for o in self.outputs:
            if o.get("output_type") == "stream":
                parts.append(o.get("text", ""))
            elif "data" in o:
                parts.append(str(o["data"].get("text/plain", "")))
        return "".join(parts)


class WsKernel:
    """A kernel of a single-user server driven as JupyterLab drives it: a session (REST) + the channels websocket."""

    def __init__(self, server_url: str, token: str, path: str, kernel_name: str = "python3"):
        import requests
        import websocket

        self.server_url, self.token = server_url.rstrip("/"), token
        self.headers = {"Authorization": f"token {token}"}
        r = requests.post(f"{self.server_url}/api/sessions", headers=self.headers, timeout=60,
                          json={"path": path, "type": "notebook", "name": Path(path).name,
                                "kernel": {"name": kernel_name}})
        assert r.status_code == 201, r.text
        self.session = r.json()
        self.kernel_id = self.session["kernel"]["id"]
        self.client_session = uuid.uuid4().hex
        ws_url = self.server_url.replace("http://", "ws://") + \
            f"/api/kernels/{self.kernel_id}/channels?session_id={self.client_session}"
        self.ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=60)
        self.first_output_at: float | None = None

    def send_execute(self, code: str) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "student", "session": self.client_session,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        return msg_id

    def wait(self, msg_id: str, code: str = "", timeout: float = 300) -> CellRun:
        run = CellRun(code)
        got_reply = got_idle = False
        deadline = time.time() + timeout
        while not (got_reply and got_idle):
            self.ws.settimeout(max(1.0, deadline - time.time()))
            if time.time() > deadline:
                raise TimeoutError(f"no reply within {timeout}s for:\n{code[:300]}")
            msg = _decode_ws(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind in ("stream", "execute_result", "display_data", "error"):
                if self.first_output_at is None:
                    self.first_output_at = time.perf_counter()
                out = dict(content, output_type=kind)
                run.outputs.append(out)
                if kind == "error":
                    run.ename, run.evalue = content.get("ename", ""), content.get("evalue", "")
            elif kind == "execute_reply":
                got_reply = True
                run.status = content["status"]
                if content["status"] == "error":
                    run.ename, run.evalue = content.get("ename", run.ename), content.get("evalue", run.evalue)
            elif kind == "status" and content.get("execution_state") == "idle":
                got_idle = True
        return run

    def execute(self, code: str, timeout: float = 300) -> CellRun:
        return self.wait(self.send_execute(code), code, timeout)

    def run_notebook(self, nb_path: Path, timeout_per_cell: float = 300) -> list[CellRun]:
        """Every code cell in order; stops at the first error (like Run All)."""
        import nbformat

        nb = nbformat.read(str(nb_path), as_version=4)
        runs = []
        for cell in nb.cells:
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            run = self.execute(cell.source, timeout_per_cell)
            runs.append(run)
            if run.status != "ok":
                break
        return runs

    def close(self) -> None:
        import requests

        try:
            self.ws.close()
        finally:
            requests.delete(f"{self.server_url}/api/sessions/{self.session['id']}", headers=self.headers, timeout=30)


def readonly_models_copy(dest: Path, mode: str) -> Path:
    """A copy of the zoo's model folder made read-only by the same script the Dockerfile runs (owned by root; in
    "caps" mode, where students are uid 0 without capabilities, by nobody, so that they are not its owner)."""
    from labkit.models import ZOO_DIR

    dest.mkdir(parents=True, exist_ok=True)
    if ZOO_DIR.is_dir():
        shutil.copytree(ZOO_DIR, dest, dirs_exist_ok=True)
    if not any(p.is_file() for p in dest.rglob("*")):  # the zoo is still being trained: the permissions are tested
        (dest / "README.txt").write_text("labkit zoo weights (stand-in: labkit/zoo/weights is not built yet)\n")
    owner = "65534" if mode == "caps" else "root"
    subprocess.run([str(ROOT / "deploy" / "readonly-models.sh"), str(dest), owner], check=True, timeout=60,
                   capture_output=True)
    return dest


# ------------------------------------------------------------------------------------------------ the classroom
def _need_chp() -> str:
    chp = find_chp()
    if chp is None:
        msg = "configurable-http-proxy is not installed (deploy/install-test-deps.sh installs it with npm)"
        if os.environ.get("LABKIT_REQUIRE_HUB") or os.environ.get("LABKIT_REQUIRE_BROWSER"):  # `make test` sets these
            pytest.fail(msg)
        pytest.skip(msg)
    if not (ROOT / "labs" / LAB).exists():
        pytest.skip(f"labs/{LAB} is not there")
    return chp


@dataclass
class Student:
    name: str
    token: str = ""
    spawn_s: float = 0.0
    first_result_s: float = 0.0
    lab_s: float = 0.0
    runs: list = field(default_factory=list)
    kernel: WsKernel | None = None


@pytest.fixture(scope="module")
def classroom():
    chp = _need_chp()
    root = Path(tempfile.mkdtemp(prefix="labkit-hub-"))
    hub = LoopbackHub(root, chp, extra_env={"LABKIT_MODELS_RO": str(root / "models")})
    students = {n: Student(n) for n in STUDENTS}
    sampler = None
    try:
        readonly_models_copy(root / "models", hub.mode)
        hub.start()
        hub.create_users(STUDENTS)
        for s in students.values():
            s.token = hub.user_token(s.name)
        t0 = {s.name: hub.request_spawn(s.name) for s in students.values()}  # the class logs in at once
        for s in students.values():
            s.spawn_s = hub.wait_ready(s.name, t0[s.name])
        sampler = TreeSampler(hub.server_pids)
        sampler.start()
        for s in students.values():
            done = hub.as_student(s.name, [str(BIN / "labkit"), "labs", "copy", "--instructor", str(hub.home(s.name) / "labs")])
            assert done.returncode == 0, done.stdout + done.stderr

        errors: dict[str, BaseException] = {}

        def run_lab(s: Student):
            try:
                s.kernel = WsKernel(hub.server_url(s.name), s.token, f"labs/{LAB}")
                start = time.perf_counter()
                s.runs = s.kernel.run_notebook(hub.home(s.name) / "labs" / LAB)
                s.lab_s = time.perf_counter() - start
                s.first_result_s = (s.kernel.first_output_at or time.perf_counter()) - t0[s.name]
            except BaseException as exc:  # reported by the tests below
                errors[s.name] = exc

        threads = [threading.Thread(target=run_lab, args=(s,)) for s in students.values()]  # both at once
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)
        sampler.stop()
        yield hub, students, sampler, errors
    finally:  # every step on its own: one failing must not leave processes behind
        steps = [sampler.stop] if sampler is not None else []
        steps += [s.kernel.close for s in students.values() if s.kernel is not None]
        steps.append(hub.close)
        for step in steps:
            try:
                step()
            except Exception as exc:  # pragma: no cover - reported, then the next step runs
                print(f"cleanup: {step.__qualname__} failed: {exc!r}")
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)  # the read-only model copy, as non-root
        if not os.environ.get("LABKIT_KEEP_HUB_DIR"):  # keep the logs for debugging
            shutil.rmtree(root, ignore_errors=True)


def _write_report(students, sampler) -> dict:
    from labkit.runtime import human_bytes

    report = {"lab": LAB, "cpu_limit": CPU_LIMIT, "mem_limit": MEM_LIMIT, "students": {}}
    for s in students.values():
        report["students"][s.name] = {
            "spawn_s": round(s.spawn_s, 2), "spawn_to_first_result_s": round(s.first_result_s, 2),
            "lab_run_s": round(s.lab_s, 2), "peak_rss_bytes": sampler.peak_rss[s.name],
            "peak_pss_bytes": sampler.peak_pss[s.name], "cells": len(s.runs)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "hub-report.json").write_text(json.dumps(report, indent=1))
    print(f"\nJupyterHub loopback report ({LAB}, CPU_LIMIT={CPU_LIMIT}, MEM_LIMIT={MEM_LIMIT}, 2 students at once):")
    for name, r in report["students"].items():
        print(f"  {name}: spawn {r['spawn_s']:.1f} s, spawn-to-first-result {r['spawn_to_first_result_s']:.1f} s, "
              f"lab {r['lab_run_s']:.1f} s, peak RSS {human_bytes(r['peak_rss_bytes'])}, "
              f"peak PSS {human_bytes(r['peak_pss_bytes'])} (server + kernel)")
    return report


# ------------------------------------------------------------------------------------------------ tests
pytestmark = [pytest.mark.hub, pytest.mark.slow]

COUNT_LINE = re.compile(r"^(cl100k|bert|tiny)\s+([\d,]+) tokens\s+([\d.]+) chars/token", re.M)


def test_lab_runs_for_each_student(classroom, capsys):
    hub, students, sampler, errors = classroom
    assert not errors, {k: repr(v) for k, v in errors.items()}
    counts = {}
    for s in students.values():
        assert s.runs, f"no cell ran for {s.name}"
        bad = [r for r in s.runs if r.status != "ok" or r.ename]
        assert not bad, f"{s.name}: {bad[0].ename}: {bad[0].evalue}\nin cell:\n{bad[0].code[:400]}"
        text = "\n".join(r.text() for r in s.runs)
        found = {m.group(1): int(m.group(2).replace(",", "")) for m in COUNT_LINE.finditer(text)}
        assert set(found) == {"cl100k", "bert", "tiny"}, text[-2000:]
        assert all(n > 0 for n in found.values())
        assert "not quite" not in text  # every checked exercise passed (strict mode would also raise)
        counts[s.name] = found
    assert counts["alice"] == counts["bob"]  # same lab, same seeds: the same token counts for everyone
    with capsys.disabled():  # the figures belong in the test log
        report = _write_report(students, sampler)
    for r in report["students"].values():
        assert r["peak_rss_bytes"] > 50 * 1024**2  # the sampler really saw the server and its kernel


def test_kernel_sees_the_hub_limits(classroom):
    hub, students, _, _ = classroom
    run = students["alice"].kernel.execute(
        "import os, torch\nprint(os.environ['CPU_LIMIT'], os.environ['MEM_LIMIT'], torch.get_num_threads())")
    assert run.status == "ok", run.evalue
    cpu, mem, threads = run.text().split()
    assert float(cpu) == CPU_LIMIT and int(mem) > 0 and threads == "1"
    # `labkit doctor`, as a student would run it in a terminal of this server (same environment as the kernel)
    run = students["alice"].kernel.execute(
        "import subprocess, sys\nprint(subprocess.run([sys.executable, '-m', 'labkit.cli', 'doctor', '--quick'], "
        "capture_output=True, text=True, timeout=300).stdout)", timeout=360)
    threads_line = re.search(r"threads \(torch/BLAS\)\s+(\d+)", run.text())
    assert threads_line and threads_line.group(1) == "1", run.text()
    budget = next(line for line in run.text().splitlines() if "memory budget for model loads" in line)
    assert budget.split()[-1] in ("MB", "GB") and float(budget.split()[-2]) < (2.0 if "GB" in budget else 2048)


def test_a_lab_too_big_for_the_limit_says_so(classroom):
    """Under the hub's MEM_LIMIT (2 GiB), a lab's first cell stops a lab that would not fit, in one sentence."""
    hub, students, _, _ = classroom
    k = students["bob"].kernel
    ok = k.execute("import labkit.runtime\nprint(labkit.runtime.require_memory('600M', 'lab 03'))")
    assert ok.status == "ok" and "fits" in ok.text() and "MEM_LIMIT" in ok.text(), ok.text()
    too_big = k.execute("labkit.runtime.require_memory('3G', 'lab 99')")
    assert too_big.status == "error" and too_big.ename == "LabMemoryBudgetError"
    err = next(o for o in too_big.outputs if o["output_type"] == "error")
    assert err["traceback"] == [f"MemoryBudgetError: {too_big.evalue}"]  # one sentence, no traceback
    assert "lab 99 needs about 3.0 GB" in too_big.evalue and "MEM_LIMIT" in too_big.evalue
    alive = k.execute("print('still here')")  # the kernel was not killed
    assert alive.text().strip() == "still here"


def test_students_cannot_reach_each_other(classroom):
    import requests

    hub, students, _, _ = classroom
    a, b = students["alice"], students["bob"]
    own = requests.get(hub.server_url("alice", "api/contents/labs"), headers={"Authorization": f"token {a.token}"},
                       timeout=30)
    assert own.status_code == 200
    for path in ("api/contents/labs", "api/kernels", "api/status"):
        other = requests.get(hub.server_url("bob", path), headers={"Authorization": f"token {a.token}"},
                             timeout=30, allow_redirects=False)
        assert other.status_code == 403, (path, other.status_code, other.text[:300])
    ws_denied = requests.get(hub.server_url("bob", f"api/kernels/{b.kernel.kernel_id}"),
                             headers={"Authorization": f"token {a.token}"}, timeout=30)
    assert ws_denied.status_code == 403
    if hub.mode == "uid":  # real uids: alice's kernel cannot read bob's files either
        run = a.kernel.execute(f"import os\ntry:\n    os.listdir({str(hub.home('bob'))!r}); print('READABLE')\n"
                               f"except PermissionError:\n    print('DENIED')")
        assert run.text().strip() == "DENIED"


def test_models_are_read_only_to_students(classroom):
    hub, students, _, _ = classroom
    if hub.mode == "same" and os.geteuid() == 0:
        pytest.skip("running as root without setpriv: file modes do not bind root, nothing to test")
    code = textwrap.dedent("""
        import os, pathlib
        d = pathlib.Path(os.environ["LABKIT_MODELS_RO"])
        files = sorted((p for p in d.rglob("*") if p.is_file()), key=lambda p: -p.stat().st_size)
        results = [str(len(files[0].read_bytes()) > 0)]           # readable
        for attempt in (lambda: (d / "new.bin").write_bytes(b"x"),  # no new files
                        lambda: open(files[0], "ab").close(),       # no edits
                        lambda: files[0].unlink(),                  # no deletes
                        lambda: os.chmod(files[0], 0o666)):         # and no way to change that
            try:
                attempt(); results.append("WRITABLE")
            except PermissionError:
                results.append("denied")
        print(" ".join(results))
    """)
    for s in students.values():
        run = s.kernel.execute(code)
        assert run.status == "ok", run.evalue
        assert run.text().split() == ["True", "denied", "denied", "denied", "denied"], run.text()
    if hub.mode == "uid":  # the installed labkit (where the zoo lives in the image) is not writable by a student either
        run = students["alice"].kernel.execute(
            "import labkit.models, os\nprint(os.access(labkit.models.ZOO_DIR.parent, os.W_OK))")
        assert run.text().strip() == "False"


def test_labs_copy_keeps_edits_and_restores_deleted(classroom):
    import nbformat

    hub, students, _, _ = classroom
    s = students["bob"]
    labs = hub.home(s.name) / "labs"
    mine = labs / LAB
    nb = nbformat.read(str(mine), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("my notes: BPE merges the most frequent pair"))
    edited = nbformat.writes(nb)
    run = s.kernel.execute(f"open({str(mine)!r}, 'w').write({edited!r})")  # the student saves their edit
    assert run.status == "ok", run.evalue
    others = sorted(p for p in labs.glob("*.ipynb") if p.name != LAB)
    victim = others[0] if others else None
    if victim is not None:
        run = s.kernel.execute(f"import os\nos.remove({str(victim)!r})")
        assert run.status == "ok"
    done = hub.as_student(s.name, [str(BIN / "labkit"), "labs", "copy", "--instructor", str(labs)])
    assert done.returncode == 0, done.stderr
    assert mine.read_text() == edited  # the edit is kept
    assert "your version is kept" in done.stdout and LAB in done.stdout
    if victim is None:  # only one lab exists yet: delete the edited one, it must come back as the course version
        os.remove(mine)
        victim = mine
        done = hub.as_student(s.name, [str(BIN / "labkit"), "labs", "copy", "--instructor", str(labs)])
        assert done.returncode == 0, done.stderr
    assert victim.exists() and sha256(victim) == sha256(ROOT / "labs" / victim.name)
    assert "restored" in done.stdout


def test_hub_restart_while_a_kernel_runs(classroom):
    import requests

    hub, students, _, _ = classroom
    s = students["alice"]
    labs = hub.home(s.name) / "labs"
    before = tree_hashes(labs)
    beat = labs / "heartbeat.txt"
    msg_id = s.kernel.send_execute(
        "import time, pathlib\np = pathlib.Path('heartbeat.txt')\nfor i in range(40):\n"
        "    with p.open('a') as f:\n        f.write(f'{i}\\n')\n    time.sleep(0.25)\nprint('done', i)")
    deadline = time.time() + 60
    while not (beat.exists() and len(beat.read_text().split()) >= 2):
        assert time.time() < deadline, "the kernel never started writing"
        time.sleep(0.1)
    server_pid = hub.server_pids[s.name]
    hub.stop_hub()
    import psutil

    assert psutil.pid_exists(server_pid), "stopping the hub killed the student's server"
    lines_while_down = len(beat.read_text().split())
    hub.start_hub()
    run = s.kernel.wait(msg_id, timeout=120)  # the websocket goes through the proxy, not the hub: still connected
    assert run.status == "ok" and "done 39" in run.text(), (run.ename, run.evalue)
    assert beat.read_text().split() == [str(i) for i in range(40)]
    assert lines_while_down < 40  # the kernel really was running across the restart
    after = tree_hashes(labs)
    after.pop("heartbeat.txt")
    assert after == {k: v for k, v in before.items() if k != "heartbeat.txt"}  # every file intact
    assert hub.server_ready(s.name)  # the new hub found the running server
    r = requests.get(hub.server_url(s.name, "api/contents/labs"), headers={"Authorization": f"token {s.token}"},
                     timeout=30)
    assert r.status_code == 200  # and the student's token still works
    assert hub.hub_starts == 2


def test_nbgitpuller_delivers_student_versions_and_keeps_edits(classroom, tmp_path):
    """The values.yaml delivery path: the instructor publishes `labkit student build` output to a git repository,
    each student's server pulls it with nbgitpuller's `gitpuller`; a course update keeps the student's edits."""
    import nbformat

    if not (BIN / "gitpuller").exists() or shutil.which("git") is None:
        pytest.skip("nbgitpuller (pip) or git is not installed")
    hub, students, _, _ = classroom
    s = students["alice"]
    repo = hub.root / "course-repo"  # under the hub root: readable by the students in every isolation mode

    def git(*args):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=Instructor", "-c", "user.email=i@example.edu",
                        *args], check=True, capture_output=True, timeout=60)

    build = subprocess.run([str(BIN / "labkit"), "student", "build", "--out", str(repo)], capture_output=True,
                           text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "course: student versions")
    subprocess.run(["chmod", "-R", "a+rX", str(repo)], check=True)
    # the course repository belongs to the instructor: let the student's git read it (as a hub's shared volume
    # would need too), for this command only
    trust = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": str(repo)}
    pull = [str(BIN / "gitpuller"), str(repo), "main", "course"]
    done = hub.as_student(s.name, pull, env_extra=trust)
    assert done.returncode == 0, done.stdout + done.stderr
    lab = hub.home(s.name) / "course" / LAB
    assert "### BEGIN SOLUTION" not in lab.read_text() and "# YOUR ANSWER HERE" in lab.read_text()

    # the student answers exercise 1 and deletes another file
    nb = nbformat.read(str(lab), as_version=4)
    cell = next(c for c in nb.cells if "YOUR ANSWER HERE" in c.source)
    cell.source = cell.source.replace("answer = ...  # YOUR ANSWER HERE", "answer = 4  # my answer")
    nbformat.write(nb, str(lab))
    mine = lab.read_text()
    others = sorted(p for p in lab.parent.iterdir() if p.is_file() and p.name != LAB)
    victim = others[0] if others else None
    if victim is not None:
        victim.unlink()

    # the instructor fixes a typo in the lab's first cell and publishes
    upstream = nbformat.read(str(repo / LAB), as_version=4)
    upstream.cells[0].source += "\n\n(updated by the instructor)"
    nbformat.write(upstream, str(repo / LAB))
    git("commit", "-q", "-am", "course: update lab 03")

    done = hub.as_student(s.name, pull, env_extra=trust)
    assert done.returncode == 0, done.stdout + done.stderr
    text = lab.read_text()
    assert "answer = 4  # my answer" in text  # the student's answer survived the course update
    assert "(updated by the instructor)" in text  # and the update arrived (no conflict: different cells)
    if victim is not None:
        assert victim.exists()  # a deleted file comes back
    assert text != mine


def test_instructor_sees_each_students_progress_and_students_cannot(classroom):
    """The class overview (labkit.classroom, a hub service) reads each student's progress through their own server;
    a student gets 403 from it, and 403 on another student's progress endpoint."""
    import requests

    hub, students, _, _ = classroom
    store = ".local/share/labkit"  # where labkit.progress keeps it under a student's HOME (no LABKIT_HOME set)
    for name, n in (("alice", 2), ("bob", 1)):
        code = ("from labkit import progress, exercises\n"
                "names = [e.name for e in exercises.lab_exercises('00_welcome')]\n"
                f"for e in names[:{n}]:\n    progress.record_attempt('00_welcome', e, True)\n")
        done = hub.as_student(name, [sys.executable, "-c", code],
                              env_extra={"LABKIT_HOME": str(hub.home(name) / store)})
        assert done.returncode == 0, done.stderr
    own = requests.get(hub.server_url("alice", "labkit/api/course"),
                       headers={"Authorization": f"token {students['alice'].token}"}, timeout=60)
    assert own.status_code == 200, own.text[:300]
    lab0 = next(c for p in own.json()["parts"] for c in p["chapters"] if c["number"] == 0)
    assert lab0["solved"] == 2 and lab0["status"] == "in progress"
    other = requests.get(hub.server_url("bob", "labkit/api/course"),
                         headers={"Authorization": f"token {students['alice'].token}"}, timeout=60,
                         allow_redirects=False)
    assert other.status_code == 403
    teacher = hub.user_token("teacher")
    t0 = time.perf_counter()
    r = requests.get(f"{hub.url}/services/labkit-class/api/progress", headers={"Authorization": f"token {teacher}"},
                     timeout=120, allow_redirects=False)
    took = time.perf_counter() - t0
    assert r.status_code == 200, (r.status_code, r.text[:300], hub.log_tail())
    data = r.json()
    assert data["students"]["alice"]["server"] == "running"
    assert data["students"]["alice"]["labs"]["00_welcome"]["solved"] == 2
    assert data["students"]["bob"]["labs"]["00_welcome"]["solved"] == 1
    assert data["students"]["teacher"]["server"] == "not running"
    page = requests.get(f"{hub.url}/services/labkit-class/", headers={"Authorization": f"token {teacher}"},
                        timeout=120, allow_redirects=False)
    assert page.status_code == 200 and "alice" in page.text and "2/" in page.text
    for s in students.values():
        denied = requests.get(f"{hub.url}/services/labkit-class/api/progress",
                              headers={"Authorization": f"token {s.token}"}, timeout=60, allow_redirects=False)
        assert denied.status_code == 403, (s.name, denied.status_code, denied.text[:200])
    print(f"\nclass overview: {len(data['students'])} users, read through their servers in {took:.2f} s")

