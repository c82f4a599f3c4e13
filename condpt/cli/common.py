"""What every `condpt` command shares: how a usage error ends the command."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(msg: str) -> NoReturn:
    """Print `error: MSG` on stderr and exit with status 2 (a usage or input error, as click uses)."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code=2)
