"""condpt CLI commands (classify)."""

from condpt.cli import app  # noqa: F401
