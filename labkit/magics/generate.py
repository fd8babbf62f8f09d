"""``%%generate``: streaming generation, step-through view, logit lens, KV-cache timing over ``labkit.generate``."""
from __future__ import annotations

import time

from ._base import Magic, MagicParser, require_body
from ..errors import LabkitUsageError

parser = MagicParser(
    "%%generate",
    description="Continue the cell text with a causal LM, streaming tokens into the cell as they are produced.",
    epilog="""examples:
  %%generate                                  tiny-base, 40 tokens, temperature 1, seed 0
  %%generate --temperature 0                  greedy
  %%generate --temperature 0.8 --top-p 0.9 --seed 3
  %%generate --beams 4 --temperature 0        beam search
  %%generate --step                           step-through view: top next tokens, sliders, logit lens
  %%generate --model tiny-chat --chat         the prompt as a user turn of the chat format
  %%generate --kv-timing                      also time the same generation with and without the KV cache
  %%generate --model openai:http://127.0.0.1:8000/v1 --temperature 0
                                              a running OpenAI-compatible server (labkit serve, llama.cpp, vLLM)""",
)
parser.add_argument("--model", default="tiny-base", help="tiny-base (default), tiny-chat, a folder or hub id, gguf:<path>, or "
                                                  "openai:<base-url> (a running OpenAI-compatible server)")
parser.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default 40)")
parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy; default 1.0")
parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
parser.add_argument("--top-p", type=float, default=None, help="nucleus: the smallest set with probability ≥ p, 0 < p ≤ 1")
parser.add_argument("--beams", type=int, default=1, help="beam search with this many beams")
parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
parser.add_argument("--step", action="store_true", help="step-through view with probabilities and the logit lens")
parser.add_argument("--chat", action="store_true", help="wrap the prompt in the chat format (for tiny-chat)")
parser.add_argument("--kv-timing", action="store_true", help="time the same generation with and without the KV cache")
parser.add_argument("--no-stream", action="store_true", help="show the text only at the end")


class _Stream:
    """Tokens into the cell as they arrive: one display handle, updated at most every 0.1 s (keeps the overhead
    of streaming far below the cost of a forward pass)."""

    def __init__(self, prompt: str):
        from IPython.display import display

        self.prompt, self.text, self.last = prompt, "", 0.0
        self.handle = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self, done=False):
        import html

        cursor = "" if done else "▌"
        return {"text/plain": self.prompt + self.text + cursor,
                "text/html": f"<div class='lk-gen-stream' style='white-space:pre-wrap;font-family:monospace'>"
                             f"<span style='color:#6b7280'>{html.escape(self.prompt)}</span>"
                             f"{html.escape(self.text)}{cursor}</div>"}

    def __call__(self, chunk: str):
        self.text += chunk
        now = time.perf_counter()
        if now - self.last >= 0.1:
            self.last = now
            self.handle.update(self._bundle(), raw=True)

    def close(self):
        # the result view replaces the streamed text (the cell's value shows it)
        self.handle.update({"text/plain": ""}, raw=True)


def run(args, body, shell):
    from .. import generate as engine

    prompt = require_body(body, "generate", "a prompt to continue")
    prompt = prompt.rstrip("\n")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise LabkitUsageError(f"--top-p must be in (0, 1] (the probability mass kept, e.g. 0.9), got {args.top_p}")
    stream = None
    if not args.no_stream and not args.step and args.beams == 1:
        stream = _Stream(prompt)
    try:
        return engine.generate(prompt, args.model, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, beams=args.beams, seed=args.seed,
                               step=args.step, chat=args.chat, kv_timing=args.kv_timing, on_text=stream)
    finally:
        if stream is not None:
            stream.close()


MAGICS = [Magic("generate", "cell", parser, run)]
