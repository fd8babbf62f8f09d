"""Lab 16's engine (model enhancement): context extension, distillation, merging and forgetting, each small
enough to train in seconds on two CPU cores, with fixed seeds.

- **Passkey retrieval** (``passkey_batch``, ``passkey_model``, ``train_passkey``, ``passkey_accuracy``,
  ``with_rope``): a 2-layer Llama (integer tokens, no tokenizer) learns to copy a 2-digit key hidden at a random
  place in filler, at a trained length; evaluated beyond it with no scaling, linear position interpolation and
  YaRN, through transformers' own ``rope_parameters``.
- **Distillation** (``distill_data``, ``student_from``, ``distill``, ``lm_metrics``): tiny-chat teaches a
  one-layer student (tiny-draft's shape, started from tiny-chat's embeddings and first layer), with hard labels
  or with the teacher's soft labels, the same steps; measured on in-world held-out chats and on reading chats
  built apart.
- **Two tasks** (``task_items``, ``task_batch``, ``task_accuracy``, ``finetune_task``): short fine-tunes of
  tiny-base on naming the first of three words (A) and number increment (B); accuracy = every answer token is the model's argmax
  (= greedy decoding gives the exact answer).
- **Merging** (``merge_models``, ``dare``, reference ``slerp_ref``/``ties_ref`` in ``labkit.finetune.merging``):
  tensor-wise merges of fine-tunes that share a base.
- **Forgetting** (``finetune_task`` with ``replay=``, ``lora_task``): fine-tune A's model on B and see A fall;
  replay some A, or train only a LoRA adapter, and measure again.

Everything is plain torch training loops (AdamW, no Trainer): the point is what is optimised, not plumbing.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field

# ================================================================================================ passkey
DIGITS = 10  # ids 0-9: the key's digits
KEY, QUERY, PAD = 10, 11, 12
FILLER0, N_FILLER = 13, 40  # filler ids 13..52
PASSKEY_VOCAB = FILLER0 + N_FILLER


def passkey_batch(n: int, length: int, seed: int = 0, key_digits: int = 2):
    """``n`` sequences of exactly ``length`` tokens: filler, ``KEY d1 d2`` at a random place, ..., ``QUERY d1 d2``.

    Returns ``(ids, answer_start)``: the key's digits after ``QUERY`` are the last ``key_digits`` tokens."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(FILLER0, FILLER0 + N_FILLER, (n, length), generator=g)
    keys = torch.randint(0, DIGITS, (n, key_digits), generator=g)
    tail = 1 + key_digits
    body = length - tail
    pos = torch.randint(0, body - tail + 1, (n,), generator=g)
    for i in range(n):
        p = int(pos[i])
        ids[i, p] = KEY
        ids[i, p + 1:p + tail] = keys[i]
    ids[:, body] = QUERY
    ids[:, body + 1:] = keys
    return ids, length - key_digits


def passkey_model(max_positions: int = 64, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=PASSKEY_VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=max_positions, tie_word_embeddings=True, pad_token_id=PAD,
                      bos_token_id=None, eos_token_id=None,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    return LlamaForCausalLM(cfg)


def _answer_loss(model, ids, start):
    import torch.nn.functional as F

    logits = model(input_ids=ids).logits[:, start - 1:-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, start:].reshape(-1))


def train_passkey(model, length: int = 64, steps: int = 300, batch: int = 32, lr: float = 3e-3, seed: int = 0):
    """Train on passkey sequences of ``length`` tokens (a new batch every step). Returns the loss per step."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / steps))
    model.train()
    losses = []
    for s in range(steps):
        ids, start = passkey_batch(batch, length, seed=seed * 100_003 + s)
        loss = _answer_loss(model, ids, start)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def passkey_accuracy(model, length: int, n: int = 200, seed: int = 10_000, batch: int = 50) -> float:
    """Share of ``n`` fresh sequences of ``length`` tokens whose whole key is the model's argmax."""
    import torch

    ids, start = passkey_batch(n, length, seed=seed + length)
    right = 0
    with torch.no_grad():
        for i in range(0, n, batch):
            x = ids[i:i + batch]
            pred = model(input_ids=x).logits[:, start - 1:-1].argmax(-1)
            right += int((pred == x[:, start:]).all(-1).sum())
    return right / n


