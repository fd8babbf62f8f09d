"""The zoo's training recipe: a Llama-architecture model, packed batches, a plain AdamW loop over the HF model.

    cfg = model_config("tiny")                       # LlamaConfig (RoPE, RMSNorm, SwiGLU, GQA)
    data = pack_pretrain(tok, Corpus(0).pretrain_docs("train"), n_tokens=2_000_000, seq_len=256)
    stats = train(model, data, steps=2000, batch_size=16, lr=3e-3)
    stats.tokens_per_s, stats.seconds, stats.losses

Why a hand-written loop and not ``Trainer``: the step is the same ``model(input_ids, labels=labels).loss`` /
``backward`` / ``AdamW.step``; the loop is 30 lines a learner can read, and it has no per-step overhead to measure
against (``benchmarks/bench_zoo_train.py`` compares it with a bare PyTorch loop).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .. import faults
from . import formats as F

#: model sizes: name -> LlamaConfig arguments
SIZES = {
    # a few million parameters: what ships as tiny-base / tiny-chat
    "tiny": dict(hidden_size=192, intermediate_size=512, num_hidden_layers=6, num_attention_heads=6,
                 num_key_value_heads=2, max_position_embeddings=512),
    # for tests: trains in seconds
    "micro": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256),
}


def model_config(size: str = "tiny", tokenizer=None, **overrides):
    from transformers import LlamaConfig

    args = dict(SIZES[size])
    args.update(overrides)
    vocab = len(tokenizer) if tokenizer is not None else 4096
    ids = {}
    if tokenizer is not None:
        ids = dict(bos_token_id=tokenizer.convert_tokens_to_ids(F.EOT),
                   eos_token_id=[tokenizer.convert_tokens_to_ids(F.END), tokenizer.convert_tokens_to_ids(F.EOT)],
                   pad_token_id=tokenizer.convert_tokens_to_ids(F.PAD))
    return LlamaConfig(vocab_size=vocab, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                       attention_bias=False, mlp_bias=False, hidden_act="silu", initializer_range=0.02, **ids, **args)


def new_model(config, seed: int = 0):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    return model


# ------------------------------------------------------------------------------------------------------------ data
def pack_pretrain(tokenizer, docs: Iterator[str], n_tokens: int, seq_len: int = 256, chunk: int = 2000):
    """Concatenate documents (each begins with <|endoftext|>) and cut rows of ``seq_len`` tokens -> LongTensor."""
    import torch

    rows_needed = max(1, n_tokens // seq_len)
    buf: list[int] = []
    rows = []
    while len(rows) < rows_needed:
        texts = [next(docs) for _ in range(chunk)]
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            buf.extend(ids)
        while len(buf) >= seq_len and len(rows) < rows_needed:
            rows.append(buf[:seq_len])
            del buf[:seq_len]
    return torch.tensor(rows, dtype=torch.long)


def _chat_pieces(messages: list[dict]) -> tuple[list[str], list[int]]:
    pieces, train = [F.EOT], [0]
    for m in messages:
        content = F._content(m)
        sep = "" if content.startswith(F.CALL) else " "
        pieces += [F.ROLE_TOKENS[m["role"]], sep + content + F.END, "\n"]
        train += [0, int(m["role"] == "assistant"), 0]
    return pieces, train


def tokenize_chat(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a rendered chat and a parallel mask: 1 on what the assistant writes (its content and <|end|>).

    Each piece starts at a special token or a turn boundary, so tokenizing pieces one by one gives the same ids
    as tokenizing the whole rendered chat."""
    pieces, train = _chat_pieces(messages)
    enc = tokenizer(pieces, add_special_tokens=False)["input_ids"]
    ids, mask = [], []
    for piece_ids, t in zip(enc, train):
        ids += piece_ids
        mask += [t] * len(piece_ids)
    return ids, mask


