"""``labkit agent``: run one task, list the tools, or score a model on the held-out tasks.

    labkit agent run "What is 347 times 86?" --tools calculator,lookup
    labkit agent tools
    labkit agent eval --model tiny-chat --n 120 --json eval.json
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import LabkitError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labkit agent", description="tool-using agents (LangGraph) on the zoo models")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one task and print the trace")
    r.add_argument("task")
    r.add_argument("--model", default="tiny-chat", help="tiny-chat | openai:<base-url> | gguf:<path>")
    r.add_argument("--model-name", help="model id on an OpenAI-compatible server")
    r.add_argument("--tools", default="calculator,lookup", help="comma-separated tool names, or none")
    r.add_argument("--max-steps", type=int, default=6)
    r.add_argument("--approve", action="store_true", help="ask before running dangerous tools (python)")
    r.add_argument("--json", action="store_true", help="print the trace as JSON")
    sub.add_parser("tools", help="list the built-in tools")
    e = sub.add_parser("eval", help="held-out arithmetic + lookup tasks, with and without tools")
    e.add_argument("--model", default="tiny-chat")
    e.add_argument("--n", type=int, default=120, help="number of tasks (half arithmetic, half lookup)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-direct", action="store_true", help="skip the without-tools score")
    e.add_argument("--max-steps", type=int, default=4)
    e.add_argument("--json", metavar="PATH", help="also write every task's result to this file")
    e.add_argument("--quiet", action="store_true", help="no per-task progress")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.cmd == "tools":
            from .tools import BUILTINS, resolve

            for t in resolve([n for n in BUILTINS if n != "search"]):
                flag = "  [dangerous: needs approval with --approve]" if (t.metadata or {}).get("dangerous") else ""
                print(f"{t.name:12s} {t.description.splitlines()[0]}{flag}")
            print(f"{'search':12s} search a RAG index (needs an index: %%agent --index NAME, or retriever= in Python)")
            return 0
        if args.cmd == "run":
            from . import run

            result = run(args.task, model=args.model, tools=args.tools, max_steps=args.max_steps,
                         approve=args.approve, model_name=args.model_name)
            if args.json:
                print(json.dumps({"task": result.task, "answer": result.answer, "stopped": result.stopped,
                                  "steps": result.table()}, indent=1, default=str))
            else:
                print(repr(result))
            return 0 if result.ok else 1
        if args.cmd == "eval":
            from .evaluate import evaluate

            def progress(i, n, row):
                if not args.quiet:
                    marks = ("T" if row.get("ok_tools") else "t") + ("D" if row.get("ok_direct") else "d")
                    print(f"[{i:>3}/{n}] {marks} {row['question'][:60]:60s} expected {row['expected']}",
                          flush=True)

            res = evaluate(args.model, args.n, seed=args.seed, without_tools=not args.no_direct,
                           max_steps=args.max_steps, progress=progress)
            print(repr(res))
            if args.json:
                with open(args.json, "w", encoding="utf-8") as fh:
                    json.dump(res.to_json(), fh, indent=1, default=str)
                print(f"wrote {args.json}")
            return 0
    except LabkitError as exc:
        print(f"labkit agent: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
