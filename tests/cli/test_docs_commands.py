"""The commands README.md and docs/ quote are the commands that exist: a reader who copies `condpt tag ...
--text-field body` or `python -m condpt.smollm2` must not meet "No such command" or "No such option"."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import typer

from condpt.cli import register_commands

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = typer.main.get_command(register_commands()).commands

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`((?:condpt |python -m condpt\.)[^`]+)`")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _shell_commands(text: str) -> list[tuple[int, str]]:
    """(line, command) of each `condpt ...` command: shell lines of fenced blocks (continuation lines joined,
    comments dropped) and inline code spans that start with `condpt `."""
    found = []
    for m in _FENCE.finditer(text):
        if m.group(1) not in ("", "bash", "sh", "shell", "console"):
            continue
        first = text.count("\n", 0, m.start(2)) + 1
        lines = m.group(2).splitlines()
        i = 0
        while i < len(lines):
            start, cmd = i, lines[i]
            while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd.rstrip()[:-1] + " " + lines[i]
            i += 1
            cmd = re.sub(r"(^|\s)#.*", "", cmd).strip().removeprefix("$ ")
            for part in re.split(r"&&|;|\|\||\$\(", cmd):
                part = part.strip()
                if part.startswith(("condpt ", "python -m condpt.")):
                    found.append((first + start, part))
    for n, line in enumerate(text.splitlines(), 1):
        found += [(n, m.group(1)) for m in _INLINE.finditer(line)]
    return found


QUOTED = [(f"{doc.name}:{n}", cmd) for doc in DOCS for n, cmd in _shell_commands(doc.read_text("utf-8"))]


def test_the_docs_quote_commands():
    """The extraction itself works (a regex that matched nothing would pass every test below)."""
    names = {cmd.split()[1] for _, cmd in QUOTED if cmd.startswith("condpt ")}
    assert {"tag", "calibrate", "retag", "train", "generate", "eval", "experiment", "add-tokens"} <= names


@pytest.mark.parametrize("where,cmd", [q for q in QUOTED if q[1].startswith("condpt ")])
def test_quoted_condpt_command_and_flags_exist(where, cmd):
    words = cmd.split()
    name = words[1]
    if name.startswith("-"):
        assert set(_FLAG.findall(cmd)) <= {"--help", "--version"}, (where, cmd)
        return
    assert name in COMMANDS, f"{where}: `{cmd}` names no condpt command (have {sorted(COMMANDS)})"
    options = {o for p in COMMANDS[name].params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    unknown = sorted(set(_FLAG.findall(" ".join(words[2:]))) - options)
    assert not unknown, f"{where}: `condpt {name}` has no option {unknown}: {cmd}"


@pytest.mark.parametrize("where,cmd", [q for q in QUOTED if q[1].startswith("python -m condpt.")])
def test_quoted_python_module_exists(where, cmd):
    module = re.match(r"python -m ([\w.]+)", cmd)[1]
    assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}: {cmd}"


# a path ends in a word character or a `{a,b}` group; `tests/test_<module>.py` (a pattern) is not one
_PATH = re.compile(r"(?<![\w./$-])((?:condpt|tokenizer_ext|recipes|examples|benchmarks|tests)/[\w./*{},-]*[\w}])(?![\w<])")


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_paths_the_docs_name_exist(doc):
    """Source, config and test paths the docs name are in the tree (modules move: the docs must follow)."""
    missing = []
    for n, line in enumerate(doc.read_text("utf-8").splitlines(), 1):
        for m in _PATH.finditer(line):
            path = m.group(1)
            brace = re.fullmatch(r"(.*)\{(.*)\}(.*)", path)
            variants = [brace[1] + alt + brace[3] for alt in brace[2].split(",")] if brace else [path]
            if not all(any(ROOT.glob(v)) if "*" in v else (ROOT / v).exists() for v in variants):
                missing.append(f"{doc.name}:{n}: {path}")
    assert not missing, "\n".join(missing)