def pack_sft(tokenizer, examples: Iterable[list[dict]], seq_len: int = 256, chunk: int = 512):
    """Pack whole chat examples into rows (padding the rest); labels are -100 except on assistant tokens.

    Returns (input_ids, labels) LongTensors of shape (rows, seq_len)."""
    import torch

    pad = tokenizer.convert_tokens_to_ids(F.PAD)
    rows_ids, rows_lab = [], []
    cur_ids: list[int] = []
    cur_lab: list[int] = []
    examples = list(examples)
    for start in range(0, len(examples), chunk):
        pieces, owners, train = [], [], []
        for j, msgs in enumerate(examples[start:start + chunk]):
            p, t = _chat_pieces(msgs)
            pieces += p
            train += t
            owners += [j] * len(p)
        enc = tokenizer(pieces, add_special_tokens=False)["input_ids"]
        per: list[tuple[list[int], list[int]]] = []
        for piece_ids, t, j in zip(enc, train, owners):
            if j == len(per):
                per.append(([], []))
            per[j][0].extend(piece_ids)
            per[j][1].extend([t] * len(piece_ids))
        for ids, mask in per:
            ids, mask = ids[:seq_len], mask[:seq_len]
            lab = [i if m else -100 for i, m in zip(ids, mask)]
            if len(cur_ids) + len(ids) > seq_len:
                rows_ids.append(cur_ids + [pad] * (seq_len - len(cur_ids)))
                rows_lab.append(cur_lab + [-100] * (seq_len - len(cur_lab)))
                cur_ids, cur_lab = [], []
            cur_ids += ids
            cur_lab += lab
    if cur_ids:
        rows_ids.append(cur_ids + [pad] * (seq_len - len(cur_ids)))
        rows_lab.append(cur_lab + [-100] * (seq_len - len(cur_lab)))
    return torch.tensor(rows_ids, dtype=torch.long), torch.tensor(rows_lab, dtype=torch.long)


