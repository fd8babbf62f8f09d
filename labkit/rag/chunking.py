"""Chunking with LangChain's text splitters. Three strategies:

- ``recursive``: ``RecursiveCharacterTextSplitter`` (paragraphs, then lines, then words), ``size`` in characters;
- ``sentences``: the same splitter told to break only at sentence ends (then words for an over-long sentence),
  so a chunk holds whole sentences; ``size`` in characters;
- ``tokens``: fixed windows of ``size`` encoder (MiniLM WordPiece) tokens with LangChain's
  ``split_text_on_tokens``; a window maps back to the exact original text through the tokenizer's offsets.

Every chunk keeps its document id and its character position in the document, so relevance labels given as
character spans work for any chunking.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import LabkitUsageError

METHODS = ("recursive", "sentences", "tokens")
DEFAULTS = {"recursive": (400, 60), "sentences": (400, 0), "tokens": (96, 16)}
UNITS = {"recursive": "characters", "sentences": "characters", "tokens": "MiniLM tokens"}


@dataclass(frozen=True)
class ChunkSettings:
    method: str = "recursive"
    size: int = 400
    overlap: int = 60

    @classmethod
    def make(cls, method: str = "recursive", size: int | None = None, overlap: int | None = None) -> "ChunkSettings":
        method = (method or "recursive").lower()
        if method not in METHODS:
            raise LabkitUsageError(f"`method` must be one of {', '.join(METHODS)}, not {method!r}")
        dsize, doverlap = DEFAULTS[method]
        size = dsize if size is None else size
        overlap = doverlap if overlap is None else overlap
        if not isinstance(size, int) or size < 8 or size > 100_000:
            raise LabkitUsageError(f"`size` must be a whole number from 8 to 100000 ({UNITS[method]}), got {size!r}")
        if not isinstance(overlap, int) or overlap < 0 or overlap >= size:
            raise LabkitUsageError(f"`overlap` must be at least 0 and smaller than `size` ({size}), got {overlap!r}")
        if method == "tokens" and size > 254:
            raise LabkitUsageError(f"`size` {size} tokens is more than MiniLM reads (254 + 2 special tokens); "
                                   f"use at most 254")
        return cls(method, size, overlap)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self):
        return f"{self.method} (size {self.size} {UNITS[self.method]}, overlap {self.overlap})"


@dataclass
class Chunk:
    """A piece of a document: ``id`` is ``<doc_id>#<seq>``; ``start`` its character offset in the document."""

    id: str
    doc_id: str
    seq: int
    start: int
    text: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    def to_dict(self) -> dict:
        return {"id": self.id, "doc_id": self.doc_id, "seq": self.seq, "start": self.start, "text": self.text}


_SENTENCE_END = r"(?<=[.!?])\s+"


def _splitter(settings: ChunkSettings):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    if settings.method == "recursive":
        return RecursiveCharacterTextSplitter(chunk_size=settings.size, chunk_overlap=settings.overlap,
                                              add_start_index=True)
    # sentences: paragraph breaks, then sentence ends (regex, zero-width look-behind keeps the punctuation),
    # then words only for a sentence longer than the chunk
    return RecursiveCharacterTextSplitter(separators=[r"\n\s*\n", r"\n", _SENTENCE_END, " "], is_separator_regex=True,
                                          keep_separator="end", chunk_size=settings.size,
                                          chunk_overlap=settings.overlap, add_start_index=True)


def _token_chunks(text: str, settings: ChunkSettings) -> list[tuple[int, str]]:
    from langchain_text_splitters.base import Tokenizer, split_text_on_tokens

    from .. import models

    tok = models.sentence_embedder().tokenizer
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True,
                  truncation=False)["offset_mapping"]
    # "ids" are token positions; decoding a window returns the original text it covers (lossless, unlike
    # decoding WordPiece ids, which lower-cases and re-spaces the text)
    spans: list[tuple[int, str]] = []

    def decode(positions: list[int]) -> str:
        a, b = offsets[positions[0]][0], offsets[positions[-1]][1]
        spans.append((a, text[a:b]))
        return text[a:b]

    splitter = Tokenizer(chunk_overlap=settings.overlap, tokens_per_chunk=settings.size, decode=decode,
                         encode=lambda _t: list(range(len(offsets))))
    split_text_on_tokens(text=text, tokenizer=splitter)
    return spans


def chunk_text(doc_id: str, text: str, settings: ChunkSettings) -> list[Chunk]:
    """Split one document's text into chunks with positions."""
    if settings.method == "tokens":
        pieces = _token_chunks(text, settings)
    else:
        docs = _splitter(settings).create_documents([text])
        pieces = [(int(d.metadata.get("start_index", -1)), d.page_content) for d in docs]
    out = []
    for seq, (start, piece) in enumerate(pieces):
        if start < 0:  # the splitter could not place it (should not happen): find it
            start = max(0, text.find(piece))
        out.append(Chunk(f"{doc_id}#{seq}", doc_id, seq, start, piece))
    return out
