"""One grammar for every labkit magic.

``%%name [options]`` with the cell body as the main input. Options are parsed with argparse; ``--help`` prints
usage; ``--out NAME`` stores the result object in the user namespace (it is also the cell's value). Engine
errors (``LabkitError``) become IPython ``UsageError``s: one clear message, no traceback, the kernel lives on.
Engine messages name Python parameters in backquotes (`` `max_steps` ``); the magic shows its flag instead
(``--max-steps``), so a learner reads the option they typed and a script's author the argument they passed.
"""
from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable

from ..errors import LabkitError, LabkitUsageError


class MagicParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, and knows ``--help``."""

    def __init__(self, prog: str, description: str = "", epilog: str | None = None):
        super().__init__(
            prog=prog, description=description, epilog=epilog, add_help=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        self.add_argument("-h", "--help", action="store_true", help="show this help and exit")

    def error(self, message):  # argparse calls this on bad options
        raise LabkitUsageError(f"{self.prog}: {message}. Try `{self.prog} --help`.")


def _strict() -> bool:
    """Under ``LABKIT_STRICT_EXERCISES=1`` (set by ``make test``) a magic's usage error is a real exception.

    IPython shows a ``UsageError`` as one line on stderr and the cell does not count as failed, so nbmake would
    pass a lab whose magic call is broken; in strict mode the LabkitError propagates and the cell fails.
    """
    import os

    return os.environ.get("LABKIT_STRICT_EXERCISES", "") not in ("", "0", "false", "no")


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # unbalanced quotes
        raise LabkitUsageError(f"could not read the magic line ({exc}); check its quotes") from None


@dataclass
class Magic:
    """A magic: its name, kind ('cell' or 'line'), parser and the function that calls the engine.

    ``run(args, body, shell)`` returns the result object (or None).
    """

    name: str
    kind: str
    parser: MagicParser
    run: Callable
    summary: str = ""
    out_option: bool = True
    flags: dict = field(default_factory=dict)  # engine parameter -> flag, where the option's dest differs

    def flag_of(self) -> dict:
        """Engine parameter name -> this magic's flag (from the parser's options, then ``flags``)."""
        table = {a.dest: a.option_strings[-1] for a in self.parser._actions if a.option_strings}
        table.update(self.flags)
        return table

    def translate(self, message: str) -> str:
        """An engine message in this magic's words: `` `param` `` -> ``--flag`` (unknown names lose the quotes)."""
        table = self.flag_of()
        return re.sub(r"`([A-Za-z_]\w*)`", lambda m: table.get(m.group(1), m.group(1)), message)

    def __post_init__(self):
        if self.out_option:
            self.parser.add_argument("--out", metavar="NAME", help="also store the result in this variable")
        self.summary = self.summary or (self.parser.description or "").strip().splitlines()[0]

    def help_text(self) -> str:
        return self.parser.format_help()

    def __call__(self, line: str = "", cell: str | None = None, shell=None):
        from IPython.core.error import UsageError

        try:
            args = self.parser.parse_args(_split(line))
            if args.help:
                print(self.help_text())
                return None
            body = cell if cell is not None else ""
            if body.endswith("\n"):  # IPython appends a newline to every cell; the learner did not type it
                body = body[:-1]
            result = self.run(args, body, shell)
        except LabkitError as exc:
            if _strict():  # unattended runs (make test, nbmake): fail the cell for real, so a broken lab is caught
                raise
            raise UsageError(self.translate(str(exc))) from None
        if self.out_option and getattr(args, "out", None):
            if not args.out.isidentifier():
                raise UsageError(f"--out needs a Python variable name, not {args.out!r}")
            shell.user_ns[args.out] = result
        return result

    def register(self, ipython) -> None:
        magic = self

        if self.kind == "cell":
            # registered as line_cell so that `%name --help` works and an empty cell gets a short message
            def fn(line, cell=None):
                return magic(line, cell, ipython)
        else:
            def fn(line):
                return magic(line, None, ipython)
        fn.__doc__ = self.help_text()
        fn.__name__ = self.name
        kind = "line_cell" if self.kind == "cell" else self.kind
        ipython.register_magic_function(fn, magic_kind=kind, magic_name=self.name)


def require_body(body: str, magic: str, what: str = "some text") -> str:
    """Empty cell -> a short usage message (no traceback)."""
    if not body or not body.strip():
        raise LabkitUsageError(f"the cell is empty: %%{magic} needs {what} in the cell body, under the magic line. "
                               f"See `%%{magic} --help`.")
    return body
