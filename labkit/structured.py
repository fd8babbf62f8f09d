"""Structured output and function calling (lab 17): JSON that always parses, and how often it is right.

    recs = records(10)                                    # passages the model never saw, and their true fields
    om = outlines_model("tiny-chat-v2")                   # outlines over transformers, told where a turn ends
    texts = outlines_json(om, [json_request(r) for r in recs], SCHEMA)
    score("outlines", texts, recs)                        # parse rate, schema-valid rate, fields right
    gbnf(SCHEMA)                                          # the same schema as llama.cpp's GBNF grammar
    answer, messages = tool_loop(client, "What is 12 times 34?")   # the client runs the calculator

The passages come from the zoo's *held-out* reading generator (``labkit.zoo.reading.Reading(heldout=True)``:
faker names and places of locales never used in training), with a fixed seed: one person, where they live, their
job and their favourite colour, in shuffled order with a filler sentence.

Constrained decoding is the libraries' work: **outlines** (its engine, outlines-core, turns a JSON schema into a
regular expression and an index over the vocabulary, and masks every token that would leave it) over
transformers, and **llama.cpp**'s GBNF grammars (llama-cpp-python's ``json_schema_to_gbnf``). What is ours is the
setting-up, which is where a first try goes wrong on a chat model (see :func:`outlines_model`), and the
measuring. The learner's pieces in lab 17 (a token bucket, choice-constrained greedy decoding, the client-side
tool loop) have kit versions here and in ``labkit.serve`` (``reference_choose``, ``tool_loop``) that the lab falls
back on until the learner has written theirs.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import LabkitUsageError

FIELDS = ("city", "job", "colour")
#: one question per field, in phrasings the zoo chat models were trained to answer from a passage
QUESTIONS = {"city": "Where does {name} live?", "job": "What does {name} do for a living?",
             "colour": "What is {name}'s favourite colour?"}


def colours() -> list[str]:
    from .zoo.reading import COLOURS

    return list(COLOURS)


def schema(max_city: int = 24, max_job: int = 32) -> dict:
    """The record's JSON schema. Strings are bounded (``maxLength``): a model that never learned JSON does not
    know when to close a quote, so an unbounded string runs until ``max_tokens`` and the JSON never ends."""
    return {"type": "object", "additionalProperties": False, "required": list(FIELDS),
            "properties": {"city": {"type": "string", "maxLength": max_city},
                           "job": {"type": "string", "maxLength": max_job},
                           "colour": {"enum": colours()}}}


SCHEMA = schema()


@dataclass
class Record:
    """A passage and the fields a reader should take from it."""

    name: str
    context: str
    city: str
    job: str
    colour: str

    def truth(self) -> dict:
        return {"city": self.city, "job": self.job, "colour": self.colour}


def records(n: int = 10, seed: int = 17) -> list[Record]:
    """``n`` passages from the zoo's held-out reading generator (names, places and jobs from faker locales the
    models never saw), the same for the same seed."""
    from .zoo.reading import COLOURS, FILLERS, Reading

    if not isinstance(n, int) or not 1 <= n <= 500:
        raise LabkitUsageError("n: a whole number of passages from 1 to 500")
    gen, r = Reading(seed, heldout=True), random.Random(seed)
    out = []
    while len(out) < n:
        p = gen.person(r)
        city, job, colour = gen.city(r), gen.value("a_job", r, p), r.choice(COLOURS)
        name = p["name"]
        facts = [f"{name} lives in {city}.", f"{name} works as {job}.", f"{name}'s favourite colour is {colour}.",
                 r.choice(FILLERS)]
        r.shuffle(facts)
        if len(city) > SCHEMA["properties"]["city"]["maxLength"] or len(job) > SCHEMA["properties"]["job"]["maxLength"]:
            continue  # the schema's bounds must admit the right answer
        out.append(Record(name, " ".join(facts), city, job, colour))
    return out


def json_request(rec: Record) -> str:
    """The user message asking for the whole record as JSON (in the context-QA format the model knows)."""
    return (f"Context: {rec.context}\nQuestion: What are {rec.name}'s city, job and favourite colour? "
            f"Answer in JSON with the keys city, job and colour.")


def field_question(rec: Record, name: str) -> str:
    """The user message asking for one field, in a phrasing the model was trained on."""
    if name not in QUESTIONS:
        raise LabkitUsageError(f"name: one of {', '.join(QUESTIONS)}, not {name!r}")
    return f"Context: {rec.context}\nQuestion: {QUESTIONS[name].format(name=rec.name)}"


# ------------------------------------------------------------------------------------------------ scoring
def parse(text: str, schema_: dict | None = None) -> tuple[dict | None, bool]:
    """``(object, valid)``: the parsed JSON object (None when ``text`` does not parse as one) and whether it
    matches ``schema_`` (default: :data:`SCHEMA`), checked with ``jsonschema``."""
    import jsonschema

    try:
        obj = json.loads(text)
    except (TypeError, ValueError):
        return None, False
    if not isinstance(obj, dict):
        return None, False
    try:
        jsonschema.validate(obj, schema_ or SCHEMA)
        return obj, True
    except jsonschema.ValidationError:
        return obj, False


@dataclass
class Scored:
    """One method's outputs on the same records: how many parse, match the schema, and have each field right."""

    method: str
    n: int
    parsed: int
    valid: int
    right: dict[str, int]
    seconds: float
    outputs: list[str] = field(default_factory=list, repr=False)

    @property
    def parse_rate(self) -> float:
        return self.parsed / self.n if self.n else 0.0

    @property
    def field_accuracy(self) -> float:
        return sum(self.right.values()) / (self.n * len(self.right)) if self.n else 0.0

    def row(self) -> dict:
        return {"method": self.method, "parses": f"{self.parsed}/{self.n}", "schema-valid": f"{self.valid}/{self.n}",
                **{f"{k} right": f"{v}/{self.n}" for k, v in self.right.items()},
                "seconds": round(self.seconds, 1)}


