"""The ``labkit`` command: doctor, labs, progress, models, zoo."""
from __future__ import annotations

import argparse
import sys


def _doctor(args) -> int:
    from . import doctor, runtime

    runtime.apply_thread_env()
    text = doctor.report(load_models=not args.quick)
    print(text)
    return 0 if text.rstrip().endswith("all good") else 1


def _labs(args) -> int:
    from .errors import LabkitUsageError
    from .labs import copy_labs, copy_student_labs, lab_files, labs_dir

    if args.labs_cmd == "copy":
        try:
            if args.instructor:
                report = copy_labs(args.dest)
                report.kind = "instructor versions (solutions filled in)"
            else:
                report = copy_student_labs(args.dest)
        except LabkitUsageError as exc:
            print(f"labkit labs: {exc}", file=sys.stderr)
            return 2
        print(report)
        if not args.instructor:
            print("Exercises are unanswered; in a notebook, solution(\"Exercise 2\") (labkit.exercises) reveals one "
                  "on purpose. Instructor versions: labkit labs copy --instructor DEST")
    else:
        for p in lab_files():
            print(p.relative_to(labs_dir()))
    return 0


def _models(args) -> int:
    from . import models, runtime

    rows = models.list_models()
    print(f"{'name':14s} {'kind':10s} {'parameters':>12s} {'on disk':>10s}  description")
    for m in rows:
        params = f"{m.parameters:,}" if m.parameters else "-"
        disk = runtime.human_bytes(m.disk_bytes) if m.disk_bytes else "-"
        flag = "" if m.available else "  [not built: labkit zoo build]"
        print(f"{m.name:14s} {m.kind:10s} {params:>12s} {disk:>10s}  {m.description}{flag}")
    print("\nAlso: a local directory, a hub id (needs its files in the HF cache or a network), or gguf:<path>.")
    return 0


# subcommand -> (module with main(argv) -> int, help)
DELEGATED = {
    "zoo": ("labkit.zoo.cli", "build or evaluate the model zoo: labkit zoo build|eval --help"),
    "student": ("labkit.grading", "write student versions of the labs (solutions removed): labkit student --help"),
    "rag": ("labkit.rag.cli", "build, query or evaluate a RAG index: labkit rag --help"),
    "agent": ("labkit.agent.cli", "run or evaluate agents: labkit agent --help"),
    "serve": ("labkit.serve", "serve a model behind an OpenAI-compatible API on 127.0.0.1: labkit serve --help"),
}


def _exists(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is not there (a feature not built yet)
        return False


def _progress(args) -> int:
    import json

    from . import curriculum

    parts = curriculum.overview(store=args.store)
    print(json.dumps({"parts": parts, "summary": curriculum.summary(parts)}, indent=1) if args.json
          else curriculum.format_overview(parts))
    return 0


def _export(args) -> int:
    from .errors import LabkitError
    from .gguf import export_gguf, parity

    try:
        print(f"writing {args.out} ({args.type}) from {args.model} ...", flush=True)
        e = export_gguf(args.model, args.out, qtype=args.type)
        print(e)
        if args.check:
            r = parity(args.model, e.path, args.check)
            print(f"parity on {args.check!r}: token ids {'identical' if r.same_ids else 'DIFFER'} "
                  f"({len(r.hf_ids)} tokens), next-token logits max |diff| {r.max_abs_diff:.4g}, "
                  f"top token agrees at {r.argmax_agree:.0%} of positions")
            return 0 if r.same_ids else 1
    except LabkitError as exc:
        print(f"labkit export: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:  # these subcommands have their own parsers
        import importlib

        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    p = argparse.ArgumentParser(prog="labkit", description="LLM Lab Kit command line")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("doctor", help="versions, offline assets, threads and memory")
    d.add_argument("--quick", action="store_true", help="skip loading a model")
    d.set_defaults(fn=_doctor)
    labs = sub.add_parser("labs", help="the lab notebooks")
    lsub = labs.add_subparsers(dest="labs_cmd", required=True)
    c = lsub.add_parser("copy", help="copy the student versions of the labs (solutions removed) to DEST; "
                                     "never overwrites a file you changed")
    c.add_argument("dest")
    c.add_argument("--instructor", action="store_true",
                   help="copy the instructor versions (solutions filled in) instead")
    lsub.add_parser("list", help="list the labs")
    labs.set_defaults(fn=_labs)
    m = sub.add_parser("models", help="the model zoo and other loadable models")
    m.set_defaults(fn=_models)
    pr = sub.add_parser("progress", help="your progress through the course: every chapter, its lab, exercises solved")
    pr.add_argument("--store", help="a progress store other than yours (labkit.progress.store_path())")
    pr.add_argument("--json", action="store_true", help="the overview as JSON (what the JupyterLab panel reads)")
    pr.set_defaults(fn=_progress)
    ex = sub.add_parser("export", help="write a model in another format: labkit export gguf MODEL OUT --type q8_0")
    exsub = ex.add_subparsers(dest="export_fmt", required=True)
    g = exsub.add_parser("gguf", help="a zoo model or fine-tuned run as a GGUF file for llama.cpp "
                                      "(tokenizer and chat template included)")
    g.add_argument("model", help="a zoo name (tiny-chat), a run name or a model folder")
    g.add_argument("out", help="the .gguf file to write")
    g.add_argument("--type", default="f32", choices=["f32", "f16", "q8_0", "q4_0"], help="tensor type (default f32)")
    g.add_argument("--check", metavar="TEXT", help="then compare token ids and logits with transformers on TEXT")
    g.set_defaults(fn=_export)
    for name, (module, text) in DELEGATED.items():
        if _exists(module):
            sub.add_parser(name, help=text)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
