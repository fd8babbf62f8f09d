"""LangChain interop: the labkit index as a LangChain ``BaseRetriever`` and ``VectorStore``; MiniLM as a
LangChain ``Embeddings``. LangChain ``Document``s go in through ``Index.add`` or ``add_documents``.

    >>> retriever = index.as_retriever(k=4, mode="hybrid", rerank=True)
    >>> retriever.invoke("Who is the mayor of Barnhaven?")      # list[Document] with chunk ids and scores
    >>> store = index.as_vectorstore(); store.similarity_search("honey", k=3)
"""
from __future__ import annotations

from typing import Any, Iterable

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore

from .index import Hit, Index, encoder


def to_document(hit: Hit, index: Index, retriever: str = "") -> Document:
    c = hit.chunk
    meta = {"chunk_id": c.id, "source": index.docs.get(c.doc_id, {}).get("source", c.doc_id),
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
    """``index.as_retriever(...)``: dense, BM25 or hybrid retrieval, optionally reranked."""

    index: Any
    k: int = 5
    mode: str = "hybrid"
    rerank: bool = False

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        ret = self.index.search(query, k=self.k, mode=self.mode, rerank=self.rerank)
        return [to_document(h, self.index, ret.final) for h in ret.hits]


class LabkitVectorStore(VectorStore):
    """A LangChain ``VectorStore`` face over an :class:`Index` (dense similarity; chunking by the index)."""

    def __init__(self, index: Index):
        self.index = index

    @property
    def embeddings(self) -> Embeddings:
        return MiniLMEmbeddings()

    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None,
                  **kwargs: Any) -> list[str]:
        texts = list(texts)
        metadatas = metadatas or [{} for _ in texts]
        ids = list(ids) if ids else [m.get("source") or f"text-{len(self.index.docs) + i}"
                                     for i, m in enumerate(metadatas)]
        docs = [Document(page_content=t, metadata={**m, "source": m.get("source", i)}, id=i)
                for t, m, i in zip(texts, metadatas, ids)]
        self.index.add(docs)
        return ids

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        self.index.add(list(documents))
        return [str(d.id or d.metadata.get("source")) for d in documents]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if not ids:
            return False
        self.index.delete(ids)
        return True

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        return [(to_document(h, self.index, "dense"), h.score) for h in self.index.dense(query, k)]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        import numpy as np

        q = np.asarray(embedding, dtype=np.float32)
        return [to_document(h, self.index, "dense") for h in self.index.dense("", k, q)]

    def _select_relevance_score_fn(self):
        return lambda score: (score + 1.0) / 2.0  # cosine in [-1, 1] -> [0, 1]

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None, metadatas: list[dict] | None = None,
                   *, ids: list[str] | None = None, **kwargs: Any) -> "LabkitVectorStore":
        store = cls(Index(**kwargs))
        store.add_texts(texts, metadatas, ids=ids)
        return store