def _norm(v: Any) -> str:
    return " ".join(str(v).split()).strip(" .").lower()


def score(method: str, outputs: Sequence[str], recs: Sequence[Record], seconds: float = 0.0,
          schema_: dict | None = None) -> Scored:
    """Score ``outputs[i]`` (JSON text) against ``recs[i]``: a field is right when it equals the passage's value
    (case, surrounding spaces and a final full stop ignored)."""
    if len(outputs) != len(recs):
        raise LabkitUsageError(f"outputs: one per record ({len(recs)}), got {len(outputs)}")
    parsed = valid = 0
    right = {k: 0 for k in FIELDS}
    for text, rec in zip(outputs, recs):
        obj, ok = parse(text, schema_)
        parsed += obj is not None
        valid += ok
        for k in FIELDS:
            right[k] += obj is not None and k in obj and _norm(obj[k]) == _norm(getattr(rec, k))
    return Scored(method, len(recs), parsed, valid, right, seconds, list(outputs))


# ------------------------------------------------------------------------------------- outlines (transformers)
def outlines_model(model: Any = "tiny-chat-v2"):
    """An outlines model over a zoo chat model (``outlines.from_transformers``), set up for a chat model.

    The zoo chat models end a turn with ``<|end|>``, and transformers stops there; the tokenizer's EOS,
    which is all outlines knows of, is ``<|endoftext|>``. Left alone, outlines treats ``<|end|>`` as seven
    ordinary characters, allowed inside a JSON string: the model ends its turn in the middle of a string and the
    "constrained" JSON comes out cut, e.g. ``{ "name" : "``. So outlines gets a copy of the tokenizer whose EOS is
    ``<|end|>``: allowed only where the JSON is complete. The other special tokens are suppressed at generation
    (:data:`suppress`)."""
    import copy

    import outlines

    from . import models
    from .zoo import formats as F

    lm = models.resolve(model, kinds=("causal-lm",), use="constrained decoding")
    tok = copy.deepcopy(lm.tokenizer)
    if F.END in tok.get_vocab():
        tok.eos_token = F.END
    om = outlines.from_transformers(lm.model, tok)
    om.labkit_chat_tokenizer = lm.tokenizer  # the unmodified one: its chat template and special tokens
    return om


