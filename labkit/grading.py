"""Student versions of the labs, and an nbgrader course tree: ``labkit student ...``.

The committed labs are the instructor version. Exercise cells use nbgrader's markers (see ``labkit.exercises``)::

    ### BEGIN SOLUTION
    answer = tokenize("hello world").n_tokens
    ### END SOLUTION
    check("ex2", answer, expected=2, hint="...")

    ### BEGIN HIDDEN TESTS
    check("ex2-hidden", answer, expected=2)
    ### END HIDDEN TESTS

A student version replaces every solution region by ``NAME = ...  # YOUR ANSWER HERE`` for each name the region
assigned (read with ``ast``, so tuple unpacking, augmented and annotated assignments, ``def``/``class``/``import``
and assignments inside ``with``/``if``/``for`` blocks count) and that the notebook reads afterwards (so the helper
variables of a worked solution do not become blanks), removes the hidden-test regions, and clears outputs and
execution counts. Where the solution is a ``def`` or ``class``, the blank comes with its header (signature,
decorators) and docstring, commented out, above ``NAME = ...``: the learner uncomments it and writes the body.
``check`` treats ``...`` as "not answered yet", so "Run all" on a student version runs to the end
without an error, provided no later cell *uses* an answer outside ``check`` (``labkit student check`` finds those).

Commands::

    labkit student build [--src DIR] [--out DIR] [NOTEBOOK ...]   student versions of every lab (default ./labs-student)
    labkit student copy DEST [--src DIR | --prebuilt DIR]          student versions into a learner's folder,
                                                                   never overwriting their edits (= ``labkit labs copy``)
    labkit student nbgrader COURSE_DIR [--src DIR] [--points N]    an nbgrader ``source/`` tree (cell metadata added)
                                                                   for ``nbgrader generate_assignment`` / ``autograde``
    labkit student check [--src DIR] [NOTEBOOK ...]                lint: markers, >= 3 exercises, answers used
                                                                   before the learner wrote them

Plain Python; ``nbformat`` reads and writes the notebooks; IPython's input transformer (lazily imported) turns
magics into Python for the lint.
"""
from __future__ import annotations

import argparse
import ast
import copy
import os
import re
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LabkitUsageError

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
ANSWER_HERE = "# YOUR ANSWER HERE"
MARKDOWN_ANSWER = "YOUR ANSWER HERE"

_MARKER = re.compile(r"^(?P<indent>[ \t]*)### (?P<what>BEGIN|END) (?P<kind>SOLUTION|HIDDEN TESTS)\s*$")
_CHECK_CALL = re.compile(r"(?<![\w.])check\(")


@dataclass
class NotebookReport:
    """What ``student_notebook`` did to one notebook."""

    name: str
    solutions: int = 0
    hidden: int = 0
    answers: list[str] = field(default_factory=list)  # names learners must fill in
    checks: int = 0
    warnings: list[str] = field(default_factory=list)

    def __str__(self):
        text = (f"{self.name}: {self.solutions} solution region(s) -> {', '.join(self.answers) or 'none'}; "
                f"{self.hidden} hidden-test region(s) removed; {self.checks} check() call(s)")
        return text + "".join(f"\n    warning: {w}" for w in self.warnings)


