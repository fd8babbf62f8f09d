"""The one calculator: restricted arithmetic for the agent's tool and for the zoo's training traces.

``calculate(expression)`` parses the expression with :mod:`ast` and evaluates only numbers, ``+ - * / // % **``,
unary signs, parentheses and a few named functions (``sqrt abs round min max``). Names, attributes, subscripts,
strings, lambdas and everything else are refused before anything runs. Bounds: expression length, node count and
depth, exponent size, result size (in bits) and a time limit checked at every node. Written by hand because the
limits are the lesson (lab 19: what exactly an agent's tool may do); every refusal is a ``ToolError``.
"""
from __future__ import annotations

import ast
import math
import operator
import time

from .errors import ToolError

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_DEPTH = 30
MAX_EXPONENT = 1000
MAX_RESULT_BITS = 4096  # ~1233 decimal digits
CALC_TIME_LIMIT = 0.5  # seconds

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max}


def _bits(x) -> int:
    if isinstance(x, int):
        return x.bit_length()
    if isinstance(x, float):
        return 0 if not math.isfinite(x) or x == 0 else max(0, math.frexp(x)[1])
    return 0


def _check_size(value):
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number (overflow)")
    if _bits(value) > MAX_RESULT_BITS:
        raise ToolError(f"the result would be too large (more than {MAX_RESULT_BITS} bits, ~1200 digits)")
    return value


def calculate(expression: str, *, time_limit: float = CALC_TIME_LIMIT):
    """Evaluate arithmetic safely; returns an int or float, raises :class:`ToolError` with a clear reason."""
    if not isinstance(expression, str):
        raise ToolError(f"the expression must be text, got {type(expression).__name__}")
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    if not text:
        raise ToolError("the expression is empty; write arithmetic such as 347*86")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is too long ({len(text)} characters, at most {MAX_EXPRESSION_CHARS})")
    if "__" in text:
        raise ToolError("double underscores are not allowed: only numbers, operators and sqrt/abs/round/min/max")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ToolError(f"not valid arithmetic ({type(exc).__name__}); write e.g. (12+3)*4") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ToolError(f"the expression is too complex ({len(nodes)} parts, at most {MAX_NODES})")
    deadline = time.monotonic() + time_limit

    def ev(node, depth=0):
        if time.monotonic() > deadline:
            raise ToolError(f"the calculation took longer than {time_limit} s and was stopped")
        if depth > MAX_DEPTH:
            raise ToolError(f"the expression is nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(node, ast.Expression):
            return ev(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ToolError(f"only numbers are allowed, not {type(node.value).__name__} {node.value!r:.30}")
            return _check_size(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](ev(node.operand, depth + 1))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = ev(node.left, depth + 1), ev(node.right, depth + 1)
            op = type(node.op)
            if op is ast.Pow:
                if abs(b) > MAX_EXPONENT:
                    raise ToolError(f"the exponent {b} is too large (at most {MAX_EXPONENT} in absolute value)")
                if isinstance(a, int) and isinstance(b, int) and b > 0 and max(1, _bits(a)) * b > MAX_RESULT_BITS + b:
                    raise ToolError(f"the result would be too large (more than {MAX_RESULT_BITS} bits, ~1200 digits)")
            if op is ast.Mult and _bits(a) + _bits(b) > MAX_RESULT_BITS + 1:
                raise ToolError(f"the result would be too large (more than {MAX_RESULT_BITS} bits, ~1200 digits)")
            try:
                value = _BINOPS[op](a, b)
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
            except OverflowError:
                raise ToolError("the result overflowed (too large for a float)") from None
            if isinstance(value, complex):
                raise ToolError("the result is a complex number; only real arithmetic is supported")
            return _check_size(value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            if node.keywords or not 1 <= len(node.args) <= 4:
                raise ToolError(f"{node.func.id}() takes 1 to 4 numbers")
            args = [ev(a, depth + 1) for a in node.args]
            try:
                return _check_size(_FUNCS[node.func.id](*args))
            except (ValueError, TypeError) as exc:
                raise ToolError(f"{node.func.id}(): {exc}") from None
        what = type(node).__name__
        if isinstance(node, ast.Name):
            what = f"the name {node.id!r}"
        elif isinstance(node, ast.Call):
            what = "a function call other than sqrt/abs/round/min/max"
        elif isinstance(node, ast.Attribute):
            what = f"attribute access (.{node.attr})"
        raise ToolError(f"{what} is not allowed: only numbers, + - * / // % **, parentheses and "
                        f"sqrt/abs/round/min/max")

    return ev(tree)


def calculator_text(expression: str, digits: int = 10) -> str:
    """The calculator as a tool observation: the result (integers without ``.0``, floats rounded to ``digits``
    decimals) as text. The zoo's training traces use ``digits=6``, as its corpus always has."""
    value = calculate(expression)
    if isinstance(value, float):
        value = int(value) if value.is_integer() and abs(value) < 2 ** 53 else round(value, digits)
    return str(value)
