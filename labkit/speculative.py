"""Speculative decoding, greedy: a small *draft* model proposes ``k`` tokens, the *target* checks all of them in
one forward pass, keeps the longest prefix it agrees with and adds its own next token. The output is exactly the
target's greedy output; what changes is how many target passes it takes. The acceptance rate (proposed tokens
the target kept) decides whether it pays: a target pass that checks ``k`` tokens costs about one pass, a draft
pass costs a fraction of one.

Written out here (no KV cache, batch of one) to measure the acceptance rate and to check the result against plain
greedy decoding; for speed, transformers' assisted generation (``model.generate(assistant_model=draft)``) does
the same with caches (``benchmarks/bench_speculative.py`` times both). Lab 14 has the learner write the loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import LabkitUsageError


@dataclass
class SpeculativeStats:
    new_tokens: int = 0
    proposed: int = 0
    accepted: int = 0
    target_calls: int = 0
    draft_calls: int = 0
    seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_call(self) -> float:
        return self.new_tokens / self.target_calls if self.target_calls else 0.0

    def __repr__(self):
        return (f"{self.new_tokens} tokens in {self.target_calls} target passes ({self.tokens_per_target_call:.2f} "
                f"per pass); draft proposals accepted {self.accepted}/{self.proposed} = {self.acceptance_rate:.0%}")


def speculative_generate(target, draft, input_ids, *, max_new_tokens: int = 32, k: int = 4, eos_token_id=None):
    """Greedy speculative decoding of one sequence (``input_ids``: shape (1, T)). Returns (ids, stats)."""
    import torch

    if k < 1:
        raise LabkitUsageError("k (tokens the draft proposes per step) must be at least 1")
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise LabkitUsageError("input_ids must have shape (1, T): one sequence")
    if target.config.vocab_size != draft.config.vocab_size:
        raise LabkitUsageError(f"the draft's vocabulary ({draft.config.vocab_size}) is not the target's "
                               f"({target.config.vocab_size}): they must share the tokenizer")
    eos = set([eos_token_id] if isinstance(eos_token_id, int) else (eos_token_id or []))
    ids = input_ids.clone()
    st = SpeculativeStats()
    t0 = time.perf_counter()
    with torch.no_grad():
        while st.new_tokens < max_new_tokens:
            n = min(k, max_new_tokens - st.new_tokens)
            prop = ids
            for _ in range(n):  # the draft proposes n tokens, greedily
                nxt = draft(prop).logits[0, -1].argmax()
                st.draft_calls += 1
                prop = torch.cat([prop, nxt.view(1, 1)], dim=1)
            guesses = prop[0, ids.shape[1]:]
            logits = target(prop).logits[0, ids.shape[1] - 1:]  # the target's choice at each proposed position
            st.target_calls += 1
            choice = logits.argmax(-1)
            agree = int((choice[:n] == guesses).long().cumprod(0).sum())
            st.proposed += n
            st.accepted += agree
            keep = torch.cat([guesses[:agree], choice[agree:agree + 1]])[:max_new_tokens - st.new_tokens]
            for j, t in enumerate(keep.tolist()):  # stop at an end token, as greedy decoding would
                if t in eos:
                    keep = keep[:j + 1]
                    break
            ids = torch.cat([ids, keep.view(1, -1)], dim=1)
            st.new_tokens += keep.numel()
            if keep.numel() and int(keep[-1]) in eos:
                break
    st.seconds = time.perf_counter() - t0
    return ids, st
