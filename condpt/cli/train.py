"""condpt CLI commands (train)."""

from condpt.cli import app  # noqa: F401
