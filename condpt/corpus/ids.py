"""Stable document ids for rows that carry none.

An id is ``blake2b(name + "\\n" + str(line) + "\\n" + text, digest_size=10).hexdigest()`` (20 hex chars,
80 bits): `name` is the input's name: its file name without format and compression suffixes (``web.jsonl.zst`` →
``web``; a datasets directory: its name; bytes that are not UTF-8 escaped as ``\\xNN`` by
`condpt.corpus.read.shown`), so moving, compressing or converting a file keeps its ids;
`line` is the 1-based line (JSONL) or row (Parquet, datasets) number. The same file tagged twice gives the same ids; two
identical texts at different places get different ids (they are different documents of the corpus).

An id a row carries follows one rule (`id_problem`), the same for a corpus record, a labelled row and a
tagged row: a string or an integer (not a bool: JSON ``true`` is no id), not empty or only whitespace, and
encodable as UTF-8 (a JSON ``"\\ud800"`` escape decodes to a lone surrogate no Parquet file can store).
"""

from __future__ import annotations

import hashlib


def id_problem(value: object) -> str | None:
    """Why `value` cannot be a document id (None when it can), worded to follow ``field 'id'`` (each caller
    names the file, line and field its own way)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"is not a string or integer (got {type(value).__name__})"
    if isinstance(value, int):
        return None
    if not value.strip():
        return "is empty"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"is not valid Unicode (lone surrogate at character {e.start})"
    return None


def stable_id(name: str, line: int, text: str) -> str:
    """The generated id of the document `text` found at `line` of the input called `name`."""
    h = hashlib.blake2b(digest_size=10)
    h.update(f"{name}\n{line}\n".encode())
    h.update(text.encode("utf-8"))
    return h.hexdigest()
