"""The RAG index: chunks + MiniLM vectors in FAISS + BM25, hybrid fusion, MaxSim reranking, persistence.

    >>> from labkit.rag import Index
    >>> ix = Index(chunking="recursive", size=400, overlap=60)
    >>> ix.add("notes/*.md")                       # IngestReport: added / skipped (with reasons) / chunks embedded
    >>> ix.search("Who is the mayor of Brellwick?", k=5, mode="hybrid", rerank=True)
    >>> ix.save("my_index"); Index.load("my_index")  # a folder with manifest.json; load validates it

Dense: all-MiniLM-L6-v2 sentence embeddings (L2-normalised, so inner product = cosine) in a FAISS
``IndexFlatIP`` (exact) for up to ``HNSW_FROM`` chunks, an ``IndexHNSWFlat`` graph (approximate) above.
Sparse: BM25 (``bm25s``). Hybrid: reciprocal rank fusion. Rerank: late interaction (ColBERT-style MaxSim) over
MiniLM token embeddings of the hybrid candidates.

Incremental updates: adding, changing or deleting a document embeds only that document's chunks. The FAISS and
BM25 structures are rebuilt from the stored vectors and tokens on the next search (milliseconds: BM25's
statistics are corpus-wide, so one new document changes every score; no neural network runs for that).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import faults
from ..errors import LabkitError, LabkitUsageError
from ..text import valid_unicode
from ..watch import OnProgress, Progress, Reporter
from .chunking import Chunk, ChunkSettings, chunk_text
from .ingest import IngestReport, SourceDoc, collect
from .retrieval import (MODEL_NAME, TOKEN_CACHE_MAX, Encoder, Hit, Retrieval, _jsonable,  # noqa: F401 (re-exported)
                        encoder, terms)

FORMAT = "labkit-rag-index"
FORMAT_VERSION = 1
HNSW_FROM = 20_000
MODES = ("dense", "bm25", "hybrid")
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009)
EMBED_BATCH = 256  # chunks embedded between two progress reports of Index.add(on_progress=...)
RERANK_DEPTH = 20  # candidates fused and reranked (also the depth each retriever returns for the hybrid)


@dataclass(frozen=True)
class Fusion:
    """How the hybrid and reranked rankings are fused (weighted reciprocal rank fusion).

    hybrid score(chunk) = dense / (rrf_k + dense rank) + bm25 / (rrf_k + BM25 rank);
    reranked order = the same fusion of the hybrid ranking (weight 1 - rerank) and the MaxSim ranking of the
    hybrid candidates (weight rerank): ``rerank=1`` is the MaxSim order alone.

    The defaults (equal votes, k=60, MaxSim alone) are the textbook ones. Weights can be fitted on labelled
    dev questions with ``labkit.rag.evaluate.tune_fusion`` (and should then be judged on other questions).
    """

    dense: float = 1.0
    bm25: float = 1.0
    rrf_k: float = RRF_K
    rerank: float = 1.0

    def __post_init__(self):
        for name in ("dense", "bm25", "rerank"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v or (name == "rerank" and v > 1):
                raise LabkitUsageError(f"fusion weight {name}={v!r}: give a number >= 0"
                                       f"{' and <= 1' if name == 'rerank' else ''}")
        if self.dense + self.bm25 <= 0:
            raise LabkitUsageError("fusion weights: dense and bm25 cannot both be 0")
        if not isinstance(self.rrf_k, (int, float)) or self.rrf_k < 0:
            raise LabkitUsageError(f"fusion rrf_k={self.rrf_k!r}: give a number >= 0")

    def to_dict(self) -> dict:
        return {"dense": self.dense, "bm25": self.bm25, "rrf_k": self.rrf_k, "rerank": self.rerank}

    def __str__(self):
        return (f"dense {self.dense:g} : bm25 {self.bm25:g} (rrf_k {self.rrf_k:g}), "
                f"rerank {'MaxSim order' if self.rerank == 1 else f'{self.rerank:g} MaxSim + {1 - self.rerank:g} hybrid'}")
# --------------------------------------------------------------------------------------------------------- index
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class Index:
    """A retrieval index over chunked documents (see the module docstring)."""

    def __init__(self, chunking: str | ChunkSettings = "recursive", size: int | None = None,
                 overlap: int | None = None, name: str = "default"):
        self.settings = chunking if isinstance(chunking, ChunkSettings) else ChunkSettings.make(chunking, size, overlap)
        self.name = name
        self.chunks: list[Chunk] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.docs: dict[str, dict] = {}  # doc_id -> {"sha256", "source", "n_chunks"}
        self.path: Path | None = None
        self._faiss = None
        self._bm25 = None
        self._terms: list[list[str]] | None = None
        self._tokvec_cache: dict[str, np.ndarray] = {}
        self._pos: dict[str, int] = {}
        self.fusion = Fusion()
        self.recovered: str | None = None  # what an interrupted save had left beside a loaded index

    # -------------------------------------------------------------------------------------------- contents
    def __len__(self):
        return len(self.chunks)

    def __repr__(self):
        where = f", saved at {self.path}" if self.path else ""
        return (f"<labkit RAG index {self.name!r}: {len(self.docs)} documents, {len(self.chunks)} chunks, "
                f"chunking {self.settings}, {self.faiss_kind} FAISS index{where}>")

    @property
    def faiss_kind(self) -> str:
        return "hnsw" if len(self.chunks) >= HNSW_FROM else "flat"

    def chunk(self, chunk_id: str) -> Chunk:
        if chunk_id not in self._pos:
            raise LabkitUsageError(f"no chunk {chunk_id!r} in this index")
        return self.chunks[self._pos[chunk_id]]

    def _changed(self):
        self._faiss = self._bm25 = self._terms = None
        self._pos = {c.id: i for i, c in enumerate(self.chunks)}

    def add(self, items, *, report: IngestReport | None = None, on_progress: OnProgress | None = None) -> IngestReport:
        """Index files/folders/globs, LangChain Documents, ``(id, text)`` pairs. A document whose id is already
        indexed is re-chunked and re-embedded only if its text changed; others are not touched. ``on_progress``:
        the common progress callback (``labkit.watch.Progress``, kind ``"index"``: ``done`` chunks embedded of
        ``total``), after each batch of ``EMBED_BATCH`` chunks."""
        t0 = time.perf_counter()
        report = report or IngestReport()
        docs = collect(items, report)
        enc = encoder()
        new_chunks: list[Chunk] = []
        replace: set[str] = set()
        for d in docs:
            old = self.docs.get(d.doc_id)
            if old is not None and old["sha256"] == d.sha256:
                report.unchanged.append(d.doc_id)
                continue
            pieces = [c for c in chunk_text(d.doc_id, d.text, self.settings) if c.text.strip()]
            if not pieces:
                report.skipped.append((d.doc_id, "no text left after chunking"))
                continue
            if old is not None:
                replace.add(d.doc_id)
                report.updated.append(d.doc_id)
            else:
                report.added.append(d.doc_id)
            self.docs[d.doc_id] = {"sha256": d.sha256, "source": d.source or d.doc_id, "n_chunks": len(pieces),
                                   "metadata": _jsonable(d.metadata)}
            new_chunks.extend(pieces)
        if replace:
            self._drop(replace)
        if new_chunks:
            watch = Reporter(on_progress)
            step = EMBED_BATCH if watch else len(new_chunks)  # without a callback: one call, as before
            parts = []
            for i in range(0, len(new_chunks), step):
                batch = new_chunks[i:i + step]
                if len(self.chunks) + len(new_chunks) <= TOKEN_CACHE_MAX:
                    # small index: keep the token vectors of the same forward pass for MaxSim reranking
                    v, toks = enc.encode_both([c.text for c in batch])
                    self._tokvec_cache.update({c.id: t for c, t in zip(batch, toks)})
                else:
                    v = enc.encode([c.text for c in batch])
                parts.append(v)
                watch(Progress("index", done=i + len(batch), total=len(new_chunks), item=batch[-1].doc_id,
                               state="done" if i + len(batch) == len(new_chunks) else "running"))
            vecs = parts[0] if len(parts) == 1 else np.vstack(parts)
            self.vectors = vecs if not len(self.chunks) else np.vstack([self.vectors, vecs])
            self.chunks.extend(new_chunks)
            report.chunks_embedded += len(new_chunks)
            self._changed()
        report.seconds += time.perf_counter() - t0
        return report

    def add_texts(self, texts: Iterable[str], ids: Iterable[str] | None = None) -> IngestReport:
        texts = list(texts)
        ids = list(ids) if ids is not None else [f"text-{len(self.docs) + i}" for i in range(len(texts))]
        return self.add(list(zip(ids, texts)))

    def _drop(self, doc_ids: set[str]) -> None:
        keep = [i for i, c in enumerate(self.chunks) if c.doc_id not in doc_ids]
        for c in self.chunks:
            if c.doc_id in doc_ids:
                self._tokvec_cache.pop(c.id, None)
        self.chunks = [self.chunks[i] for i in keep]
        self.vectors = self.vectors[keep] if len(keep) else np.zeros((0, self.vectors.shape[1] or 0), np.float32)
        self._changed()

    def delete(self, doc_ids: str | Iterable[str]) -> IngestReport:
        """Remove documents (by id, i.e. the path they were added from). Embeds nothing."""
        ids = {doc_ids} if isinstance(doc_ids, str) else set(doc_ids)
        missing = sorted(ids - set(self.docs))
        if missing:
            raise LabkitUsageError(f"not in the index: {', '.join(missing)}. Documents: "
                                   f"{', '.join(list(self.docs)[:10])}{' …' if len(self.docs) > 10 else ''}")
        self._drop(ids)
        for d in ids:
            del self.docs[d]
        return IngestReport(deleted=sorted(ids))

    # -------------------------------------------------------------------------------------------- retrievers
    def _need_chunks(self):
        if not self.chunks:
            raise LabkitUsageError(
                f"the index {self.name!r} is empty: add documents first (`%%rag --add notes/*.md`, "
                f"`--kb` for the shipped knowledge base, or `Index.add(paths)`), or `--load` a saved index")

    def dense_index(self):
        """The FAISS index over the stored vectors (built on first use after a change)."""
        if self._faiss is None:
            import faiss

            d = self.vectors.shape[1]
            if self.faiss_kind == "hnsw":
                ix = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
                ix.hnsw.efConstruction = 80
                ix.hnsw.efSearch = 64
            else:
                ix = faiss.IndexFlatIP(d)
            ix.add(self.vectors)
            self._faiss = ix
        return self._faiss

    def bm25_index(self):
        if self._bm25 is None:
            import bm25s

            self._terms = [terms(c.text) for c in self.chunks]
            m = bm25s.BM25()
            m.index(self._terms, show_progress=False)
            self._bm25 = m
        return self._bm25

    def dense(self, question: str, k: int, qvec: np.ndarray | None = None) -> list[Hit]:
        self._need_chunks()
        if qvec is None:
            qvec = encoder().encode([question])
        k = min(k, len(self.chunks))
        scores, idx = self.dense_index().search(qvec.reshape(1, -1), k)
        return [Hit(self.chunks[i], float(s), r + 1) for r, (s, i) in enumerate(zip(scores[0], idx[0])) if i >= 0]

    def bm25(self, question: str, k: int) -> list[Hit]:
        self._need_chunks()
        q = terms(question)
        m = self.bm25_index()
        if not q:
            return []
        k = min(k, len(self.chunks))
        docs, scores = m.retrieve([q], k=k, show_progress=False, n_threads=1)
        hits = [(int(i), float(s)) for i, s in zip(docs[0], scores[0]) if s > 0]
        return [Hit(self.chunks[i], s, r + 1) for r, (i, s) in enumerate(hits)]

    @staticmethod
    def fuse(lists: list[list[Hit]], k: int, rrf_k: float = RRF_K, weights: list[float] | None = None) -> list[Hit]:
        """Reciprocal rank fusion: score(chunk) = sum over retrievers of weight / (rrf_k + rank)
        (all weights 1 by default: Cormack et al.'s RRF)."""
        scores: dict[str, float] = {}
        chunks: dict[str, Chunk] = {}
        weights = [1.0] * len(lists) if weights is None else list(weights)
        for hits, w in zip(lists, weights):
            for h in hits:
                scores[h.id] = scores.get(h.id, 0.0) + w / (rrf_k + h.rank)
                chunks[h.id] = h.chunk
        order = sorted(scores, key=lambda cid: (-scores[cid], cid))[:k]
        return [Hit(chunks[cid], scores[cid], r + 1) for r, cid in enumerate(order)]

    def maxsim(self, question: str, candidates: list[Chunk], qtok: np.ndarray | None = None) -> list[float]:
        """Late-interaction relevance (ColBERT's MaxSim), written out because it is the idea to learn:
        for each query token, the cosine of its best-matching chunk token; the mean over query tokens.
        Query tokens that are stop words or punctuation are left out (they match anything)."""
        enc = encoder()
        if qtok is None:
            qtok = enc.token_vectors([question])[0]
        qtok = qtok.astype(np.float32)
        pieces = enc.tokenizer.convert_ids_to_tokens(
            enc.tokenizer(question, add_special_tokens=False, truncation=True,
                          max_length=enc.max_tokens - 2)["input_ids"])
        keep = [i for i, p in enumerate(pieces[: len(qtok)])
                if p.startswith("##") or (re.fullmatch(r"\w+", p) and terms(p))]
        if keep:
            qtok = qtok[keep]
        missing = [c for c in candidates if c.id not in self._tokvec_cache]
        if missing:
            for c, v in zip(missing, enc.token_vectors([c.text for c in missing])):
                self._tokvec_cache[c.id] = v
        if len(self._tokvec_cache) > TOKEN_CACHE_MAX:  # bounded memory for big indexes
            for cid in list(self._tokvec_cache)[: len(self._tokvec_cache) - TOKEN_CACHE_MAX]:
                del self._tokvec_cache[cid]
        return [float((qtok @ self._tokvec_cache[c.id].T.astype(np.float32)).max(axis=1).mean())
                for c in candidates]

    def search(self, question: str, k: int = 5, mode: str = "hybrid", rerank: bool = False,
               depth: int | None = None, _encoded=None) -> Retrieval:
        """Retrieve ``k`` chunks for ``question``. Dense, BM25 and hybrid lists are all computed (cheap) so
        they can be compared; ``mode`` picks the one returned, ``rerank`` reranks the hybrid candidates."""
        t0 = time.perf_counter()
        if mode not in MODES:
            raise LabkitUsageError(f"`mode` must be one of {', '.join(MODES)}, not {mode!r}")
        if not isinstance(k, int) or k < 1 or k > 1000:
            raise LabkitUsageError(f"`k` must be a whole number from 1 to 1000, got {k!r}")
        if not question or not question.strip():
            raise LabkitUsageError("the question is empty: write one question per line in the cell")
        self._need_chunks()
        enc = encoder()
        question, bad_text = valid_unicode(" ".join(question.split()), "the question")
        q_for_encoder, notice = enc.truncate(question)
        notices = [n for n in (bad_text, notice) if n]
        # the same depth with or without reranking, so that the hybrid list does not depend on --rerank
        depth = max(k, depth or RERANK_DEPTH, 10)
        if _encoded is not None:  # (sentence vector, token vectors) computed in a batch by the caller
            qvec, qtok = _encoded
        elif rerank:
            qvec, (qtok,) = enc.encode_both([q_for_encoder])
        else:
            qvec, qtok = enc.queries([q_for_encoder]), None
        qvec = np.asarray(qvec, dtype=np.float32).reshape(1, -1)
        dense = self.dense(q_for_encoder, depth, qvec)
        sparse = self.bm25(question, depth)
        fz = self.fusion
        by = {"dense": dense, "bm25": sparse,
              "hybrid": self.fuse([dense, sparse], depth, fz.rrf_k, [fz.dense, fz.bm25])}
        if rerank:
            first = by[mode]
            cands = [h.chunk for h in first]
            scores = self.maxsim(q_for_encoder, cands, qtok)
            order = sorted(range(len(cands)), key=lambda i: -scores[i])
            maxsim = [Hit(cands[i], scores[i], r + 1) for r, i in enumerate(order)]
            if fz.rerank >= 1:
                by["rerank"] = maxsim
            else:  # blend the reranker's order with the first-stage order (weights tuned on dev questions)
                by["rerank"] = self.fuse([first, maxsim], len(cands), fz.rrf_k, [1 - fz.rerank, fz.rerank])
        if not by["bm25"] and mode in ("bm25",):
            notices.append("no question word occurs in the index (BM25 found nothing); try dense or hybrid")
        for key in by:
            by[key] = by[key][:max(k, 10)]
        return Retrieval(question, mode, k, rerank, by, notices, time.perf_counter() - t0)

    def ask(self, question: str, k: int = 5, mode: str = "hybrid", rerank: bool = False,
            answer: str = "extractive", history: list[dict] | None = None):
        """Retrieve, then answer from the retrieved chunks with citations (see ``labkit.rag.answer``)."""
        from .answer import answer_question

        return answer_question(self, question, k=k, mode=mode, rerank=rerank, how=answer, history=history)

    # -------------------------------------------------------------------------------------------- persistence
    def manifest(self) -> dict:
        enc = encoder()
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "embedding": {"model": enc.name, "dim": enc.dim, "normalized": True, "fingerprint": enc.fingerprint()},
            "chunking": self.settings.to_dict(),
            "faiss": self.faiss_kind,
            "name": self.name,
            "n_chunks": len(self.chunks),
            "fusion": self.fusion.to_dict(),
            "documents": self.docs,
        }

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the index to a folder, atomically: data goes to a fresh ``data-*`` subfolder, then
        ``manifest.json`` (which names that subfolder and the checksums of its files) is replaced in one
        ``os.replace``. A crash at any point leaves the previous index readable."""
        import faiss

        self._need_chunks()
        path = Path(path or self.path or f"rag_index_{self.name}").expanduser()
        if path.exists() and not path.is_dir():
            raise LabkitUsageError(f"`save` {path}: a file is in the way; give a folder path")
        if path.is_dir() and any(path.iterdir()) and not (path / "manifest.json").exists():
            raise LabkitUsageError(f"`save` {path}: the folder has other files and no manifest.json; "
                                   f"refusing to write an index into it (give an empty or new folder)")
        path.mkdir(parents=True, exist_ok=True)
        data_dir = path / f"data-{uuid.uuid4().hex[:12]}"
        data_dir.mkdir()
        try:
            _fsync_write(data_dir / "chunks.jsonl",
                         "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in self.chunks).encode())
            faults.point("index.data")
            with open(data_dir / "vectors.npy", "wb") as fh:
                np.save(fh, self.vectors)
                fh.flush()
                os.fsync(fh.fileno())
            faiss.write_index(self.dense_index(), str(data_dir / "dense.faiss"))
            man = self.manifest()
            man["data"] = data_dir.name
            man["files"] = {f.name: _sha256_file(f) for f in sorted(data_dir.iterdir())}
            man["saved"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            tmp = path / f"manifest.json.tmp-{uuid.uuid4().hex[:8]}"
            _fsync_write(tmp, json.dumps(man, indent=1, ensure_ascii=False).encode())
            faults.point("index.manifest")
            os.replace(tmp, path / "manifest.json")  # the commit point
            faults.point("index.committed")
        except BaseException:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
        for old in path.glob("data-*"):
            if old.name != data_dir.name:
                shutil.rmtree(old, ignore_errors=True)
        for old in path.glob("manifest.json.tmp-*"):
            old.unlink(missing_ok=True)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, chunking: ChunkSettings | None = None,
             name: str | None = None) -> "Index":
        """Read a saved index; refuse (LabkitError, with the reason) when it does not match this kit's
        embedding model, the format version, the chunking you asked for, or its own checksums."""
        import faiss

        path = Path(path).expanduser()
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise LabkitUsageError(f"no index at {path} (no manifest.json there). Build one with "
                                   f"`%%rag --add PATH --save {path}` or `Index(...).add(...).save(path)`.")
        try:
            man = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LabkitError(f"the manifest {mpath} is unreadable ({exc}); rebuild the index") from None
        if man.get("format") != FORMAT:
            raise LabkitError(f"{mpath} is not a labkit RAG index manifest (format {man.get('format')!r})")
        if man.get("format_version") != FORMAT_VERSION:
            raise LabkitError(f"refusing {path}: index format version {man.get('format_version')}, this labkit "
                              f"reads version {FORMAT_VERSION}. Rebuild the index with this labkit.")
        emb = man.get("embedding", {})
        enc = encoder()
        if emb.get("model") != enc.name or emb.get("dim") != enc.dim:
            raise LabkitError(
                f"refusing {path}: it was built with the embedding model {emb.get('model')!r} "
                f"({emb.get('dim')} dimensions); this kit embeds queries with {enc.name!r} ({enc.dim} dimensions). "
                f"Vectors from different models are not comparable: rebuild the index (`--add ... --save`).")
        fp = emb.get("fingerprint")
        if fp and not np.allclose(fp, enc.fingerprint(), atol=2e-3):
            raise LabkitError(
                f"refusing {path}: it names {enc.name!r} but its vectors came from different weights (the "
                f"fingerprint of a probe sentence differs). Rebuild the index with this kit's model.")
        saved = ChunkSettings.make(**man["chunking"])
        if chunking is not None and chunking != saved:
            raise LabkitError(
                f"refusing {path}: it was chunked with {saved}, and you asked for {chunking}. Chunks from "
                f"different settings do not mix: drop `method`/`size`/`overlap` to use the saved settings, "
                f"or build a new index.")
        data_dir = path / str(man.get("data", ""))
        for fname, digest in (man.get("files") or {}).items():
            f = data_dir / fname
            if not f.is_file() or _sha256_file(f) != digest:
                raise LabkitError(f"refusing {path}: {f} is missing or does not match its checksum in the "
                                  f"manifest (a copy went wrong or the file was edited). Rebuild the index.")
        ix = cls(saved, name=name or man.get("name") or path.name)
        with open(data_dir / "chunks.jsonl", encoding="utf-8") as fh:
            ix.chunks = [Chunk(**json.loads(line)) for line in fh if line.strip()]
        ix.vectors = np.load(data_dir / "vectors.npy")
        ix.docs = man.get("documents", {})
        try:
            ix.fusion = Fusion(**man.get("fusion", {}))
        except (TypeError, LabkitUsageError) as exc:
            raise LabkitError(f"refusing {path}: its fusion settings {man.get('fusion')!r} are invalid ({exc})") from None
        if ix.vectors.shape != (len(ix.chunks), enc.dim) or len(ix.chunks) != man.get("n_chunks"):
            raise LabkitError(f"refusing {path}: {len(ix.chunks)} chunks but vectors of shape "
                              f"{ix.vectors.shape}; the index is inconsistent. Rebuild it.")
        ix._changed()
        ix._faiss = faiss.read_index(str(data_dir / "dense.faiss"))
        ix.path = path
        stray = [p for p in path.glob("data-*") if p.name != data_dir.name] + list(path.glob("manifest.json.tmp-*"))
        if stray:
            ix.recovered = (f"an interrupted save left {len(stray)} unfinished file(s) or folder(s) in {path}; the "
                            f"index saved before it was loaded (they are removed at the next save)")
        return ix

    # -------------------------------------------------------------------------------------------- LangChain
    def as_retriever(self, k: int = 5, mode: str = "hybrid", rerank: bool = False):
        """A LangChain ``BaseRetriever`` over this index (``.invoke(question) -> list[Document]``)."""
        from .interop import LabkitRetriever

        return LabkitRetriever(index=self, k=k, mode=mode, rerank=rerank)

    def as_vectorstore(self):
        """A LangChain ``VectorStore`` view (add_texts / add_documents / similarity_search / delete)."""
        from .interop import LabkitVectorStore

        return LabkitVectorStore(self)
