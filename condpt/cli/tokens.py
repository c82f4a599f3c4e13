"""condpt CLI commands (tokens)."""

from condpt.cli import app  # noqa: F401
