"""Stable document ids for rows that carry none.

An id is ``blake2b(name + "\\n" + str(line) + "\\n" + text, digest_size=10).hexdigest()`` (20 hex chars,
80 bits): `name` is the input's name: its file name without format and compression suffixes (``web.jsonl.zst`` →
``web``; a datasets directory: its name; bytes that are not UTF-8 escaped as ``\\xNN`` by
`condpt.corpus.read.shown`), so moving, compressing or converting a file keeps its ids;
`line` is the 1-based line (JSONL) or row (Parquet, datasets) number. The same file tagged twice gives the same ids; two
identical texts at different places get different ids (they are different documents of the corpus).
"""

from __future__ import annotations

import hashlib


def stable_id(name: str, line: int, text: str) -> str:
    """The generated id of the document `text` found at `line` of the input called `name`."""
    h = hashlib.blake2b(digest_size=10)
    h.update(f"{name}\n{line}\n".encode())
    h.update(text.encode("utf-8"))
    return h.hexdigest()
