"""Verifiers and search over reasoning steps: best-of-N with an outcome or a process reward, and beam search.

- an **outcome reward** looks only at the final answer. Ours is learned: the same model asked for the answer
  directly (``D:`` mode) scores how likely the chain's final answer is (``outcome_scores``). It never sees steps.
- a **process reward** scores every step. Ours is a rule (``problems.step_scores``): is this step ``a<op>b=c``
  with the running result, the next operation and number, and the right result? A chain's process reward is
  its weakest step.
- **best-of-N** samples N chains and keeps the one its reward likes best.
- **beam search** grows chains one step at a time: each of ``beam`` partial chains proposes ``expand`` next
  steps, the process reward (then the model's log-probability) ranks them, and the best ``beam`` go on.
"""
from __future__ import annotations

from dataclasses import dataclass

from .problems import parse_answer, parse_steps, step_scores
from .sampling import complete


def process_reward(problem, text, scorer=step_scores) -> float:
    """A chain's process reward: the lowest of its step scores (0 for a chain with more or fewer steps than
    the problem has operations)."""
    steps = parse_steps(text)
    if len(steps) != len(problem.ops):
        return 0.0
    scores = scorer(problem, steps)
    return float(min(scores)) if scores else 0.0


def outcome_scores(model, tok, problems, texts) -> list[float]:
    """Log-probability that the model, asked directly (``D:``), gives each chain's final answer.

    ``texts``: one completion per problem (same order). A chain without an answer scores -inf.
    """
    import torch

    pad = tok.pad_token_id
    rows, keep = [], []
    for p, t in zip(problems, texts):
        a = parse_answer(t)
        if a is None:
            keep.append(False)
            continue
        keep.append(True)
        pr = tok(p.prompt("direct"), add_special_tokens=False)["input_ids"]
        co = tok(f"Answer: {a}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((pr + co, len(pr)))
    scores = []
    was_training = model.training
    model.eval()
    for start in range(0, len(rows), 1024):
        chunk = rows[start:start + 1024]
        L = max(len(r) for r, _ in chunk)
        ids = torch.tensor([r + [pad] * (L - len(r)) for r, _ in chunk])
        att = torch.tensor([[1] * len(r) + [0] * (L - len(r)) for r, _ in chunk])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=att).logits.float(), -1)
        for j, (r, n_prompt) in enumerate(chunk):
            scores.append(float(sum(logp[j, t - 1, r[t]] for t in range(n_prompt, len(r)))))
    if was_training:
        model.train()
    it = iter(scores)
    return [next(it) if k else float("-inf") for k in keep]


def best_of_n(problems, samples, score) -> list:
    """For each problem, the sample with the highest ``score(problem, sample)`` (the first one on a tie)."""
    out = []
    for p, ss in zip(problems, samples):
        vals = [score(p, s) for s in ss]
        out.append(ss[max(range(len(ss)), key=lambda i: (vals[i], -i))])
    return out


@dataclass
class BeamResult:
    texts: list  # the chosen chain of each problem
    tokens: list  # tokens generated for each problem (all proposals, kept or not)
    accuracy: float


def beam_search(model, tok, problems, beam: int = 2, expand: int = 4, temperature: float = 1.0,
                step_score=step_scores, max_steps: int | None = None, seed: int = 0) -> BeamResult:
    """Step-level beam search guided by a process reward (``step_score(problem, steps) -> list of scores``).

    Each round, every live partial chain samples ``expand`` next steps (up to the next ``,`` or ``.``); all
    candidates of a problem are ranked by the sum of their step scores, then by log-probability, and the best
    ``beam`` are kept. A chain is finished when it has written ``Answer: N``. Tokens count every proposal.
    """
    beams = [[("", 0.0)] for _ in problems]  # per problem: (text so far, logprob)
    done: list[list] = [[] for _ in problems]
    tokens = [0] * len(problems)
    rounds = max_steps or max(p.terms for p in problems) + 2
    for r in range(rounds):
        prompts, owners = [], []
        for i, (p, bs) in enumerate(zip(problems, beams)):
            for text, lp in bs:
                prompts.append(p.prompt("cot") + text)
                owners.append((i, text, lp))
        if not prompts:
            break
        outs = complete(model, tok, prompts, n=expand, temperature=temperature, max_new_tokens=16, stop=",.",
                        seed=seed + r)
        cands: list[list] = [[] for _ in problems]
        for (i, text, lp), ss in zip(owners, outs):
            for s in ss:
                tokens[i] += s.tokens
                new = text + s.text
                cands[i].append((new, lp + s.logprob))
        for i, p in enumerate(problems):
            def key(c, p=p):
                steps = parse_steps(c[0])
                return (sum(step_score(p, steps)) if steps else 0.0, c[1])
            uniq = {}
            for c in cands[i]:
                if c[0] not in uniq or c[1] > uniq[c[0]][1]:
                    uniq[c[0]] = c
            ranked = sorted(uniq.values(), key=key, reverse=True)
            live = []
            for c in ranked:
                if "Answer" in c[0]:
                    done[i].append(c)
                else:
                    live.append(c)
            beams[i] = live[:beam] if len(done[i]) < beam else []
    texts = []
    for i, p in enumerate(problems):
        pool = done[i] or beams[i] or [("", 0.0)]
        best = max(pool, key=lambda c: (process_reward(p, c[0], step_score), c[1]))
        texts.append(best[0])
    acc = sum(parse_answer(t) == p.answer for t, p in zip(texts, problems)) / max(1, len(problems))
    return BeamResult(texts, tokens, acc)
