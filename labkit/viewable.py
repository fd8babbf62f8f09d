"""How an engine's plain result shows itself in a notebook without the engine importing a view.

Engines (``tokenize``, ``attend``, ``generate``, ``finetune``, ``rag``, ``agent``) return dataclasses that inherit
:class:`Viewable`. The views live one layer up, in ``labkit.widgets`` (one module per kind of result, found by the
result's class in ``labkit.widgets.VIEWS``); this module names that layer only inside the methods below, so that
importing an engine never imports IPython, anywidget or a widget, and a script can use every engine without them.

    >>> r = labkit.attend.attend("The cat sat", "minilm")   # plain Python: numbers and a text form (repr)
    >>> r                                                    # in a notebook: the widget, HTML and text forms
    >>> r.widget(), r.show(), r.html()                       # the same, asked for by name

This is the one place below the view layer that points up to it, and it does so lazily, when a front end asks.
"""
from __future__ import annotations


def _views():
    from . import widgets  # the view layer: imported when a result is displayed, never when an engine is

    return widgets


class Viewable:
    """Rich display for a result, drawn by its view in ``labkit.widgets`` (imported only when asked for)."""

    def widget(self, *args, **options):
        """The interactive view (an anywidget); built once and reused."""
        return _views().widget(self, *args, **options)

    def show(self, *args, **options) -> None:
        """Display the interactive view in the notebook this runs in."""
        _views().show(self, *args, **options)

    def html(self) -> str:
        """The static HTML form (what nbconvert, CI logs and front ends without widgets show)."""
        return _views().html(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _views().bundle(self)


def display(obj) -> None:
    """Display ``obj`` in the notebook this runs in, or print it outside one (the view layer decides)."""
    _views().display(obj)
