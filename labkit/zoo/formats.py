"""The zoo's chat and tool-call format: one contract for tiny-chat, the agent and the RAG labs.

Special tokens (each is one token of the zoo tokenizer)::

    <|endoftext|>   document separator; also the BOS of every chat and the tokenizer's eos/bos
    <|pad|>         padding
    <|system|> <|user|> <|assistant|> <|tool|>   a turn starts with its role token ...
    <|end|>         ... and ends with <|end|> and a newline. Generation stops at <|end|>.
    <|call|>        starts a tool call inside an assistant turn

A chat is rendered as (``format_chat`` and the tokenizer's Jinja ``chat_template`` give the same string)::

    <|endoftext|><|system|> You can use tools: calculator, lookup.<|end|>
    <|user|> What is 347 times 86?<|end|>
    <|assistant|><|call|>calculator(expression="347*86")<|end|>
    <|tool|> 29842<|end|>
    <|assistant|> The answer is 29842.<|end|>

A space follows the role token (except before ``<|call|>``): the first word of a turn is then the same token
as that word inside a sentence (``Ġword``), so copying a span from a context or an observation is one-to-one.
Generated replies therefore start with a space; ``reply_text`` strips it.

Tool calls: an assistant turn whose content is ``<|call|>name(arg="value")`` and nothing else. One call per turn,
keyword arguments only, values in double quotes (``\\"`` and ``\\\\`` escape). Tools:

- ``calculator(expression="347*86")``: integer arithmetic with + - * / and parentheses; observation = the result.
- ``lookup(entity="Mira Vell")``: the entity's entry in the synthetic world's encyclopedia
  (``labkit.zoo.corpus.world().encyclopedia``); observation = its facts as sentences, or ``No entry for X.``

The observation goes back as a ``{"role": "tool", "content": ...}`` message; the model then answers, copying
from the observation. In ``messages`` a call may be written either as the content string above or the
transformers way: ``{"role": "assistant", "tool_calls": [{"function": {"name": ..., "arguments": {...}}}]}``.

Context QA (what the RAG lab uses): one user message ``Context: <passage>\\nQuestion: <question>``; the reply is
the answer span copied from the passage (``context_qa_messages``).

System prompts the model was trained with: none, ``TOOLS_SYSTEM`` (tools allowed) and ``NO_TOOLS_SYSTEM``
(answer directly: how the no-tool score is measured).
"""
from __future__ import annotations

import re
from typing import Any, Iterable

EOT = "<|endoftext|>"
PAD = "<|pad|>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
TOOL = "<|tool|>"
END = "<|end|>"
CALL = "<|call|>"
SPECIAL_TOKENS = [EOT, PAD, SYSTEM, USER, ASSISTANT, TOOL, END, CALL]
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT, "tool": TOOL}

TOOLS = {"calculator": ("expression",), "lookup": ("entity",)}
TOOLS_SYSTEM = "You can use tools: calculator, lookup."
NO_TOOLS_SYSTEM = "Answer directly, without tools."

# The same rendering as format_chat, for tokenizer.apply_chat_template (saved into tokenizer_config.json).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{ '<|system|>' }}"
    "{%- elif message['role'] == 'user' %}{{ '<|user|>' }}"
    "{%- elif message['role'] == 'assistant' %}{{ '<|assistant|>' }}"
    "{%- elif message['role'] == 'tool' %}{{ '<|tool|>' }}"
    "{%- else %}{{ raise_exception('Unknown role: ' + message['role']) }}{%- endif %}"
    "{%- if message.get('tool_calls') %}"
    "{%- for call in message['tool_calls'] %}{%- set fn = call['function'] if call.get('function') else call %}"
    "{{ '<|call|>' + fn['name'] + '(' }}"
    "{%- for k, v in fn['arguments'].items() %}{{ k + '=\"' + (v | string).replace('\\\\', '\\\\\\\\').replace('\"', '\\\\\"') + '\"' }}"
    "{%- if not loop.last %}{{ ', ' }}{%- endif %}{%- endfor %}{{ ')' }}{%- endfor %}"
    "{%- elif (message['content'] | string).startswith('<|call|>') %}{{ message['content'] }}"
    "{%- else %}{{ ' ' + (message['content'] | string) }}{%- endif %}"
    "{{ '<|end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>' }}{%- endif %}"
)


