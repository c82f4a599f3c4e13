"""Real English text for the benchmarks: `../shared/data/gutenberg-corpus.jsonl` beside the repository."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUTENBERG = REPO.parent / "shared" / "data" / "gutenberg-corpus.jsonl"


def gutenberg_texts(max_docs: int | None = None, max_mb: float | None = None) -> list[str]:
    """The first `max_docs` documents (or the first `max_mb` MB of text) of the Gutenberg corpus; exits with a
    clear message where the shared data directory is missing."""
    if not GUTENBERG.exists():
        sys.exit(f"{GUTENBERG} not found (the benchmarks read ../shared/data beside the repository)")
    texts, size = [], 0
    with GUTENBERG.open(encoding="utf-8") as f:
        for line in f:
            if max_docs is not None and len(texts) >= max_docs:
                break
            if max_mb is not None and size >= max_mb * 1e6:
                break
            texts.append(json.loads(line)["text"])
            size += len(texts[-1].encode("utf-8"))
    return texts
