"""head.json, one JSON object in a trained scorer's directory: the weights and settings of the embedding and
static kinds, which keep no model file of their own (fastText keeps its referent flag in one too, optional
there: older models lack it)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

HEAD_FILE = "head.json"


def write_head(directory: str | Path, head: dict) -> None:
    (Path(directory) / HEAD_FILE).write_text(json.dumps(head), encoding="utf-8")


def read_head(directory: str | Path, kind: str, required: Iterable[str]) -> dict:
    """The head of the scorer in `directory`; an error names the file when it is missing (`kind`: whose head),
    not JSON, or without one of the `required` fields."""
    path = Path(directory) / HEAD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: {kind} head missing")
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(head, dict):
        raise ValueError(f"{path}: not a JSON object")
    missing = [k for k in required if k not in head]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    return head
