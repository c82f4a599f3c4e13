"""Import hygiene: every module imports on its own in a fresh interpreter, and the module graph (function-level
imports included) has no cycle, so each module can be read and tested from the bottom up."""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import condpt
import tokenizer_ext

PACKAGES = {"condpt": condpt, "tokenizer_ext": tokenizer_ext}


def _modules() -> dict[str, Path]:
    out = {}
    for name, pkg in PACKAGES.items():
        out[name] = Path(pkg.__file__)
        for m in pkgutil.walk_packages(pkg.__path__, f"{name}."):
            spec = m.module_finder.find_spec(m.name.rsplit(".", 1)[-1])
            out[m.name] = Path(spec.origin)
    return out


def test_every_module_imports_alone_in_a_fresh_interpreter():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def alone(name: str) -> str | None:
        r = subprocess.run([sys.executable, "-c", f"import {name}"], check=False, capture_output=True,
                           text=True, env=env)
        return None if r.returncode == 0 else f"{name}: {r.stderr.strip().splitlines()[-1:]}"

    with ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 2))) as pool:
        failures = [f for f in pool.map(alone, sorted(_modules())) if f]
    assert not failures, "\n".join(failures)


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and (getattr(test, "id", None) or getattr(test, "attr", None)) == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (a package's own __init__ excluded)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:  # `import a.b.c` of an attribute: the nearest module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_module_graph_has_no_cycle():
    assert _cycles(_graph(_modules())) == []


def test_the_cycle_finder_sees_function_level_imports(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import b\n")
    b.write_text("def f():\n    from a import x\n")
    assert _cycles(_graph({"a": a, "b": b})) == [["a", "b"]]
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a import x\n")
    assert _cycles(_graph({"a": a, "b": b})) == []