# ------------------------------------------------------------------------------------------------ source transforms
def assigned_names(code: str) -> list[str]:
    """Names a piece of code binds at its top level, in order (``a, b = ...`` -> ``['a', 'b']``).

    Raises ``SyntaxError`` when the code does not parse on its own (a solution region must be whole statements).
    """
    tree = ast.parse(textwrap.dedent(code))
    names: list[str] = []

    def add(target):
        if isinstance(target, ast.Name):
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                add(elt)
        elif isinstance(target, ast.Starred):
            add(target.value)
        # attribute / subscript targets (obj.x = ..., d[k] = ...) bind no new name

    def visit(body):
        for node in body:
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    add(t)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                add(node.target)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
                continue  # names bound inside a function or class body are not the region's
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.append(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                add(node.target)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        add(item.optional_vars)
            for sub in ast.walk(node):  # walrus inside an expression
                if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                    names.append(sub.target.id)
            # assignments inside blocks (`with torch.no_grad(): answer = ...`, if/for/while/try bodies)
            for block in ("body", "orelse", "finalbody"):
                visit(getattr(node, block, []) or [])
            for handler in getattr(node, "handlers", []) or []:
                visit(handler.body)

    visit(tree.body)
    seen: set[str] = set()
    return [n for n in names if not (n in seen or seen.add(n))]


def _regions(lines: list[str], where: str):
    """Yield (kind, start, end, indent) for each marker pair; raise LabkitUsageError on unbalanced markers."""
    open_kind = open_at = open_indent = None
    for i, line in enumerate(lines):
        m = _MARKER.match(line.rstrip("\n"))
        if not m:
            continue
        kind, what = m.group("kind"), m.group("what")
        if what == "BEGIN":
            if open_kind is not None:
                raise LabkitUsageError(
                    f"{where}, line {i + 1}: '### BEGIN {kind}' inside an open '### BEGIN {open_kind}' "
                    f"(line {open_at + 1}); close it with '### END {open_kind}' first")
            open_kind, open_at, open_indent = kind, i, m.group("indent")
        else:
            if open_kind != kind:
                raise LabkitUsageError(
                    f"{where}, line {i + 1}: '### END {kind}' without a matching '### BEGIN {kind}'"
                    + (f" (the open region is '### BEGIN {open_kind}', line {open_at + 1})" if open_kind else ""))
            yield kind, open_at, i, open_indent
            open_kind = None
    if open_kind is not None:
        raise LabkitUsageError(f"{where}, line {open_at + 1}: '### BEGIN {open_kind}' is never closed: "
                               f"add '### END {open_kind}' after the region")


def student_source(source: str, where: str = "cell", markdown: bool = False,
                   later: list[str] | None = None) -> tuple[str, dict]:
    """The student version of one cell's source, and what was done: {'solutions', 'hidden', 'answers', 'warnings'}.

    ``later``: the code that runs after this cell (the notebook's later code cells). When given, a region's
    answers are the names it assigns that are read afterwards (in this cell after the region, or later), so helper
    variables of a worked solution (loop counters, intermediate sums) do not become blanks; when none is read
    later, every name the region assigns."""
    lines = source.splitlines(keepends=True)
    info = {"solutions": 0, "hidden": 0, "answers": [], "warnings": []}
    regions = list(_regions(lines, where))
    if not regions:
        return source, info
    out: list[str] = []
    pos = 0
    for kind, start, end, indent in regions:
        out.extend(lines[pos:start])
        body = "".join(lines[start + 1:end])
        pos = end + 1
        if kind == "HIDDEN TESTS":
            info["hidden"] += 1
            continue
        info["solutions"] += 1
        if markdown:
            out.append(f"{indent}{MARKDOWN_ANSWER}\n")
            continue
        try:
            names = assigned_names(body)
            if later is not None and names:
                after = "".join(lines[end + 1:])
                read = _later_reads([textwrap.dedent(after)] + list(later)) if after.strip() or later else set()
                defined = _defined_functions(body)  # a def/class is the learner's piece, never a helper variable
                names = [n for n in names if n in read or n in defined] or names
        except SyntaxError as exc:
            raise LabkitUsageError(
                f"{where}, solution at line {start + 1}: the region is not whole Python statements "
                f"({exc.msg}, region line {exc.lineno}); put complete assignments such as `answer = ...` "
                f"between the markers") from None
        if names:
            for n in names:
                out.extend(f"{indent}{line}\n" for line in _signature_stub(body, n))
                out.append(f"{indent}{n} = ...  {ANSWER_HERE}\n")
            info["answers"].extend(names)
        else:
            info["warnings"].append(f"{where}, line {start + 1}: the solution region assigns no name, so the "
                                    f"student version has nothing to fill in; assign the answer, e.g. `answer = ...`")
            out.append(f"{indent}pass  {ANSWER_HERE}\n")
    out.extend(lines[pos:])
    text = "".join(out)
    if not source.endswith("\n") and text.endswith("\n"):
        text = text[:-1]
    return text, info


def _defined_functions(body: str) -> set[str]:
    """Names the region binds with a top-level ``def`` or ``class`` (whether or not a later cell reads them)."""
    try:
        tree = ast.parse(textwrap.dedent(body))
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _signature_stub(body: str, name: str) -> list[str]:
    """When the solution defines ``name`` with ``def`` or ``class``: its header (decorators, signature) and docstring,
    commented out, for the learner to uncomment and fill in; otherwise nothing. The blank itself stays
    ``NAME = ...`` so that "Run all" still treats it as unanswered rather than calling an empty function."""
    src = textwrap.dedent(body)
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return []
    node = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == name), None)
    if node is None:
        return []
    lines = src.splitlines()
    first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    head = node.body[0]
    has_doc = (isinstance(head, ast.Expr) and isinstance(head.value, ast.Constant)
               and isinstance(head.value.value, str))
    last = head.end_lineno if has_doc else head.lineno - 1
    body_indent = " " * head.col_offset
    kept = [ln for ln in lines[first:last] if not ln.strip().startswith("#")]
    what = "def" if not isinstance(node, ast.ClassDef) else "class"
    return ([f"# Write `{name}` here: uncomment the {what} below, fill in its body, and delete the `{name} = ...` line."]
            + [f"# {ln}".rstrip() for ln in kept] + [f"# {body_indent}..."])


