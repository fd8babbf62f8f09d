"""labkit's Jupyter server extension (labkit.serverext) on a real Jupyter server on loopback: the course and its
progress, doctor, opening and resetting labs in the learner's folder, and what it refuses (no token, no XSRF,
names that are not labs, path escapes, the instructor folder)."""
from __future__ import annotations

import http.cookiejar
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import _free_port

ROOT = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, root: Path, home: Path):
        self.root, self.home = root, home
        self.port, self.token = _free_port(), secrets.token_hex(12)
        env = dict(os.environ, LABKIT_HOME=str(home), JUPYTER_CONFIG_DIR=str(root.parent / "cfg"),
                   JUPYTER_RUNTIME_DIR=str(root.parent / "rt"), HF_HUB_OFFLINE="1")
        cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = root.parent / "server.log"
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 60
        while True:
            try:
                self.call("GET", "api/status")
                return
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    pytest.fail("the Jupyter server did not start:\n" + self.log.read_text()[-3000:])
                time.sleep(0.3)

    def call(self, method: str, path: str, *, token: bool = True, opener=None, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{path}", method=method,
                                     data=b"" if method == "POST" else None, headers=dict(headers or {}))
        if token:
            req.add_header("Authorization", f"token {self.token}")
        try:
            with (opener or urllib.request.build_opener()).open(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, {"message": body.decode(errors="replace")}

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except Exception:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("serverext")
    (base / "work").mkdir()
    srv = Server(base / "work", base / "home")
    yield srv
    srv.stop()


def _chapter(course, number):
    return next(c for p in course["parts"] for c in p["chapters"] if c["number"] == number)


def test_the_extension_is_enabled_by_the_shipped_config():
    out = subprocess.run([sys.executable, "-m", "jupyter", "server", "extension", "list"], capture_output=True,
                         text=True, timeout=120)
    text = out.stdout + out.stderr
    assert "labkit.serverext" in text and "enabled" in text.split("labkit.serverext", 1)[1][:40], text


def test_the_course_needs_a_login_and_lists_every_chapter(server):
    status, body = server.call("GET", "labkit/api/course", token=False)
    assert status == 403
    status, course = server.call("GET", "labkit/api/course")
    assert status == 200
    chapters = [c for p in course["parts"] for c in p["chapters"]]
    assert [c["number"] for c in chapters] == list(range(23)) and len(course["parts"]) == 5
    shipped = sorted(p.stem for p in (ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(c["lab"] for c in chapters if c["lab"]) == shipped
    assert course["summary"]["labs"] == len(shipped) and course["summary"]["solved"] == 0
    assert all(c["status"] == ("not started" if c["lab"] else "no lab yet") for c in chapters)
    assert _chapter(course, 3)["exercises"] >= 3 and not _chapter(course, 3)["present"]


def test_checks_recorded_in_the_store_show_up(server):
    from labkit import progress

    store = server.home / "progress.json"
    course = server.call("GET", "labkit/api/course")[1]
    lab0 = _chapter(course, 0)
    names = [d["name"] for d in lab0["detail"]]
    progress.record_attempt(lab0["lab"], names[0], False, path=store)
    ch = _chapter(server.call("GET", "labkit/api/course")[1], 0)
    assert ch["status"] == "in progress" and ch["solved"] == 0 and ch["detail"][0]["status"] == "tried"
    for name in names:
        progress.record_attempt(lab0["lab"], name, True, path=store)
    ch = _chapter(server.call("GET", "labkit/api/course")[1], 0)
    assert ch["status"] == "done" and ch["solved"] == ch["exercises"] == len(names)
    raw = server.call("GET", "labkit/api/progress")[1]
    assert raw["version"] == 1 and set(raw["labs"][lab0["lab"]]) == set(names)
    # a corrupt store is set aside, never a server error
    store.write_text("{not json")
    status, course = server.call("GET", "labkit/api/course")
    assert status == 200 and course["summary"]["solved"] == 0
    assert any(p.name.startswith("progress.json.corrupt") for p in server.home.iterdir())


def test_open_copies_once_and_never_overwrites_then_reset_keeps_the_old_copy(server):
    status, out = server.call("POST", "labkit/api/labs/03_tokenization/open")
    assert status == 200 and out["path"] == "03_tokenization.ipynb" and out["copied"]
    lab = server.root / "03_tokenization.ipynb"
    assert "### BEGIN SOLUTION" not in lab.read_text()  # the student version
    lab.write_text(lab.read_text().replace("Tokenization", "Tokenization (my notes)", 1))
    mine = lab.read_text()
    status, out = server.call("POST", "labkit/api/labs/03_tokenization/open")
    assert status == 200 and out["kept"] == ["03_tokenization.ipynb"] and lab.read_text() == mine
    assert _chapter(server.call("GET", "labkit/api/course")[1], 3)["present"]
    status, out = server.call("POST", "labkit/api/labs/03_tokenization/reset")
    assert status == 200 and out["old"].startswith("03_tokenization.old-")
    assert (server.root / out["old"]).read_text() == mine and lab.read_text() != mine


@pytest.mark.parametrize("path,code", [
    ("labkit/api/labs/99_nothing/open", 404),
    ("labkit/api/labs/..%2F..%2Fetc%2Fpasswd/open", 404),
    ("labkit/api/labs/03_tokenization.old-1/reset", 404),
    ("labkit/api/labs/03_tokenization/delete", 404),
])
def test_bad_requests_get_a_4xx_with_a_message(server, path, code):
    status, body = server.call("POST", path)
    assert status == code, body
    assert body.get("message")
    assert not any(p.name == "passwd" for p in server.root.parent.rglob("passwd"))


def test_get_on_an_action_is_refused(server):
    status, body = server.call("GET", "labkit/api/labs/03_tokenization/open")
    assert status == 405 and "POST" in body["message"]


def test_a_cookie_login_needs_xsrf_for_actions(server):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"http://127.0.0.1:{server.port}/lab?token={server.token}", timeout=30).read()
    assert any(c.name.startswith("username-") for c in jar), [c.name for c in jar]
    status, _ = server.call("GET", "labkit/api/course", token=False, opener=opener)
    assert status == 200  # reading with the cookie is fine
    status, _ = server.call("POST", "labkit/api/labs/04_embeddings/open", token=False, opener=opener)
    assert status == 403 and not (server.root / "04_embeddings.ipynb").exists()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    status, out = server.call("POST", "labkit/api/labs/04_embeddings/open", token=False, opener=opener,
                              headers={"X-XSRFToken": xsrf})
    assert status == 200 and (server.root / "04_embeddings.ipynb").exists()


def test_doctor_reports_the_machine(server):
    status, body = server.call("GET", "labkit/api/doctor")
    assert status == 200 and body["versions"]["labkit"] and "threads (torch/BLAS)" in body["settings"]
    assert body["checks"] and all({"name", "ok", "detail"} <= set(c) for c in body["checks"])


def test_the_instructor_folder_opens_in_place_and_refuses_reset(tmp_path):
    from labkit.labs import labs_dir

    srv = Server.__new__(Server)
    # a server whose root is the course's own labs/ folder (make lab-instructor)
    srv.root, srv.home = labs_dir(), tmp_path / "home"
    srv.port, srv.token = _free_port(), secrets.token_hex(12)
    env = dict(os.environ, LABKIT_HOME=str(srv.home), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={srv.port}", f"--IdentityProvider.token={srv.token}", f"--ServerApp.root_dir={srv.root}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    srv.log = tmp_path / "server.log"
    before = sorted(p.name for p in srv.root.iterdir())
    with open(srv.log, "wb") as fh:
        srv.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                srv.call("GET", "api/status")
                break
            except Exception:
                assert srv.proc.poll() is None and time.time() < deadline, srv.log.read_text()[-2000:]
                time.sleep(0.3)
        status, out = srv.call("POST", "labkit/api/labs/03_tokenization/open")
        assert status == 200 and out["path"] == "03_tokenization.ipynb" and not out["copied"]
        status, out = srv.call("POST", "labkit/api/labs/03_tokenization/reset")
        assert status == 409 and "instructor" in out["message"]
        assert sorted(p.name for p in srv.root.iterdir()) == before
        assert srv.call("GET", "labkit/api/course")[1]["instructor_folder"] is True
    finally:
        srv.stop()


def test_the_learner_folder_is_labs_when_the_labs_were_copied_there(tmp_path, monkeypatch):
    from labkit.labs import copy_one_lab
    from labkit.serverext import learner_folder

    monkeypatch.delenv("LABKIT_LABS_FOLDER", raising=False)
    assert learner_folder(tmp_path) == tmp_path  # make lab: the labs sit in the served folder itself
    copy_one_lab(tmp_path / "labs", "00_welcome")  # labkit labs copy ~/labs, the TLJH and Kubernetes configs
    assert learner_folder(tmp_path) == (tmp_path / "labs").resolve()
    monkeypatch.setenv("LABKIT_LABS_FOLDER", "course/week1")
    assert learner_folder(tmp_path) == (tmp_path / "course" / "week1").resolve()
    monkeypatch.setenv("LABKIT_LABS_FOLDER", "../elsewhere")
    with pytest.raises(ValueError):
        learner_folder(tmp_path)


def test_the_deploy_kit_declares_the_class_overview_with_only_its_scopes():
    import yaml

    from labkit.classroom import INSTRUCTOR_SCOPES, SCOPES, SERVICE

    hub = yaml.safe_load((ROOT / "deploy" / "values.yaml").read_text())["hub"]
    assert hub["services"][SERVICE]["command"][-1] == "labkit.classroom"
    assert hub["loadRoles"][SERVICE] == {"services": [SERVICE], "scopes": SCOPES}
    assert hub["loadRoles"]["instructor"]["scopes"] == INSTRUCTOR_SCOPES
    assert not any(s.startswith(("admin", "read:users", "users")) and s != "read:users:name" for s in SCOPES)
    assert f"{SERVICE}.py" in (ROOT / "deploy" / "TLJH.md").read_text()
