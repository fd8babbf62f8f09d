"""``%%tokenize``: the token view over ``labkit.tokenize``."""
from __future__ import annotations

from ._base import Magic, MagicParser, require_body
from ..errors import LabkitUsageError

parser = MagicParser(
    "%%tokenize",
    description="Tokenize the cell text and show its tokens (hover a token for its id and bytes).",
    epilog="""examples:
  %%tokenize                       GPT-4's cl100k tokenizer
  %%tokenize bert                  BERT's WordPiece
  %%tokenize --compare cl100k,bert,tiny,bytes
  %%tokenize --train bpe --vocab 300 --name mybpe
  %tokenize --train unigram --vocab 500 --corpus notes.txt   (line form: no cell text needed)""",
)
parser.add_argument("tokenizer", nargs="?", default=None,
                    help="tokenizer name (cl100k, bert, bytes, chars, tiny, a trained name, a path or hub id)")
parser.add_argument("--compare", metavar="A,B,...", help="several tokenizers side by side")
parser.add_argument("--train", metavar="ALGO", help="train a tokenizer on the cell text: bpe, wordpiece or unigram")
parser.add_argument("--vocab", type=int, default=500, help="vocabulary size when training (default 500)")
parser.add_argument("--name", help="register the trained tokenizer under this name (default my-<algo>)")
parser.add_argument("--corpus", metavar="PATH", help="train on this text file (or files, comma-separated) "
                                                     "instead of the cell")
parser.add_argument("--window", type=int, default=1000, help="tokens shown at once (default 1000)")
parser.add_argument("--whitespace", action="store_true", help="start with whitespace made visible")


def _read_corpus(spec: str) -> list[str]:
    texts = []
    for path in [p.strip() for p in spec.split(",") if p.strip()]:
        try:
            with open(path, "rb") as fh:
                texts.append(fh.read().decode("utf-8", errors="replace"))
        except OSError as exc:
            raise LabkitUsageError(f"cannot read --corpus {path}: {exc.strerror}") from None
    return texts


def run(args, body, shell):
    from .. import tokenize as tk

    if args.train:
        texts = _read_corpus(args.corpus) if args.corpus else [require_body(body, "tokenize", "text to train on")]
        result = tk.train(args.train, texts, args.vocab, args.name)
    elif args.compare:
        if args.tokenizer:
            raise LabkitUsageError("give either a tokenizer name or --compare A,B,..., not both")
        result = tk.compare(require_body(body, "tokenize", "the text to tokenize"), args.compare.split(","),
                            window=args.window)
    else:
        result = tk.tokenize(require_body(body, "tokenize", "the text to tokenize"), args.tokenizer or "cl100k",
                             window=args.window)
    if args.whitespace:
        target = result.sample if hasattr(result, "sample") else result
        target.widget().show_whitespace = True
    return result


MAGICS = [Magic("tokenize", "cell", parser, run,
                flags={"algorithm": "--train", "vocab_size": "--vocab", "tokenizers": "--compare"})]