def _read(path: Path):
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # unreadable JSON, wrong format
        raise LabkitUsageError(f"cannot read {path} as a notebook ({type(exc).__name__}: {exc})") from None


def _write(nb, path: Path) -> None:
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".labkit-tmp-", suffix=".ipynb")
    os.close(fd)
    try:
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def student_notebook(nb, name: str = "notebook"):
    """Return (student copy of ``nb``, NotebookReport). ``nb`` is an nbformat v4 notebook; it is not modified."""
    nb = copy.deepcopy(nb)
    report = NotebookReport(name)
    code = [c.source if c.cell_type == "code" else "" for c in nb.cells]
    for idx, cell in enumerate(nb.cells):
        where = f"{name}, cell {idx + 1}"
        new, info = student_source(cell.source, where, markdown=cell.cell_type == "markdown",
                                   later=[c for c in code[idx + 1:] if c])
        cell.source = new
        report.solutions += info["solutions"]
        report.hidden += info["hidden"]
        report.answers += info["answers"]
        report.warnings += info["warnings"]
        if cell.cell_type == "code":
            report.checks += len(_CHECK_CALL.findall(new))
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    nb.metadata.setdefault("labkit", {})["student_version"] = True
    return nb, report


def lab_notebooks(src: Path | None, names: list[str] | None = None) -> tuple[Path, list[Path]]:
    from .labs import labs_dir

    src = Path(src).expanduser() if src else labs_dir()
    if not src.is_dir():
        raise LabkitUsageError(f"{src} is not a folder of lab notebooks; pass --src DIR (default: labkit's labs)")
    found = sorted(p for p in src.glob("*.ipynb") if not p.name.endswith(".updated.ipynb"))
    if names:
        chosen = []
        for n in names:
            p = Path(n)
            cand = p if p.is_file() else src / p.name if (src / p.name).is_file() else src / (p.name + ".ipynb")
            if not cand.is_file():
                raise LabkitUsageError(f"no lab notebook {n!r} in {src}; the labs are: "
                                       + (", ".join(q.name for q in found) or "(none)"))
            chosen.append(cand)
        found = chosen
    if not found:
        raise LabkitUsageError(f"no .ipynb notebooks in {src}")
    return src, found