def _quote(value: Any) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_call(name: str, **args: Any) -> str:
    """``format_call('calculator', expression='3*4')`` -> ``<|call|>calculator(expression="3*4")``."""
    return CALL + name + "(" + ", ".join(f"{k}={_quote(v)}" for k, v in args.items()) + ")"


def _content(message: dict) -> str:
    calls = message.get("tool_calls")
    if calls:
        out = []
        for call in calls:
            fn = call.get("function", call)
            args = fn.get("arguments", {})
            if isinstance(args, str):
                import json

                args = json.loads(args)
            out.append(format_call(fn["name"], **args))
        return "".join(out)
    return str(message.get("content", ""))


def format_chat(messages: Iterable[dict], add_generation_prompt: bool = True) -> str:
    """Render messages (``{"role", "content"}`` dicts) as the zoo's chat text (see the module docstring)."""
    parts = [EOT]
    for m in messages:
        role = m.get("role")
        if role not in ROLE_TOKENS:
            raise ValueError(f"unknown role {role!r}: use system, user, assistant or tool")
        content = _content(m)
        sep = "" if content.startswith(CALL) else " "
        parts.append(ROLE_TOKENS[role] + sep + content + END + "\n")
    if add_generation_prompt:
        parts.append(ASSISTANT)
    return "".join(parts)


def reply_text(generated: str) -> str:
    """The content of a generated assistant turn: cut at ``<|end|>``/``<|endoftext|>``, leading space removed."""
    for stop in (END, EOT):
        generated = generated.split(stop, 1)[0]
    return generated.strip()


def context_qa_messages(context: str, question: str) -> list[dict]:
    """The context-QA prompt: the reply is the answer span copied from ``context``."""
    return [{"role": "user", "content": f"Context: {context.strip()}\nQuestion: {question.strip()}"}]


_CALL_RE = re.compile(r"^\s*(?:<\|call\|>)\s*([A-Za-z_]\w*)\((.*)\)\s*(?:<\|end\|>)?\s*$", re.S)
_ARG_RE = re.compile(r'\s*([A-Za-z_]\w*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.S)


def parse_tool_call(text: str) -> tuple[str, dict[str, str]] | None:
    """``'<|call|>calculator(expression="3*4")'`` -> ``('calculator', {'expression': '3*4'})``; None when the text
    is not exactly one well-formed call (any tool name; ``is_valid_tool_call`` also checks name and arguments)."""
    m = _CALL_RE.match(text or "")
    if not m:
        return None
    name, inner = m.group(1), m.group(2)
    args: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        a = _ARG_RE.match(inner, pos)
        if not a or a.end() == pos:
            return None
        args[a.group(1)] = re.sub(r"\\(.)", r"\1", a.group(2))
        pos = a.end()
    return name, args


def is_valid_tool_call(text: str) -> bool:
    """True when ``text`` is one well-formed call of a known tool with exactly its arguments."""
    parsed = parse_tool_call(text)
    return bool(parsed) and parsed[0] in TOOLS and tuple(sorted(parsed[1])) == tuple(sorted(TOOLS[parsed[0]]))


# ------------------------------------------------------------------------------------------------------ the tools
def calculator(expression: str) -> str:
    """The calculator as the training traces show it: the agent's tool (``labkit.calculator``, one
    implementation), floats rounded to 6 decimals as the zoo's corpus always wrote them; a refusal is
    ``Error: <reason>``."""
    from ..calculator import calculator_text
    from ..errors import ToolError

    try:
        return calculator_text(str(expression), digits=6)
    except ToolError as exc:
        return f"Error: {exc}"
