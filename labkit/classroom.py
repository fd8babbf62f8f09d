"""The instructor's class overview: a JupyterHub service that shows each student's progress per lab.

It runs as a hub-managed service named ``labkit-class`` (``python -m labkit.classroom``; the entries for Zero to
JupyterHub are in ``deploy/values.yaml``, for TLJH in ``deploy/TLJH.md``). The page is at
``{hub}/services/labkit-class/`` and its data at ``.../api/progress`` (JSON).

How it reads progress: through each student's own single-user server, from the same endpoint the JupyterLab panel
uses (``GET /user/NAME/labkit/api/course``, ``labkit.serverext``), with the service's token. The progress store
stays in the student's home; nothing is copied. A student whose server is not running shows as such.

Least privilege. The service's role has only what it needs (``SCOPES``): list users and read their names and
servers (to find the running ones), and ``access:servers`` (to call them). Who may open the overview: users with
``access:services!service=labkit-class`` (the ``instructors`` group in the shipped config). A student's login or
token gets 403 here, and a student's token gets 403 on another student's server (the hub's own rule).
"""
from __future__ import annotations

import html
import json
import os
from urllib.parse import urlparse

SERVICE = "labkit-class"
SCOPES = ["list:users", "read:users:name", "read:servers", "access:servers"]
INSTRUCTOR_SCOPES = [f"access:services!service={SERVICE}"]


def _get(url: str, token: str, timeout: float = 20.0):
    import requests

    r = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=timeout, allow_redirects=False)
    return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else None)


def class_progress(hub_api: str, token: str, servers_url: str) -> dict:
    """Every user's progress, per lab: ``{"students": {name: {"server": "running" | "not running" | "error ...",
    "labs": {stem: {"status", "solved", "exercises"}}, "summary": {...}}}, "labs": [stems]}``.

    ``hub_api`` is the hub's REST API (``$JUPYTERHUB_API_URL``), ``token`` the service's, ``servers_url`` where the
    students' servers are reached (the proxy: ``/user/NAME/`` is appended)."""
    status, users = _get(hub_api.rstrip("/") + "/users", token)
    if status != 200 or not isinstance(users, list):
        raise RuntimeError(f"the hub refused to list users ({status}); the service's role needs {SCOPES}")
    out: dict = {"students": {}, "labs": []}
    labs: dict[str, None] = {}
    for user in sorted(users, key=lambda u: u.get("name", "")):
        name = user.get("name")
        server = (user.get("servers") or {}).get("")
        entry: dict = {"server": "not running", "labs": {}, "summary": None}
        if server and server.get("ready"):
            url = servers_url.rstrip("/") + (server.get("url") or f"/user/{name}/") + "labkit/api/course"
            try:
                code, course = _get(url, token)
            except Exception as exc:  # one student's server must not hide the class
                code, course = 0, None
                entry["server"] = f"error: {type(exc).__name__}"
            if code == 200 and course:
                entry["server"] = "running"
                entry["summary"] = course.get("summary")
                for part in course.get("parts", []):
                    for ch in part.get("chapters", []):
                        if ch.get("lab"):
                            labs.setdefault(ch["lab"])
                            entry["labs"][ch["lab"]] = {k: ch.get(k) for k in ("status", "solved", "exercises")}
            elif code:
                entry["server"] = f"error: HTTP {code}"
        out["students"][name] = entry
    out["labs"] = sorted(labs)
    return out


def render_html(data: dict) -> str:
    """The overview as one HTML page: a row per student, a column per lab (solved/exercises, coloured by status)."""
    colours = {"done": "#bbf7d0", "in progress": "#fde68a", "not started": "#f3f4f6"}
    head = "".join(f"<th>{html.escape(s.split('_', 1)[0])}</th>" for s in data["labs"])
    rows = []
    for name, entry in data["students"].items():
        cells = []
        for stem in data["labs"]:
            lab = entry["labs"].get(stem)
            if lab is None:
                cells.append("<td>–</td>")
            else:
                cells.append(f"<td style='background:{colours.get(lab['status'], '#fff')}' title='{html.escape(stem)}: "
                             f"{html.escape(str(lab['status']))}'>{lab['solved']}/{lab['exercises']}</td>")
        s = entry.get("summary") or {}
        total = f"{s.get('done', 0)} done, {s.get('solved', 0)}/{s.get('exercises', 0)}" if s else html.escape(
            entry["server"])
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}<td>{total}</td></tr>")
    return ("<!doctype html><meta charset='utf-8'><title>labkit · class overview</title>"
            "<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ddd;padding:4px 8px;text-align:center}</style>"
            f"<h1>Class overview</h1><p>{len(data['students'])} students; exercises solved per lab. Students "
            "whose server is not running show no figures (their progress lives in their own server).</p>"
            f"<table><tr><th>student</th>{head}<th>in all</th></tr>{''.join(rows)}</table>")


def make_app():
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join
    from tornado import web

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE}/")
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    hub_api = os.environ["JUPYTERHUB_API_URL"]
    servers_url = os.environ.get("LABKIT_CLASS_SERVERS_URL") or os.environ.get("JUPYTERHUB_PUBLIC_URL") or \
        "{0.scheme}://{0.netloc}".format(urlparse(hub_api))

    class Base(HubOAuthenticated, web.RequestHandler):
        async def data(self):
            import asyncio

            return await asyncio.to_thread(class_progress, hub_api, token, servers_url)

    class Page(Base):
        @web.authenticated
        async def get(self):
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(render_html(await self.data()))

    class Api(Base):
        def get_login_url(self):  # an API answers 403 instead of redirecting to a login page
            raise web.HTTPError(403, "this overview is for the class's instructors")

        @web.authenticated
        async def get(self):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(await self.data()))

    return web.Application([
        (prefix, Page), (url_path_join(prefix, "api/progress"), Api),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], cookie_secret=os.urandom(32))


def main() -> None:
    import asyncio

    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))

    async def serve():
        make_app().listen(url.port or 80, url.hostname or "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
