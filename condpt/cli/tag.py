"""condpt CLI commands (tag)."""

from condpt.cli import app  # noqa: F401
