"""The configs condpt itself launches with, shipped as package data under `condpt/configs/` (run/*.yaml,
accelerate/*.yaml, deepspeed/*.json) and found from this file, never from a checkout; and how a config given on
a command line or in a grid is found: a bare name is a shipped config, anything else a path."""

from __future__ import annotations

import os
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
# Where each kind of shipped config lives and its suffix.
_KINDS = {"run": ("run", ".yaml"), "accelerate": ("accelerate", ".yaml"), "deepspeed": ("deepspeed", ".json")}


def shipped_names(kind: str) -> list[str]:
    folder, suffix = _KINDS[kind]
    return sorted(p.name.removesuffix(suffix) for p in (CONFIGS / folder).glob(f"*{suffix}"))


def shipped_config(kind: str, name: str) -> Path:
    """The shipped `kind` config called `name` (e.g. `accelerate`, `deepspeed-zero2-cpu`)."""
    folder, suffix = _KINDS[kind]
    path = CONFIGS / folder / f"{name}{suffix}"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped {kind} config {name!r} (shipped: {', '.join(shipped_names(kind))})")
    return path


def is_shipped_name(value: str | Path) -> bool:
    """A bare name (no folder, no suffix) names a shipped config; anything else is a path."""
    text = str(value)
    return "/" not in text and os.sep not in text and not Path(text).suffix


def config_path(value: str | Path, kind: str, base: Path | None = None) -> Path:
    """A config given as a path (relative to `base`, else to the working directory) or as the name of a
    shipped config of that kind (`is_shipped_name`)."""
    if is_shipped_name(value):
        return shipped_config(kind, str(value))
    path = Path(value).expanduser()
    return path if path.is_absolute() or base is None else (base / path).resolve()
