"""condpt CLI commands (evidence)."""

from condpt.cli import app  # noqa: F401
