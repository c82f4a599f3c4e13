"""Corpus readers: JSONL (plain, .gz, .zst), Parquet and `datasets.save_to_disk` directories.

Reading is split in two so that it parallelises and stays deterministic:

1. `iter_chunks` streams *raw* records (the bytes of a JSONL line, or a Parquet/datasets row restricted to
   the configured fields) from all inputs in the order given, and cuts the stream into chunks by row count
   and bytes. Chunking depends only on the input, so chunk ``k`` is the same on every run.
2. `parse_record` turns one raw record into a `Document` or a `Quarantined` row with the reason. It runs in
   the worker processes.

Unusable *inputs* (missing file, unknown format, a Parquet file without the text column) raise `CorpusError`
before anything is written; unusable *records* are quarantined, never dropped. Blank JSONL lines are not
records (they hold nothing to lose) and are skipped.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condpt.corpus.ids import stable_id

MAX_DOC_BYTES = 10 * 1024 * 1024
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


class CorpusError(ValueError):
    """An input that cannot be read at all (reported to the user with the path, then a non-zero exit)."""


@dataclass(frozen=True)
class Fields:
    """Which record fields hold the text, the id and (optionally) the source name."""

    text: str = "text"
    id: str = "id"
    source: str | None = None


@dataclass(frozen=True)
class InputSpec:
    """One readable input: `path`, its `format` (jsonl, parquet, datasets), compression and source `name`."""

    path: Path
    format: str
    compression: str | None = None
    name: str = ""


@dataclass
class Document:
    id: str
    text: str
    source: str
    input: int  # index into the run's list of InputSpec
    line: int  # 1-based line (JSONL) or row (Parquet / datasets)


@dataclass
class Quarantined:
    input: int
    line: int
    reason: str
    raw: bytes
    id: str | None = None


@dataclass
class Chunk:
    """A run of consecutive raw records: ``records[i] = (input index, line, payload)``."""

    index: int
    records: list[tuple[int, int, Any]] = field(default_factory=list)
    nbytes: int = 0


def _strip_suffixes(name: str) -> tuple[str, str | None, str]:
    """('corpus.jsonl.zst') -> ('corpus', 'zstd', '.jsonl')."""
    compression = None
    lower = name.lower()
    for suf, comp in COMPRESSIONS.items():
        if lower.endswith(suf):
            compression, name, lower = comp, name[: -len(suf)], lower[: -len(suf)]
            break
    for suf in (*JSONL_SUFFIXES, ".parquet"):
        if lower.endswith(suf):
            return name[: -len(suf)], compression, suf
    return name, compression, ""


def _file_spec(path: Path) -> InputSpec:
    stem, compression, suf = _strip_suffixes(path.name)
    if suf in JSONL_SUFFIXES:
        return InputSpec(path, "jsonl", compression, stem)
    if suf == ".parquet" and compression is None:
        return InputSpec(path, "parquet", None, stem)
    raise CorpusError(f"{path}: unknown input format (expected .jsonl/.json/.ndjson, optionally .gz or .zst, "
                      ".parquet, or a directory written by datasets' save_to_disk)")


def expand_inputs(paths: list[str | Path]) -> list[InputSpec]:
    """Resolve command-line inputs to readable inputs, in the order given (directories: sorted contents)."""
    specs: list[InputSpec] = []
    for p in map(Path, paths):
        if not p.exists():
            raise CorpusError(f"{p}: no such file or directory")
        if p.is_dir():
            if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists() or (p / "state.json").exists():
                specs.append(InputSpec(p, "datasets", None, p.name))
                continue
            files = sorted(f for f in p.rglob("*") if f.is_file() and not any(
                part.startswith((".", "_")) for part in f.relative_to(p).parts))
            readable = [f for f in files if _strip_suffixes(f.name)[2]]
            if not readable:
                raise CorpusError(f"{p}: directory holds no .jsonl/.parquet files and is not a datasets directory")
            specs.extend(_file_spec(f) for f in readable)
        else:
            specs.append(_file_spec(p))
    if not specs:
        raise CorpusError("no inputs given")
    return specs


def _open_binary(spec: InputSpec) -> io.BufferedIOBase:
    if spec.compression == "gzip":
        return gzip.open(spec.path, "rb")
    if spec.compression == "zstd":
        import zstandard

        raw = open(spec.path, "rb")  # noqa: SIM115 (closed by the reader, closefd=True)
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return open(spec.path, "rb")


def _iter_jsonl(spec: InputSpec) -> Iterator[tuple[int, bytes]]:
    try:
        with _open_binary(spec) as f:
            for line_no, line in enumerate(f, 1):
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield line_no, line
    except (OSError, EOFError) as e:  # truncated/corrupt gzip or zstd stream
        raise CorpusError(f"{spec.path}: cannot read ({e})") from e


def _columns(spec: InputSpec, names: list[str], fields: Fields) -> list[str]:
    if fields.text not in names:
        raise CorpusError(f"{spec.path}: no column {fields.text!r} (columns: {', '.join(names)}); "
                          "set text_field in the tag config")
    return [c for c in (fields.text, fields.id, fields.source) if c and c in names]


def _iter_parquet(spec: InputSpec, fields: Fields) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(spec.path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for non-Parquet bytes
        raise CorpusError(f"{spec.path}: not a readable Parquet file ({e})") from e
    cols = _columns(spec, pf.schema_arrow.names, fields)
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=cols):
        for rec in batch.to_pylist():
            row += 1
            yield row, rec


def _iter_datasets(spec: InputSpec, fields: Fields) -> Iterator[tuple[int, dict]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(spec.path))
    except Exception as e:
        raise CorpusError(f"{spec.path}: not a readable datasets directory ({e})") from e
    parts = [ds[k] for k in sorted(ds)] if isinstance(ds, datasets.DatasetDict) else [ds]
    row = 0
    for part in parts:
        cols = _columns(spec, part.column_names, fields)
        for batch in part.select_columns(cols).iter(batch_size=1024):
            for i in range(len(batch[cols[0]])):
                row += 1
                yield row, {c: batch[c][i] for c in cols}


def iter_records(specs: list[InputSpec], fields: Fields) -> Iterator[tuple[int, int, Any]]:
    """All raw records of all inputs in order: (input index, line/row, bytes or dict)."""
    for k, spec in enumerate(specs):
        if spec.format == "jsonl":
            it = _iter_jsonl(spec)
        elif spec.format == "parquet":
            it = _iter_parquet(spec, fields)
        else:
            it = _iter_datasets(spec, fields)
        for line, payload in it:
            yield k, line, payload


def _size(payload: Any) -> int:
    if isinstance(payload, bytes):
        return len(payload)
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in payload.values())


def iter_chunks(specs: list[InputSpec], fields: Fields, rows: int, nbytes: int) -> Iterator[Chunk]:
    """Cut the record stream into chunks of at most `rows` records and (about) `nbytes` bytes."""
    chunk = Chunk(0)
    for rec in iter_records(specs, fields):
        chunk.records.append(rec)
        chunk.nbytes += _size(rec[2])
        if len(chunk.records) >= rows or chunk.nbytes >= nbytes:
            yield chunk
            chunk = Chunk(chunk.index + 1)
    if chunk.records:
        yield chunk


def raw_bytes(payload: Any) -> bytes:
    """The record as bytes, for the quarantine (JSONL: the line itself; rows: their JSON)."""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, ensure_ascii=False, default=repr).encode("utf-8", "surrogatepass")


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_record(spec: InputSpec, k: int, line: int, payload: Any, fields: Fields) -> Document | Quarantined:
    """Validate one raw record; every way a record can be unusable has its own reason."""

    def bad(reason: str, doc_id: str | None = None) -> Quarantined:
        return Quarantined(k, line, reason, raw_bytes(payload), doc_id)

    if isinstance(payload, bytes):
        try:
            s = payload.decode("utf-8")
        except UnicodeDecodeError as e:
            return bad(f"invalid UTF-8 at byte {e.start}")
        if line == 1 and s.startswith("\ufeff"):  # a UTF-8 byte-order mark opening the file
            s = s[1:]
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            return bad(f"malformed JSON: {e.msg} at column {e.colno}")
        if not isinstance(obj, dict):
            return bad(f"not a JSON object (got {type(obj).__name__})")
    else:
        obj = payload
    raw_id = obj.get(fields.id)
    if raw_id is None:
        doc_id = None
    elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return bad(f"field {fields.id!r} is not a string or integer (got {type(raw_id).__name__})")
    else:
        doc_id = str(raw_id)
        if not doc_id.strip():
            return bad(f"field {fields.id!r} is empty")
        if not _encodable(doc_id):
            return bad(f"field {fields.id!r} is not valid Unicode (lone surrogate)")
    if fields.text not in obj or obj[fields.text] is None:
        return bad(f"missing field {fields.text!r}", doc_id)
    text = obj[fields.text]
    if not isinstance(text, str):
        return bad(f"field {fields.text!r} is not a string (got {type(text).__name__})", doc_id)
    if not text.strip():
        return bad(f"empty field {fields.text!r}", doc_id)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        return bad(f"field {fields.text!r} is not valid Unicode (lone surrogate at character {e.start})", doc_id)
    if size > MAX_DOC_BYTES:
        return bad(f"field {fields.text!r} is {size} bytes, over the {MAX_DOC_BYTES} byte limit", doc_id)
    source = spec.name
    if fields.source:
        value = obj.get(fields.source)
        if isinstance(value, str) and value and _encodable(value):
            source = value
    if doc_id is None:
        doc_id = stable_id(spec.name, line, text)
    return Document(doc_id, text, source, k, line)
