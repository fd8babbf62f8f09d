"""Generation engine: streaming text, a step-through view of next-token choices, the logit lens, KV-cache timing.

    >>> from labkit.generate import generate, kv_cache_timing
    >>> r = generate("Mira Vell is a", model="tiny-base", max_new_tokens=20, temperature=0.8, top_p=0.9, seed=0)
    >>> r.text, r.tokens_per_s
    >>> r = generate("Mira Vell is a", step=True)     # + r.steps: top next-token probabilities at every step
    >>> r.steps[0].top(5)                            # [(token, probability), ...]
    >>> r.lens[0]                                    # logit lens at step 0: per-layer top tokens
    >>> kv_cache_timing("Once upon a time", max_new_tokens=64)

All decoding is ``model.generate`` from transformers (greedy, sampling with temperature/top-k/top-p, beam
search); labkit adds a streamer that hands out text as tokens arrive, and reads the logits and hidden states that
``generate`` can return to draw the step-through view and the logit lens.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import LabkitError, LabkitUsageError
from .text import valid_unicode
from .viewable import Viewable
from .watch import OnProgress, Progress, Reporter

DEFAULT_MODEL = "tiny-base"
TOP_N = 20  # next-token candidates kept per step
LENS_K = 3  # top tokens per layer in the logit lens
MAX_NEW = 1024
#: below this many parameters generation runs on one thread (see ``one_thread_if_small``)
SMALL_MODEL = 20_000_000


@contextmanager
def one_thread_if_small(net):
    """Run a tiny model's token-by-token loop on one torch thread.

    A step of a few-million-parameter model is a handful of ~100 µs matmuls: splitting them over threads costs more
    in synchronisation than it saves, and on a shared machine (a classroom hub) the extra threads spin against
    other kernels. Measured here under load: 1 thread ~40 tokens/s, 2 threads ~3 tokens/s for tiny-base.
    """
    import torch

    before = torch.get_num_threads()
    small = sum(p.numel() for p in net.parameters()) < SMALL_MODEL
    if not small or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Settings:
    max_new_tokens: int = 40
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    beams: int = 1
    seed: int | None = 0

    def check(self) -> "Settings":
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= MAX_NEW:
            raise LabkitUsageError(f"`max_new_tokens` must be a whole number from 1 to {MAX_NEW}, got {self.max_new_tokens!r}")
        try:
            t = float(self.temperature)
        except (TypeError, ValueError):
            t = -1.0
        if not 0 <= t <= 100 or t != t:
            raise LabkitUsageError(f"`temperature` must be 0 (greedy) or a positive number such as 0.7, "
                                   f"got {self.temperature!r}")
        self.temperature = t
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1):
            raise LabkitUsageError(f"`top_k` must be a whole number ≥ 1 (the number of candidates kept), got {self.top_k!r}")
        if self.top_p is not None:
            try:
                p = float(self.top_p)
            except (TypeError, ValueError):
                p = -1.0
            if not 0 < p <= 1:
                raise LabkitUsageError(f"`top_p` must be in (0, 1] (the probability mass kept, e.g. 0.9), "
                                       f"got {self.top_p!r}")
            self.top_p = p
        if isinstance(self.beams, bool) or not isinstance(self.beams, int) or not 1 <= self.beams <= 16:
            raise LabkitUsageError(f"`beams` must be a whole number from 1 to 16, got {self.beams!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise LabkitUsageError(f"`seed` must be a whole number, got {self.seed!r}")
        return self

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def describe(self) -> str:
        if self.beams > 1:
            how = f"beam search ({self.beams} beams)"
        elif not self.sampling:
            how = "greedy"
        else:
            how = f"sampling T={self.temperature:g}"
            if self.top_k:
                how += f", top-k {self.top_k}"
            if self.top_p is not None and self.top_p < 1:
                how += f", top-p {self.top_p:g}"
            how += f", seed {self.seed}"
        return how

    def generate_kwargs(self) -> dict:
        kw: dict[str, Any] = dict(max_new_tokens=self.max_new_tokens, num_beams=self.beams)
        if self.sampling and self.beams == 1:
            kw.update(do_sample=True, temperature=self.temperature, top_k=self.top_k or 0,
                      top_p=self.top_p if self.top_p is not None else 1.0)
        else:
            kw.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        return kw


@dataclass
class Step:
    """One generated token and the distribution it was drawn from."""

    token_id: int
    token: str
    prob: float  # probability of the chosen token under the decoding settings
    raw_prob: float  # ... under the model's own distribution (temperature 1, nothing cut)
    rank: int  # rank of the chosen token in the model's distribution (0 = the most likely)
    top_ids: list[int]
    top_tokens: list[str]
    top_raw: list[float]  # model probabilities of the TOP_N most likely tokens
    top_probs: list[float]  # their probabilities after temperature / top-k / top-p (0 = cut)

    def top(self, k: int = 5, processed: bool = False) -> list[tuple[str, float]]:
        vals = self.top_probs if processed else self.top_raw
        return list(zip(self.top_tokens[:k], [round(v, 4) for v in vals[:k]]))


@dataclass
class LensRow:
    layer: str  # 'embeddings', 'layer 0', ..., 'layer 5 (output)'
    tokens: list[str]
    probs: list[float]


@dataclass
class KVTiming:
    """The same greedy generation with and without the KV cache."""

    new_tokens: int
    with_cache_s: float
    without_cache_s: float

    @property
    def speedup(self) -> float:
        return self.without_cache_s / max(self.with_cache_s, 1e-9)

    def __repr__(self):
        return (f"KV cache: {self.new_tokens} tokens in {self.with_cache_s:.3f} s with the cache "
                f"({self.new_tokens / max(self.with_cache_s, 1e-9):.0f} tok/s), {self.without_cache_s:.3f} s without "
                f"({self.new_tokens / max(self.without_cache_s, 1e-9):.0f} tok/s): {self.speedup:.1f}× faster with it")


@dataclass
class GenerateResult(Viewable):
    model: str
    prompt: str
    text: str  # the generated continuation
    token_ids: list[int]
    tokens: list[str]
    n_prompt_tokens: int
    settings: Settings
    seconds: float
    stop: str  # 'eos' | 'length'
    notes: list[str] = field(default_factory=list)
    steps: list[Step] | None = None
    lens: list[list[LensRow]] | None = None  # per step: one row per layer
    kv: KVTiming | None = None
    n_tokens: int | None = None  # new tokens as counted by a server (``openai:`` models: no token ids here)
    _regenerate: Any = field(default=None, repr=False, compare=False)

    @property
    def n_new_tokens(self) -> int:
        return self.n_tokens if self.n_tokens is not None else len(self.token_ids)

    @property
    def tokens_per_s(self) -> float:
        return self.n_new_tokens / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.model} · {self.settings.describe()} · {self.n_new_tokens} new tokens in {self.seconds:.2f} s "
                f"({self.tokens_per_s:.0f} tok/s) · stopped: {'end token' if self.stop == 'eos' else 'max tokens'}")

    def __repr__(self):
        lines = [self.prompt + self.text, "", self.summary()]
        if self.steps:
            lines.append("steps (chosen token: its probability, rank; the model's top 3):")
            for i, s in enumerate(self.steps[:30]):
                tops = ", ".join(f"{t!r} {p:.2f}" for t, p in s.top(3))
                lines.append(f"  {i:>3} {s.token!r:<12} p={s.prob:.2f} rank {s.rank} | {tops}")
        if self.kv:
            lines.append(repr(self.kv))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ streaming
def make_streamer(tokenizer, on_text: Callable[[str], None]):
    """A transformers streamer that calls ``on_text(new_text)`` as tokens arrive (prompt skipped).

    Text is decoded from all generated ids so far and only whole characters are handed out (a byte-level BPE
    token can end in the middle of a UTF-8 character).
    """
    from transformers.generation.streamers import BaseStreamer

    class CallbackStreamer(BaseStreamer):
        def __init__(self):
            self.ids: list[int] = []
            self.sent = 0
            self.prompt_seen = False

        def put(self, value):
            if not self.prompt_seen:  # generate() first puts the prompt
                self.prompt_seen = True
                return
            self.ids.extend(int(x) for x in value.reshape(-1).tolist())
            text = tokenizer.decode(self.ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                return
            if len(text) > self.sent:
                on_text(text[self.sent:])
                self.sent = len(text)

        def end(self):
            text = tokenizer.decode(self.ids, skip_special_tokens=True)
            if len(text) > self.sent:
                on_text(text[self.sent:])
                self.sent = len(text)

    return CallbackStreamer()


# ------------------------------------------------------------------------------------------------ engine
def _resolve(model):
    from . import models

    lm = models.resolve(model, kinds=("causal-lm",), use="generating text")
    if lm.tokenizer is None:
        raise LabkitError(f"{lm.name!r} has no tokenizer next to its weights; save one with tokenizer.save_pretrained")
    return lm


def _encode_prompt(lm, prompt: str, chat: bool, notes: list[str]):
    tok, net = lm.tokenizer, lm.model
    if chat:
        from .zoo.formats import format_chat

        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        else:
            prompt = format_chat([{"role": "user", "content": prompt}], add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=not chat)
    from . import models

    limit = models.context_length(net, tok)
    return prompt, enc, limit


def _labels(tok, ids) -> list[str]:
    return [tok.decode([i], clean_up_tokenization_spaces=False) for i in ids]


def generate(prompt: str, model: Any = DEFAULT_MODEL, *, max_new_tokens: int = 40, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, beams: int = 1, seed: int | None = 0,
             step: bool = False, lens: bool | None = None, chat: bool = False, kv_timing: bool = False,
             on_text: Callable[[str], None] | None = None, on_progress: OnProgress | None = None) -> GenerateResult:
    """Generate a continuation of ``prompt`` with ``model.generate``.

    ``temperature=0`` is greedy; ``beams>1`` is beam search. ``on_text(chunk)`` is called as text arrives
    (not with beams). ``step=True`` records the top next-token probabilities at every step (and the logit lens
    unless ``lens=False``). ``chat=True`` wraps the prompt in the zoo chat format as a user turn.
    ``kv_timing=True`` also times the same greedy generation with and without the KV cache. ``on_progress``:
    the common progress callback (``labkit.watch.Progress``, kind ``"token"``: ``done`` new tokens of ``total``,
    ``item`` the new text), as the text streams and once at the end.
    """
    import torch

    if not isinstance(prompt, str) or not prompt.strip():
        raise LabkitUsageError("there is no prompt: give some text to continue (the cell body under %%generate)")
    prompt, bad_prompt = valid_unicode(prompt, "the prompt")
    settings = Settings(max_new_tokens, temperature, top_k, top_p, beams, seed).check()
    if step and settings.beams > 1:
        raise LabkitUsageError("`step` shows one sequence token by token; it does not combine with `beams`. "
                               "Drop `beams`, or drop `step` to see the beam-search result")
    if _is_openai(model):
        if step or kv_timing or settings.beams > 1 or settings.top_k:
            raise LabkitUsageError("an openai: model runs on a server that labkit reaches over HTTP, for plain "
                                   "sampling only: `step`, `beams`, `top_k` and `kv_timing` need a transformers "
                                   "model (drop them, or give a zoo name)")
        return _generate_openai(prompt, model, settings, chat=chat, on_text=on_text, on_progress=on_progress,
                                notes=[bad_prompt] if bad_prompt else [])
    if _is_gguf(model):
        if step or kv_timing or settings.beams > 1:
            raise LabkitUsageError("a GGUF model runs in llama.cpp, which labkit drives for plain sampling only: "
                                   "`step`, `beams` and `kv_timing` need a transformers model (drop them, or give "
                                   "the zoo name the GGUF was exported from)")
        return _generate_gguf(prompt, model, settings, chat=chat, on_text=on_text, on_progress=on_progress,
                              notes=[bad_prompt] if bad_prompt else [])
    lm = _resolve(model)
    net, tok = lm.model, lm.tokenizer
    notes: list[str] = [bad_prompt] if bad_prompt else []
    full_prompt, enc, limit = _encode_prompt(lm, prompt, chat, notes)
    n_prompt = enc["input_ids"].shape[1]
    if n_prompt + settings.max_new_tokens > limit:
        keep = max(1, limit - settings.max_new_tokens)
        if keep < n_prompt:
            enc = {k: v[:, -keep:] for k, v in enc.items()}
            notes.append(f"the prompt has {n_prompt} tokens; with {settings.max_new_tokens} new tokens it would "
                         f"pass {lm.name}'s {limit} positions, so only its last {keep} tokens were used")
            n_prompt = keep
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    kw = settings.generate_kwargs()
    gc = net.generation_config
    pad = gc.pad_token_id if gc.pad_token_id is not None else (tok.pad_token_id if tok.pad_token_id is not None else
                                                               (gc.eos_token_id if isinstance(gc.eos_token_id, int) else 0))
    kw["pad_token_id"] = pad
    want_lens = step if lens is None else lens
    if step:
        kw.update(return_dict_in_generate=True, output_logits=True, output_scores=True,
                  output_hidden_states=want_lens)
    streamer = None
    report = Reporter(on_progress)
    if on_text is not None or report:
        if settings.beams > 1:
            notes.append("beam search keeps several candidates until the end, so its text cannot stream: shown at the end")
        else:
            def on_chunk(chunk: str) -> None:
                if on_text is not None:
                    on_text(chunk)
                report(Progress("token", done=len(streamer.ids), total=settings.max_new_tokens, item=chunk))

            streamer = make_streamer(tok, on_chunk)
            kw["streamer"] = streamer
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    try:
        with torch.no_grad(), one_thread_if_small(net):
            out = net.generate(**inputs, **kw)
    except torch.OutOfMemoryError if hasattr(torch, "OutOfMemoryError") else MemoryError:  # pragma: no cover
        raise LabkitError("generation ran out of memory: ask for fewer `max_new_tokens` or `beams`") from None
    seconds = time.perf_counter() - t0
    seq = out.sequences if step else out
    new_ids = seq[0, n_prompt:].tolist()
    eos = gc.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    stop = "eos" if new_ids and new_ids[-1] in eos_ids else "length"
    text = tok.decode(new_ids, skip_special_tokens=True)
    result = GenerateResult(model=lm.name, prompt=full_prompt, text=text, token_ids=new_ids,
                            tokens=_labels(tok, new_ids), n_prompt_tokens=n_prompt, settings=settings,
                            seconds=seconds, stop=stop, notes=notes)
    if step:
        result.steps = _steps(tok, out, new_ids)
        if want_lens and getattr(out, "hidden_states", None):
            result.lens = logit_lens_steps(net, tok, out.hidden_states)
    if kv_timing:
        result.kv = kv_cache_timing(full_prompt, lm, max_new_tokens=settings.max_new_tokens)
    result._regenerate = lambda **changes: generate(
        prompt, lm, **{**dict(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                              top_k=settings.top_k, top_p=settings.top_p, beams=settings.beams, seed=settings.seed,
                              step=step, lens=want_lens, chat=chat), **changes})
    report(Progress("token", done=len(new_ids), total=settings.max_new_tokens, state="done", item=text))
    return result


def _is_openai(model) -> bool:
    if isinstance(model, str):
        return model.strip().startswith("openai:")
    return getattr(model, "kind", None) == "openai"


def _generate_openai(prompt: str, model, settings: Settings, *, chat: bool, on_text, on_progress,
                     notes: list[str]) -> GenerateResult:
    """The same sampling settings sent to an OpenAI-compatible server (``openai:<base-url>``) with the official
    ``openai`` client, streamed: ``/v1/completions`` continues the raw prompt, ``chat=True`` sends it as a user
    turn to ``/v1/chat/completions`` (the server applies its own chat template). Nothing is loaded here."""
    from . import models
    from .agent.chat_models import _probe_openai

    lm = models.resolve(model, kinds=("openai",), use="generating text")
    url = lm.load_kwargs["base_url"]
    if not url.startswith(("http://", "https://")):
        raise LabkitUsageError(f"model: openai:<base-url> needs an http(s) URL such as openai:http://127.0.0.1:8000/v1, "
                               f"not {url!r}")
    import os

    from openai import OpenAI, OpenAIError

    key = os.environ.get("OPENAI_API_KEY") or "not-needed"
    served = _probe_openai(url, key, 3.0)
    name = served[0] if served else "default"
    client = OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)
    kw: dict[str, Any] = dict(model=name, max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                              stream=True)
    if settings.top_p is not None:
        kw["top_p"] = settings.top_p
    if settings.seed is not None:
        kw["seed"] = settings.seed
    report = Reporter(on_progress)
    pieces: list[str] = []
    finish, usage = None, None
    t0 = time.perf_counter()
    try:
        if chat:
            stream = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **kw)
        else:
            stream = client.completions.create(prompt=prompt, **kw)
        for chunk in stream:
            usage = getattr(chunk, "usage", None) or usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            text = (choice.delta.content if chat else choice.text) or ""
            finish = choice.finish_reason or finish
            if text:
                pieces.append(text)
                if on_text is not None:
                    on_text(text)
                report(Progress("token", done=len(pieces), total=settings.max_new_tokens, item=text))
    except OpenAIError as exc:
        raise LabkitError(f"the server at {url} failed: {exc}") from None
    seconds = time.perf_counter() - t0
    text = "".join(pieces)
    n_new = getattr(usage, "completion_tokens", None) or len(pieces)
    n_prompt = getattr(usage, "prompt_tokens", None) or 0
    if usage is None:
        notes.append("the server sent no token counts: each streamed chunk is counted as one token")
    result = GenerateResult(model=f"openai:{url} ({name})", prompt=prompt, text=text, token_ids=[], tokens=pieces,
                            n_prompt_tokens=n_prompt, settings=settings, seconds=seconds,
                            stop="eos" if finish == "stop" else "length", notes=notes, n_tokens=n_new)
    result._regenerate = lambda **changes: generate(
        prompt, model, **{**dict(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                 top_p=settings.top_p, seed=settings.seed, chat=chat), **changes})
    report(Progress("token", done=n_new, total=settings.max_new_tokens, state="done", item=text))
    return result


def _is_gguf(model) -> bool:
    if isinstance(model, str):
        return model.startswith("gguf:") or model.lower().endswith(".gguf")
    return getattr(model, "kind", None) == "gguf"


def _gguf_chat_prompt(llm, prompt: str) -> str:
    """The user turn in the GGUF's own chat template (what llama.cpp's server would use), else the zoo format."""
    from .zoo.formats import format_chat

    template = (getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template")
    messages = [{"role": "user", "content": prompt}]
    if not template:
        return format_chat(messages, add_generation_prompt=True)
    import jinja2

    return jinja2.Environment().from_string(template).render(messages=messages, add_generation_prompt=True)


def _generate_gguf(prompt: str, model, settings: Settings, *, chat: bool, on_text, on_progress,
                   notes: list[str]) -> GenerateResult:
    """The same sampling settings, run by llama.cpp (llama-cpp-python's token generator) on a GGUF file."""
    from . import models

    lm = models.resolve(model, kinds=("gguf",), use="generating text")
    llm = lm.model
    full_prompt = _gguf_chat_prompt(llm, prompt) if chat else prompt
    ids = llm.tokenize(full_prompt.encode("utf-8"), add_bos=False, special=True)
    limit = int(llm.n_ctx())
    if len(ids) + settings.max_new_tokens > limit:
        keep = max(1, limit - settings.max_new_tokens)
        if keep < len(ids):
            notes.append(f"the prompt has {len(ids)} tokens; with {settings.max_new_tokens} new tokens it would pass "
                         f"the {limit}-token context, so only its last {keep} tokens were used")
            ids = ids[-keep:]
    stops = {int(llm.token_eos())}
    for name in ("<|end|>", "<|im_end|>", "<|eot_id|>"):
        t = llm.tokenize(name.encode(), add_bos=False, special=True)
        if len(t) == 1:
            stops.add(int(t[0]))
    greedy = settings.temperature == 0
    if settings.seed is not None:
        llm.set_seed(int(settings.seed))
    report = Reporter(on_progress)
    llm.reset()
    new_ids: list[int] = []
    raw = b""
    shown = ""
    stop = "length"
    t0 = time.perf_counter()
    for tid in llm.generate(ids, temp=0.0 if greedy else float(settings.temperature),
                            top_k=1 if greedy else int(settings.top_k or 0),
                            top_p=1.0 if greedy or settings.top_p is None else float(settings.top_p),
                            min_p=0.0, repeat_penalty=1.0, reset=True):
        if int(tid) in stops:
            stop = "eos"
            break
        new_ids.append(int(tid))
        raw += llm.detokenize([int(tid)], prev_tokens=None)
        text = raw.decode("utf-8", errors="ignore")
        if text != shown:
            if on_text is not None:
                on_text(text[len(shown):])
            report(Progress("token", done=len(new_ids), total=settings.max_new_tokens, item=text[len(shown):]))
            shown = text
        if len(new_ids) >= settings.max_new_tokens:
            break
    seconds = time.perf_counter() - t0
    text = raw.decode("utf-8", errors="replace")
    labels = [llm.detokenize([i]).decode("utf-8", errors="replace") for i in new_ids]
    result = GenerateResult(model=lm.name, prompt=full_prompt, text=text, token_ids=new_ids, tokens=labels,
                            n_prompt_tokens=len(ids), settings=settings, seconds=seconds, stop=stop, notes=notes)
    result._regenerate = lambda **changes: generate(
        prompt, lm, **{**dict(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                              top_k=settings.top_k, top_p=settings.top_p, seed=settings.seed, chat=chat), **changes})
    report(Progress("token", done=len(new_ids), total=settings.max_new_tokens, state="done", item=text))
    return result


def _steps(tok, out, new_ids) -> list[Step]:
    import torch

    steps = []
    for k, chosen in enumerate(new_ids):
        raw = torch.log_softmax(out.logits[k][0].float(), dim=-1)
        proc = torch.softmax(out.scores[k][0].float(), dim=-1)  # after temperature/top-k/top-p; -inf -> 0
        top = torch.topk(raw, TOP_N)
        ids = top.indices.tolist()
        rank = int((raw > raw[chosen]).sum())
        steps.append(Step(chosen, tok.decode([chosen], clean_up_tokenization_spaces=False),
                          float(proc[chosen]), float(raw[chosen].exp()), rank, ids, _labels(tok, ids),
                          top.values.exp().tolist(), proc[top.indices].tolist()))
    return steps


def _final_norm(net):
    base = getattr(net, "model", None) or getattr(net, "transformer", None)
    for name in ("norm", "ln_f", "final_layer_norm"):
        if base is not None and hasattr(base, name):
            return getattr(base, name)
    return None


def logit_lens_steps(net, tok, hidden_states) -> list[list[LensRow]]:
    """Per generated step: read every layer's hidden state at the last position through the final norm and the
    output head (nostalgebraist's "logit lens"). The last entry of ``hidden_states`` is already normed."""
    import torch

    head = net.get_output_embeddings()
    norm = _final_norm(net)
    out = []
    with torch.no_grad():
        for per_step in hidden_states:
            rows = []
            n = len(per_step)
            for i, h in enumerate(per_step):
                x = h[0, -1].float()
                if i < n - 1 and norm is not None:
                    x = norm(x)
                probs = torch.softmax(head(x), dim=-1)
                top = torch.topk(probs, LENS_K)
                name = "embeddings" if i == 0 else f"layer {i - 1}" + (" (output)" if i == n - 1 else "")
                rows.append(LensRow(name, _labels(tok, top.indices.tolist()), top.values.tolist()))
            out.append(rows)
    return out


def logit_lens(prompt: str, model: Any = DEFAULT_MODEL) -> list[LensRow]:
    """The logit lens at the last position of ``prompt``: what each layer would predict next."""
    import torch

    if not isinstance(prompt, str) or not prompt.strip():
        raise LabkitUsageError("logit_lens needs a non-empty prompt")
    lm = _resolve(model)
    enc = lm.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = lm.model(**enc, output_hidden_states=True)
    return logit_lens_steps(lm.model, lm.tokenizer, [out.hidden_states])[0]


def kv_cache_timing(prompt: str, model: Any = DEFAULT_MODEL, *, max_new_tokens: int = 64) -> KVTiming:
    """Time the same greedy generation with the KV cache (the default) and without it (every step re-reads the
    whole sequence). Both runs are forced to the same length."""
    import torch

    lm = _resolve(model)
    net, tok = lm.model, lm.tokenizer
    enc = tok(prompt, return_tensors="pt")
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    pad = net.generation_config.pad_token_id or 0
    times = {}
    for use_cache in (True, False):
        with torch.no_grad(), one_thread_if_small(net):
            net.generate(**inputs, max_new_tokens=2, do_sample=False, use_cache=use_cache, pad_token_id=pad)  # warm
            t0 = time.perf_counter()
            out = net.generate(**inputs, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                               do_sample=False, use_cache=use_cache, pad_token_id=pad)
            times[use_cache] = time.perf_counter() - t0
    return KVTiming(out.shape[1] - inputs["input_ids"].shape[1], times[True], times[False])
