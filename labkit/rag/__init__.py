"""Retrieval-augmented generation: documents -> chunks -> MiniLM + FAISS / BM25 / hybrid / reranked retrieval ->
cited answers; a persistent index; the shipped knowledge base and QA set; measured retrieval quality.

    >>> import labkit.rag as rag
    >>> ix = rag.Index("recursive", size=400, overlap=60)
    >>> ix.add("notes/*.md")                         # or rag.knowledge_base_index()
    >>> ix.ask("Who is the mayor of Brellwick?", mode="hybrid", rerank=True)
    >>> rag.evaluate(ix)                              # recall@k, MRR, nDCG per retriever; EM/F1 of answers

``%%rag`` is the magic over this package; ``labkit rag ...`` the command line (``labkit.rag.cli``).
Heavy libraries (faiss, bm25s, sentence-transformers, LangChain) are imported when first used.
"""
from __future__ import annotations

from .chunking import METHODS as CHUNK_METHODS, Chunk, ChunkSettings, chunk_text
from .ingest import IngestReport, SourceDoc
from .index import MODES, Fusion, Hit, Index, Retrieval
from .evaluate import EvalResult, TuneResult, evaluate, multi_query, tune_fusion  # noqa: E402  (after .index: the function, not the module)

__all__ = ["Index", "ChunkSettings", "Chunk", "chunk_text", "IngestReport", "SourceDoc", "Hit", "Retrieval",
           "MODES", "CHUNK_METHODS", "ask", "search", "evaluate", "knowledge_base", "qa_set",
           "knowledge_base_index", "multi_query", "Fusion", "tune_fusion", "TuneResult", "contextualize", "RagResult", "RagResults",
           "session_index", "name_index", "forget_index"]


def __getattr__(name):
    if name in ("RagResult", "RagResults", "contextualize"):
        from . import answer

        return getattr(answer, name)
    if name in ("knowledge_base", "qa_set", "knowledge_base_index", "KB_DIR"):
        from . import kb

        return getattr(kb, name)
    raise AttributeError(name)


from .. import session as _session  # noqa: E402

_SESSION: dict[str, Index] = _session.store("index")  # the session registry's indexes (kind "index")


def session_index(name: str = "default") -> Index | None:
    """The named index of this session (what ``%%rag --index NAME`` uses), or None."""
    return _session.get("index", name)


def name_index(name: str, index: Index) -> Index:
    """Name ``index`` in this session (``%%rag --index NAME``, ``ask(q, index=NAME)``); returns it."""
    if not isinstance(index, Index):
        from ..errors import LabkitUsageError

        raise LabkitUsageError(f"only a labkit.rag.Index can be named in the session, not a {type(index).__name__}")
    _session.add("index", name, index)
    return index


def forget_index(name: str | None = None) -> None:
    """Forget a named index of this session (all of them when ``name`` is None); its saved folder stays."""
    _session.remove("index", name)


def ask(question: str, index: Index | str = "default", **kwargs):
    """Answer ``question`` from an index (an Index or a session name)."""
    ix = session_index(index) if isinstance(index, str) else index
    if ix is None:
        from ..errors import LabkitUsageError

        raise LabkitUsageError(f"no index named {index!r} in this session: build one with `%%rag --add PATH` "
                               f"or `labkit.rag.Index().add(PATH)`")
    return ix.ask(question, **kwargs)


def search(question: str, index: Index | str = "default", **kwargs) -> Retrieval:
    ix = session_index(index) if isinstance(index, str) else index
    if ix is None:
        from ..errors import LabkitUsageError

        raise LabkitUsageError(f"no index named {index!r} in this session: build one with `%%rag --add PATH`")
    return ix.search(question, **kwargs)