# ------------------------------------------------------------------------------------------------------- training
@dataclass
class TrainStats:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list = field(default_factory=list)  # (step, loss)
    evals: list = field(default_factory=list)   # (step, val loss)
    parameters: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def mfu(self, peak_flops: float = 170e9) -> float:
        """Model-FLOPs utilisation: 6 * parameters * tokens/s over the machine's fp32 matmul peak."""
        return 6 * self.parameters * self.tokens_per_s / peak_flops


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(model, input_ids, labels=None, *, steps: int, batch_size: int = 16, lr: float = 3e-3,
          warmup: int = 100, weight_decay: float = 0.1, seed: int = 0, val=None, eval_every: int = 0,
          log_every: int = 50, log=print, max_seconds: float | None = None,
          time_budget: float | None = None, checkpoint: str | None = None,
          checkpoint_every: float = 300.0, on_progress=None) -> TrainStats:
    """AdamW + warmup/cosine on rows of ``input_ids`` (labels default to the inputs: next-token prediction).

    Epochs over the rows are shuffled with ``seed``. ``val`` = (ids, labels) is scored every ``eval_every``
    steps. ``max_seconds`` stops early (the schedule still assumes ``steps``). ``time_budget`` (seconds) makes
    the schedule follow the clock instead: progress = max(step / steps, elapsed / time_budget), and training ends
    when it reaches 1, so a run on a busy machine still anneals (``stats.steps`` says how many steps ran; pass
    that as ``steps`` to repeat the run exactly).

    ``checkpoint`` (a file path): every ``checkpoint_every`` seconds (and at the end) the model, optimiser, data
    order, clock and stats are saved there (written to a temporary file, then renamed: an interrupted save never
    leaves a half-written checkpoint); a later call with the same path resumes from it, so a long run can be
    done in parts (``max_seconds`` per part).

    ``on_progress``: called with a ``labkit.watch.Progress`` (kind ``"train"``) at every logged step and
    evaluation, as ``finetune`` does (e.g. ``labkit.watch.tqdm_progress()``)."""
    import torch

    from ..watch import Progress, Reporter

    report = Reporter(on_progress)

    torch.manual_seed(seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95), eps=1e-8)
    stats = TrainStats(parameters=sum(p.numel() for p in model.parameters()))
    gen = torch.Generator().manual_seed(seed)
    n = input_ids.shape[0]
    order = torch.randperm(n, generator=gen)
    pos = 0
    t0 = time.perf_counter()
    sched_steps = steps
    start = 0
    if checkpoint:
        import os

        if os.path.exists(checkpoint):
            ck = torch.load(checkpoint, weights_only=False)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            order, pos, start = ck["order"], ck["pos"], ck["step"]
            gen.set_state(ck["gen"])
            for k, v in ck["stats"].items():
                setattr(stats, k, v)
            t0 -= ck["elapsed"]
            log(f"resumed from {checkpoint} at step {start} ({ck['elapsed'] / 60:.1f} min done)")

        def save_ck(step_done: int) -> None:
            tmp = checkpoint + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "order": order, "pos": pos,
                        "step": step_done, "gen": gen.get_state(), "elapsed": time.perf_counter() - t0,
                        "stats": {k: getattr(stats, k) for k in ("steps", "tokens", "losses", "evals")}}, tmp)
            faults.point("zoo.checkpoint")  # written, not yet in place
            os.replace(tmp, checkpoint)
    last_ck = time.perf_counter()
    for step in range(start, steps):
        if time_budget:
            frac = max(step / steps, (time.perf_counter() - t0) / time_budget)
            if frac >= 1.0:
                log(f"time budget reached after {step} steps")
                break
            # stretch/shrink the step schedule so that the cosine ends with the budget
            sched_steps = max(step + 1, int(step / frac)) if frac > 0 and step > warmup else steps
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        x = input_ids[idx]
        y = labels[idx] if labels is not None else x
        for g in opt.param_groups:
            g["lr"] = lr_at(step, sched_steps, lr, warmup)
        loss = model(input_ids=x, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stats.steps = step + 1
        stats.tokens += x.numel()
        if log_every and (step % log_every == 0 or step == steps - 1):
            stats.losses.append((step, round(float(loss.detach()), 4)))
            el = time.perf_counter() - t0
            log(f"step {step:5d}/{steps}  loss {float(loss.detach()):.3f}  lr {lr_at(step, sched_steps, lr, warmup):.2e}  "
                f"{stats.tokens / el:,.0f} tok/s  {el:.0f}s")
            report(Progress("train", step + 1, steps, "running", item=stats,
                            info={"loss": float(loss.detach()), "lr": lr_at(step, sched_steps, lr, warmup),
                                  "tokens_per_s": stats.tokens / el, "elapsed": el}))
        if val is not None and eval_every and (step + 1) % eval_every == 0:
            vl = evaluate_loss(model, *val)
            stats.evals.append((step + 1, round(vl, 4)))
            log(f"step {step + 1:5d}  val loss {vl:.3f}  (ppl {math.exp(vl):.2f})")
            report(Progress("train", step + 1, steps, "running", item=stats, info={"val_loss": vl}))
            model.train()
        if checkpoint and time.perf_counter() - last_ck > checkpoint_every:
            save_ck(step + 1)
            last_ck = time.perf_counter()
        if max_seconds and time.perf_counter() - t0 > max_seconds:
            log(f"stopping at step {step + 1}: time limit {max_seconds:.0f}s")
            break
    if checkpoint:
        save_ck(stats.steps)
    stats.seconds = time.perf_counter() - t0
    model.eval()
    report(Progress("train", stats.steps, steps, "done" if stats.steps >= steps else "stopped", item=stats,
                    info={"elapsed": stats.seconds, "tokens_per_s": stats.tokens / max(stats.seconds, 1e-9)}))
    return stats


def evaluate_loss(model, input_ids, labels=None, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (over the label tokens) on rows of ``input_ids``."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, input_ids.shape[0], batch_size):
            x = input_ids[i:i + batch_size]
            y = labels[i:i + batch_size] if labels is not None else x
            logits = model(input_ids=x).logits[:, :-1]
            tgt = y[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((tgt != -100).sum())
    return total / max(1, count)