def write_student_versions(out: str | os.PathLike, src: str | os.PathLike | None = None,
                           names: list[str] | None = None) -> list[NotebookReport]:
    """Write the student version of every lab in ``src`` (default: labkit's labs) to ``out``; other lab files
    (data, images) are copied as they are."""
    import shutil

    src, notebooks = lab_notebooks(Path(src) if src else None, names)
    out = Path(out).expanduser()
    if out.resolve() == src.resolve():
        raise LabkitUsageError(f"refusing to write student versions over the instructor labs in {src}: "
                               f"pick another --out folder")
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for path in notebooks:
        student, rep = student_notebook(_read(path), path.name)
        _write(student, out / path.name)
        reports.append(rep)
    if not names:  # the whole folder: bring along data files the labs read
        for extra in sorted(src.rglob("*")):
            rel = extra.relative_to(src)
            if (extra.is_file() and extra.suffix != ".ipynb" and ".ipynb_checkpoints" not in rel.parts
                    and "__pycache__" not in rel.parts and not rel.name.startswith(".")):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(extra, out / rel)
    return reports


# ------------------------------------------------------------------------------------------------ lint
def _as_python(source: str) -> str:
    """Cell source as plain Python (IPython's own transformer turns %magics and !shell into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # IPython missing or confused: drop magic/shell lines
        return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _is_check_call(node) -> bool:
    """``check(...)`` and ``yours(...)`` (``labkit.exercises``) accept an unanswered ``...``."""
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id in ("check", "yours"))
        or (isinstance(node.func, ast.Attribute) and node.func.attr in ("check", "yours")))


def _bound_in(fn) -> set[str]:
    """Names local to a function or lambda: its parameters and what its own body assigns."""
    a = fn.args
    bound = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    bound |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    if not isinstance(fn, ast.Lambda):
        globals_ = {n for st in ast.walk(fn) if isinstance(st, (ast.Global, ast.Nonlocal)) for n in st.names}
        for st in fn.body:
            bound |= _stores(st)
        bound -= globals_
    return bound


def _answered_guard(test) -> frozenset[str]:
    """The names ``test`` requires answered: ``NAME is not ...`` (and several joined by ``and``), so that the
    lab runs a block only once the learner wrote them."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return frozenset().union(*(_answered_guard(v) for v in test.values))
    if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.IsNot) and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value is Ellipsis):
        return frozenset({test.left.id})
    return frozenset()


