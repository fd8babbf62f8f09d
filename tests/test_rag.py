"""labkit.rag: ingestion, chunking, retrieval, persistence, LangChain interop, evaluation, the %%rag magic."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from labkit.errors import LabkitError, LabkitUsageError

DOCS = {
    "bakery.md": "# Bakery\n\nMira Vell runs the bakery in Brellwick. She bakes rye bread every morning.\n\n"
                 "Her cat Pip sleeps on the flour sacks.",
    "harbor.txt": "The harbor of Stoneford has forty fishing boats. Tam Oss is the harbor master.\n"
                  "He was born in 1961 and likes the colour green.",
    "clocks.html": "<html><head><script>var x = 'never indexed';</script><style>p{}</style></head><body>"
                   "<h1>Clockmakers</h1><p>Ada Wren repairs tower clocks in Grollhaven.</p>"
                   "<p>Her workshop is next to the bell tower.</p></body></html>",
}


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (d / name).write_text(text, encoding="utf-8")
    (d / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n%%EOF")
    (d / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    return d


@pytest.fixture(scope="module")
def index(docs_dir):
    from labkit.rag import Index

    ix = Index("recursive", size=120, overlap=20)
    report = ix.add(str(docs_dir))
    return ix, report


# ---------------------------------------------------------------------------------------------------- chunking
@pytest.mark.parametrize("method,size,overlap", [("recursive", 60, 10), ("sentences", 60, 0), ("tokens", 16, 4)])
def test_chunks_keep_exact_positions(method, size, overlap):
    from labkit.rag import ChunkSettings, chunk_text

    text = ("Mira Vell is a baker. She lives in Brellwick! Her cat is Pip.\n\nTam Oss is a judge. "
            "He was born in 1970. Does he like blue? Yes, he does.") * 2
    chunks = chunk_text("d", text, ChunkSettings.make(method, size, overlap))
    assert len(chunks) > 2
    for c in chunks:
        assert text[c.start:c.end] == c.text
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    if method == "sentences":  # whole sentences only
        assert all(c.text.rstrip()[-1] in ".!?" for c in chunks)


def test_bad_chunk_settings():
    from labkit.rag import ChunkSettings

    with pytest.raises(LabkitUsageError, match="`method`"):
        ChunkSettings.make("paragraphs")
    with pytest.raises(LabkitUsageError, match="`overlap`"):
        ChunkSettings.make("recursive", 100, 100)
    with pytest.raises(LabkitUsageError, match="254"):
        ChunkSettings.make("tokens", 400, 10)


# ---------------------------------------------------------------------------------------------------- ingestion
def test_ingestion_reads_formats_and_reports_bad_files(index, docs_dir):
    ix, report = index
    assert sorted(os.path.basename(d) for d in report.added) == sorted(DOCS)
    skipped = {os.path.basename(p): why for p, why in report.skipped}
    assert "broken.pdf" in skipped and "PDF" in skipped["broken.pdf"]
    assert "latin1.txt" in skipped and "UTF-8" in skipped["latin1.txt"]
    texts = " ".join(c.text for c in ix.chunks)
    assert "Ada Wren repairs tower clocks" in texts and "never indexed" not in texts  # HTML text, no script
    assert "skipped" in repr(report) and "broken.pdf" in repr(report)


def test_add_missing_path_is_a_usage_error():
    from labkit.rag import Index

    with pytest.raises(LabkitUsageError, match="no such file"):
        Index().add("/nonexistent/*.md")


# ---------------------------------------------------------------------------------------------------- retrieval
def test_retrievers_find_the_right_chunk(index):
    ix, _ = index
    for mode in ("dense", "bm25", "hybrid"):
        ret = ix.search("Who is the harbor master of Stoneford?", k=2, mode=mode)
        assert ret.hits and "harbor.txt" in ret.hits[0].chunk.doc_id, mode
        assert [h.rank for h in ret.hits] == list(range(1, len(ret.hits) + 1))
    ret = ix.search("Who repairs tower clocks?", k=3, rerank=True)
    assert ret.final == "rerank" and "clocks.html" in ret.hits[0].chunk.doc_id
    assert set(ret.by_retriever) == {"dense", "bm25", "hybrid", "rerank"}


def test_rrf_fusion_by_hand():
    from labkit.rag import Chunk, Hit, Index

    a, b, c = (Chunk(x, "d", i, 0, x) for i, x in enumerate("abc"))
    fused = Index.fuse([[Hit(a, 1, 1), Hit(b, 1, 2)], [Hit(b, 1, 1), Hit(c, 1, 2)]], 3, rrf_k=60)
    assert [h.id for h in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    # weighted: score = sum of weight / (rrf_k + rank)
    lists = [[Hit(a, 1, 1), Hit(b, 1, 2)], [Hit(c, 1, 1), Hit(a, 1, 2)]]
    w = Index.fuse(lists, 3, rrf_k=10, weights=[0.2, 0.8])
    assert [h.id for h in w] == ["a", "c", "b"]
    assert w[0].score == pytest.approx(0.2 / 11 + 0.8 / 12) and w[1].score == pytest.approx(0.8 / 11)
    assert [h.id for h in Index.fuse(lists, 3, rrf_k=10, weights=[0.0, 1.0])][:2] == ["c", "a"]


def test_fusion_settings_validate_and_drive_search(index):
    from labkit.rag import Fusion

    ix, _ = index
    for bad in (dict(dense=-1), dict(rerank=1.5), dict(dense=0, bm25=0), dict(rrf_k=-3), dict(bm25="x")):
        with pytest.raises(LabkitUsageError, match="fusion"):
            Fusion(**bad)
    q = "Who repairs tower clocks?"
    try:
        ix.fusion = Fusion(dense=1, bm25=0)  # all the vote to dense: hybrid = the dense order
        ret = ix.search(q, k=5, rerank=True)
        assert [h.id for h in ret.by_retriever["hybrid"]] == [h.id for h in ret.by_retriever["dense"]]
        ix.fusion = Fusion(dense=0, bm25=1, rerank=1.0)
        ret = ix.search(q, k=5, rerank=True)
        bm = [h.id for h in ret.by_retriever["bm25"]]
        assert [h.id for h in ret.by_retriever["hybrid"]][:len(bm)] == bm
        by_maxsim = sorted(ret.by_retriever["rerank"], key=lambda h: -h.score)
        assert [h.id for h in ret.by_retriever["rerank"]] == [h.id for h in by_maxsim]
    finally:
        ix.fusion = Fusion()


def test_qa_splits_are_disjoint_halves():
    from labkit.rag.kb import qa_set

    dev, test = qa_set(split="dev"), qa_set(split="test")
    assert {i["id"] for i in dev}.isdisjoint({i["id"] for i in test})
    assert len(dev) + len(test) == len(qa_set()) and min(len(dev), len(test)) >= 100
    with pytest.raises(LabkitUsageError, match="split"):
        qa_set(split="train")


def test_shipped_fusion_is_what_tuning_on_dev_gives_and_holds_on_test():
    """KB_FUSION is not hand-picked: tuning on the dev split reproduces it; on the test split (never tuned on),
    hybrid recall@5 >= max(dense, BM25) and reranked >= hybrid (the issue's bar)."""
    from labkit import rag
    from labkit.rag import Fusion, kb

    ix = kb.knowledge_base_index()
    assert ix.fusion == Fusion(**kb.KB_FUSION)
    ix.fusion = Fusion()
    tuned = rag.tune_fusion(ix, kb.qa_set(split="dev"), k=5)
    shipped = Fusion(**kb.KB_FUSION)
    if tuned.fusion != shipped:  # tolerate a tie flipped by another CPU's float rounding: same dev scores
        row = {(r[0], r[1]): r[2:] for r in tuned.hybrid_sweep}
        rrow = {r[0]: r[1:] for r in tuned.rerank_sweep}
        assert row[(shipped.dense, shipped.rrf_k)] == pytest.approx(row[(tuned.fusion.dense, tuned.fusion.rrf_k)]), tuned
        if (shipped.dense, shipped.rrf_k) == (tuned.fusion.dense, tuned.fusion.rrf_k):
            assert rrow[shipped.rerank] == pytest.approx(rrow[tuned.fusion.rerank]), tuned
    assert len(tuned.hybrid_sweep) == 21 * 3 and len(tuned.rerank_sweep) == 10
    ix.fusion = shipped
    res = rag.evaluate(ix, kb.qa_set(split="test"), k=5, answer=None)
    assert res.recall("hybrid") >= max(res.recall("dense"), res.recall("bm25")), res
    assert res.recall("rerank") >= res.recall("hybrid"), res


def test_long_question_is_truncated_with_a_notice(index):
    ix, _ = index
    ret = ix.search("harbor " * 400, k=1)
    assert ret.notices and "truncated" in ret.notices[0]


def test_empty_index_and_bad_options():
    from labkit.rag import Index

    with pytest.raises(LabkitUsageError, match="empty"):
        Index().search("anything")
    with pytest.raises(LabkitUsageError, match="`mode`"):
        Index().search("x", mode="vector")


def test_extractive_answer_cites_its_chunk(index):
    # the rule-based baseline; the trained reader's own citation tests are in test_reader.py (it misses this
    # question: answers in subject position, "Tam Oss is the harbor master.", are rare in its training items)
    ix, _ = index
    r = ix.ask("Who is the harbor master?", k=3, answer="rules")
    assert r.answer == "Tam Oss"
    assert r.citations and "harbor.txt" in r.citations[0]
    assert r.citations[0] in [h.id for h in r.hits]


def test_multi_turn_rewrites_the_follow_up(index):
    from labkit.rag import contextualize

    history = [{"question": "Who is the harbor master?", "answer": "Tam Oss"}]
    assert contextualize("When was he born?", history) == "When was Tam Oss born?"
    ix, _ = index
    r = ix.ask("When was he born?", history=history)
    assert r.rewritten == "When was Tam Oss born?" and r.question == "When was he born?"
    assert all("harbor.txt" in h.chunk.doc_id for h in r.hits[:2])


# ---------------------------------------------------------------------------------------------------- updates
def test_update_and_delete_reembed_only_that_document(tmp_path):
    from labkit.rag import Index
    from labkit.rag.index import encoder

    for name, text in DOCS.items():
        (tmp_path / name).write_text(text)
    ix = Index("recursive", size=100, overlap=10)
    ix.add(str(tmp_path))
    n_before = len(ix)
    calls = encoder().calls
    again = ix.add(str(tmp_path))  # nothing changed
    assert encoder().calls == calls and len(again.unchanged) == 3 and again.chunks_embedded == 0
    (tmp_path / "harbor.txt").write_text("The harbor of Stoneford is closed for the winter.")
    rep = ix.add(str(tmp_path))
    n_new = len([c for c in ix.chunks if c.doc_id.endswith("harbor.txt")])
    assert rep.updated == [str(tmp_path / "harbor.txt")] and rep.chunks_embedded == n_new
    assert encoder().calls - calls == n_new  # only the changed document was embedded
    assert "closed for the winter" in ix.search("Is the harbor closed?", k=1).hits[0].chunk.text
    calls = encoder().calls
    ix.delete(str(tmp_path / "bakery.md"))
    assert encoder().calls == calls
    assert not any(c.doc_id.endswith("bakery.md") for c in ix.chunks) and len(ix) < n_before
    assert ix.vectors.shape[0] == len(ix)
    with pytest.raises(LabkitUsageError, match="not in the index"):
        ix.delete("nope.md")


# ---------------------------------------------------------------------------------------------------- persistence
def test_save_load_round_trip_and_refusals(index, tmp_path):
    from labkit.rag import ChunkSettings, Index

    ix, _ = index
    path = ix.save(tmp_path / "ix")
    man = json.loads((path / "manifest.json").read_text())
    assert man["embedding"]["dim"] == 384 and man["chunking"]["size"] == 120 and man["format_version"] == 1
    assert set(man["documents"]) == set(ix.docs) and all(len(d["sha256"]) == 64 for d in man["documents"].values())
    back = Index.load(path)
    q = "Where does Mira Vell run a bakery?"
    assert back.search(q, k=3).ids == ix.search(q, k=3).ids
    assert back.fusion == ix.fusion and man["fusion"]["rrf_k"] == 60
    # saving again replaces the data folder atomically (one data-* folder left, named by the manifest)
    ix.save(path)
    datas = list(path.glob("data-*"))
    assert len(datas) == 1 and json.loads((path / "manifest.json").read_text())["data"] == datas[0].name

    with pytest.raises(LabkitError, match="chunked with"):
        Index.load(path, chunking=ChunkSettings.make("tokens", 64, 8))

    bad = tmp_path / "other_model"
    shutil.copytree(path, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["embedding"]["model"], m["embedding"]["dim"] = "BAAI/bge-small-en-v1.5", 512
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(LabkitError, match="bge-small.*not comparable"):
        Index.load(bad)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(path, corrupt)
    chunks = next(corrupt.glob("data-*")) / "chunks.jsonl"
    chunks.write_text(chunks.read_text().replace("Mira", "Nora"))
    with pytest.raises(LabkitError, match="checksum"):
        Index.load(corrupt)

    with pytest.raises(LabkitUsageError, match="no index"):
        Index.load(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------- LangChain
def test_langchain_retriever_and_vectorstore(index):
    from langchain_core.documents import Document

    from labkit.rag import Index

    ix, _ = index
    docs = ix.as_retriever(k=2, mode="hybrid").invoke("Who is the harbor master?")
    assert docs and isinstance(docs[0], Document) and "Tam Oss" in docs[0].page_content
    assert {"chunk_id", "source", "score", "rank"} <= set(docs[0].metadata)

    fresh = Index("recursive", size=200, overlap=0)
    store = fresh.as_vectorstore()
    store.add_documents([Document(page_content="Lanterns are made in Keehaven.", metadata={"source": "a"}, id="a"),
                         Document(page_content="Salt comes from Wustmouth.", metadata={"source": "b"}, id="b")])
    hits = store.similarity_search("Where are lanterns made?", k=1)
    # a vector store gives back the id and the metadata a document was added with
    assert hits[0].id == "a" and hits[0].metadata == {"source": "a"}
    assert store.delete(["a"]) and list(fresh.docs) == ["b"]
    assert store.delete(["not-there"]) and list(fresh.docs) == ["b"]
    # a document longer than a chunk: the matching chunk comes back (with its offset); get_by_ids gives it whole
    long = " ".join(f"Sentence {i} is about the town of Ommer and its {i} wells." for i in range(12))
    store.add_documents([Document(page_content=long, metadata={"kind": "long"})], ids=["long"])
    hit = store.similarity_search("Ommer wells", k=1)[0]
    assert hit.id == "long" and hit.metadata["kind"] == "long" and hit.page_content in long
    assert long[hit.metadata["start_index"]:].startswith(hit.page_content)
    assert store.get_by_ids(["long", "b", "gone"])[0].page_content == long
    assert [d.id for d in store.get_by_ids(["long", "b", "gone"])] == ["long", "b"]
    # the retriever: k per call, the document's metadata kept next to the chunk's
    docs = fresh.as_retriever(k=3).invoke("Ommer wells", k=1)
    assert len(docs) == 1 and docs[0].metadata["kind"] == "long" and docs[0].metadata["doc_id"] == "long"
    assert Index("recursive").as_retriever().invoke("anything") == []  # an empty index finds nothing


# ---------------------------------------------------------------------------------------------------- metrics
def test_ranking_metrics_by_hand():
    from labkit.rag.evaluate import exact_match, f1, score_ranking

    s = score_ranking(["x", "a", "y", "b"], [{"a"}, {"b", "c"}], k=3)
    assert s["recall"] == 0.5 and s["all"] == 0.0 and s["mrr"] == 0.5
    import math

    assert s["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert exact_match("The Baker.", "baker") == 1.0 and f1("a tall baker", "baker") == pytest.approx(2 / 3)


def test_evaluate_on_a_custom_qa_set(index):
    from labkit.rag.evaluate import evaluate

    ix, _ = index
    text = DOCS["harbor.txt"]
    s = text.index("He was born")
    doc = next(d for d in ix.docs if d.endswith("harbor.txt"))
    qa = [{"question": "When was the harbor master born?", "answer": "1961",
           "evidence": [{"doc": doc, "start": s, "end": text.index("green") + 6, "entity": "He"}]}]
    res = evaluate(ix, qa, k=3)
    assert set(res.table) == {"dense", "bm25", "hybrid", "rerank"}
    assert all(0.0 <= m["recall"] <= 1.0 for m in res.table.values())
    from labkit.rag.evaluate import exact_match

    assert res.table["bm25"]["recall"] == 1.0
    row = res.rows[0]
    assert res.answers["em"] == row["em"] == exact_match(row["answer"], "1961")
    assert "recall@3" in repr(res)


# ---------------------------------------------------------------------------------------------------- the shipped KB
def test_shipped_knowledge_base_and_qa_labels():
    from labkit.rag.kb import knowledge_base, qa_set

    docs = {d.doc_id: d.text for d in knowledge_base()}
    qa = qa_set()
    assert len(docs) == 30 and len(qa) >= 200 and len(qa_set(hops=2)) >= 50
    for it in qa:
        for ev, chunk_ids in zip(it["evidence"], it["chunks"]):
            sentence = docs[ev["doc"]][ev["start"]:ev["end"]]
            assert sentence.endswith(".") and chunk_ids, it["id"]
        last = it["evidence"][-1]
        assert it["answer"] in docs[last["doc"]][last["start"]:last["end"]], it["id"]


# ---------------------------------------------------------------------------------------------------- widget
def test_widget_payload_and_static_views(index):
    from labkit.widgets import payload_bytes

    ix, _ = index
    r = ix.ask("Who repairs tower clocks?", rerank=True)
    w = r.widget()
    item = w.items[0]
    assert item["question"] == "Who repairs tower clocks?" and item["citations"] == r.citations
    assert [c["name"] for c in item["columns"]] == ["dense", "bm25", "hybrid", "rerank"]
    assert isinstance(item["columns"][0]["scores"], bytes) and "tower" in item["terms"]
    assert payload_bytes(w) < 40_000
    bundle = r._repr_mimebundle_()
    assert "<mark>tower</mark>" in bundle["text/html"].lower() or "<mark>Tower</mark>" in bundle["text/html"]
    assert "A: " in bundle["text/plain"]


# ---------------------------------------------------------------------------------------------------- the magic
@pytest.fixture(scope="module")
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "labkit")
    return sh


def test_magic_adds_asks_saves_and_loads(shell, docs_dir, tmp_path, capsys):
    from labkit.rag import RagResult, RagResults

    res = shell.run_cell_magic("rag", f"--index mtest --add {docs_dir} --size 120 --overlap 20 --out r",
                               "Who is the harbor master?\nWhat does Ada Wren repair?")
    assert isinstance(res, RagResults) and len(res) == 2 and shell.user_ns["r"] is res
    assert "broken.pdf" in capsys.readouterr().out  # the ingestion report lists skipped files
    one = shell.run_cell_magic("rag", f"--index mtest --mode bm25 --k 2 --save {tmp_path / 'saved'}",
                               "Who is the harbor master?")
    assert isinstance(one, RagResult) and one.retrieval.mode == "bm25" and len(one.hits) <= 2
    loaded = shell.run_cell_magic("rag", f"--index copy --load {tmp_path / 'saved'} --rerank",
                                  "Who is the harbor master?")
    assert loaded.retrieval.final == "rerank"


def test_magic_bad_input_is_a_usage_error(shell, tmp_path):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="needs a question"):
        shell.run_line_magic("rag", "--index empty1")
    with pytest.raises(UsageError, match="empty"):
        shell.run_cell_magic("rag", "--index empty2", "Who is there?")
    with pytest.raises(UsageError, match="--chunk"):
        shell.run_cell_magic("rag", "--chunk paragraphs", "x")
    with pytest.raises(UsageError, match="no index"):
        shell.run_cell_magic("rag", f"--load {tmp_path / 'nothing'}", "x")
    (tmp_path / "bad.pdf").write_bytes(b"not a pdf")
    with pytest.raises(UsageError, match="no documents could be indexed"):
        shell.run_cell_magic("rag", f"--index empty3 --add {tmp_path / 'bad.pdf'}", "x")
    with pytest.raises(UsageError, match="fusion.*key=value"):
        shell.run_cell_magic("rag", "--index empty4 --fusion dense", "x")
    with pytest.raises(UsageError, match="fusion weight rerank"):
        shell.run_cell_magic("rag", "--index empty4 --fusion rerank=2", "x")


def test_magic_fusion_option_sets_the_index_weights(shell, docs_dir, capsys):
    from labkit import rag
    from labkit.rag import Fusion

    shell.run_line_magic("rag", f"--index fz --add {docs_dir} --fusion dense=0.2,bm25=0.8,rrf_k=10")
    assert rag._SESSION["fz"].fusion == Fusion(dense=0.2, bm25=0.8, rrf_k=10, rerank=1.0)
    assert "dense 0.2 : bm25 0.8 (rrf_k 10)" in capsys.readouterr().out
    shell.run_line_magic("rag", "--index fz --fusion default")
    assert rag._SESSION["fz"].fusion == Fusion()


def test_magic_help(shell, capsys):
    shell.run_line_magic("rag", "--help")
    out = capsys.readouterr().out
    assert "--rerank" in out and "--answer" in out


def test_cli_build_info_ask(docs_dir, tmp_path, capsys):
    from labkit.rag.cli import main

    out = tmp_path / "cli_ix"
    assert main(["build", str(docs_dir / "harbor.txt"), "--out", str(out), "--size", "120", "--overlap", "20"]) == 0
    assert main(["info", str(out)]) == 0
    assert main(["ask", str(out), "Who is the harbor master?"]) == 0
    assert "Tam Oss" in capsys.readouterr().out
    assert main(["build", str(docs_dir / "harbor.txt"), "--out", str(out), "--chunk", "tokens"]) == 2  # mismatch
    assert "chunked with" in capsys.readouterr().err


def test_large_index_switches_to_hnsw(monkeypatch, tmp_path):
    import faiss

    from labkit.rag import Index
    from labkit.rag import index as index_mod

    monkeypatch.setattr(index_mod, "HNSW_FROM", 3)
    ix = Index("recursive", size=200, overlap=0)
    ix.add([(f"d{i}", text) for i, text in enumerate(
        ["Tam Oss is the harbor master.", "Mira Vell bakes bread.", "Ada Wren repairs clocks.",
         "Salt comes from Wustmouth."])])
    assert ix.faiss_kind == "hnsw" and isinstance(ix.dense_index(), faiss.IndexHNSWFlat)
    assert ix.search("Who repairs clocks?", k=1, mode="dense").hits[0].chunk.doc_id == "d2"
    back = Index.load(ix.save(tmp_path / "hnsw"))
    assert isinstance(back.dense_index(), faiss.IndexHNSWFlat)
    assert back.search("Who bakes bread?", k=1, mode="dense").hits[0].chunk.doc_id == "d1"


def test_question_that_is_not_valid_unicode(index):
    ix, _ = index
    r = ix.search("Who repairs \ud800 tower clocks?", k=3)
    assert r.hits and any("not valid Unicode" in n for n in r.notices) and "\ud800" not in r.question


def test_add_reports_progress(monkeypatch):
    from labkit.rag import Index
    from labkit.rag import index as index_module

    monkeypatch.setattr(index_module, "EMBED_BATCH", 2)
    seen = []
    ix = Index("recursive", size=80, overlap=0)
    ix.add([(f"d{i}", f"Document {i} tells about the clock tower number {i}.") for i in range(5)],
           on_progress=seen.append)
    assert [p.done for p in seen] == [2, 4, 5] and all(p.total == 5 and p.kind == "index" for p in seen)
    assert seen[-1].state == "done" and len(ix.vectors) == 5
