"""The `condpt` command: one typer app, one module per command group, each a thin layer over the API."""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Annotated

import typer

# Plain click help, not Rich markup: Rich reads `[key=value ...]` in a docstring as a style tag and drops it,
# and its option table prints a `<bool>` type beside every flag.
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Conditional pretraining against self-fulfilling misalignment.")

# Each module registers its commands on `app` when imported.
_COMMAND_MODULES = ("tokens", "tag", "classify", "train", "evidence")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"condpt {importlib.metadata.version('condpt')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the installed condpt version and exit.")] = False,
) -> None:
    pass


def register_commands() -> typer.Typer:
    """`app` with every command module imported (so every command is registered)."""
    for name in _COMMAND_MODULES:
        importlib.import_module(f"condpt.cli.{name}")
    return app


def main() -> None:
    register_commands()()