def _loads(node) -> list[ast.Name]:
    """Names ``node`` reads from the notebook's global scope, outside ``check(...)`` calls (which accept an
    unanswered ``...``); names local to a function, lambda or comprehension are not counted."""
    out = []
    stack = [(node, frozenset())]
    while stack:
        n, local = stack.pop()
        if _is_check_call(n):
            continue
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner = local | _bound_in(n)
            if not isinstance(n, ast.Lambda):  # decorators and defaults run in the enclosing scope
                stack.extend((d, local) for d in n.decorator_list)
            stack.extend((d, local) for d in n.args.defaults + [d for d in n.args.kw_defaults if d is not None])
            body = n.body if isinstance(n.body, list) else [n.body]
            stack.extend((b, inner) for b in body)
            continue
        guard = _answered_guard(n.test) if isinstance(n, (ast.If, ast.IfExp)) else None
        if guard:  # `if NAME is not ...:` / `X if NAME is not ... else Y`: the body runs only once it is answered
            body = n.body if isinstance(n.body, list) else [n.body]
            orelse = n.orelse if isinstance(n.orelse, list) else [n.orelse]
            stack.extend((b, local | guard) for b in body)
            stack.extend((b, local) for b in orelse)
            continue
        if isinstance(n, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            targets = {t.id for g in n.generators for t in ast.walk(g.target) if isinstance(t, ast.Name)}
            inner = local | targets
            stack.append((n.generators[0].iter, local))  # the first iterable is evaluated outside
            for i, g in enumerate(n.generators):
                if i:
                    stack.append((g.iter, inner))
                stack.extend((c, inner) for c in g.ifs)
            elts = [n.key, n.value] if isinstance(n, ast.DictComp) else [n.elt]
            stack.extend((e, inner) for e in elts)
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            if n.id not in local:
                n.guarded = local  # names known answered (or local) where this one is read
                out.append(n)
            continue
        stack.extend((c, local) for c in ast.iter_child_nodes(n))
    return out


def _later_reads(sources: list[str]) -> set[str]:
    """Global names read anywhere in these code sources (each parsed on its own; unparsable ones: any identifier)."""
    names: set[str] = set()
    for src in sources:
        if src.lstrip().startswith("%%"):
            continue
        try:
            names |= {n.id for n in _loads(ast.parse(_as_python(src)))} | _check_args(src)
        except SyntaxError:
            names |= set(re.findall(r"[A-Za-z_]\w*", src))
    return names


def _check_args(src: str) -> set[str]:
    """Names passed to ``check(...)`` (excluded by ``_loads``, but they are what the exercise reads)."""
    try:
        tree = ast.parse(_as_python(src))
    except SyntaxError:
        return set()
    return {n.id for c in ast.walk(tree) if _is_check_call(c) for n in ast.walk(c)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _stores(node) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update(a.asname or a.name.split(".")[0] for a in n.names)
    return names


def unanswered_uses(student_nb, name: str = "notebook") -> list[str]:
    """Places where a *student version* would use an answer the learner has not written yet (``NAME = ...``)
    outside ``check(...)``: directly, or through a function whose body reads it (``bpe_train`` calling the
    learner's ``merge``). Each is a cell that fails for a learner who runs the lab before answering."""
    tainted: dict[str, int] = {}  # answer name -> cell number where the learner writes it
    deps: dict[str, set[str]] = {}  # function defined in the lab -> global names its body reads
    problems: list[str] = []

    def closure(fn: str) -> set[str]:
        seen, todo = set(), [fn]
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            todo.extend(d for d in deps.get(f, ()) if d in deps)
        return set().union(*(deps.get(f, set()) for f in seen))

    for idx, cell in enumerate(student_nb.cells):
        if cell.cell_type != "code" or cell.source.lstrip().startswith("%%"):
            continue
        lines = cell.source.splitlines()
        try:
            tree = ast.parse(_as_python(cell.source))
        except SyntaxError:
            continue
        for stmt in tree.body:
            line = lines[stmt.lineno - 1] if stmt.lineno - 1 < len(lines) else ""
            if (isinstance(stmt, ast.Assign) and ANSWER_HERE in line and isinstance(stmt.value, ast.Constant)
                    and stmt.value.value is Ellipsis):
                for t in stmt.targets:
                    if isinstance(t, ast.Name):
                        tainted[t.id] = idx + 1
                continue
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                deps[stmt.name] = {n.id for n in _loads(stmt)} - {a.arg for a in stmt.args.args}
                continue
            for n in _loads(stmt):
                if n.id in tainted:
                    problems.append(f"{name}, cell {idx + 1}: uses `{n.id}`, which the learner writes in cell "
                                    f"{tainted[n.id]}; the student version fails here until it is answered")
                elif n.id in deps and (closure(n.id) & set(tainted)) - getattr(n, "guarded", frozenset()):
                    used = sorted((closure(n.id) & set(tainted)) - getattr(n, "guarded", frozenset()))
                    problems.append(f"{name}, cell {idx + 1}: calls `{n.id}`, which uses `{', '.join(used)}` "
                                    f"(written by the learner in cell {tainted[used[0]]}); the student version "
                                    f"fails here until it is answered")
            for stored in _stores(stmt):
                tainted.pop(stored, None)
                deps.pop(stored, None)
    return list(dict.fromkeys(problems))


# ------------------------------------------------------------------------------------------------ nbgrader
def _assert_checks(code: str) -> str:
    """In an autograder test cell, turn each top-level ``check(...)`` statement into an assertion, so an
    unanswered (``...``) or wrong answer fails the cell and nbgrader gives no points."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines(keepends=True)
    for node in reversed(tree.body):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id == "check"):
            start, end = node.lineno - 1, node.end_lineno
            call = "".join(lines[start:end]).rstrip("\n")
            lines[start:end] = [f"assert (_labkit_fb := {call.strip()}).ok, _labkit_fb\n"]
    return "".join(lines)


def nbgrader_notebook(nb, name: str, points: float = 1.0):
    """An nbgrader *source* notebook: each exercise cell split into an autograded-answer cell (the solution region)
    and an autograder-tests cell (the checks, as assertions, hidden tests kept for nbgrader to strip); a markdown
    cell with a solution region becomes a manually graded answer. Returns (notebook, autograded exercises)."""
    import nbformat

    nb = copy.deepcopy(nb)
    cells = []
    stem = Path(name).stem
    n_ex = n_written = 0
    for idx, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and BEGIN_SOLUTION in cell.source:  # a written answer: graded by hand
            n_written += 1
            cell.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False, "task": False,
                                         "points": points, "grade_id": f"{stem}-written-{n_written}",
                                         "schema_version": 3}
            cells.append(cell)
            continue
        if cell.cell_type != "code" or BEGIN_SOLUTION not in cell.source:
            cells.append(cell)
            continue
        lines = cell.source.splitlines(keepends=True)
        regions = list(_regions(lines, f"{name}, cell {idx + 1}"))
        last_solution_end = max(end for kind, _, end, _ in regions if kind == "SOLUTION")
        for kind, start, end, indent in reversed(regions):  # tell the learner which names nbgrader's stub replaces
            if kind == "SOLUTION" and start <= last_solution_end:
                names = assigned_names("".join(lines[start + 1:end]))
                if names:
                    lines.insert(start, f"{indent}# Assign: {', '.join(names)}\n")
                    last_solution_end += 1
        answer_src = "".join(lines[:last_solution_end + 1]).rstrip("\n")
        test_src = "".join(lines[last_solution_end + 1:]).strip("\n")
        n_ex += 1
        answer = nbformat.v4.new_code_cell(answer_src)
        answer.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "task": False,
                                       "grade_id": f"{stem}-answer-{n_ex}", "schema_version": 3}
        cells.append(answer)
        if test_src:
            test = nbformat.v4.new_code_cell(_assert_checks(test_src))
            test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "task": False,
                                         "points": points, "grade_id": f"{stem}-tests-{n_ex}",
                                         "schema_version": 3}
            cells.append(test)
    nb.cells = cells
    for c in nb.cells:
        c.outputs = [] if c.cell_type == "code" else None
        if c.cell_type != "code":
            c.pop("outputs", None)
        else:
            c.execution_count = None
    return nb, n_ex


def write_nbgrader_source(course: str | os.PathLike, src: str | os.PathLike | None = None,
                          names: list[str] | None = None, points: float = 1.0) -> list[tuple[str, int]]:
    """``COURSE/source/<lab>/<lab>.ipynb`` for every lab, with nbgrader cell metadata."""
    src_dir, notebooks = lab_notebooks(Path(src) if src else None, names)
    course = Path(course).expanduser()
    done = []
    for path in notebooks:
        nb, n = nbgrader_notebook(_read(path), path.name, points)
        _write(nb, course / "source" / path.stem / path.name)
        done.append((path.stem, n))
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(NBGRADER_CONFIG)
    return done


NBGRADER_CONFIG = """\
# Written by `labkit student nbgrader`. nbgrader reads this from the course folder.
c = get_config()  # noqa: F821
# Each solution region becomes this stub; the line above it ("# Assign: answer") names what to assign.
c.ClearSolutions.code_stub = {"python": "# YOUR ANSWER HERE"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# The labs load models from labkit's zoo: give autograding time to run a lab end to end.
c.ExecutePreprocessor.timeout = 300
"""


# ------------------------------------------------------------------------------------------------ CLI
def _cmd_build(args) -> int:
    reports = write_student_versions(args.out, args.src, args.notebooks)
    for r in reports:
        print(r)
    print(f"student versions of {len(reports)} lab(s) written to {Path(args.out).resolve()}")
    return 0


def _cmd_copy(args) -> int:
    from .labs import copy_labs

    if args.prebuilt:  # student versions built once (e.g. in the image by `labkit student build`)
        prebuilt = Path(args.prebuilt)
        if not prebuilt.is_dir() or not any(prebuilt.glob("*.ipynb")):
            raise LabkitUsageError(f"--prebuilt {prebuilt}: no notebooks there; build them with "
                                   f"`labkit student build --out {prebuilt}`")
        print(copy_labs(args.dest, prebuilt))
        return 0
    from .labs import copy_student_labs

    print(copy_student_labs(args.dest, args.src))  # the same as `labkit labs copy DEST`
    return 0


def _cmd_nbgrader(args) -> int:
    done = write_nbgrader_source(args.course, args.src, args.notebooks, args.points)
    for stem, n in done:
        print(f"{stem}: {n} autograded exercise(s)")
    print(f"nbgrader source tree written to {Path(args.course).resolve() / 'source'}; next: "
          f"cd {args.course} && nbgrader generate_assignment <lab> --force")
    return 0


def _cmd_check(args) -> int:
    _, notebooks = lab_notebooks(Path(args.src) if args.src else None, args.notebooks)
    problems = 0
    for path in notebooks:
        try:
            _, rep = student_notebook(_read(path), path.name)
        except LabkitUsageError as exc:
            print(f"{path.name}: ERROR {exc}")
            problems += 1
            continue
        if rep.solutions < 3:
            rep.warnings.append(f"only {rep.solutions} solution region(s); each lab should have at least 3 exercises")
        rep.warnings += unanswered_uses(student_notebook(_read(path), path.name)[0], path.name)
        problems += len(rep.warnings)
        print(rep)
    print("all good" if not problems else f"{problems} problem(s) found")
    return 0 if not problems else 1


# ------------------------------------------------------------------------------------------------------- audit
@dataclass
class LabAudit:
    """What a lab asks of the learner, counted from its source (``labkit student audit``)."""

    lab: str
    checks: int = 0
    learner_functions: list[str] = field(default_factory=list)  # functions/classes written inside solutions
    circular: list[str] = field(default_factory=list)  # checks whose expected= repeats the solution's expression
    hints_with_answer: list[str] = field(default_factory=list)  # hints that contain the solution's expression
    predictions: int = 0  # "Predict, then run" prompts

    def __str__(self):
        fns = ", ".join(self.learner_functions) or "none"
        out = (f"{self.lab}: {self.checks} checks, {len(self.circular)} circular, {len(self.hints_with_answer)} "
               f"hint(s) giving the answer, {self.predictions} prediction prompt(s); learner writes: {fns}")
        for what, items in (("circular", self.circular), ("hint gives the answer", self.hints_with_answer)):
            out += "".join(f"\n    {what}: {x}" for x in items)
        return out


def _norm(expr: str) -> str:
    import ast

    try:
        return ast.dump(ast.parse(expr.strip(), mode="eval"))
    except SyntaxError:
        return re.sub(r"\s+", "", expr)


def audit_notebook(nb, name: str = "lab.ipynb") -> LabAudit:
    """Count checks, learner-written functions, circular checks and answer-giving hints in an instructor lab.

    A check is circular when its ``expected=`` is the very expression a solution region assigns (the learner can
    read the answer in the check line, and the check cannot tell understanding from copying); a hint gives the
    answer when it contains a solution's expression. Both are found by comparing syntax trees, so renamed
    variables or a differently written equivalent escape them: it is a floor, not a proof."""
    import ast

    rep = LabAudit(name)
    solutions: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            rep.predictions += len(re.findall(r"\*\*Predict, then run", cell.source))
            continue
        if cell.cell_type != "code":
            continue
        src = cell.source
        for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", src, flags=re.S):
            try:
                tree = ast.parse(region)
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    rep.learner_functions.append(node.name)
                elif isinstance(node, ast.Assign):
                    seg = ast.get_source_segment(region, node.value)
                    try:  # a literal answer ("LLM06") matching a literal expected is a fact asked, not a copy
                        ast.literal_eval(node.value)
                    except ValueError:
                        if seg and len(seg) > 3:
                            solutions.append(seg)
        try:
            tree = ast.parse(re.sub(r"^\s*[%!].*$", "", src, flags=re.M))
        except SyntaxError:
            continue
        clean = re.sub(r"^\s*[%!].*$", "", src, flags=re.M)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check"):
                continue
            rep.checks += 1
            label = ast.literal_eval(node.args[0]) if node.args and isinstance(node.args[0], ast.Constant) else "?"
            kw = {k.arg: k.value for k in node.keywords}
            if "expected" in kw:
                exp = ast.get_source_segment(clean, kw["expected"]) or ""
                if any(_norm(exp) == _norm(sol) for sol in solutions):
                    rep.circular.append(f"{label}: expected={exp}")
            if "hint" in kw:
                hint = ast.get_source_segment(clean, kw["hint"]) or ""
                try:
                    hint = str(ast.literal_eval(kw["hint"]))
                except ValueError:
                    pass
                gives = [sol for sol in solutions if len(sol) > 8 and re.sub(r"\s+", "", sol) in re.sub(r"\s+", "", hint)]
                if gives:
                    rep.hints_with_answer.append(f"{label}: {hint[:80]}")
    return rep


def _cmd_audit(args) -> int:
    _, notebooks = lab_notebooks(Path(args.src) if args.src else None, args.notebooks)
    bad = 0
    for path in notebooks:
        rep = audit_notebook(_read(path), path.name)
        bad += len(rep.circular) + len(rep.hints_with_answer)
        print(rep)
    print("no circular check, no hint that gives the answer" if not bad else f"{bad} problem(s) found")
    return 0 if not bad else 1


SUBCOMMANDS = ("build", "copy", "nbgrader", "check", "audit")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["build"] + argv  # `labkit student [--out DIR]` = build
    p = argparse.ArgumentParser(prog="labkit student",
                                description="Student versions of the labs (solutions removed) and nbgrader export.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write student versions of every lab (solutions and hidden tests removed)")
    b.add_argument("notebooks", nargs="*", help="only these labs (names or paths); default: all")
    b.add_argument("--src", help="folder of instructor notebooks (default: labkit's labs)")
    b.add_argument("--out", default="labs-student", help="output folder (default: ./labs-student)")
    b.set_defaults(fn=_cmd_build)
    c = sub.add_parser("copy", help="copy student versions into a learner's folder, keeping their edits")
    c.add_argument("dest")
    c.add_argument("--src", help="folder of instructor notebooks (default: labkit's labs)")
    c.add_argument("--prebuilt", help="copy these already-built student versions instead of building them")
    c.set_defaults(fn=_cmd_copy)
    g = sub.add_parser("nbgrader", help="write an nbgrader course source/ tree with cell metadata")
    g.add_argument("course", help="the nbgrader course folder (source/<lab>/ is written inside it)")
    g.add_argument("notebooks", nargs="*", help="only these labs; default: all")
    g.add_argument("--src", help="folder of instructor notebooks (default: labkit's labs)")
    g.add_argument("--points", type=float, default=1.0, help="points per exercise (default 1)")
    g.set_defaults(fn=_cmd_nbgrader)
    k = sub.add_parser("check", help="lint the instructor labs: markers, >= 3 exercises, answers used too early")
    k.add_argument("notebooks", nargs="*")
    k.add_argument("--src")
    k.set_defaults(fn=_cmd_check)
    a = sub.add_parser("audit", help="count each lab's checks and learner-written pieces; find circular checks and "
                                     "hints that give the answer")
    a.add_argument("notebooks", nargs="*")
    a.add_argument("--src")
    a.set_defaults(fn=_cmd_audit)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except LabkitUsageError as exc:
        print(f"labkit student: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
