"""``labkit zoo build|eval`` (also ``python -m labkit.zoo build|eval``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labkit zoo", description="Build and evaluate labkit's offline model zoo.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="regenerate corpus, tokenizer and weights from seeds (about 65 min on 2 cores)")
    b.add_argument("--out", type=Path, default=None, help="target folder (default: the package's zoo/weights)")
    b.add_argument("--quick", action="store_true", help="a micro model in about a minute (for tests; not shipped)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--stage", choices=["all", "tokenizer", "base", "chat", "reader"], default="all",
                   help="build only one stage (later stages read the earlier ones from --out); reader: the "
                        "extractive reader minilm-reader (MiniLM + LoRA + span head, not part of 'all')")
    b.add_argument("--reader-minutes", type=float, default=25.0, help="the reader's training budget (default 25)")
    b.add_argument("--pre-steps", type=int, default=None, help="pre-training steps (default: the recipe's)")
    b.add_argument("--sft-steps", type=int, default=None, help="fine-tuning steps (default: the recipe's)")
    b.add_argument("--pre-minutes", type=float, default=None, help="pre-training wall-clock budget (default 18)")
    b.add_argument("--sft-minutes", type=float, default=None, help="fine-tuning wall-clock budget (default 18)")
    b.add_argument("--no-budget", action="store_true", help="run exactly the step counts (reproducible step for step)")
    b.add_argument("--chat-from", choices=["tiny-base", "tiny-chat"], default="tiny-base",
                   help="start fine-tuning from tiny-base (default) or continue the current tiny-chat")
    b.add_argument("--sft-seed", type=int, default=None, help="a fresh stream of fine-tuning chats (for a 2nd round)")
    b.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 2, or LABKIT_ZOO_THREADS; 1 is faster on a busy shared machine)")
    b.add_argument("--no-eval", action="store_true", help="skip the evaluation and model cards after building")
    e = sub.add_parser("eval", help="print the quality table on the held-out split (and update the model cards)")
    e.add_argument("--dir", type=Path, default=None, help="zoo folder (default: the package's zoo/weights)")
    e.add_argument("--n", type=int, default=200, help="held-out items per task (default 200)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--model", default="all",
                   help="all (tiny-base and tiny-chat), or one folder of the zoo: tiny-base, tiny-chat, "
                        "tiny-base-v2, tiny-chat-v2")
    e.add_argument("--no-reading", action="store_true",
                   help="skip the out-of-world reading figures (held-out locales, relations and phrasings)")
    e.add_argument("--no-cards", action="store_true", help="do not rewrite the model cards")
    e.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from ..errors import LabkitError

    try:
        if args.command == "build":
            return _build(args)
        return _eval(args)
    except LabkitError as exc:
        print(f"labkit zoo: {exc}", file=sys.stderr)
        return 1


def _build(args) -> int:
    from .build import WEIGHTS, build

    out = args.out or WEIGHTS
    if args.stage == "reader":
        from ..rag.reader_eval import calibrate
        from ..rag.train_reader import train_reader

        folder = Path(out) / "minilm-reader"
        train_reader(folder, minutes=None if args.quick else args.reader_minutes, steps=5 if args.quick else 100_000,
                     n_items=200 if args.quick else None, seed=args.seed, threads=args.threads)
        if not args.no_eval and not args.quick:
            calibrate(folder)
        return 0
    stages = ("tokenizer", "base", "chat") if args.stage == "all" else (args.stage,)
    common = dict(quick=args.quick, seed=args.seed, pre_steps=args.pre_steps, sft_steps=args.sft_steps,
                  pre_minutes=args.pre_minutes, budget=not args.no_budget, threads=args.threads)
    shipped = not args.quick and args.chat_from == "tiny-base" and args.sft_seed is None and args.sft_minutes is None
    if "chat" in stages and shipped:
        # the shipped tiny-chat: fine-tuning rounds from tiny-base (see build.SHIPPED_CHAT_ROUNDS)
        from .build import SHIPPED_CHAT_ROUNDS

        if len(stages) > 1:
            build(out, stages=stages[:-1], **common)
        for rnd in SHIPPED_CHAT_ROUNDS:
            build(out, stages=("chat",), **common, **rnd)
    else:
        build(out, stages=stages, sft_minutes=args.sft_minutes, chat_from=args.chat_from, sft_seed=args.sft_seed,
              **common)
    if not args.no_eval and not args.quick:
        return _eval(argparse.Namespace(dir=out, n=200, seed=args.seed, model="all", no_cards=False, json=False))
    return 0


def _eval(args) -> int:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from ..errors import LabkitError
    from ..models import safetensors_parameters
    from .build import WEIGHTS
    from .cards import write_cards
    from .evaluate import eval_base, eval_chat, eval_handwritten, eval_reading

    folder = Path(args.dir or WEIGHTS)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    results = {}
    names = [args.model] if args.model != "all" else (
        ["tiny-base", "tiny-chat"] + (["tiny-chat-v2"] if (folder / "tiny-chat-v2").is_dir() else []))
    for name in names:
        d = folder / name
        if not (d / "model.safetensors").is_file():
            raise LabkitError(f"{d / 'model.safetensors'} is missing: build the zoo with `labkit zoo build`.")
        safetensors_parameters(d / "model.safetensors")  # clear error on a corrupt file
        model = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
        tok = PreTrainedTokenizerFast.from_pretrained(str(d))
        print(f"== {name} ({sum(p.numel() for p in model.parameters()):,} parameters)", flush=True)
        if "base" in name:
            results[name] = eval_base(model, tok, seed=args.seed)
        else:
            results[name] = eval_chat(model, tok, n=args.n, seed=args.seed)
            if not getattr(args, "no_reading", False):
                # in-world (the synthetic world's test split, above) and out-of-world, side by side
                results[name]["out_of_world"] = eval_reading(model, tok, n=args.n, seed=args.seed, heldout=True)
                results[name]["reading_in_distribution"] = eval_reading(model, tok, n=args.n, seed=args.seed,
                                                                        heldout=False)
                results[name]["handwritten"] = eval_handwritten(model, tok)
        (d / "eval.json").write_text(json.dumps(results[name], indent=1) + "\n")
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print()
        print(table(results))
    if not args.no_cards:
        write_cards(folder)
    return 0


def reading_rows(name: str, c: dict) -> list[tuple]:
    """In-world vs out-of-world rows (zoo v2's bars are on the out-of-world set)."""
    o, i, h = c.get("out_of_world"), c.get("reading_in_distribution"), c.get("handwritten")
    if not o:
        return []
    return [
        (name, "OUT-OF-WORLD context-QA exact match", f"{o['context_qa_em']:.1%}", ">= 85%"),
        (name, "  same generator, trained phrasings", f"{i['context_qa_em']:.1%}" if i else "-", "reported"),
        (name, "  hand-written questions", f"{h['context_qa_em']:.1%}" if h else "-", "reported"),
        (name, "OUT-OF-WORLD calculator operands copied", f"{o['calc_operands_copied']:.1%}", ">= 98%"),
        (name, "OUT-OF-WORLD calculator answer right", f"{o['calc_answer_right']:.1%}", ">= 95%"),
        (name, "OUT-OF-WORLD tool-call format valid", f"{o['tool_format_valid']:.1%}", ">= 98%"),
        (name, "OUT-OF-WORLD unknown entity -> 'not found'", f"{o['unknown_said_unknown']:.1%}", ">= 90%"),
        (name, "OUT-OF-WORLD follow-up keeps the first turn", f"{o['followup_em']:.1%}", ">= 80%"),
    ]


def table(results: dict) -> str:
    rows = [("model", "figure", "value", "bar")]
    b = results.get("tiny-base")
    if b:
        rows.append(("tiny-base", "validation perplexity", f"{b['val_perplexity']:.2f}", "reported"))
    for name, c in results.items():
        if "chat" not in name:
            continue
        rows += [
            ("tiny-chat", "context-QA exact match", f"{c['context_qa_em']:.1%}", ">= 90%"),
            ("tiny-chat", "tool-call format valid", f"{c['tool_format_valid']:.1%}", ">= 95%"),
            ("tiny-chat", "multiplication, calculator tool", f"{c['calc_with_tool']:.1%}", ">= 90%"),
            ("tiny-chat", "multiplication, no tool", f"{c['calc_no_tool']:.1%}", "reported"),
            ("tiny-chat", "lookup tool answers", f"{c['lookup_correct']:.1%}", "reported"),
        ]
        rows = [(name if r[0] == "tiny-chat" else r[0], *r[1:]) for r in rows]
        rows += reading_rows(name, c)
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(w[i]) for i in range(4)) for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