def suppress(om) -> list[int]:
    """Special-token ids other than the turn's end: never part of a constrained answer."""
    tok = om.labkit_chat_tokenizer if hasattr(om, "labkit_chat_tokenizer") else om.hf_tokenizer
    end = om.hf_tokenizer.eos_token_id
    return [i for i in tok.all_special_ids if i != end]


def chat_prompt(om_or_tokenizer, message: str, history: Sequence[dict] = ()) -> str:
    """``message`` as the last user turn (after ``history``) in the model's chat template, ready for the reply."""
    tok = getattr(om_or_tokenizer, "labkit_chat_tokenizer", om_or_tokenizer)
    return tok.apply_chat_template([*history, {"role": "user", "content": message}], tokenize=False,
                                   add_generation_prompt=True)


def outlines_json(om, messages: Sequence[str], schema_: dict | None = None, *, max_new_tokens: int | None = None,
                  whitespace: str | None = r"[ ]?") -> list[str]:
    """Greedy generation constrained to ``schema_`` (default :data:`SCHEMA`) for each user message, with outlines
    (which puts a plain string into the tokenizer's chat template itself: give the message, not a prompt).

    ``whitespace``: the regular expression allowed between JSON tokens (outlines' ``whitespace_pattern``); the
    default, at most one space, keeps a model that likes newlines from spending its tokens on them.
    ``max_new_tokens`` defaults to enough for the longest strings the schema allows (one token a character)
    plus the braces, keys and quotes: fewer, and a string still open when the tokens run out is cut, and the
    JSON with it."""
    import outlines
    import torch
    from outlines.types import JsonSchema

    schema_ = schema_ or SCHEMA
    if max_new_tokens is None:
        max_new_tokens = max_tokens_for(schema_)
    gen = outlines.Generator(om, JsonSchema(schema_, whitespace_pattern=whitespace))
    out = []
    with torch.no_grad():
        for m in messages:
            out.append(gen(m, max_new_tokens=max_new_tokens, suppress_tokens=suppress(om)))
    return out


def max_tokens_for(schema_: dict) -> int:
    """A token budget that always fits an object of ``schema_``: every string at its ``maxLength`` one token a
    character, every key, quote, comma and space one token each."""
    props = schema_.get("properties", {})
    n = 2
    for key, spec in props.items():
        n += len(key) + 8  # quotes, colon, spaces, comma
        if "enum" in spec:
            n += max(len(json.dumps(v)) for v in spec["enum"])
        elif spec.get("type") == "string":
            if "maxLength" not in spec:
                raise LabkitUsageError(f"schema_: give the string {key!r} a maxLength, or no token budget fits it")
            n += spec["maxLength"] + 2
        else:
            n += 12
    return n


def outlines_choice(om, message: str, options: Sequence[str]) -> str:
    """Greedy reply to the user ``message`` constrained to one of ``options`` (outlines' ``Literal`` output
    type; outlines applies the chat template): the reference for the learner's choice-constrained decoding."""
    from typing import Literal

    import outlines
    import torch

    gen = outlines.Generator(om, Literal[tuple(options)])
    with torch.no_grad():
        return gen(message, max_new_tokens=max(len(o) for o in options) + 2, suppress_tokens=suppress(om))


def token_texts(tokenizer) -> list[str]:
    """The text of every token id (what it adds when appended to a sequence)."""
    return [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]


def reference_choose(model, tokenizer, prompt: str, options: Sequence[str], texts: Sequence[str] | None = None) -> str:
    """The kit's own choice-constrained greedy decoding (what the lab falls back on): at each step only tokens
    that keep the text a prefix of some option may be chosen; stop when the text is an option. ``options`` must
    be prefix-free (no option the start of another)."""
    import torch

    _prefix_free(options)
    texts = texts if texts is not None else token_texts(tokenizer)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = ""
    with torch.no_grad():
        while out not in options:
            logits = model(ids).logits[0, -1]
            allowed = [t for t, s in enumerate(texts) if s and any(o.startswith(out + s) for o in options)]
            best = allowed[int(torch.argmax(logits[allowed]))]
            out += texts[best]
            ids = torch.cat([ids, torch.tensor([[best]])], dim=1)
    return out


