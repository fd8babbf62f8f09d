"""Python halves of the anywidget widgets. The front-end ES modules and CSS live in the top-level ``widgets/``
folder (shipped inside the wheel as ``labkit/_widgets``); no CDN, no network.

Array data travels as binary buffers (``bytes`` traits), never as JSON lists of numbers.
"""
from __future__ import annotations

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