def with_rope(model, rope_type: str = "default", factor: float = 1.0, original: int | None = None):
    """A copy of ``model`` whose rotary embedding uses ``rope_parameters`` = ``{"rope_type": rope_type, ...}``:
    ``"linear"`` (position interpolation: positions divided by ``factor``) or ``"yarn"`` (per-frequency: high
    frequencies kept, low ones interpolated, attention temperature adjusted), built by transformers itself."""
    from transformers import LlamaForCausalLM

    cfg = copy.deepcopy(model.config)
    theta = cfg.rope_parameters.get("rope_theta", 10000.0)
    original = original or cfg.max_position_embeddings
    params = {"rope_type": rope_type, "rope_theta": theta}
    if rope_type != "default":
        params["factor"] = float(factor)
        cfg.max_position_embeddings = int(original * factor)
    if rope_type == "yarn":
        params["original_max_position_embeddings"] = int(original)
    cfg.rope_parameters = params
    out = LlamaForCausalLM(cfg)
    out.load_state_dict(model.state_dict(), strict=False)  # rotary buffers are rebuilt from the config
    return out.eval()


def rope_angles(model, positions):
    """The rotation angles (positions x frequencies) and attention scaling this model's rotary embedding uses."""
    import torch

    rot = model.model.rotary_emb
    inv = rot.inv_freq.float()
    return torch.outer(torch.as_tensor(positions, dtype=torch.float32), inv), float(rot.attention_scaling)


# ================================================================================================ zoo helpers
def _tok_ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _pad_batch(seqs, pad: int):
    import torch

    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


# ================================================================================================ distillation
def distill_data(tok, n_train: int = 256, n_eval: int = 48, max_len: int = 160, seed: int = 0) -> dict:
    """Token-id lists: ``train`` (in-world chats, train split), ``in_world`` (chats of the held-out split) and
    ``out_of_world`` (reading-passage chats built apart: other names, places and phrasings; tiny-chat never saw
    them)."""
    from .zoo import formats as F
    from .zoo.corpus import Corpus
    from .zoo.reading import Reading

    enc = lambda chats: [(_tok_ids(tok, F.format_chat(m, add_generation_prompt=False)))[:max_len] for m in chats]
    c = Corpus(seed)
    return {"train": enc(c.chat_examples("train", n_train, stream="lab16")),
            "in_world": enc(c.chat_examples("test", n_eval, stream="lab16-eval")),
            "out_of_world": enc(Reading(seed, heldout=True).chat_examples(n_eval, stream="lab16-ood"))}


ASSISTANT, END = 4, 6  # the zoo tokenizer's <|assistant|> and <|end|>


def reply_mask(ids) -> list[int]:
    """1 for the tokens of the assistant's replies (their closing ``<|end|>`` included), 0 elsewhere: what a
    chat model was trained to write (tiny-chat was never trained to predict the user's turns)."""
    out, inside = [], False
    for t in ids:
        out.append(1 if inside else 0)
        if t == END:
            inside = False
        if t == ASSISTANT:
            inside = True
    return out


def _reply_keep(seqs, n):
    import torch

    keep = torch.zeros((len(seqs), n), dtype=torch.bool)
    for i, s in enumerate(seqs):
        m = reply_mask(s)
        keep[i, :len(m)] = torch.tensor(m, dtype=torch.bool)
    return keep[:, 1:]


def student_from(teacher, layers: int = 1):
    """A smaller Llama (``layers`` blocks, tiny-draft's shape for 1) started from the teacher's embeddings, first
    ``layers`` blocks and final norm: the usual way to start a student cheaply."""
    from transformers import LlamaForCausalLM

    cfg = copy.deepcopy(teacher.config)
    cfg.num_hidden_layers = layers
    student = LlamaForCausalLM(cfg)
    missing = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not missing.missing_keys, missing.missing_keys
    return student


def kl_soft(student_logits, teacher_logits, T: float = 2.0):
    """The kit's distillation loss: T^2 * KL(softmax(teacher/T) || softmax(student/T)), mean over positions."""
    import torch.nn.functional as F

    s = F.log_softmax(student_logits.float() / T, -1).reshape(-1, student_logits.shape[-1])
    t = F.log_softmax(teacher_logits.float() / T, -1).reshape(-1, teacher_logits.shape[-1])
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * T * T


