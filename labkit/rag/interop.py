"""LangChain interop: the labkit index as a LangChain ``BaseRetriever`` and ``VectorStore``; MiniLM as a
LangChain ``Embeddings``. LangChain ``Document``s go in through ``Index.add`` or ``add_documents``.
Both pass LangChain's standard suites (``langchain-tests``; see tests/test_langchain_standard.py).

    >>> retriever = index.as_retriever(k=4, mode="hybrid", rerank=True)
    >>> retriever.invoke("Who is the mayor of Barnhaven?")      # list[Document] with chunk ids and scores
    >>> store = index.as_vectorstore(); store.similarity_search("honey", k=3)
"""
from __future__ import annotations

import copy
import uuid
from typing import Any, Iterable, Sequence

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore

from ..errors import LabkitUsageError
from .chunking import Chunk
from .index import Index  # Index.as_retriever() hands out these faces; from_texts builds an Index
from .retrieval import Hit, _jsonable, encoder


def _doc_metadata(index: Index, doc_id: str) -> dict:
    """A copy of the metadata the document was added with (``{}`` for files and pairs)."""
    return copy.deepcopy(index.docs.get(doc_id, {}).get("metadata") or {})


def to_document(hit: Hit, index: Index, retriever: str = "") -> Document:
    """A retrieved chunk as a LangChain ``Document`` (the retriever's form): the document's own metadata, plus
    ``chunk_id``, ``source``, ``doc_id``, ``start_index`` (character offset), ``score``, ``rank``, ``retriever``;
    ``id`` is the chunk id (``<doc_id>#<seq>``)."""
    c = hit.chunk
    meta = {**_doc_metadata(index, c.doc_id),
            "chunk_id": c.id, "source": index.docs.get(c.doc_id, {}).get("source", c.doc_id),
            "doc_id": c.doc_id, "start_index": c.start, "score": hit.score, "rank": hit.rank}
    if retriever:
        meta["retriever"] = retriever
    return Document(page_content=c.text, metadata=meta, id=c.id)


