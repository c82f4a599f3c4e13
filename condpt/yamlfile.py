"""Reading a YAML config file with errors that name the file (and the line, where YAML knows it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The parsed YAML at `path` (None for an empty file). Raises ValueError naming the file: `what` not found,
    or not valid YAML with the line."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ValueError(f"{path}: {what} not found") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from e
