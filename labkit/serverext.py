"""labkit's Jupyter server extension: the REST endpoints behind the JupyterLab panel (and the class overview).

Enabled for every Jupyter server of the environment labkit is installed in, by
``etc/jupyter/jupyter_server_config.d/labkit.json`` (shipped in the wheel; ``jupyter server extension list`` shows
it). Every endpoint is under the server's own authentication (token, cookie or JupyterHub's OAuth) and
authorization (the ``contents`` resource: reading progress is a read, copying a lab is a write); POSTs follow the
server's XSRF rule. Answers are JSON; bad requests get a 4xx with a ``message``.

    GET  {base}labkit/api/course              the 4 parts and 22 chapters, each lab's status and exercises solved
    GET  {base}labkit/api/progress            the raw progress store (labkit.progress's versioned shape)
    GET  {base}labkit/api/doctor              labkit doctor: settings, versions, offline assets (no model loads)
    POST {base}labkit/api/labs/NAME/open      copy the lab into the learner's folder when missing (student version;
                                              never overwrites; a newer course version of an edited lab is written
                                              beside it as NAME.updated.ipynb) and say where it is
    POST {base}labkit/api/labs/NAME/reset     keep the learner's copy as NAME.old-<time>.ipynb, copy a fresh one

NAME must be one of the labs labkit ships (``03_tokenization``); nothing else names a file, so no request can reach
outside the learner's folder (``learner_folder``: ``labs/`` under the server's root when the labs were copied there,
else the root). When that folder *is* the course's own ``labs/``
(``make lab-instructor``), ``open`` opens the lab there and ``reset`` is refused.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

EXTENSION = "labkit.serverext"
API = "labkit/api"


def _jupyter_server_extension_points():
    return [{"module": EXTENSION}]


def _handlers():
    from jupyter_server.auth.decorator import authorized
    from jupyter_server.base.handlers import APIHandler
    from tornado import web

    from . import curriculum, labs, progress
    from .errors import LabkitUsageError

    class Base(APIHandler):
        auth_resource = "contents"

        def root(self) -> Path:
            return Path(self.contents_manager.root_dir).resolve()

        def folder(self) -> Path:
            return learner_folder(self.root())

        def reply(self, data, status: int = 200):
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(data, default=str))

        def fail(self, status: int, message: str):
            raise web.HTTPError(status, message)

        def instructor_folder(self) -> bool:
            try:
                return self.folder() == labs.labs_dir().resolve()
            except FileNotFoundError:
                return False

    class Course(Base):
        @web.authenticated
        @authorized
        async def get(self):
            parts = await asyncio.to_thread(curriculum.overview)
            folder = self.folder()
            for part in parts:
                for ch in part["chapters"]:
                    ch["present"] = bool(ch["lab"]) and (folder / f"{ch['lab']}.ipynb").is_file()
                    ch["updated"] = bool(ch["lab"]) and (folder / f"{ch['lab']}.updated.ipynb").is_file()
            self.reply({"parts": parts, "summary": curriculum.summary(parts),
                        "folder": folder.relative_to(self.root()).as_posix(),
                        "instructor_folder": self.instructor_folder(), "store": str(progress.store_path())})

    class Progress(Base):
        @web.authenticated
        @authorized
        async def get(self):
            self.reply(await asyncio.to_thread(progress.load))

    _doctor_cache: dict = {}

    class Doctor(Base):
        @web.authenticated
        @authorized
        async def get(self):
            cached = _doctor_cache.get("value")
            if cached is None or time.monotonic() - _doctor_cache["at"] > 60:
                cached = await asyncio.to_thread(doctor_state)
                _doctor_cache.update(value=cached, at=time.monotonic())
            self.reply(cached)

    class LabAction(Base):
        @web.authenticated
        @authorized
        async def post(self, name: str, action: str):
            if not curriculum.is_lab(name):
                self.fail(404, f"no lab {name!r}; the labs are: " + ", ".join(curriculum.lab_stems().values()))
            root, folder = self.root(), self.folder()
            if self.instructor_folder():
                if action == "reset":
                    self.fail(409, "this server runs on the course's own labs/ folder (the instructor versions); "
                                   "reset works in a learner's folder (make lab)")
                return self.reply({"path": curriculum.lab_path(folder, name).relative_to(root).as_posix(),
                                   "copied": [], "kept": [], "beside": [],
                                   "message": "the instructor version, opened in place"})
            try:
                if action == "open":
                    report = await asyncio.to_thread(labs.copy_one_lab, folder, name)
                    old = None
                else:
                    old, report = await asyncio.to_thread(labs.reset_lab, folder, name)
            except LabkitUsageError as exc:
                self.fail(400, str(exc))
            path = curriculum.lab_path(folder, name)
            self.reply({"path": path.relative_to(root).as_posix(),
                        "copied": report.copied + report.restored + report.updated, "kept": report.kept,
                        "beside": report.beside, "old": old.relative_to(root).as_posix() if old else None,
                        "message": str(report)})

        async def get(self, name: str, action: str):
            self.fail(405, f"use POST for {action}")

    return [(rf"{API}/course", Course), (rf"{API}/progress", Progress), (rf"{API}/doctor", Doctor),
            (rf"{API}/labs/([^/]+)/(open|reset)", LabAction)]


def learner_folder(root: Path) -> Path:
    """Where the learner's labs are, inside the server's root: ``$LABKIT_LABS_FOLDER`` (relative to the root) when
    set; else ``labs/`` when it holds labs (``labkit labs copy ~/labs``, nbgitpuller into ``labs``, the TLJH and
    Kubernetes configs); else the root itself (``make lab`` serves ``workspace/``)."""
    from .labs import MANIFEST

    name = os.environ.get("LABKIT_LABS_FOLDER", "").strip()
    if name:
        folder = (root / name).resolve()
        if folder != root and root not in folder.parents:
            raise ValueError(f"LABKIT_LABS_FOLDER={name!r} is outside the server's root {root}")
        return folder
    sub = root / "labs"
    if sub.is_dir() and ((sub / MANIFEST).exists() or any(sub.glob("[0-9][0-9]_*.ipynb"))):
        return sub.resolve()
    return root


def doctor_state() -> dict:
    """``labkit doctor`` as plain data, without loading models (the panel shows it)."""
    from . import doctor

    checks = doctor.asset_checks(load_models=False)
    return {"settings": doctor.settings(), "versions": doctor.versions(),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
            "ok": all(c.ok for c in checks)}


def _load_jupyter_server_extension(serverapp):
    from jupyter_server.utils import url_path_join

    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, pattern), handler) for pattern, handler in _handlers()])
    serverapp.log.info("labkit: the course panel's API is at %s", url_path_join(base, API))


# jupyter_server < 2 looked for this name
load_jupyter_server_extension = _load_jupyter_server_extension
