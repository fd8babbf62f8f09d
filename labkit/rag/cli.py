"""``labkit rag``: build, inspect, query and evaluate RAG indexes from the shell.

    labkit rag build notes/ 'docs/*.pdf' --out my_index [--chunk recursive --size 400 --overlap 60]
    labkit rag build --kb --out kb_index          the shipped knowledge base
    labkit rag ask my_index "Who is the mayor of Barnhaven?" [--mode hybrid --rerank --k 5 --answer extractive]
    labkit rag info my_index
    labkit rag eval [my_index] [--k 5] [--limit 100]   (default: the shipped knowledge base and QA set)
"""
from __future__ import annotations

import argparse
import sys

from ..errors import LabkitError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labkit rag", description="build, query and evaluate RAG indexes")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="index files/folders/globs (or --kb) into a folder; updates it if it exists")
    b.add_argument("paths", nargs="*")
    b.add_argument("--kb", action="store_true", help="the shipped knowledge base")
    b.add_argument("--out", required=True, help="index folder")
    b.add_argument("--chunk", default=None, choices=["recursive", "sentences", "tokens"])
    b.add_argument("--size", type=int)
    b.add_argument("--overlap", type=int)
    b.add_argument("--delete", action="append", default=[], metavar="DOC", help="remove a document")
    a = sub.add_parser("ask", help="answer questions from a saved index")
    a.add_argument("index")
    a.add_argument("questions", nargs="+")
    a.add_argument("--k", type=int, default=5)
    a.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid"])
    a.add_argument("--rerank", action="store_true")
    a.add_argument("--answer", default="extractive")
    i = sub.add_parser("info", help="what a saved index holds (validates it)")
    i.add_argument("index")
    e = sub.add_parser("eval", help="recall@k, MRR, nDCG per retriever and answer EM/F1")
    e.add_argument("index", nargs="?")
    e.add_argument("--k", type=int, default=5)
    e.add_argument("--limit", type=int)
    e.add_argument("--answer", default="extractive")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from . import Index
    from .chunking import ChunkSettings
    from .ingest import IngestReport

    try:
        if args.cmd == "build":
            import os

            given = args.chunk is not None or args.size is not None or args.overlap is not None
            wanted = ChunkSettings.make(args.chunk or "recursive", args.size, args.overlap)
            if os.path.exists(os.path.join(args.out, "manifest.json")):
                ix = Index.load(args.out, chunking=wanted if given else None)
                if ix.recovered:
                    print(f"note: {ix.recovered}")
            else:
                ix = Index(wanted)
            report = IngestReport()
            if args.kb:
                from .kb import knowledge_base

                ix.add(knowledge_base(), report=report)
            for spec in args.paths:
                ix.add(spec, report=report)
            if args.delete:
                report.merge(ix.delete(args.delete))
            print(repr(report))
            print(f"saved {ix} to {ix.save(args.out)}")
        elif args.cmd == "ask":
            ix = Index.load(args.index)
            for q in args.questions:
                print(repr(ix.ask(q, k=args.k, mode=args.mode, rerank=args.rerank, answer=args.answer)))
                print()
        elif args.cmd == "info":
            ix = Index.load(args.index)
            print(ix)
            for doc, meta in ix.docs.items():
                print(f"  {doc}: {meta['n_chunks']} chunks, sha256 {meta['sha256'][:12]}")
        elif args.cmd == "eval":
            from .evaluate import evaluate

            ix = Index.load(args.index) if args.index else None
            print(repr(evaluate(ix, k=args.k, limit=args.limit, answer=args.answer or None)))
    except LabkitError as exc:
        print(f"labkit rag: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
