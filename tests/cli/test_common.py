"""condpt/cli/common.py: the one usage-error exit every command uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

import condpt.cli
from condpt.cli.common import fail


def test_fail_prints_on_stderr_and_exits_2(capsys):
    with pytest.raises(typer.Exit) as e:
        fail("--world: no such directory")
    assert e.value.exit_code == 2
    captured = capsys.readouterr()
    assert captured.err == "error: --world: no such directory\n" and captured.out == ""


def test_fail_escapes_what_could_rewrite_the_terminal(capsys):
    """A file name quoted in an error may hold ESC sequences or a CR (they reached the terminal raw)."""
    with pytest.raises(typer.Exit):
        fail("evil\x1b[2J\rname.jsonl: truncated\nsecond line\u202e")
    assert capsys.readouterr().err == "error: evil\\x1b[2J\\rname.jsonl: truncated\nsecond line\\u202e\n"


def test_no_command_module_writes_its_own_error_exit():
    for module in Path(condpt.cli.__file__).parent.glob("*.py"):
        if module.name != "common.py":
            assert "def _fail" not in module.read_text(encoding="utf-8"), module.name
