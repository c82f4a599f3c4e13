"""The `condpt` command: one typer app, one module per command group, each a thin layer over the API."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Conditional pretraining against self-fulfilling misalignment.")

# Each module registers its commands on `app` when imported.
_COMMAND_MODULES = ("tokens", "tag", "classify", "train", "evidence")


def main() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"condpt.cli.{name}")
    app()