def distill(student, teacher, train, *, mode: str = "soft", loss_fn=None, T: float = 2.0, steps: int = 60,
            batch: int = 8, lr: float = 1e-3, pad: int = 1, seed: int = 0, alpha: float = 0.5):
    """Train ``student`` for ``steps`` steps on ``train`` (token-id lists). ``mode="hard"``: cross-entropy on the
    next reply tokens; ``"soft"``: ``loss_fn(student_logits, teacher_logits, T)`` on the teacher's logits (real tokens
    only); ``"mix"``: ``alpha * soft + (1 - alpha) * hard`` (Hinton et al.'s recipe). Same data order and steps for
    every mode. Returns the loss per step."""
    import torch
    import torch.nn.functional as F

    loss_fn = loss_fn or kl_soft
    rng = random.Random(seed)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    teacher.eval()
    student.train()
    losses = []
    for _ in range(steps):
        seqs = rng.sample(train, batch)
        ids, mask = _pad_batch(seqs, pad)
        out = student(input_ids=ids, attention_mask=mask).logits[:, :-1]
        keep = _reply_keep(seqs, ids.shape[1])
        if mode not in ("hard", "soft", "mix"):
            raise ValueError(f"mode must be 'hard', 'soft' or 'mix', not {mode!r}")
        hard = F.cross_entropy(out[keep], ids[:, 1:][keep]) if mode != "soft" else 0.0
        if mode == "hard":
            loss = hard
        else:
            with torch.no_grad():
                tl = teacher(input_ids=ids, attention_mask=mask).logits[:, :-1]
            soft = loss_fn(out[keep], tl[keep], T)
            loss = soft if mode == "soft" else alpha * soft + (1 - alpha) * hard
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    student.eval()
    return losses


def lm_metrics(model, seqs, teacher=None, pad: int = 1, batch: int = 16) -> dict:
    """Mean next-token cross-entropy (nats) on the reply tokens of ``seqs``, and (given a teacher) the share of positions where the
    model's top token is the teacher's."""
    import torch
    import torch.nn.functional as F

    tot, n, agree = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(seqs), batch):
            ids, mask = _pad_batch(seqs[i:i + batch], pad)
            out = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            keep = _reply_keep(seqs[i:i + batch], ids.shape[1])
            tot += float(F.cross_entropy(out[keep], ids[:, 1:][keep], reduction="sum"))
            n += int(keep.sum())
            if teacher is not None:
                tl = teacher(input_ids=ids, attention_mask=mask).logits[:, :-1]
                agree += int((out[keep].argmax(-1) == tl[keep].argmax(-1)).sum())
    res = {"loss": tot / n}
    if teacher is not None:
        res["agree"] = agree / n
    return res


# ================================================================================================ two tasks
WORDS = ("red blue green cat dog fox sun moon star tree lake hill road ship rain snow wind fire stone gold "
         "bird fish bear wolf milk bread cake tea rose leaf").split()


def task_items(task: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(prompt, answer)`` pairs. ``"A"``: the first of three words; ``"B"``: add one to a two-digit number.
    ``seed`` 0 and 1 are used for training and held-out sets (B's held-out numbers end in 9 half the time:
    the carry)."""
    r = random.Random(f"{task}:{seed}")
    out = []
    for _ in range(n):
        if task == "A":
            w = r.sample(WORDS, 3)
            out.append((f"first of: {' '.join(w)} =", " " + w[0]))
        elif task == "B":
            x = r.randint(10, 98)
            out.append((f"next: {x} =", f" {x + 1}"))
        else:
            raise ValueError(f"task must be 'A' or 'B', not {task!r}")
    return out


def _encode_items(tok, items):
    out = []
    for p, a in items:
        pi, ai = _tok_ids(tok, p), _tok_ids(tok, a)
        out.append((pi + ai, len(pi)))
    return out


def task_accuracy(model, tok, items, batch: int = 64) -> float:
    """Share of items whose every answer token is the model's argmax (teacher-forced; equal to greedy decoding
    producing the exact answer)."""
    import torch

    enc = _encode_items(tok, items)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    right = 0
    with torch.no_grad():
        for i in range(0, len(enc), batch):
            chunk = enc[i:i + batch]
            ids, mask = _pad_batch([s for s, _ in chunk], pad)
            pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            for j, (s, k) in enumerate(chunk):
                right += bool((pred[j, k - 1:len(s) - 1] == ids[j, k:len(s)]).all())
    return right / len(enc)


def _task_loss(model, ids, mask, starts):
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    labels = ids[:, 1:].clone()
    for j, k in enumerate(starts):
        labels[j, :k - 1] = -100
    labels[mask[:, 1:] == 0] = -100
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def finetune_task(model, tok, items, *, steps: int = 60, batch: int = 16, lr: float = 5e-4, replay=None,
                  replay_share: float = 0.25, seed: int = 0, params=None):
    """Fine-tune ``model`` in place on ``items`` (loss on the answer tokens only). ``replay``: items of an earlier
    task mixed into every batch (``replay_share`` of it). ``params``: train only these (default: all)."""
    import torch

    enc = _encode_items(tok, items)
    old = _encode_items(tok, replay) if replay else []
    n_old = int(round(batch * replay_share)) if old else 0
    rng = random.Random(seed)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    opt = torch.optim.AdamW(params if params is not None else model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        chunk = rng.sample(enc, batch - n_old) + (rng.sample(old, n_old) if n_old else [])
        ids, mask = _pad_batch([s for s, _ in chunk], pad)
        loss = _task_loss(model, ids, mask, [k for _, k in chunk])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def lora_task(model, tok, items, *, r: int = 8, alpha: int = 16, steps: int = 60, lr: float = 2e-3, seed: int = 0,
              **kw):
    """Fine-tune a LoRA adapter (peft) on attention and MLP projections of a *copy* of ``model``; returns the merged
    model (the frozen weights plus B·A)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    pm = get_peft_model(copy.deepcopy(model), cfg)
    trainable = [p for p in pm.parameters() if p.requires_grad]
    finetune_task(pm, tok, items, steps=steps, lr=lr, seed=seed, params=trainable, **kw)
    return pm.merge_and_unload().eval()


