"""``%%rag``: retrieval-augmented answers over ``labkit.rag`` (one question per line of the cell)."""
from __future__ import annotations

from ._base import Magic, MagicParser, require_body
from ..errors import LabkitUsageError

parser = MagicParser(
    "%%rag",
    description="Answer the questions in the cell (one per line) from an index of your documents, with the "
                "chunks each retriever found and the cited chunk ids.",
    epilog="""examples:
  %%rag --kb                               index the shipped knowledge base, then ask the cell's questions
  %%rag --add notes/ --add 'docs/*.pdf' --save my_index
  %%rag --load my_index --mode hybrid --rerank --k 4
  %%rag --index small --kb --chunk tokens --size 64 --overlap 8
  %%rag --answer tiny-chat                 generate the answer with tiny-chat (needs the zoo weights)""",
)
parser.add_argument("--index", default="default", metavar="NAME", help="which index of this session (default: default)")
parser.add_argument("--add", action="append", metavar="PATH|GLOB", help="index files, a folder or a glob "
                    "(.md .txt .html .pdf); repeatable")
parser.add_argument("--kb", action="store_true", help="index the shipped knowledge base (30 town pages; its dev-tuned fusion is rag.kb.KB_FUSION, "
                    "set it with --fusion dense=0.05,bm25=0.95,rrf_k=20,rerank=0.7)")
parser.add_argument("--delete", action="append", metavar="DOC", help="remove a document (its id/path); repeatable")
parser.add_argument("--chunk", choices=["recursive", "sentences", "tokens"], help="chunking (default recursive)")
parser.add_argument("--size", type=int, help="chunk size (characters; tokens for --chunk tokens)")
parser.add_argument("--overlap", type=int, help="chunk overlap (same unit as --size)")
parser.add_argument("--k", type=int, default=5, help="chunks to retrieve (default 5)")
parser.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid"], help="retriever (default hybrid)")
parser.add_argument("--fusion", metavar="K=V,...", help="fusion weights, e.g. dense=0.3,bm25=0.7,rrf_k=20,rerank=0.5 "
                    "(kept by the index; 'default' = equal votes, k=60, MaxSim order); see rag.tune_fusion")
parser.add_argument("--rerank", action="store_true", help="rerank the candidates with MiniLM MaxSim (late interaction)")
parser.add_argument("--answer", default="extractive", metavar="HOW",
                    help="extractive (default: the trained MiniLM reader), rules (the pre-neural baseline), "
                         "tiny-chat, or a causal LM name/folder")
parser.add_argument("--save", nargs="?", const="", metavar="DIR", help="save the index (to DIR, or where it was loaded from)")
parser.add_argument("--load", metavar="DIR", help="load a saved index (refused if it does not match)")


def run(args, body, shell):
    from .. import rag
    from ..rag.chunking import ChunkSettings
    from ..rag.ingest import IngestReport

    questions = [q.strip() for q in (body or "").splitlines() if q.strip() and not q.strip().startswith("#")]
    if not (questions or args.add or args.kb or args.load or args.delete or args.fusion or args.save is not None):
        require_body(body, "rag", "a question (one per line), or an option such as --add PATH or --kb")
    chunk_given = args.chunk is not None or args.size is not None or args.overlap is not None
    wanted = ChunkSettings.make(args.chunk or "recursive", args.size, args.overlap)
    report = None
    if args.load:
        loaded = rag.name_index(args.index, rag.Index.load(args.load, chunking=wanted if chunk_given else None,
                                                           name=args.index))
        if getattr(loaded, "recovered", None):
            print(f"note: {loaded.recovered}")
    ix = rag.session_index(args.index)
    if ix is None or (not len(ix) and chunk_given):
        ix = rag.name_index(args.index, rag.Index(wanted, name=args.index))
    elif chunk_given and wanted != ix.settings:
        raise LabkitUsageError(
            f"the index {args.index!r} is chunked with {ix.settings}; you asked for {wanted}. Use another "
            f"--index NAME for the new settings (chunks from different settings do not mix).")
    if args.kb or args.add:
        report = IngestReport()
        if args.kb:
            ix.add(rag.knowledge_base(), report=report)
        for spec in args.add or []:
            ix.add(spec, report=report)
        if not len(ix):
            raise LabkitUsageError(f"no documents could be indexed. {report!r}")
    if args.fusion:
        ix.fusion = _parse_fusion(args.fusion, ix.fusion)
        print(f"index {args.index!r} fusion: {ix.fusion}")
    if args.delete:
        deleted = ix.delete(args.delete)
        report = report.merge(deleted) if report else deleted
    if args.save is not None:
        path = ix.save(args.save or None)
        print(f"saved the index {args.index!r} to {path}")
    if report is not None and (report.skipped or not questions):
        print(repr(report))
    if not questions:
        return report if report is not None else ix
    results = [ix.ask(q, k=args.k, mode=args.mode, rerank=args.rerank, answer=args.answer) for q in questions]
    return results[0] if len(results) == 1 else rag.RagResults(results)


def _parse_fusion(spec: str, current):
    import dataclasses

    from ..rag import Fusion

    if spec.strip().lower() == "default":
        return Fusion()
    values = {}
    for part in spec.split(","):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in ("dense", "bm25", "rrf_k", "rerank"):
            raise LabkitUsageError(f"--fusion {spec!r}: write key=value pairs with keys dense, bm25, rrf_k, rerank "
                                   f"(e.g. dense=0.3,bm25=0.7), or 'default'")
        try:
            values[key] = float(val)
        except ValueError:
            raise LabkitUsageError(f"--fusion: {key}={val!r} is not a number") from None
    return dataclasses.replace(current, **values)


MAGICS = [Magic("rag", "cell", parser, run, flags={"method": "--chunk"})]
