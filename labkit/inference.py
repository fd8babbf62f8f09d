"""Lab 14's engine: inference optimization on the zoo's Llama models, on a CPU.

* a **KV cache** you can see: ``KVCache`` holds each layer's keys and values; ``forward_with_cache`` runs a zoo
  Llama layer by layer (its own embeddings, norms, projections, rotary embeddings and MLPs) and hands attention to
  an ``attend(q, k, v, cache, layer)`` function (the learner's, in the lab; ``attend_with_cache`` is the kit's);
  ``greedy_with_cache`` and ``greedy_no_cache`` decode with and without it;
* **speculative decoding** with a pluggable accept/reject step (``speculative_decode``; the counters are
  ``labkit.speculative.SpeculativeStats``);
* **batching** simulated with real forward passes: ``make_trace``, ``simulate`` (static, dynamic, continuous);
* **attention kernels**: ``naive_attention`` vs torch's ``scaled_dot_product_attention``, timed, with the size of
  what each materialises;
* **paged-KV arithmetic**: ``kv_bytes_per_token`` from a model config, ``allocation`` (contiguous vs paged).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from .errors import LabkitUsageError
from .speculative import SpeculativeStats


# ----------------------------------------------------------------------------------------------------- KV cache
class KVCache:
    """Per layer, the keys and values of every position seen so far: tensors of shape
    (batch, key/value heads, positions, head_dim), starting empty (0 positions)."""

    def __init__(self, config, batch: int = 1, dtype=None):
        import torch

        dtype = dtype or torch.float32
        self.config = config
        n_kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        hd = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        empty = lambda: torch.zeros(batch, n_kv, 0, hd, dtype=dtype)
        self.keys = [empty() for _ in range(config.num_hidden_layers)]
        self.values = [empty() for _ in range(config.num_hidden_layers)]

    def __len__(self) -> int:
        """Positions cached (the length of layer 0's keys)."""
        return int(self.keys[0].shape[2])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def __repr__(self):
        return f"KVCache({len(self.keys)} layers, {len(self)} positions, {self.nbytes:,} bytes)"


def repeat_kv(x, n_rep: int):
    """(b, kv_heads, t, d) -> (b, kv_heads * n_rep, t, d): each key/value head serves n_rep query heads (GQA)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def attend_with_cache(q, k, v, cache: KVCache, layer: int):
    """The kit's reference: append the new keys/values to ``cache`` at ``layer``, then let the new queries attend
    to every cached position up to their own (causal). q: (b, heads, new, d); k, v: (b, kv_heads, new, d).
    Returns (b, heads, new, d)."""
    import torch
    import torch.nn.functional as F

    cache.keys[layer] = torch.cat([cache.keys[layer], k], dim=2)
    cache.values[layer] = torch.cat([cache.values[layer], v], dim=2)
    K, V = cache.keys[layer], cache.values[layer]
    rep = q.shape[1] // K.shape[1]
    K, V = repeat_kv(K, rep), repeat_kv(V, rep)
    new, total = q.shape[2], K.shape[2]
    if new == 1:
        return F.scaled_dot_product_attention(q, K, V)
    mask = torch.ones(new, total, dtype=torch.bool).tril(diagonal=total - new)
    return F.scaled_dot_product_attention(q, K, V, attn_mask=mask)


def _rotary():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    return apply_rotary_pos_emb


def forward_with_cache(model, ids, cache: KVCache, attend=attend_with_cache):
    """Logits (b, new, vocab) for the new token ids (b, new) of a Llama ``model``, positions continuing after those
    already in ``cache``; each layer's attention goes through ``attend`` (which must extend the cache)."""
    import torch

    if getattr(model.config, "model_type", "") != "llama":
        raise LabkitUsageError("forward_with_cache runs Llama models (the zoo's tiny-* models)")
    rope = _rotary()
    base = model.model
    b, new = ids.shape
    start = len(cache)
    pos = torch.arange(start, start + new).unsqueeze(0).expand(b, -1)
    with torch.no_grad():
        h = base.embed_tokens(ids)
        cos, sin = base.rotary_emb(h, pos)
        for i, layer in enumerate(base.layers):
            att = layer.self_attn
            x = layer.input_layernorm(h)
            shape = (b, new, -1, att.head_dim)
            q = att.q_proj(x).view(shape).transpose(1, 2)
            k = att.k_proj(x).view(shape).transpose(1, 2)
            v = att.v_proj(x).view(shape).transpose(1, 2)
            q, k = rope(q, k, cos, sin)
            before = cache.keys[i].shape[2]
            o = attend(q, k, v, cache, i)
            if cache.keys[i].shape[2] != before + new:
                raise LabkitUsageError(f"attend must add the {new} new keys and values to the cache at layer {i} "
                                       f"(it holds {cache.keys[i].shape[2]} positions, expected {before + new})")
            h = h + att.o_proj(o.transpose(1, 2).reshape(b, new, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return model.lm_head(base.norm(h))


def greedy_with_cache(model, input_ids, max_new_tokens: int, attend=attend_with_cache, eos=(), clock=None,
                      sizes=None):
    """Greedy decoding with a KV cache: the prompt in one pass (prefill), then one token per pass.
    Returns (ids (1, T + new), logits of each generated position (new, vocab), the cache). ``clock``: a list that
    gets ``time.perf_counter()`` after each token; ``sizes``: one that gets the cache's bytes after each pass."""
    import torch

    eos = {eos} if isinstance(eos, int) else set(eos or ())
    cache = KVCache(model.config, batch=input_ids.shape[0])
    logits = forward_with_cache(model, input_ids, cache, attend)[:, -1]
    ids, steps = input_ids, []
    for _ in range(max_new_tokens):
        steps.append(logits[0])
        nxt = logits.argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
        if clock is not None:
            clock.append(time.perf_counter())
        if sizes is not None:
            sizes.append(cache.nbytes)
        if int(nxt[0, 0]) in eos or len(steps) == max_new_tokens:
            break
        logits = forward_with_cache(model, nxt, cache, attend)[:, -1]
    return ids, torch.stack(steps), cache


def greedy_no_cache(model, input_ids, max_new_tokens: int, eos=(), clock=None):
    """Greedy decoding that recomputes the whole sequence at every step (what a KV cache saves). ``clock``: as in
    ``greedy_with_cache``."""
    import torch

    eos = {eos} if isinstance(eos, int) else set(eos or ())
    ids = input_ids
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            if clock is not None:
                clock.append(time.perf_counter())
            if int(nxt[0, 0]) in eos:
                break
    return ids


def hf_greedy(model, input_ids, max_new_tokens: int, *, use_cache: bool = True, eos=None, **extra):
    """transformers' own greedy ``generate`` (no early stop unless ``eos`` is given); returns the generate output
    with ``past_key_values`` and per-step ``logits`` when ``use_cache``."""
    import torch

    with torch.no_grad():
        return model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                              min_new_tokens=0 if eos else max_new_tokens, do_sample=False, use_cache=use_cache,
                              eos_token_id=eos, pad_token_id=model.config.pad_token_id, return_dict_in_generate=True,
                              output_logits=True, **extra)


class StepClock:
    """A transformers streamer that records ``time.perf_counter()`` at each generated token (``generate(...,
    streamer=StepClock())``; the first ``put`` is the prompt)."""

    def __init__(self, times: list | None = None):
        self.times: list[float] = times if times is not None else []
        self._prompt = True

    def put(self, value):
        if self._prompt:
            self._prompt = False
            return
        self.times.append(time.perf_counter())

    def end(self):
        pass


def time_to_n_tokens(run, lengths) -> list[float]:
    """Seconds from the start of ``run(clock)`` until its n-th token, for each n in ``lengths``, from one run:
    ``run`` gets a list to append ``time.perf_counter()`` to at each token (``StepClock(clock)`` does it for
    ``generate``)."""
    times: list[float] = []
    t0 = time.perf_counter()
    run(times)
    if len(times) < max(lengths):
        raise LabkitUsageError(f"the run produced {len(times)} tokens, fewer than {max(lengths)}")
    return [times[n - 1] - t0 for n in lengths]


def hf_cache_tensors(past) -> list[tuple]:
    """[(keys, values)] per layer of a transformers cache (DynamicCache in transformers 5, tuples before), or of the
    cache inside a model's or ``generate``'s output (``.cache``; ``.past_key_values`` before transformers 5.x)."""
    if isinstance(past, dict):  # a ModelOutput
        past = past.get("cache", past.get("past_key_values"))
    if hasattr(past, "layers"):
        return [(l.keys, l.values) for l in past.layers]
    return [(k, v) for k, v in past]


def cache_nbytes(past) -> int:
    """Bytes held by a transformers cache (or the cache in a model's or ``generate``'s output)."""
    return sum(t.numel() * t.element_size() for kv in hf_cache_tensors(past) for t in kv)


def timed(fn, repeat: int = 1) -> float:
    """The best of ``repeat`` wall-clock times of ``fn()`` in seconds."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------------------- speculative decoding
def accept_proposals(guesses, choices):
    """The kit's accept/reject step (greedy): ``guesses`` are the draft's k tokens, ``choices`` the target's greedy
    token at each of the k + 1 positions (after the prompt, after each guess). Keep the guesses up to the first one
    the target disagrees with, then the target's own token there (or its bonus token when all agree)."""
    kept = []
    for g, c in zip(guesses, choices):
        if g != c:
            break
        kept.append(g)
    kept.append(choices[len(kept)])
    return kept


def speculative_decode(target, draft, input_ids, *, max_new_tokens: int = 32, k: int = 4,
                       accept=accept_proposals, eos=()):
    """Greedy speculative decoding of one sequence, the accept/reject step given by ``accept(guesses, choices)``
    (lists of ints; returns the tokens to keep). The draft proposes k tokens, the target checks all k guesses in
    one pass over the whole sequence (no caches: this loop counts passes; transformers' ``assistant_model=`` is the
    fast version). Returns (ids, SpeculativeStats)."""
    import torch

    if target.config.vocab_size != draft.config.vocab_size:
        raise LabkitUsageError("the draft and the target must share a vocabulary")
    eos = {eos} if isinstance(eos, int) else set(eos or ())
    ids = input_ids.clone()
    st = SpeculativeStats()
    t0 = time.perf_counter()
    with torch.no_grad():
        while st.new_tokens < max_new_tokens:
            n = min(k, max_new_tokens - st.new_tokens)
            prop = ids
            for _ in range(n):  # the draft proposes n tokens, greedily (one layer: cheap without a cache)
                nxt = draft(prop, use_cache=False).logits[0, -1].argmax()
                prop = torch.cat([prop, nxt.view(1, 1)], dim=1)
                st.draft_calls += 1
            guesses = prop[0, ids.shape[1]:].tolist()
            choices = target(prop, use_cache=False).logits[0, ids.shape[1] - 1:].argmax(-1).tolist()
            st.target_calls += 1
            kept = list(accept(guesses, choices))
            if not kept or kept[:-1] != guesses[:len(kept) - 1] or len(kept) > len(guesses) + 1:
                raise LabkitUsageError(f"accept returned {kept}: it must keep a prefix of the guesses {guesses} "
                                       "and then one token of the target's")
            st.proposed += len(guesses)
            st.accepted += len(kept) - 1
            kept = kept[:max_new_tokens - st.new_tokens]
            for j, t in enumerate(kept):
                if t in eos:
                    kept = kept[:j + 1]
                    break
            ids = torch.cat([ids, torch.tensor([kept])], dim=1)
            st.new_tokens += len(kept)
            if kept[-1] in eos:
                break
    st.seconds = time.perf_counter() - t0
    return ids, st


# -------------------------------------------------------------------------------------------------- batching
@dataclass
class Request:
    rid: int
    arrival: float  # seconds after the start of the trace
    prompt_len: int
    out_len: int
    start: float = math.nan  # prefill done (first token out)
    finish: float = math.nan
    done: int = 0

    @property
    def latency(self) -> float:
        return self.finish - self.arrival

    @property
    def ttft(self) -> float:
        return self.start - self.arrival


def make_trace(n: int = 24, rate: float = 100.0, *, prompt=(8, 48), out=(4, 48), seed: int = 0) -> list[Request]:
    """``n`` requests arriving as a Poisson process of ``rate`` per second, prompt and output lengths uniform."""
    rng = random.Random(seed)
    t, reqs = 0.0, []
    for i in range(n):
        t += rng.expovariate(rate)
        reqs.append(Request(i, t, rng.randint(*prompt), rng.randint(*out)))
    return reqs


class Engine:
    """Real forward passes of a model, timed: ``prefill(prompt_len)`` and ``decode(batch)`` (one new token per
    sequence over a cache of ``context`` positions). The simulated clock advances by the measured time."""

    def __init__(self, model, context: int = 48, max_batch: int = 16):
        import torch

        self.model, self.context = model, context
        base = KVCache(model.config, batch=max_batch)
        g = torch.Generator().manual_seed(0)
        for i in range(len(base.keys)):
            shape = base.keys[i].shape[:2] + (context, base.keys[i].shape[3])
            base.keys[i] = torch.randn(shape, generator=g)
            base.values[i] = torch.randn(shape, generator=g)
        self.base, self.calls, self.seconds = base, 0, 0.0

    def _time(self, fn) -> float:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        self.calls += 1
        self.seconds += dt
        return dt

    def prefill(self, prompt_len: int) -> float:
        import torch

        ids = torch.zeros(1, prompt_len, dtype=torch.long)
        return self._time(lambda: forward_with_cache(self.model, ids, KVCache(self.model.config)))

    def decode(self, batch: int) -> float:
        import torch

        cache = KVCache(self.model.config, batch=batch)
        cache.keys = [k[:batch] for k in self.base.keys]
        cache.values = [v[:batch] for v in self.base.values]
        ids = torch.zeros(batch, 1, dtype=torch.long)
        return self._time(lambda: forward_with_cache(self.model, ids, cache))


def simulate(trace: list[Request], policy: str, engine: Engine, *, max_batch: int = 8, max_wait: float = 0.01):
    """Serve a copy of ``trace`` with one of three policies and return the served requests.

    * ``static``: fixed batches of ``max_batch`` in arrival order; a batch starts once it is full (or the trace
      has no more requests) and runs until its longest request is done;
    * ``dynamic``: when the server is free, take whatever has arrived (up to ``max_batch``; if nothing, wait for
      the next request, then up to ``max_wait`` for more); run the batch to the end of its longest request;
    * ``continuous``: after every decode step, finished requests leave and waiting ones join (prefill first).
    Each prefill (one per request) and each decode step is a real forward pass, timed."""
    if policy not in ("static", "dynamic", "continuous"):
        raise LabkitUsageError("policy is one of static, dynamic, continuous")
    reqs = [Request(r.rid, r.arrival, r.prompt_len, r.out_len) for r in trace]
    clock, queue = 0.0, list(reqs)

    def run_to_end(batch):
        nonlocal clock
        clock = max(clock, max(r.arrival for r in batch))
        for r in batch:
            clock += engine.prefill(r.prompt_len)
            r.start, r.done = clock, 1
        while any(r.done < r.out_len for r in batch):
            clock += engine.decode(len(batch))  # finished sequences still occupy their slot (padding)
            for r in batch:
                if r.done < r.out_len:
                    r.done += 1
                    if r.done == r.out_len:
                        r.finish = clock
        for r in batch:
            if r.out_len == 1:
                r.finish = r.start

    if policy == "static":
        for i in range(0, len(queue), max_batch):
            run_to_end(queue[i:i + max_batch])
    elif policy == "dynamic":
        while queue:
            clock = max(clock, queue[0].arrival)
            if sum(r.arrival <= clock for r in queue) < max_batch:
                clock = min(clock + max_wait, max(clock, queue[min(max_batch, len(queue)) - 1].arrival))
            batch = [r for r in queue if r.arrival <= clock][:max_batch]
            queue = queue[len(batch):]
            run_to_end(batch)
    else:
        active: list[Request] = []
        while queue or active:
            if not active and queue:
                clock = max(clock, queue[0].arrival)
            while queue and queue[0].arrival <= clock and len(active) < max_batch:
                r = queue.pop(0)
                clock += engine.prefill(r.prompt_len)
                r.start, r.done = clock, 1
                if r.done >= r.out_len:
                    r.finish = clock
                else:
                    active.append(r)
            if active:
                clock += engine.decode(len(active))
                for r in active:
                    r.done += 1
                    if r.done == r.out_len:
                        r.finish = clock
                active = [r for r in active if r.done < r.out_len]
    return reqs


def summarize(served: list[Request]) -> dict:
    """Throughput (output tokens per second of the simulated clock) and latency figures of a served trace."""
    first = min(r.arrival for r in served)
    end = max(r.finish for r in served)
    lat = sorted(r.latency for r in served)
    return {"throughput": sum(r.out_len for r in served) / (end - first),
            "mean_latency": sum(lat) / len(lat),
            "p90_latency": lat[min(len(lat) - 1, int(0.9 * len(lat)))],
            "mean_ttft": sum(r.ttft for r in served) / len(served),
            "makespan": end - first}


# -------------------------------------------------------------------------------------------------- attention
def naive_attention(q, k, v):
    """Causal attention written out: the full (t x t) score matrix, masked, softmaxed."""
    import torch

    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


def sdpa_attention(q, k, v):
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def peak_memory(fn) -> int:
    """Peak bytes torch allocated on the CPU while ``fn()`` ran, above what was allocated before (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live, peak = 0, 0
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


# ------------------------------------------------------------------------------------------ paged-KV arithmetic
def kv_bytes_per_token(config, bytes_per_value: int = 4) -> int:
    """The kit's reference: keys and values, every layer, every key/value head, head_dim values each."""
    n_kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    hd = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * n_kv * hd * bytes_per_value


@dataclass
class Allocation:
    used: int  # token slots holding a real token
    reserved: int  # token slots allocated
    per_token: int = 0

    @property
    def waste(self) -> float:
        return 1 - self.used / self.reserved if self.reserved else 0.0

    @property
    def reserved_bytes(self) -> int:
        return self.reserved * self.per_token


def allocation(lengths, *, max_len: int, block: int | None = None, per_token: int = 0) -> Allocation:
    """Token slots reserved for sequences of ``lengths``: contiguous (``block=None``: each reserves ``max_len``, as
    a server that cannot know the final length must) or paged (whole blocks of ``block`` tokens, as vLLM)."""
    used = sum(lengths)
    reserved = len(lengths) * max_len if block is None else sum(-(-n // block) * block for n in lengths)
    return Allocation(used, reserved, per_token)