# ================================================================================================ merging
def task_vectors(base, models) -> list[dict]:
    b = base.state_dict()
    return [{k: v.float() - b[k].float() for k, v in m.state_dict().items() if v.is_floating_point()} for m in models]


def merge_models(base, models, combine) -> object:
    """A new model: for every floating tensor name, ``combine(base_tensor, [model tensors])`` gives the merged
    tensor. Non-float buffers are copied from ``base``."""
    b = base.state_dict()
    states = [m.state_dict() for m in models]
    merged = {}
    for k, v in b.items():
        merged[k] = combine(v.float(), [s[k].float() for s in states]).to(v.dtype) if v.is_floating_point() else v
    out = copy.deepcopy(base)
    out.load_state_dict(merged)
    return out.eval()


def dare(delta, p: float = 0.9, generator=None):
    """DARE (Yu et al. 2023): drop each entry of a task vector with probability ``p``, rescale the rest by
    1/(1-p) so the expected delta is unchanged."""
    import torch

    keep = torch.rand(delta.shape, generator=generator) >= p
    return delta * keep / (1 - p)


def combine_linear(w=0.5):
    return lambda b, ts: (1 - w) * ts[0] + w * ts[1]


def combine_task_arithmetic(scale=1.0):
    return lambda b, ts: b + scale * sum(t - b for t in ts)


def combine_dare(p=0.9, scale=1.0, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return lambda b, ts: b + scale * sum(dare(t - b, p, g) for t in ts)


def combine_slerp(slerp_fn, t=0.5):
    return lambda b, ts: slerp_fn(ts[0], ts[1], t)


def combine_ties(ties_fn, density=0.3, scale=1.0):
    """Apply a learner's ``ties_fn(task_vectors [k, ...], density) -> merged task vector`` tensor by tensor."""
    import torch

    return lambda b, ts: b + scale * ties_fn(torch.stack([t - b for t in ts]), density)


def ties_reference(tvs, density):
    """TIES on stacked task vectors through ``labkit.finetune.merging.ties`` (an implementation on whole models,
    written apart from the lab's exercise): used to check the learner's function."""
    import torch

    from .finetune import merging

    k = tvs.shape[0]
    flat = tvs.reshape(k, -1)

    class _Holder(torch.nn.Module):
        def __init__(self, v):
            super().__init__()
            self.w = torch.nn.Parameter(v.clone())

    base = _Holder(torch.zeros_like(flat[0]))
    out = merging.ties(base, [_Holder(flat[i]) for i in range(k)], density=density)
    return out.w.detach().reshape(tvs.shape[1:])


@dataclass
class Timer:
    seconds: dict = field(default_factory=dict)

    def __call__(self, name):
        timer = self

        class _T:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *a):
                timer.seconds[name] = time.perf_counter() - self.t

        return _T()
