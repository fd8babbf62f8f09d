"""The view layer: a view module per kind of engine result, and the Python halves of the anywidget widgets.

The front-end ES modules and CSS live in the top-level ``widgets/`` folder (shipped inside the wheel as
``labkit/_widgets``); no CDN, no network. Array data travels as binary buffers (``bytes`` traits), never as JSON
lists of numbers.

Views depend on engines, never the reverse. An engine's result inherits ``labkit.viewable.Viewable``, whose
``widget()`` / ``show()`` / ``html()`` / ``_repr_mimebundle_`` come here (lazily) and are answered by the view
module that ``VIEWS`` names for the result's class. A view module has

- ``widget(result, **options)``: a new interactive view of the result (an anywidget);
- ``html(result)``: the static HTML form (what nbconvert, CI logs and plain front ends show);
- optionally ``update(widget, **options)`` (options given again to a view already built),
  ``show(result, **options)`` (a display of its own) and ``live_bundle(result)`` (what the cell's value shows
  when a live view of the same work is already on screen above it).

The text form is always the result's ``repr``.
"""
from __future__ import annotations

import importlib
from array import array
from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent


def asset_dir() -> Path:
    """Where the widget ES modules are: inside the installed wheel, or ``widgets/`` of a source checkout."""
    for candidate in (_PKG / "_widgets", _PKG.parent / "widgets"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("labkit's widget files are missing: reinstall labkit (`pip install -e .`)")


def asset(name: str) -> Path:
    path = asset_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"labkit widget file {name} is missing from {asset_dir()}")
    return path


def u32(values) -> bytes:
    """Unsigned 32-bit little-endian buffer (what a JS Uint32Array reads)."""
    a = array("I", values)
    if a.itemsize != 4:  # pragma: no cover - exotic platforms
        a = array("L", values)
    return a.tobytes()


def pack_strings(items: list[bytes]) -> tuple[bytes, bytes]:
    """Concatenate byte strings into one buffer plus a Uint32 offsets buffer of len(items)+1."""
    offsets = [0]
    for b in items:
        offsets.append(offsets[-1] + len(b))
    return b"".join(items), u32(offsets)


def mimebundle(text: str, html: str | None, widget) -> dict:
    """What a result shows: the widget view where a widget front end exists (JupyterLab), with HTML and text
    forms for everywhere else (nbconvert, CI logs, plain IPython). ``widget`` is a zero-argument callable
    returning the widget; if it fails, the text form says why and the HTML/text still show."""
    data = {"text/plain": text}
    if html is not None:
        data["text/html"] = html
    try:
        wdata = widget()._repr_mimebundle_()
        if isinstance(wdata, tuple):
            wdata = wdata[0]
        data.update({k: v for k, v in (wdata or {}).items() if k.startswith("application/vnd.jupyter.widget-view")})
    except Exception as exc:  # noqa: BLE001 - the HTML and text forms still show
        data["text/plain"] += f"\n(widget unavailable: {exc})"
    return data


def payload_bytes(widget) -> int:
    """Bytes a widget's state costs on the wire: JSON of the state plus its binary buffers."""
    import json

    from ipywidgets.widgets.widget import _remove_buffers

    state, _paths, buffers = _remove_buffers(widget.get_state())
    return len(json.dumps(state, default=str).encode()) + sum(len(memoryview(b).cast("B")) for b in buffers)


# ------------------------------------------------------------------------------------------------- result views
#: result class (module.qualname) -> the view module of this package that draws it
VIEWS = {
    "labkit.tokenize.TokenizeResult": "tokens",
    "labkit.tokenize.CompareResult": "tokens",
    "labkit.tokenize.TrainResult": "tokens",
    "labkit.attend.AttentionResult": "attention",
    "labkit.generate.GenerateResult": "generate",
    "labkit.finetune.engine.FinetuneResult": "training",
    "labkit.agent.trace.AgentResult": "trace",
    "labkit.rag.answer.RagResult": "retrieval",
    "labkit.rag.answer.RagResults": "retrieval",
    "labkit.playground.TrainResult": "playground",
}

_STATE = "_labkit_view"  # where a result keeps its built view: {"widget": ..., "live": bool}


def view_module(result):
    """The view module for ``result`` (its class, or the nearest base class that has a view)."""
    for cls in type(result).__mro__:
        name = VIEWS.get(f"{cls.__module__}.{cls.__qualname__}")
        if name:
            return importlib.import_module(f"{__name__}.{name}")
    raise TypeError(f"labkit has no view for a {type(result).__name__}; views: {', '.join(sorted(VIEWS))}")


def _state(result) -> dict:
    state = result.__dict__.get(_STATE)
    if state is None:
        state = {"widget": None, "live": False}
        object.__setattr__(result, _STATE, state)
    return state


def widget(result, *args, **options):
    """The interactive view of ``result``: built once, then reused (options given again update it)."""
    mod, state = view_module(result), _state(result)
    if state["widget"] is None:
        state["widget"] = mod.widget(result, *args, **options)
    elif (args or options) and hasattr(mod, "update"):
        mod.update(state["widget"], *args, **options)
    return state["widget"]


def attach(result, view, live: bool = True) -> None:
    """Give ``result`` the view that watched its work live (a magic's progress view), so that the result reuses
    it; ``live``: that view is already on screen, and the cell's value does not draw it a second time."""
    state = _state(result)
    state["widget"], state["live"] = view, bool(live)


def is_live(result) -> bool:
    """Whether a live view of ``result``'s work is already on screen."""
    return bool(result.__dict__.get(_STATE, {}).get("live"))


def html(result) -> str:
    return view_module(result).html(result)


def show(result, *args, **options) -> None:
    mod = view_module(result)
    if hasattr(mod, "show"):
        mod.show(result, *args, **options)
    else:
        display(widget(result, *args, **options))


def bundle(result) -> dict:
    """What the cell's value shows: the widget where a front end draws widgets, HTML and text elsewhere."""
    mod = view_module(result)
    if is_live(result):  # the live view is already on screen above: no second copy
        if hasattr(mod, "live_bundle"):
            return mod.live_bundle(result)
        return {"text/plain": repr(result)}
    return mimebundle(repr(result), mod.html(result), lambda: widget(result))


def display(obj) -> None:
    """Display ``obj`` in the notebook (or IPython shell) this runs in; print it anywhere else."""
    from IPython import get_ipython

    if get_ipython() is None:
        print(obj)
        return
    from IPython.display import display as ipy_display

    ipy_display(obj)
