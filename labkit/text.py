"""Text that is not valid Unicode: lone surrogates (``"\\ud800"``) and bytes smuggled through ``surrogateescape``.

Python strings may hold them, UTF-8 cannot: a tokenizer meeting one fails deep inside (``UnicodeEncodeError``,
or a ``TypeError`` from a Rust tokenizer). Engines call :func:`valid_unicode` at their entry points: the
offending characters are replaced (escaped bytes are decoded as the UTF-8 they were, what is left becomes U+FFFD)
and a notice says so; :func:`first_invalid` finds one for a clear message where replacing would be wrong
(training data).
"""
from __future__ import annotations

REPLACEMENT = "\ufffd"


def _is_surrogate(c: str) -> bool:
    return "\ud800" <= c <= "\udfff"


def first_invalid(text: str) -> int | None:
    """The index of the first character that UTF-8 cannot encode (a lone surrogate), or None."""
    for i, c in enumerate(text):
        if _is_surrogate(c):
            return i
    return None


def valid_unicode(text: str, what: str = "the text") -> tuple[str, str | None]:
    """``(text, None)`` when ``text`` is valid Unicode; else the repaired text and a notice saying what changed."""
    if not isinstance(text, str) or first_invalid(text) is None:
        return text, None
    out, pending, n = [], bytearray(), 0
    for c in text:
        if "\udc80" <= c <= "\udcff":  # surrogateescape: a byte that was not UTF-8 when it was decoded
            pending.append(ord(c) - 0xDC00)
            n += 1
            continue
        if pending:
            out.append(pending.decode("utf-8", "replace"))
            pending.clear()
        if _is_surrogate(c):
            out.append(REPLACEMENT)
            n += 1
        else:
            out.append(c)
    if pending:
        out.append(pending.decode("utf-8", "replace"))
    notice = (f"{what} held {n} character(s) that are not valid Unicode (lone surrogates such as '\\ud800', or "
              f"undecodable bytes): replaced by U+FFFD ({REPLACEMENT})")
    return "".join(out), notice
