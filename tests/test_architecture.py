"""The layers of DESIGN.md, checked on the code: imports point down, never up.

- No engine module imports IPython or a view (``labkit.widgets``, anywidget, ipywidgets): not at module level and
  not inside a function either (read from the source, every ``import`` statement).
- Every engine module imports in a fresh interpreter where IPython and ``labkit.widgets`` cannot be imported.
- No import loop joins an engine module and a view or magic module.

Engines reach their views only through ``labkit.viewable`` (the one lazy door, used when a notebook displays a
result); the entry points (the extension's ``__init__``, the command lines, the doctor and the grader) sit above.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "labkit"

VIEW_PACKAGES = ("labkit.widgets", "labkit.magics")
#: modules above the engines: the extension entry point, command lines, the install doctor, the grader
ENTRY_POINTS = {"labkit", "labkit.cli", "labkit.doctor", "labkit.grading", "labkit.zoo.__main__"}
#: the one module below the views that names them (lazily, when a result is displayed)
DOOR = "labkit.viewable"
FORBIDDEN = ("IPython", "ipywidgets", "anywidget", "ipykernel", "labkit.widgets", "labkit.magics")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def is_view(name: str) -> bool:
    return any(name == v or name.startswith(v + ".") for v in VIEW_PACKAGES)


def is_engine(name: str) -> bool:
    return not is_view(name) and name not in ENTRY_POINTS and not name.endswith(".cli")


ENGINES = sorted(n for n in MODULES if is_engine(n))


def imports_of(name: str) -> list[tuple[int, str]]:
    """Every module an ``import`` statement of ``name`` names (anywhere in the file), absolute, with its line."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            out += [(node.lineno, s) for s in subs]  # `from . import widgets`: the submodule itself
            if len(subs) < len(node.names):
                out.append((node.lineno, target))
    return out


def _forbidden(target: str) -> bool:
    return any(target == f or target.startswith(f + ".") for f in FORBIDDEN)


def test_the_layers_are_what_this_test_thinks():
    assert {"labkit.tokenize", "labkit.attend", "labkit.generate", "labkit.exercises", "labkit.finetune.engine",
            "labkit.agent.trace", "labkit.rag.answer", "labkit.rag.index", DOOR} <= set(ENGINES)
    assert "labkit.widgets.attention" in MODULES and not is_engine("labkit.widgets.attention")


@pytest.mark.parametrize("name", [n for n in ENGINES if n != DOOR])
def test_no_engine_imports_ipython_or_a_view(name):
    bad = [f"line {line}: {target}" for line, target in imports_of(name) if _forbidden(target)]
    assert not bad, f"{name} imports up into the view layer or IPython ({'; '.join(bad)}): return a plain result " \
                    f"and let labkit.widgets draw it (labkit.viewable.Viewable)"


def test_the_door_imports_the_view_layer_only_lazily():
    tree = ast.parse(MODULES[DOOR].read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(not (isinstance(n, ast.ImportFrom) and n.level and n.module in (None, "widgets")) for n in top)


BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("IPython", "ipywidgets", "anywidget", "ipykernel", "labkit.widgets", "labkit.magics")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if any(fullname == b or fullname.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"blocked by test_architecture: {fullname}")
            return None

    sys.meta_path.insert(0, Block())
""")


def test_every_engine_imports_with_ipython_and_the_views_blocked():
    """One fresh interpreter per engine module (a few at a time: most are light), each with the blocker."""
    script = BLOCKER + textwrap.dedent("""
        import importlib, json, sys
        name = sys.argv[1]
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if "blocked by test_architecture" in str(exc):
                print(json.dumps({"module": name, "error": str(exc)}))
                sys.exit(1)
            print(json.dumps({"module": name, "skipped": str(exc)}))  # an optional library is missing
            sys.exit(0)
        up = [m for m in sys.modules if m.split(".")[0] in ("IPython", "ipywidgets", "anywidget")
              or m.startswith("labkit.widgets")]
        print(json.dumps({"module": name, "loaded": up}))
        sys.exit(1 if up else 0)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    failures = []
    pending = list(ENGINES)
    while pending:
        batch, pending = pending[:4], pending[4:]
        procs = [(n, subprocess.Popen([sys.executable, "-c", script, n], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)) for n in batch]
        for n, p in procs:
            out, err = p.communicate(timeout=300)
            if p.returncode:
                failures.append(f"{n}: {out.strip() or err.strip()[-400:]}")
    assert not failures, "\n".join(failures)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative): the import loops of the graph (components of two or more modules)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]; counter[0] += 1
                    stack.append(nxt); on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        m = stack.pop(); on.discard(m); comp.add(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(comp)
    return out


def import_graph() -> dict[str, set[str]]:
    graph = {n: set() for n in MODULES}
    for name in MODULES:
        for _, target in imports_of(name):
            while target and target not in MODULES:  # `from .x import y` where y is a name of x
                target = target.rpartition(".")[0]
            # a module's own packages run before it in any case: an arrow to them is no loop of the design
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def test_no_import_loop_joins_an_engine_and_a_view():
    loops = strongly_connected(import_graph())
    mixed = [sorted(c) for c in loops if any(is_view(m) for m in c) and any(is_engine(m) for m in c)]
    assert not mixed, f"import loops between engines and views: {json.dumps(mixed)}"


#: loops known and left: the zoo's corpus <-> formats and the grader <-> the lab copier (their own issues), and
#: the index <-> its LangChain faces (``Index.as_retriever()`` hands one out; ``from_texts`` builds an Index)
KNOWN_LOOPS = [{"labkit.zoo.corpus", "labkit.zoo.formats"}, {"labkit.grading", "labkit.labs"},
               {"labkit.rag.index", "labkit.rag.interop"}]


def test_no_other_import_loop():
    loops = strongly_connected(import_graph())
    bad = [sorted(c) for c in loops if c not in KNOWN_LOOPS]
    assert not bad, f"import loops: {json.dumps(bad)}"


def test_engines_ask_the_model_door_about_models():
    """One model door: resolving a spec and the context-length question live in ``labkit.models``; engines do not
    re-derive them (the zoo's builders, which write the configs, are the exception); one GGUF loader."""
    offenders = []
    for name, path in MODULES.items():
        if name in ("labkit.models",) or name.startswith("labkit.zoo.") or not is_engine(name):
            continue
        text = path.read_text()
        # the context-length guess reads these by name (getattr(config, "...")); copying a config field is fine
        for needle in ('"max_position_embeddings"', '"n_positions"', "model_max_length", "Llama(model_path"):
            if needle in text:
                offenders.append(f"{name}: {needle}")
    assert not offenders, offenders
    # one calculator: the zoo's traces and the agent's tool both evaluate through labkit.calculator
    assert "ast.parse" not in MODULES["labkit.zoo.formats"].read_text()
    assert "ast.parse" not in MODULES["labkit.agent.sandbox"].read_text()