def _prefix_free(options: Sequence[str]) -> None:
    if not options or len(set(options)) != len(options):
        raise LabkitUsageError("options: give distinct strings to choose from")
    for a in options:
        for b in options:
            if a != b and b.startswith(a):
                raise LabkitUsageError(f"options: {a!r} is the start of {b!r}; give options where none begins "
                                       f"another (add a word, or end each with the same mark)")


# ------------------------------------------------------------------------------------------------ llama.cpp
def gbnf(schema_: dict | None = None, *, json_strings: bool = True) -> str:
    """``schema_`` as a GBNF grammar, with llama-cpp-python's converter (what its server does with a
    ``response_format`` schema): the grammar a llama.cpp server enforces token by token.

    The converter's ``char`` rule lets control characters (a raw newline, a tab) into strings, which JSON forbids:
    a model that likes newlines then writes "JSON" that ``json.loads`` rejects. ``json_strings=True`` (the
    default) tightens that one rule to what JSON allows."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    grammar = json_schema_to_gbnf(json.dumps(schema_ or SCHEMA))
    if json_strings:
        loose = 'char ::= [^"\\\\]'
        if loose not in grammar:
            raise LabkitUsageError("schema_: llama-cpp-python's grammar has no `char` rule to tighten; pass "
                                   "json_strings=False to use it as it is")
        grammar = grammar.replace(loose, 'char ::= [^"\\\\\\x00-\\x1f]', 1)
    return grammar


# -------------------------------------------------------------------------------------- function calling
CALCULATOR_TOOL = {"type": "function", "function": {
    "name": "calculator", "description": "evaluate integer arithmetic such as 347*86",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}


def run_calculator(arguments: str) -> str:
    """Run the calculator tool on a call's JSON ``arguments`` (``{"expression": ...}``): the observation text,
    or the error as text (a tool error goes back to the model, it does not stop the client)."""
    from .calculator import calculator_text
    from .errors import ToolError

    try:
        expression = json.loads(arguments)["expression"]
        return calculator_text(str(expression))
    except (ValueError, KeyError, TypeError) as exc:
        return f"error: the arguments should be JSON with an expression ({exc})"
    except ToolError as exc:
        return f"error: {exc}"


def tool_loop(client, question: str, *, model: str = "tiny-chat-v2", tools: Sequence[dict] = (CALCULATOR_TOOL,),
              run: Callable[[str, str], str] | None = None, max_rounds: int = 3,
              max_tokens: int = 48) -> tuple[str, list[dict]]:
    """The kit's client-side tool loop over an OpenAI-compatible ``client``: ask with ``tools``; while the reply
    has ``tool_calls``, run each (``run(name, arguments)``, default: the calculator), send the results back as
    ``tool`` messages with the call's id, and ask again. ``(final answer, messages)``."""
    run = run or (lambda name, arguments: run_calculator(arguments))
    messages: list[dict] = [{"role": "user", "content": question}]
    for _ in range(max_rounds):
        reply = client.chat.completions.create(model=model, messages=messages, tools=list(tools),
                                               max_tokens=max_tokens, temperature=0).choices[0].message
        if not reply.tool_calls:
            messages.append({"role": "assistant", "content": reply.content or ""})
            return reply.content or "", messages
        messages.append({"role": "assistant", "content": reply.content, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in reply.tool_calls]})
        for c in reply.tool_calls:
            messages.append({"role": "tool", "tool_call_id": c.id, "content": run(c.function.name, c.function.arguments)})
    return "", messages


def arithmetic_questions(n: int = 4, seed: int = 0) -> list[tuple[str, int]]:
    """``(question, true answer)`` pairs of products the learner has not seen, phrased as the zoo's training
    traces were."""
    r = random.Random(f"lab17-arith-{seed}")
    out = []
    for _ in range(n):
        a, b = r.randint(100, 9999), r.randint(10, 999)
        out.append((f"What is {a} times {b}?", a * b))
    return out


def timed(fn: Callable, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    t0 = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - t0