class MiniLMEmbeddings(Embeddings):
    """The index's encoder as LangChain ``Embeddings`` (normalised MiniLM vectors)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return encoder().encode(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return encoder().encode([text])[0].tolist()


class LabkitRetriever(BaseRetriever):
    """``index.as_retriever(...)``: dense, BM25 or hybrid retrieval, optionally reranked.

    ``invoke(query)`` uses the constructor's ``k``, ``mode`` and ``rerank``; ``invoke(query, k=3, mode="bm25",
    rerank=True)`` overrides them for one call. An empty index retrieves nothing (``[]``).
    """

    index: Any
    k: int = 5
    mode: str = "hybrid"
    rerank: bool = False

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, mode: str | None = None,
                                rerank: bool | None = None) -> list[Document]:
        if not len(self.index):
            return []
        ret = self.index.search(query, k=self.k if k is None else k, mode=mode or self.mode,
                                rerank=self.rerank if rerank is None else rerank)
        return [to_document(h, self.index, ret.final) for h in ret.hits]


class LabkitVectorStore(VectorStore):
    """A LangChain ``VectorStore`` face over an :class:`Index` (dense similarity; chunking by the index).

    Documents are kept under their ids: ``ids=`` if given, else each ``Document.id``, else a new UUID. Adding an
    id again replaces that document (re-embedded only if its text changed; its metadata is updated either way).
    ``similarity_search`` returns Documents with the id and the metadata they were added with; a document
    longer than one chunk comes back as the matching chunk, with ``start_index`` (its character offset) added
    to the metadata. ``get_by_ids`` returns whole documents. An empty store finds nothing.
    """

    def __init__(self, index: Index):
        self.index = index

    @property
    def embeddings(self) -> Embeddings:
        return MiniLMEmbeddings()

    # ------------------------------------------------------------------------------------------- writing
    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None,
                  **kwargs: Any) -> list[str]:
        texts = list(texts)
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        if len(metadatas) != len(texts):
            raise LabkitUsageError(f"add_texts: {len(texts)} texts but {len(metadatas)} metadatas")
        return self.add_documents([Document(page_content=t, metadata=m or {}) for t, m in zip(texts, metadatas)],
                                  ids=ids)

    def add_documents(self, documents: list[Document], ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        documents = list(documents)
        if ids is not None and len(list(ids)) != len(documents):
            raise LabkitUsageError(f"add_documents: {len(documents)} documents but {len(list(ids))} ids")
        ids = [str(i) if i is not None else None for i in ids] if ids is not None else [None] * len(documents)
        ids = [i or (str(d.id) if d.id is not None else str(uuid.uuid4())) for i, d in zip(ids, documents)]
        latest: dict[str, Document] = {}  # one id given twice in a call: the later document wins
        for i, d in zip(ids, documents):
            latest.pop(i, None)
            latest[i] = Document(page_content=d.page_content, metadata=copy.deepcopy(dict(d.metadata or {})), id=i)
        report = self.index.add(list(latest.values()))
        skipped = {doc_id: why for doc_id, why in report.skipped}
        for i, d in latest.items():
            if i in self.index.docs and i not in skipped:
                self.index.docs[i]["metadata"] = _jsonable(d.metadata)
                self.index.docs[i]["text"] = d.page_content
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove the documents with these ids; ids the store does not hold are ignored."""
        if not ids:
            return False
        present = [str(i) for i in ids if str(i) in self.index.docs]
        if present:
            self.index.delete(present)
        return True

    # ------------------------------------------------------------------------------------------- reading
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in that order; ids the store does not hold are left out."""
        out = []
        for i in ids:
            entry = self.index.docs.get(str(i))
            if entry is None:
                continue
            text = entry.get("text")
            if text is None:  # added as a file or a pair: its chunks, joined at their offsets
                text = _join_chunks([c for c in self.index.chunks if c.doc_id == str(i)])
            out.append(Document(page_content=text, metadata=_doc_metadata(self.index, str(i)), id=str(i)))
        return out

    def _to_document(self, hit: Hit) -> Document:
        c = hit.chunk
        entry = self.index.docs.get(c.doc_id, {})
        meta = _doc_metadata(self.index, c.doc_id)
        if entry.get("n_chunks", 1) > 1:
            meta["start_index"] = c.start
            return Document(page_content=c.text, metadata=meta, id=c.doc_id)
        # one chunk: the document exactly as it was added (the chunk may have lost surrounding spaces)
        return Document(page_content=entry.get("text", c.text), metadata=meta, id=c.doc_id)

    def _dense(self, query: str, k: int, qvec=None) -> list[Hit]:
        if not len(self.index):
            return []
        if not isinstance(k, int) or k < 1:
            raise LabkitUsageError(f"k must be a whole number of at least 1, got {k!r}")
        return self.index.dense(query, k, qvec)

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """(document, cosine similarity) pairs, best first."""
        return [(self._to_document(h), h.score) for h in self._dense(query, k)]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        import numpy as np

        q = np.asarray(embedding, dtype=np.float32)
        return [self._to_document(h) for h in self._dense("", k, q)]

    def _select_relevance_score_fn(self):
        return lambda score: (score + 1.0) / 2.0  # cosine in [-1, 1] -> [0, 1]

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None, metadatas: list[dict] | None = None,
                   *, ids: list[str] | None = None, **kwargs: Any) -> "LabkitVectorStore":
        """A new store (a new :class:`Index`; ``kwargs`` go to it) holding ``texts``. The embedding is always the
        index's MiniLM: an ``embedding`` given here must be :class:`MiniLMEmbeddings` or None."""
        if embedding is not None and not isinstance(embedding, MiniLMEmbeddings):
            raise LabkitUsageError(f"a labkit index embeds with MiniLM; it cannot use {type(embedding).__name__}")
        store = cls(Index(**kwargs))
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _join_chunks(chunks: list[Chunk]) -> str:
    """A document's text rebuilt from its chunks (overlaps merged at their character offsets)."""
    text = ""
    for c in sorted(chunks, key=lambda c: c.seq):
        if c.start > len(text):
            text += " " * (c.start - len(text))
        text = text[:c.start] + c.text + text[c.start + len(c.text):]
    return text
