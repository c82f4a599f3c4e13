"""Parquet output: the quarantine schema and atomic, deterministic shard writes (the tagged-data schema
lives in `condpt.tagged`, re-exported here for the writers).

A file is written to ``OUT/.tmp/`` (a name unique to the process) and renamed into place, so a reader (or a restarted run) never sees a
half-written file. Files hold no timestamps and rows keep input order, so the same input and config give
byte-identical shards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from condpt.corpus.read import CorpusError, shown
from condpt.tagged import SPAN_TYPE, TAGGED_SCHEMA

__all__ = ["QUARANTINE_SCHEMA", "SPAN_TYPE", "TAGGED_SCHEMA", "read_json_object", "write_bytes_atomic",
           "write_parquet_atomic", "write_text_atomic"]

QUARANTINE_SCHEMA = pa.schema([
    ("input", pa.string()),
    ("line", pa.int64()),
    ("reason", pa.string()),
    ("id", pa.string()),
    ("raw", pa.binary()),
])


def _tmp_path(path: Path, tmp_dir: Path) -> Path:
    # the pid keeps concurrent processes writing the same report/run file from sharing a temp file
    return tmp_dir / f"{path.parent.name}-{path.name}.{os.getpid()}.tmp"


def write_parquet_atomic(table: pa.Table, path: Path, tmp_dir: Path) -> None:
    """Write `table` to `path` via a temporary file in `tmp_dir` (same filesystem) and an atomic rename."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path, tmp_dir)
    with open(tmp, "wb") as f:  # opened by Python: pyarrow cannot open a path that is not UTF-8
        pq.write_table(table, f, compression="zstd", write_statistics=True)
    os.replace(tmp, path)


def write_text_atomic(text: str, path: Path, tmp_dir: Path) -> None:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path, tmp_dir)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_bytes_atomic(data: bytes, path: Path, tmp_dir: Path) -> None:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path, tmp_dir)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_json_object(path: Path, keys: Iterable[str] = (), counts: Iterable[str] = ()) -> dict:
    """The JSON object a run wrote beside its data (run.json, report.json, a marker, a journal) with `keys`
    and `counts` (non-negative integers) present: anything else — unreadable, not UTF-8, not JSON, not an
    object, a key missing — is a `CorpusError` naming the file (a hand-edited or truncated file was an
    AttributeError or KeyError traceback, or a JSON message naming nothing)."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CorpusError(f"{shown(path)}: not UTF-8 text (byte {e.start})") from None
    except ValueError as e:  # JSONDecodeError, RecursionError's cousin ValueError from a huge integer
        raise CorpusError(f"{shown(path)}: not valid JSON ({shown(str(e))})") from None
    except RecursionError:
        raise CorpusError(f"{shown(path)}: not valid JSON (nested too deep)") from None
    if not isinstance(data, dict):
        raise CorpusError(f"{shown(path)}: not a JSON object (a {type(data).__name__})")
    for key in (*keys, *counts):
        if key not in data:
            raise CorpusError(f"{shown(path)}: no {key!r}")
    for key in counts:
        if type(data[key]) is not int or data[key] < 0:
            raise CorpusError(f"{shown(path)}: {key!r} is not a count ({shown(repr(data[key]))})")
    return data
