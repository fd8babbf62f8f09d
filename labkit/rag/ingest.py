"""Ingestion: files (.md .txt .html .htm .pdf), folders, globs, LangChain ``Document``s and plain strings become
:class:`SourceDoc`s (an id, the text, a checksum). A file that cannot be read (a corrupt PDF, bytes that are not
text) is skipped and listed in the :class:`IngestReport`, never fatal.
"""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import LabkitUsageError

SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")


@dataclass
class SourceDoc:
    """One document before chunking. ``doc_id`` is its path (or a name you give); ``sha256`` of its text."""

    doc_id: str
    text: str
    source: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class IngestReport:
    """What an ``add`` did: documents read, skipped (with the reason), and the chunk counts."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    chunks_embedded: int = 0
    seconds: float = 0.0

    def merge(self, other: "IngestReport") -> "IngestReport":
        for name in ("added", "updated", "unchanged", "deleted", "skipped"):
            getattr(self, name).extend(getattr(other, name))
        self.chunks_embedded += other.chunks_embedded
        self.seconds += other.seconds
        return self

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated", f"{len(self.unchanged)} unchanged"]
        if self.deleted:
            parts.append(f"{len(self.deleted)} deleted")
        parts.append(f"{len(self.skipped)} skipped")
        return (f"ingestion: {', '.join(parts)}; {self.chunks_embedded} chunks embedded"
                + (f" in {self.seconds:.1f} s" if self.seconds else ""))

    def __repr__(self):
        lines = [self.summary()]
        for path, why in self.skipped:
            lines.append(f"  skipped {path}: {why}")
        return "\n".join(lines)


def _read_pdf(path: Path) -> str:
    from pypdf import PdfReader

    reader = PdfReader(str(path))  # raises on a corrupt file
    pages = [page.extract_text() or "" for page in reader.pages]
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _read_html(data: bytes) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer", "noscript"]):
        tag.decompose()
    lines = [line.strip() for line in soup.get_text("\n").splitlines()]
    # keep paragraph breaks: collapse runs of empty lines into one blank line
    out, blank = [], False
    for line in lines:
        if line:
            out.append(line)
            blank = False
        elif not blank and out:
            out.append("")
            blank = True
    return "\n".join(out).strip()


def read_file(path: str | os.PathLike) -> str:
    """The text of one file; raises ``ValueError`` with the reason when it cannot be read as text."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".pdf":
        try:
            text = _read_pdf(p)
        except Exception as exc:  # pypdf raises many types on broken files
            raise ValueError(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
        if not text.strip():
            raise ValueError("the PDF has no extractable text (scanned images need OCR)")
        return text
    data = p.read_bytes()
    if suffix in (".html", ".htm"):
        return _read_html(data)
    if b"\x00" in data[:4096]:
        raise ValueError("binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def expand(spec: str | os.PathLike) -> list[Path]:
    """A path, a folder (its supported files, recursively) or a glob -> files."""
    spec = os.path.expanduser(str(spec))
    p = Path(spec)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
    if p.is_file():
        return [p]
    matches = sorted(Path(m) for m in glob.glob(spec, recursive=True) if Path(m).is_file())
    if not matches:
        raise LabkitUsageError(f"{spec!r}: no such file, folder or matching files. Give a path, a folder "
                               f"or a glob like 'notes/*.md' ({', '.join(SUFFIXES)}).")
    return matches


def collect(items, report: IngestReport) -> list[SourceDoc]:
    """Turn paths/globs, LangChain Documents, SourceDocs, ``(id, text)`` pairs or strings into SourceDocs."""
    if isinstance(items, (str, os.PathLike)) or not isinstance(items, Iterable) or hasattr(items, "page_content"):
        items = [items]
    docs: list[SourceDoc] = []
    for n, item in enumerate(items):
        if isinstance(item, SourceDoc):
            docs.append(item)
        elif hasattr(item, "page_content"):  # a LangChain Document
            meta = dict(getattr(item, "metadata", None) or {})
            doc_id = str(getattr(item, "id", None) or meta.get("source") or f"doc-{n}")
            docs.append(SourceDoc(doc_id, item.page_content, str(meta.get("source", doc_id)), meta))
        elif isinstance(item, tuple) and len(item) == 2:
            docs.append(SourceDoc(str(item[0]), str(item[1]), str(item[0])))
        elif isinstance(item, (str, os.PathLike)):
            for path in expand(item):
                if path.suffix.lower() not in SUFFIXES:
                    report.skipped.append((str(path), f"unsupported file type {path.suffix or '(none)'}; "
                                                      f"supported: {', '.join(SUFFIXES)}"))
                    continue
                try:
                    text = read_file(path)
                except (ValueError, OSError) as exc:
                    report.skipped.append((str(path), str(exc)))
                    continue
                if not text.strip():
                    report.skipped.append((str(path), "empty (no text)"))
                    continue
                docs.append(SourceDoc(str(path), text, str(path)))
        else:
            raise LabkitUsageError(f"cannot index a {type(item).__name__}: give paths, globs, LangChain Documents, "
                                   f"(id, text) pairs or SourceDocs")
    return docs
