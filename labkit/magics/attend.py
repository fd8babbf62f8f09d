"""``%%attend``: the attention view over ``labkit.attend``."""
from __future__ import annotations

from ._base import Magic, MagicParser, require_body

parser = MagicParser(
    "%%attend",
    description="Run the cell text through a model and show its attention (head, model or matrix view).",
    epilog="""examples:
  %%attend                          tiny-base, head view, layer 0, all heads
  %%attend --model minilm --view model
  %%attend --model tiny-chat --layer 3 --head 1 --view matrix
  %%attend --model minilm --pair     two sentences, one per line
  %%attend --view bertviz            bertviz's own head view (its scripts ship with labkit: works offline)
  %%attend --model minilm --view neuron --layer 2 --head 3
                                    bertviz's neuron view: one head's queries and keys, for BERT-style encoders""",
)
parser.add_argument("--model", default="tiny-base", help="tiny-base (default), tiny-chat, minilm, a folder or hub id")
parser.add_argument("--layer", type=int, default=None, help="layer to open (0-based)")
parser.add_argument("--head", type=int, default=None, help="head to open (0-based; default: all heads)")
parser.add_argument("--view", default="head", choices=["head", "model", "matrix", "bertviz", "neuron"],
                    help="head (lines), model (every layer × head), matrix (heatmap), bertviz (its head view) or "
                         "neuron (bertviz's queries × keys view, minilm)")
parser.add_argument("--pair", action="store_true", help="two sentences (one per line) as a pair, for encoders")
parser.add_argument("--max-tokens", type=int, default=None, help="cut the text to this many tokens")


def run(args, body, shell):
    from .. import attend as engine

    text = require_body(body, "attend", "the text to run through the model")
    result = engine.attend(text.strip("\n"), args.model, layer=args.layer, head=args.head,
                           view="head" if args.view in ("bertviz", "neuron") else args.view, pair=args.pair,
                           max_tokens=args.max_tokens)
    if args.view in ("bertviz", "neuron"):
        return engine.bertviz_view(result, which="head" if args.view == "bertviz" else "neuron")
    return result


MAGICS = [Magic("attend", "cell", parser, run)]
