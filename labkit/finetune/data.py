"""Training data in, trl's standard formats out.

Detected formats (one record = one JSON object, or one paragraph of plain text):

========================  ==========================================================================
format                    record
========================  ==========================================================================
``alpaca``                ``{"instruction": ..., "input": ..., "output": ...}`` (``input`` optional)
``sharegpt``              ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}``
``chatml``                ``{"messages": [{"role": "user"|"assistant"|..., "content": ...}, ...]}``
``prompt-completion``     ``{"prompt": ..., "completion": ...}`` (strings or message lists)
``preference``            ``{"prompt": ..., "chosen": ..., "rejected": ...}``
``prompt-only``           ``{"prompt": ..., "answer": ...}`` (for GRPO: ``answer`` goes to the reward)
``text``                  ``{"text": ...}`` or plain text (paragraphs separated by a blank line)
========================  ==========================================================================

Everything is converted to trl's *conversational* formats, so that the model's own chat template renders it:
SFT rows become ``{"prompt": [messages], "completion": [assistant message]}`` (the loss is on the completion
only) or ``{"text": ...}``; preference rows ``{"prompt", "chosen", "rejected"}``; GRPO rows ``{"prompt", "answer"}``.

Bad records are reported with their line numbers (``DataError``); ``skip_bad=True`` drops them and says so.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import LabkitUsageError

FORMATS = ("alpaca", "sharegpt", "chatml", "prompt-completion", "preference", "prompt-only", "text")
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
                  "bing": "assistant", "bard": "assistant", "model": "assistant", "system": "system", "tool": "tool",
                  "function": "tool", "observation": "tool"}
MAX_REPORTED = 8


class DataError(LabkitUsageError):
    """Malformed training data: the message lists the bad lines and what is wrong with each."""

    def __init__(self, problems: list[tuple[int, str]], total: int):
        self.problems = problems
        shown = "\n".join(f"  line {n}: {why}" for n, why in problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        super().__init__(
            f"{len(problems)} of {total} training records are malformed; nothing was trained:\n{shown}{more}\n"
            f"Fix these lines, or pass `skip_bad` to train on the {total - len(problems)} good ones.")


@dataclass
class Dataset:
    """Converted rows plus what was detected and what was skipped."""

    rows: list[dict]
    format: str  # the detected source format
    kind: str  # 'sft' | 'text' | 'preference' | 'prompt'
    source: str = ""
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self):
        return len(self.rows)

    def summary(self) -> str:
        s = f"{len(self.rows)} examples ({self.format} -> {self.kind}) from {self.source or 'memory'}"
        if self.skipped:
            s += f"; skipped {len(self.skipped)} bad line(s): " + ", ".join(str(n) for n, _ in self.skipped[:10])
        return s

    def to_hf(self):
        from datasets import Dataset as HFDataset

        return HFDataset.from_list(self.rows)


# ------------------------------------------------------------------------------------------------- reading
def read_records(data: Any) -> tuple[list[tuple[int, Any]], str]:
    """Any supported input -> ([(line number, record or parse error)], source description).

    ``data``: a list of dicts/strings, a ``datasets.Dataset``, a path (``.jsonl``, ``.json``, ``.txt``) or a
    string holding JSONL, a JSON array, or plain text. A record that cannot be parsed is ``_Bad(reason)``.
    """
    if data is None:
        raise LabkitUsageError("no training data: put it in the cell body, or give `data` (a variable or a file path)")
    if hasattr(data, "to_list") and hasattr(data, "column_names"):  # a datasets.Dataset
        data = data.to_list()
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, (list, tuple)):
        return [(i + 1, r) for i, r in enumerate(data)], f"a list of {len(data)} records"
    if isinstance(data, os.PathLike) or (isinstance(data, str) and "\n" not in data and len(data) < 500
                                         and (os.path.exists(os.path.expanduser(data))
                                              or data.endswith((".jsonl", ".json", ".txt")))):
        path = Path(os.path.expanduser(str(data)))
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise LabkitUsageError(f"cannot read training data {path}: {exc.strerror or exc}") from None
        records, _ = parse_text(text, json_mode=path.suffix in (".jsonl", ".json") or None)
        return records, str(path)
    if isinstance(data, str):
        records, how = parse_text(data)
        return records, how
    raise LabkitUsageError(f"cannot use {type(data).__name__} as training data: give a list of dicts, a "
                           f"datasets.Dataset, a .jsonl/.json/.txt path, or text in the cell")


class _Bad(str):
    """A line that could not be parsed; the string says why."""


def parse_text(text: str, json_mode: bool | None = None) -> tuple[list[tuple[int, Any]], str]:
    """JSONL (one object per line), a JSON array, or plain text paragraphs, with 1-based line numbers."""
    stripped = text.strip()
    if not stripped:
        return [], "empty text"
    if json_mode is None:
        json_mode = stripped[0] in "[{"
    if json_mode and stripped[0] == "[":
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            lead = len(text) - len(text.lstrip())
            return [(text[:lead].count("\n") + exc.lineno, _Bad(f"invalid JSON array: {exc.msg}"))], "a JSON array"
        return [(i + 1, r) for i, r in enumerate(items)], f"a JSON array of {len(items)} records"
    if json_mode:
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("//"):
                continue
            try:
                out.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                out.append((n, _Bad(f"invalid JSON ({exc.msg} at column {exc.colno})")))
        return out, "JSON lines"
    # plain text: paragraphs separated by blank lines; without blank lines, one document per line
    lines = text.splitlines()
    blocks, cur, start = [], [], None
    has_blank = any(not ln.strip() for ln in lines[1:-1]) if len(lines) > 2 else False
    for n, line in enumerate(lines, 1):
        if not has_blank:
            if line.strip():
                blocks.append((n, line.strip()))
            continue
        if line.strip():
            if start is None:
                start = n
            cur.append(line)
        elif cur:
            blocks.append((start, "\n".join(cur)))
            cur, start = [], None
    if cur:
        blocks.append((start, "\n".join(cur)))
    return [(n, {"text": b}) for n, b in blocks], "plain text"


# ------------------------------------------------------------------------------------------------ detection
def detect(record: Any) -> str | None:
    """The format of one record, or None."""
    if isinstance(record, str):
        return "text"
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "messages" in keys:
        return "chatml"
    if "conversations" in keys:
        conv = record["conversations"]
        if isinstance(conv, list) and conv and isinstance(conv[0], dict) and "from" in conv[0]:
            return "sharegpt"
        return "chatml"
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt-completion"
    if "prompt" in keys:
        return "prompt-only"
    if "text" in keys:
        return "text"
    return None


def _nonempty_str(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _messages(value, what: str) -> list[dict]:
    """A string or a message list -> a checked message list (raises ValueError with what is wrong)."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{what} is empty")
        return [{"role": "user" if what == "prompt" else "assistant", "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} must be a string or a non-empty list of messages")
    out = []
    for k, m in enumerate(value):
        if not isinstance(m, dict):
            raise ValueError(f"{what}[{k}] is not a message object")
        role = m.get("role")
        if role not in ROLES:
            raise ValueError(f"{what}[{k}] has role {role!r}; use one of {', '.join(ROLES)}")
        content = m.get("content")
        if not _nonempty_str(content) and not m.get("tool_calls"):
            raise ValueError(f"{what}[{k}] ({role}) has no content")
        out.append({"role": role, "content": content} if not m.get("tool_calls") else dict(m))
    return out


def _split_last_assistant(msgs: list[dict]) -> tuple[list[dict], list[dict]]:
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None:
        raise ValueError("the conversation has no assistant turn to learn from")
    if last == 0:
        raise ValueError("the conversation starts with the assistant: there is no prompt")
    return msgs[:last], [msgs[last]]


def convert(record: Any, fmt: str) -> dict:
    """One record of format ``fmt`` -> a trl row (raises ValueError saying what is wrong)."""
    if fmt == "text":
        text = record if isinstance(record, str) else record.get("text")
        if not _nonempty_str(text):
            raise ValueError('"text" must be a non-empty string')
        return {"text": text}
    if fmt == "alpaca":
        ins, inp = record.get("instruction"), record.get("input", "")
        out = record.get("output", record.get("response"))
        if not _nonempty_str(ins):
            raise ValueError('"instruction" must be a non-empty string')
        if not _nonempty_str(out):
            raise ValueError('"output" must be a non-empty string')
        if inp is not None and not isinstance(inp, str):
            raise ValueError('"input" must be a string')
        user = ins.strip() + ("\n\n" + inp.strip() if inp and inp.strip() else "")
        prompt = [{"role": "system", "content": record["system"]}] if _nonempty_str(record.get("system")) else []
        return {"prompt": prompt + [{"role": "user", "content": user}],
                "completion": [{"role": "assistant", "content": out}]}
    if fmt == "sharegpt":
        conv = record.get("conversations")
        if not isinstance(conv, list) or not conv:
            raise ValueError('"conversations" must be a non-empty list')
        msgs = []
        for k, turn in enumerate(conv):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise ValueError(f'conversations[{k}] needs "from" and "value"')
            role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
            if role is None:
                raise ValueError(f"conversations[{k}] has from={turn['from']!r}; use human, gpt or system")
            msgs.append({"role": role, "content": turn["value"]})
        prompt, completion = _split_last_assistant(_messages(msgs, "conversations"))
        return {"prompt": prompt, "completion": completion}
    if fmt == "chatml":
        msgs = _messages(record.get("messages", record.get("conversations")), "messages")
        prompt, completion = _split_last_assistant(msgs)
        return {"prompt": prompt, "completion": completion}
    if fmt == "prompt-completion":
        return {"prompt": _messages(record["prompt"], "prompt"), "completion": _messages(record["completion"], "completion")}
    if fmt == "preference":
        if "prompt" not in record:
            raise ValueError('a preference pair needs "prompt" as well as "chosen" and "rejected"')
        row = {"prompt": _messages(record["prompt"], "prompt"), "chosen": _messages(record["chosen"], "chosen"),
               "rejected": _messages(record["rejected"], "rejected")}
        if row["chosen"] == row["rejected"]:
            raise ValueError('"chosen" and "rejected" are the same: the pair teaches nothing')
        return row
    if fmt == "prompt-only":
        row = {"prompt": _messages(record["prompt"], "prompt")}
        if "answer" in record:
            row["answer"] = str(record["answer"])
        return row
    raise ValueError(f"unknown format {fmt!r}")


KIND_OF = {"alpaca": "sft", "sharegpt": "sft", "chatml": "sft", "prompt-completion": "sft", "text": "text",
           "preference": "preference", "prompt-only": "prompt"}
#: what each method can train on (data kind -> how it is used)
METHOD_KINDS = {
    "full": ("sft", "text", "preference"), "lora": ("sft", "text", "preference"), "qlora": ("sft", "text", "preference"),
    "dpo": ("preference",), "reward": ("preference",), "grpo": ("prompt", "sft"),
}


def _invalid_unicode(record) -> str | None:
    """What is wrong when a record's text is not valid Unicode (a tokenizer could not read it), else None."""
    from ..text import first_invalid

    stack = [record]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            i = first_invalid(item)
            if i is not None:
                return (f"text that is not valid Unicode (the lone surrogate {item[i]!r} at character {i} of "
                        f"{item[max(0, i - 20):i]!r}...): a tokenizer cannot read it")
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def load_data(data: Any, method: str = "lora", skip_bad: bool = False, fmt: str | None = None) -> Dataset:
    """Read, detect, check and convert training data for ``method``. Raises ``DataError`` on bad lines."""
    records, source = read_records(data)
    if not records:
        raise LabkitUsageError(f"the training data ({source}) holds no records")
    if fmt is not None and fmt not in FORMATS:
        raise LabkitUsageError(f"unknown data format {fmt!r}; formats: {', '.join(FORMATS)}")
    detected = [(n, r, None if isinstance(r, _Bad) else detect(r)) for n, r in records]
    counts = Counter(f for _, _, f in detected if f)
    if not counts and fmt is None:
        n, r, _ = detected[0]
        keys = sorted(r) if isinstance(r, dict) else type(r).__name__
        raise LabkitUsageError(
            f"could not recognise the data format (line {n} has {keys}). Supported: Alpaca "
            f"(instruction/input/output), ShareGPT (conversations with from/value), ChatML (messages with "
            f"role/content), prompt/completion, preference pairs (prompt/chosen/rejected), prompt/answer, text.")
    main = fmt or counts.most_common(1)[0][0]
    problems, rows = [], []
    for n, r, f in detected:
        if isinstance(r, _Bad):
            problems.append((n, str(r)))
            continue
        if f != main:
            what = f"looks like {f}" if f else (f"has keys {sorted(r)}" if isinstance(r, dict)
                                               else f"is a {type(r).__name__}, not an object")
            problems.append((n, f"{what}, but the data is {main}"))
            continue
        bad = _invalid_unicode(r)
        if bad:
            problems.append((n, bad))
            continue
        try:
            rows.append(convert(r, main))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append((n, str(exc)))
    if problems and not skip_bad:
        raise DataError(problems, len(records))
    if not rows:
        raise LabkitUsageError(f"no usable training records in {source}")
    kind = KIND_OF[main]
    ds = Dataset(rows, main, kind, source, problems)
    return adapt(ds, method)


def adapt(ds: Dataset, method: str) -> Dataset:
    """Make the rows fit the method: SFT on preference pairs uses ``chosen``; GRPO takes the prompts."""
    if method not in METHOD_KINDS:
        raise LabkitUsageError(f"unknown method {method!r}; methods: {', '.join(METHOD_KINDS)}")
    if ds.kind not in METHOD_KINDS[method]:
        need = {"dpo": "preference pairs (prompt/chosen/rejected)", "reward": "preference pairs (prompt/chosen/rejected)",
                "grpo": "prompts (prompt/answer, or chats whose last assistant turn is the answer)"}.get(method, "examples")
        raise LabkitUsageError(f"`method` {method} needs {need}, but the data is {ds.format}")
    if ds.kind == "preference" and method in ("full", "lora", "qlora"):
        ds.rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in ds.rows]
        ds.kind = "sft"
    elif ds.kind == "sft" and method == "grpo":
        ds.rows = [{"prompt": r["prompt"], "answer": r["completion"][0]["content"]} for r in ds.rows]
        ds.kind = "prompt"
    return ds
