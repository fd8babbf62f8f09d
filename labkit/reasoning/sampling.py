"""Sampling from the arithmetic model: greedy or at a temperature, many chains per prompt, tokens counted.

    >>> outs = complete(model, tok, ["C:3+5+8="], n=5, temperature=0.8, seed=0)
    >>> outs[0][0].text, outs[0][0].tokens, outs[0][0].logprob

Plain results: one list per prompt of ``Sample(text, tokens, logprob)``, where ``tokens`` counts the tokens the
model generated (the compute it spent) and ``logprob`` is their summed log-probability under the model
(temperature 1, whatever temperature they were sampled at).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    text: str
    tokens: int
    logprob: float


def _ids(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def complete(model, tok, prompts, n: int = 1, temperature: float = 0.0, max_new_tokens: int = 64, seed: int = 0,
             batch_size: int = 2048, stop: str = "") -> list[list[Sample]]:
    """``n`` completions of each prompt (greedy when ``temperature`` is 0: then ``n`` copies of one).

    ``stop``: extra characters that end a completion (kept in its text), e.g. ``",."`` for one reasoning step.
    The end-of-text token always ends one (it is not in the text).
    """
    import torch

    eos = [tok.eos_token_id] + [tok.convert_tokens_to_ids(c) for c in stop]
    greedy = temperature <= 0
    reps = 1 if greedy else n
    rows = [(i, ids) for i, ids in enumerate(_ids(tok, prompts)) for _ in range(reps)]
    out: list[list[Sample]] = [[] for _ in prompts]
    pad = tok.pad_token_id
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        L = max(len(ids) for _, ids in chunk)
        inp = torch.tensor([[pad] * (L - len(ids)) + ids for _, ids in chunk])
        att = (torch.arange(L)[None, :] >= torch.tensor([L - len(ids) for _, ids in chunk])[:, None]).long()
        kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=float(temperature), top_k=0,
                                                       top_p=1.0)
        with torch.no_grad():
            g = model.generate(input_ids=inp, attention_mask=att, max_new_tokens=max_new_tokens, eos_token_id=eos,
                               pad_token_id=pad, return_dict_in_generate=True, output_logits=True, **kw)
        new = g.sequences[:, L:]
        logp = torch.stack([torch.log_softmax(l.float(), -1) for l in g.logits], 1) if g.logits else None
        for r, (i, _) in enumerate(chunk):
            toks, lp = [], 0.0
            for t in range(new.shape[1]):
                tid = int(new[r, t])
                lp += float(logp[r, t, tid])
                toks.append(tid)
                if tid in eos:
                    break
            n_tok = len(toks)
            if toks and toks[-1] == tok.eos_token_id:
                toks = toks[:-1]
            s = Sample(tok.decode(toks, skip_special_tokens=True), n_tok, lp)
            out[i].extend([s] * (n if greedy else 1))
    if was_training:
        model.train()
    return out
