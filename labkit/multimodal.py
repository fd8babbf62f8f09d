"""Lab 20's engine: a synthetic image-caption world, a tiny CLIP-style two-tower model, and a tiny VQA model that
reads the image through cross-attention.

The world (rendered with PIL, fixed seeds): 32x32 pictures of one to three identical shapes of one colour, all on
the left or all on the right half. Each picture's caption says what is in it: ``"two red circles on the left"``.
Five colours x four shapes = 20 colour-shape pairs; five of them (``HELDOUT_PAIRS``) never appear in training, so a
model can be asked about combinations it has never seen together (each colour and each shape on its own it has).

The models (trained live in the lab: about 15-25 s for the CLIP, 5 s for a VQA head, on one CPU thread):

- ``CLIP``: an image tower (the picture cut into 4x4-pixel patches, each patch a token: a linear *patch
  embedding*, position embeddings, two transformer layers, mean pool, projection) and a text tower (word
  embeddings, positions, one transformer layer, masked mean pool, projection), both into one 32-dim space;
  trained with a symmetric contrastive loss (passed in: the lab passes the learner's).
- ``VQA``: a question (its words averaged into one query) attends over the frozen image tower's patch tokens with one
  cross-attention head (the attention function is passed in: the lab passes the learner's), then a small MLP picks the answer word.

Everything is deterministic: fixed seeds, ``torch.manual_seed`` inside the training functions.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from itertools import product
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------------------ the world
SIZE = 32            # pixels a side
PATCH = 4            # pixels a patch side: (32 / 4)^2 = 64 patches, each 4*4*3 = 48 numbers
COLOURS = {"red": (215, 40, 40), "green": (30, 160, 60), "blue": (40, 80, 225), "yellow": (230, 195, 20),
           "purple": (140, 50, 190)}
SHAPES = ("circle", "square", "triangle", "cross")
COUNTS = ("one", "two", "three")
SIDES = ("left", "right")
# one held-out shape per colour, so every colour and every shape is still seen in training with others
HELDOUT_PAIRS = frozenset({("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "cross"),
                           ("purple", "square")})
PAIRS = tuple(product(COLOURS, SHAPES))
SEEN_PAIRS = tuple(p for p in PAIRS if p not in HELDOUT_PAIRS)
BACKGROUND = (236, 236, 232)


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    count: int          # 1-3
    side: str           # "left" or "right"
    seed: int = 0       # where exactly the shapes go, and their sizes

    @property
    def pair(self) -> tuple[str, str]:
        return (self.colour, self.shape)

    @property
    def heldout(self) -> bool:
        return self.pair in HELDOUT_PAIRS

    def caption(self) -> str:
        noun = self.shape + ("es" if self.shape == "cross" and self.count > 1 else "s" if self.count > 1 else "")
        return f"{COUNTS[self.count - 1]} {self.colour} {noun} on the {self.side}"

    def combo(self) -> tuple[str, str, int, str]:
        return (self.colour, self.shape, self.count, self.side)


def render(scene: Scene) -> np.ndarray:
    """The scene as a (32, 32, 3) uint8 array: ``count`` copies of the shape in three vertical slots of its half."""
    from PIL import Image, ImageDraw

    rng = random.Random(scene.seed)
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(img)
    colour = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[scene.colour])
    x0 = 0 if scene.side == "left" else SIZE // 2
    slots = sorted(rng.sample(range(3), scene.count))
    for slot in slots:
        s = rng.randint(7, 9)                                   # size of the shape
        x = x0 + rng.randint(1, SIZE // 2 - s - 1)
        y = slot * 10 + rng.randint(0, 9 - s) + 1             # a free row between slots: shapes never touch
        box = (x, y, x + s - 1, y + s - 1)
        if scene.shape == "circle":
            d.ellipse(box, fill=colour)
        elif scene.shape == "square":
            d.rectangle((x + 1, y + 1, x + s - 2, y + s - 2), fill=colour)
        elif scene.shape == "triangle":
            d.polygon([(x + (s - 1) / 2, y), (x, y + s - 1), (x + s - 1, y + s - 1)], fill=colour)
        else:  # cross
            t = max(1, s // 3)
            c0 = x + (s - t) // 2
            r0 = y + (s - t) // 2
            d.rectangle((c0, y, c0 + t - 1, y + s - 1), fill=colour)
            d.rectangle((x, r0, x + s - 1, r0 + t - 1), fill=colour)
    arr = np.asarray(img, dtype=np.int16)
    noise = np.random.default_rng(scene.seed).integers(-8, 9, size=arr.shape)
    return np.clip(arr + noise, 0, 255).astype(np.uint8)


def scenes(n: int, *, seed: int, pairs=SEEN_PAIRS) -> list[Scene]:
    """``n`` random scenes whose colour-shape pair is one of ``pairs`` (fixed by ``seed``)."""
    rng = random.Random(seed)
    pairs = list(pairs)
    out = []
    for _ in range(n):
        c, s = rng.choice(pairs)
        out.append(Scene(c, s, rng.randint(1, 3), rng.choice(SIDES), rng.randrange(2**31)))
    return out


def all_combos(pairs=PAIRS, *, seed: int = 0) -> list[Scene]:
    """One scene for every combination of the pairs with every count and side (20 x 3 x 2 = 120 for all pairs)."""
    rng = random.Random(seed)
    return [Scene(c, s, n, side, rng.randrange(2**31)) for (c, s) in pairs for n in (1, 2, 3) for side in SIDES]


def object_patches(scene: Scene) -> np.ndarray:
    """(8, 8) bool: the patches that hold some pixel of a shape."""
    ink = np.abs(render(scene).astype(int) - np.array(BACKGROUND)).sum(-1) > 90
    side = SIZE // PATCH
    return ink.reshape(side, PATCH, side, PATCH).any(axis=(1, 3))


def images(scs: list[Scene]) -> torch.Tensor:
    """Rendered scenes as a float tensor (N, 3, 32, 32) in [0, 1]."""
    arr = np.stack([render(s) for s in scs]).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def patchify(x: torch.Tensor, patch: int | None = None) -> torch.Tensor:
    """(N, 3, H, W) -> (N, (H/p)*(W/p), 3*p*p): the image as a sequence of patch vectors, row by row."""
    patch = patch or PATCH
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)


# ------------------------------------------------------------------------------------------------ words
WORDS = ("<pad>", "a", "on", "the", *COUNTS, *COLOURS, *[w for s in SHAPES for w in (s, s + ("es" if s == "cross" else "s"))],
         *SIDES, "what", "colour", "shape", "how", "many", "which", "side", "is", "are", "it", "they")
VOCAB = {w: i for i, w in enumerate(WORDS)}


def encode(texts: list[str], length: int | None = None) -> torch.Tensor:
    """Word ids, padded with 0 to the longest text (or ``length``)."""
    ids = [[VOCAB[w] for w in t.lower().replace("?", "").split()] for t in texts]
    L = length or max(len(i) for i in ids)
    return torch.tensor([i + [0] * (L - len(i)) for i in ids], dtype=torch.long)


# ------------------------------------------------------------------------------------------------ the loss
def reference_contrastive_loss(img: torch.Tensor, txt: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """The kit's symmetric contrastive (InfoNCE / CLIP) loss, for rows that are already L2-normalised: the
    similarity of every image with every text, divided by the temperature, is the logit matrix; the i-th image's
    right text is the i-th, and vice versa; cross-entropy both ways, averaged."""
    logits = img @ txt.T / temperature
    target = torch.arange(len(img))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def reference_recall_at_k(sim: np.ndarray | torch.Tensor, k: int) -> float:
    """Share of rows i whose own column i is among the ``k`` highest of the row (``sim`` is (N, M), M >= N)."""
    sim = torch.as_tensor(sim)
    own = sim.diagonal().unsqueeze(1)
    rank = (sim > own).sum(1)                  # how many others beat the right one
    return float((rank < k).float().mean())


# ------------------------------------------------------------------------------------------------ the models
def _encoder(d: int, layers: int, heads: int = 4) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ImageTower(nn.Module):
    """A tiny ViT: patches -> linear patch embedding + positions -> transformer -> patch tokens; mean -> embedding."""

    def __init__(self, d: int = 64, out: int = 32, layers: int = 2):
        super().__init__()
        n = (SIZE // PATCH) ** 2
        self.patch_embed = nn.Linear(3 * PATCH * PATCH, d)
        self.pos = nn.Parameter(torch.randn(1, n, d) * 0.02)
        self.encoder = _encoder(d, layers)
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, out)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 32, 32) -> (N, 64, d): the transformer's input, patch embedding + position, each token one patch only."""
        return self.patch_embed(patchify(x)) + self.pos

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 32, 32) -> (N, 64, d): one token per patch, after the transformer."""
        return self.norm(self.encoder(self.patch_tokens(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.tokens(x).mean(1)), dim=-1)


class TextTower(nn.Module):
    def __init__(self, d: int = 64, out: int = 32, layers: int = 1, max_len: int = 8):
        super().__init__()
        self.embed = nn.Embedding(len(WORDS), d, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, max_len, d) * 0.02)
        self.encoder = _encoder(d, layers)
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, out)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = ids == 0
        h = self.norm(self.encoder(self.embed(ids) + self.pos[:, : ids.shape[1]], src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).float()
        return F.normalize(self.proj((h * keep).sum(1) / keep.sum(1)), dim=-1)


class CLIP(nn.Module):
    def __init__(self, d: int = 48, out: int = 32, image_layers: int = 1):
        super().__init__()
        self.image = ImageTower(d, out, image_layers)
        self.text = TextTower(d, out)
        self.log_inv_temp = nn.Parameter(torch.tensor(math.log(1 / 0.07)))   # CLIP's starting temperature 0.07

    @property
    def temperature(self) -> torch.Tensor:
        return 1.0 / self.log_inv_temp.clamp(max=math.log(100)).exp()

    @torch.no_grad()
    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.image(x[i:i + 256]) for i in range(0, len(x), 256)])

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return self.text(encode(texts))


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_clip(loss_fn: Callable = reference_contrastive_loss, *, n_train: int = 3000, steps: int = 300,
               batch: int = 64, lr: float = 3e-3, seed: int = 0, data: tuple | None = None,
               d: int = 48, image_layers: int = 1) -> tuple[CLIP, TrainLog]:
    """Train a CLIP on ``n_train`` scenes of the seen pairs with ``loss_fn(img_emb, txt_emb, temperature)``.
    Returns the model (in eval mode) and the log of the loss."""
    torch.manual_seed(seed)
    if data is None:
        tr = scenes(n_train, seed=seed + 1)
        data = (images(tr), encode([s.caption() for s in tr]))
    x, ids = data
    model = CLIP(d, image_layers=image_layers)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    log, t0 = TrainLog(), time.perf_counter()
    model.train()
    for step in range(steps):
        idx = torch.randperm(len(x), generator=g)[:batch]
        loss = loss_fn(model.image(x[idx]), model.text(ids[idx]), model.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        log.steps.append(step)
        log.loss.append(loss.item())
        log.temperature.append(model.temperature.item())
    log.seconds = time.perf_counter() - t0
    return model.eval(), log


# ------------------------------------------------------------------------------------------------ zero-shot, retrieval
def class_prompts(colour: str, shape: str) -> list[str]:
    """Every caption of a colour-shape pair (3 counts x 2 sides): averaged, they are the class's text embedding
    (CLIP's prompt ensembling, with our captions as the templates)."""
    return [Scene(colour, shape, n, side).caption() for n in (1, 2, 3) for side in SIDES]


@torch.no_grad()
def class_embeddings(model: CLIP, pairs=PAIRS) -> torch.Tensor:
    embs = [F.normalize(model.embed_texts(class_prompts(c, s)).mean(0), dim=-1) for c, s in pairs]
    return torch.stack(embs)


@torch.no_grad()
def zero_shot(model: CLIP, x: torch.Tensor, scs: list[Scene], pairs=PAIRS) -> dict:
    """Classify each image as one of ``pairs`` by the nearest class text embedding. Returns accuracy, and the
    share with the colour right and with the shape right, and the predicted pairs."""
    sim = model.embed_images(x) @ class_embeddings(model, pairs).T
    pred = [pairs[i] for i in sim.argmax(1).tolist()]
    return {"accuracy": float(np.mean([p == s.pair for p, s in zip(pred, scs)])),
            "colour": float(np.mean([p[0] == s.colour for p, s in zip(pred, scs)])),
            "shape": float(np.mean([p[1] == s.shape for p, s in zip(pred, scs)])),
            "pred": pred}


@torch.no_grad()
def similarity(model: CLIP, scs: list[Scene], x: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of each scene's image (rows) with each scene's caption (columns)."""
    x = images(scs) if x is None else x
    return model.embed_images(x) @ model.embed_texts([s.caption() for s in scs]).T


# ------------------------------------------------------------------------------------------------ VQA
QUESTIONS = {"colour": "what colour are they", "shape": "what shape are they", "count": "how many are they",
             "side": "which side are they on"}
ANSWERS = (*COLOURS, *SHAPES, *COUNTS, *SIDES)


def answer(scene: Scene, kind: str) -> str:
    return {"colour": scene.colour, "shape": scene.shape, "count": COUNTS[scene.count - 1], "side": scene.side}[kind]


def reference_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention of queries (B, Q, d) over keys/values (B, K, d): (output, weights (B, Q, K))."""
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v, w


class VQA(nn.Module):
    """The question's word embeddings (plus positions), averaged, are one query; one cross-attention head over the
    image's patch tokens (plus positions); the attended vector and the query through an MLP to an answer word."""

    def __init__(self, d: int = 64, attend: Callable = reference_cross_attention):
        super().__init__()
        self.attend = attend
        self.embed = nn.Embedding(len(WORDS), d, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, 8, d) * 0.02)
        self.pos_img = nn.Parameter(torch.randn(1, (SIZE // PATCH) ** 2, d) * 0.02)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.head = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, len(ANSWERS)))

    def forward(self, patches: torch.Tensor, ids: torch.Tensor):
        h = self.embed(ids) + self.pos[:, : ids.shape[1]]
        qv = h.mean(1, keepdim=True)                        # the whole question asks one query
        mem = patches + self.pos_img
        out, w = self.attend(self.q(qv), self.k(mem), self.v(mem))
        return self.head(torch.cat([out[:, 0], qv[:, 0]], -1)), w[:, 0]


def vqa_data(scs: list[Scene], tokens: torch.Tensor):
    kinds = list(QUESTIONS)
    idx, qs, ans = [], [], []
    for i, s in enumerate(scs):
        for kind in kinds:
            idx.append(i); qs.append(QUESTIONS[kind]); ans.append(ANSWERS.index(answer(s, kind)))
    return torch.tensor(idx), encode(qs, 8), torch.tensor(ans), [k for _ in scs for k in kinds]


def train_vqa(tokens: torch.Tensor, scs: list[Scene], *, attend: Callable = reference_cross_attention,
              steps: int = 250, batch: int = 192, lr: float = 3e-3, seed: int = 0) -> tuple[VQA, TrainLog]:
    """Train a VQA head on frozen patch ``tokens`` (N, 64, d) of the scenes ``scs``."""
    torch.manual_seed(seed)
    idx, q, a, _ = vqa_data(scs, tokens)
    model = VQA(tokens.shape[-1], attend)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    log, t0 = TrainLog(), time.perf_counter()
    for step in range(steps):
        b = torch.randperm(len(idx), generator=g)[:batch]
        logits, _ = model(tokens[idx[b]], q[b])
        loss = F.cross_entropy(logits, a[b])
        opt.zero_grad(); loss.backward(); opt.step()
        log.steps.append(step); log.loss.append(loss.item())
    log.seconds = time.perf_counter() - t0
    return model.eval(), log


@torch.no_grad()
def vqa_accuracy(model: VQA, tokens: torch.Tensor, scs: list[Scene]) -> dict[str, float]:
    idx, q, a, kinds = vqa_data(scs, tokens)
    logits, _ = model(tokens[idx], q)
    right = (logits.argmax(1) == a).numpy()
    return {k: float(np.mean([r for r, kk in zip(right, kinds) if kk == k])) for k in QUESTIONS}


@torch.no_grad()
def ask(model: VQA, tokens: torch.Tensor, question: str) -> tuple[list[str], torch.Tensor]:
    """Answers to one question for each image's tokens, and the attention over its 64 patches (N, 8, 8)."""
    logits, w = model(tokens, encode([question] * len(tokens), 8))
    side = SIZE // PATCH
    return [ANSWERS[i] for i in logits.argmax(1).tolist()], w.reshape(len(tokens), side, side)
