"""condpt's cache directory: one home for where built artefacts (default scorers, the static piece table,
the SmolLM2 checkpoint, autorater verdicts, DeepSpeed's compiled ops) live."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$CONDPT_CACHE`, else `$XDG_CACHE_HOME/condpt`, else `~/.cache/condpt`."""
    if os.environ.get("CONDPT_CACHE"):
        return Path(os.environ["CONDPT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "condpt"
