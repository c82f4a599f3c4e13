"""What every `condpt` command shares: how a usage error ends the command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer

from condpt.terminal import printable


def fail(msg: str) -> NoReturn:
    """Print `error: MSG` on stderr and exit with status 2 (a usage or input error, as click uses). Controls in
    MSG are shown escaped: it may quote a file name or a value holding ESC sequences or a CR."""
    typer.echo(f"error: {printable(msg)}", err=True)
    raise typer.Exit(code=2)


def out_file(value: str) -> Path:
    """A `--out FILE` value (typer's `parser`). A name ending in a path separator names a directory even where
    none exists yet: click's `dir_okay=False` looks only at what exists and `Path` drops the separator, so
    `--out evaldir/` wrote a file named `evaldir`."""
    if value.endswith(("/", os.sep)) or Path(value).is_dir():
        raise typer.BadParameter(f"{value!r} names a directory; give a file name")
    return Path(value)
