"""Corpus readers: JSONL (plain, .gz, .zst, .bz2, .xz), Parquet and `datasets.save_to_disk` directories.

Reading is split in two so that it parallelises and stays deterministic:

1. `iter_chunks` streams *raw* records (the bytes of a JSONL line, or a Parquet/datasets row restricted to
   the configured fields) from all inputs in the order given, and cuts the stream into chunks by row count
   and bytes. Chunking depends only on the input, so chunk ``k`` is the same on every run.
2. `parse_record` turns one raw record into a `Document` or a `Quarantined` row with the reason. It runs in
   the worker processes.

Unusable *inputs* (missing file, unknown format or an unrecognised file in an input directory, a Parquet file
without the text column, a truncated or corrupt compressed file) raise `CorpusError` naming the file;
`check_inputs` finds them all before anything is written. Unusable *records* are quarantined, never dropped.
Blank JSONL lines are not records (they hold nothing to lose) and are skipped. File names that are not UTF-8
are shown escaped (`shown`), in messages and in the output alike.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condpt.corpus.ids import id_problem, stable_id

MAX_DOC_BYTES = 10 * 1024 * 1024
MAX_LINE_BYTES = 8 * MAX_DOC_BYTES  # room for a 10 MB text written with JSON escapes, and its other fields
LONG_LINE_KEPT = 1 << 20  # what the quarantine keeps of a longer line
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}


class CorpusError(ValueError):
    """An input that cannot be read at all (reported to the user with the path, then a non-zero exit)."""


# A record's own `source` field names its source when no `source_field` is configured (else: the input's name).
DEFAULT_SOURCE_FIELD = "source"
# How many records `check_inputs` looks at for the text field before calling it misnamed.
SNIFF_RECORDS = 100


@dataclass(frozen=True)
class Fields:
    """Which record fields hold the text, the id and (optionally) the source name (None: the record's
    ``source`` field when it is a non-empty string, else the input's name)."""

    text: str = "text"
    id: str = "id"
    source: str | None = None


def shown(text: str | Path) -> str:
    """`text` as valid UTF-8: a file name's undecodable bytes (surrogate escapes) become ``\\xNN``.

    Every path or name that reaches a message or an output file goes through this, so a file called
    ``b"caf\\xe9.jsonl"`` is ``caf\\xe9.jsonl`` everywhere and never an encode error."""
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class InputSpec:
    """One readable input: `path`, its `format` (jsonl, parquet, datasets), compression and source `name`
    (escaped by `shown`)."""

    path: Path
    format: str
    compression: str | None = None
    name: str = ""

    @property
    def label(self) -> str:
        """The path, as shown in messages and in the quarantine's `input` column."""
        return shown(self.path)


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

    def digest(self) -> str:
        """A hash of exactly what the chunk holds (positions and raw records): what its output is made from."""
        h = hashlib.blake2b(digest_size=16)
        for k, line, payload in self.records:
            raw = payload if isinstance(payload, bytes) else repr(sorted(payload.items())).encode(
                "utf-8", "backslashreplace")
            h.update(f"{k}\t{line}\t{len(raw)}\t".encode())
            h.update(raw)
        return h.hexdigest()


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


FORMATS = (".jsonl/.json/.ndjson, optionally .gz, .zst, .bz2 or .xz, .parquet, or a directory written by "
           "datasets' save_to_disk")


def _file_spec(path: Path) -> InputSpec | None:
    stem, compression, suf = _strip_suffixes(path.name)
    if suf in JSONL_SUFFIXES:
        return InputSpec(path, "jsonl", compression, shown(stem))
    if suf == ".parquet" and compression is None:
        return InputSpec(path, "parquet", None, shown(stem))
    return None


def _hidden(root: Path, f: Path) -> Path | None:
    """The entry under `root` that hides `f` (a name starting with "." or "_" on its way), or None."""
    parts = f.relative_to(root).parts
    for i, part in enumerate(parts):
        if part.startswith((".", "_")):
            return root.joinpath(*parts[: i + 1])
    return None


def _why_not(f: Path) -> str:
    if f.is_dir():
        return " (a link to a directory, not followed)"
    return "" if f.is_file() else " (not a regular file)"


def expand_inputs(paths: list[str | Path], skipped: list[str] | None = None) -> list[InputSpec]:
    """Resolve command-line inputs to readable inputs, in the order given (directories: sorted contents).

    In a directory, entries whose name starts with "." or "_" (``.DS_Store``, ``_SUCCESS``, ``.git/``) are
    skipped and named in `skipped`; any other entry that is not a readable input is an error."""
    specs: list[InputSpec] = []
    for p in map(Path, paths):
        if not p.exists():
            raise CorpusError(f"{shown(p)}: no such file or directory")
        if p.is_dir():
            if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists() or (p / "state.json").exists():
                specs.append(InputSpec(p, "datasets", None, shown(p.name)))
                continue
            files = []
            for f in sorted(f for f in p.rglob("*") if f.is_symlink() or not f.is_dir()):
                hidden = _hidden(p, f)
                if hidden is None:
                    files.append(f)
                elif skipped is not None and shown(hidden) not in skipped:
                    skipped.append(shown(hidden))
            found = [(f, _file_spec(f) if f.is_file() else None) for f in files]
            unknown = [shown(f.relative_to(p)) + _why_not(f) for f, spec in found if spec is None]
            if unknown:  # refused, never skipped: a file left out without a word is data lost without a word
                more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
                raise CorpusError(f"{shown(p)}: unrecognised files {', '.join(unknown[:10])}{more} (expected "
                                  f"{FORMATS}); move them out or name the inputs one by one")
            if not found:
                raise CorpusError(f"{shown(p)}: directory holds no .jsonl/.parquet files and is not a datasets "
                                  "directory")
            specs.extend(spec for _, spec in found)
        else:
            spec = _file_spec(p)
            if spec is None:
                raise CorpusError(f"{shown(p)}: unknown input format (expected {FORMATS})")
            if not p.is_file():  # a FIFO or device: read twice (checked, then tagged), it hangs or loses its start
                raise CorpusError(f"{shown(p)}: not a regular file (a pipe or device cannot be read twice, as "
                                  "condpt tag reads its inputs: checked first, then tagged); write it to a file")
            specs.append(spec)
    if not specs:
        raise CorpusError("no inputs given")
    return specs


class _Streams(io.RawIOBase):
    """A compressed file of one or more streams (zstd frames, bz2 or xz streams), decompressed by `new()`
    decompressors one after another. A file that ends inside a stream raises EOFError; bytes after a stream
    that do not start another raise the decompressor's error (`padding`: a byte allowed between streams).

    zstandard's `stream_reader` returns a short read, without error, for a truncated file; Python's bz2 and lzma
    files stop without error at bytes after a whole stream that start no valid one: a second stream whose header
    is damaged was every record in it lost, silently."""

    def __init__(self, raw: io.BufferedIOBase, new, padding: bytes = b""):
        self._raw, self._new, self._padding = raw, new, padding
        self._obj = None
        self._out = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._out:
            data = self._raw.read(1 << 20)
            if not data:
                if self._obj is not None and not self._obj.eof:
                    raise EOFError("truncated: the file ends inside a compressed stream")
                return 0
            while data:
                if self._obj is None or self._obj.eof:
                    if self._padding and not (data := data.lstrip(self._padding)):
                        break
                    self._obj = self._new()
                self._out += self._obj.decompress(data)
                data = self._obj.unused_data if self._obj.eof else b""
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_binary(spec: InputSpec) -> io.BufferedIOBase:
    if spec.compression and os.stat(spec.path).st_size == 0:  # no compressor writes 0 bytes: a cut-off copy
        raise EOFError("empty file, not even the start of a compressed stream")
    if spec.compression == "gzip":
        return gzip.open(spec.path, "rb")
    if spec.compression == "bz2":
        return io.BufferedReader(_Streams(open(spec.path, "rb"), bz2.BZ2Decompressor), 1 << 20)
    if spec.compression == "xz":  # xz allows NUL padding between and after streams
        return io.BufferedReader(_Streams(open(spec.path, "rb"), lzma.LZMADecompressor, b"\0"), 1 << 20)
    if spec.compression == "zstd":
        import zstandard

        return io.BufferedReader(_Streams(open(spec.path, "rb"), zstandard.ZstdDecompressor().decompressobj),
                                 1 << 20)
    return open(spec.path, "rb")


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a damaged compressed stream raises (zlib.error and the others are no OSError)."""
    import zstandard

    return OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError


def _unreadable(spec: InputSpec, line: int, e: BaseException) -> CorpusError:
    what = "truncated" if isinstance(e, EOFError) else "corrupt or unreadable"
    where = f" after line {line}" if line else ""
    return CorpusError(f"{spec.label}: {what}{where} ({shown(e)}); nothing of this file can be trusted, "
                       "replace it and run again")


class LongLine(bytes):
    """The head of a line over MAX_LINE_BYTES (`size`: its whole length), read in pieces and quarantined: a
    file that is one endless line (a JSON array named .jsonl) must not take the memory of the run."""

    size: int

    def __new__(cls, head: bytes, size: int):
        obj = super().__new__(cls, head)
        obj.size = size
        return obj

    def __reduce__(self):
        return LongLine, (bytes(self), self.size)


def _iter_jsonl(spec: InputSpec) -> Iterator[tuple[int, bytes]]:
    line_no = 0
    try:
        with _open_binary(spec) as f:
            while line := f.readline(MAX_LINE_BYTES):
                line_no += 1
                if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
                    head, size = line[:LONG_LINE_KEPT], len(line)
                    while not line.endswith(b"\n") and (line := f.readline(MAX_LINE_BYTES)):
                        size += len(line)
                    yield line_no, LongLine(head, size)
                    continue
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield line_no, line
    except _read_errors() as e:
        raise _unreadable(spec, line_no, e) from e


def _named_fields(fields: Fields) -> list[tuple[str, str]]:
    """(field, how to name it) of an id field a config named away from the default: a record may lack `id`
    (an id is generated), but a field named on purpose that no record holds is a typo, which would silently
    do the same. (A `source_field` no record holds names each source after its file, as documented.)"""
    return [(fields.id, "--id-field (or id_field in the tag config)")] if fields.id != Fields.id else []


def _columns(spec: InputSpec, names: list[str], fields: Fields) -> list[str]:
    if fields.text not in names:
        raise CorpusError(f"{spec.label}: no column {fields.text!r} (columns: {shown(', '.join(names))}); "
                          "name the text column with --text-field (or text_field in the tag config)")
    for name, option in _named_fields(fields):
        if name not in names:
            raise CorpusError(f"{spec.label}: no field {name!r} (columns: {shown(', '.join(names))}); check {option}")
    for name in (fields.text, fields.id, fields.source or DEFAULT_SOURCE_FIELD):
        if names.count(name) > 1:  # Arrow's rows keep the last one, silently
            raise CorpusError(f"{spec.label}: {names.count(name)} columns named {shown(name)!r}; keep one")
    return list(dict.fromkeys(c for c in (fields.text, fields.id, fields.source or DEFAULT_SOURCE_FIELD)
                              if c and c in names))


def _parquet_file(spec: InputSpec, f: io.BufferedIOBase):
    """`f` is the file opened by Python: pyarrow cannot open a path that is not UTF-8."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(f)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for non-Parquet bytes
        raise CorpusError(f"{spec.label}: not a readable Parquet file ({shown(e)})") from e


class NotUtf8(bytes):
    """A Parquet/datasets string that is not UTF-8 (writers that skip the check make them), kept as its bytes for
    `parse_record` to quarantine: Arrow fails the whole batch on it, which would end the run at one record."""


def _utf8_or_bytes(value: bytes | None) -> str | NotUtf8 | None:
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        return NotUtf8(value)


def _bad_byte(value: NotUtf8) -> int:
    try:
        bytes(value).decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start
    return -1


def _batch_rows(batch) -> list[dict]:
    """A record batch as dicts; a batch holding a string that is not UTF-8 is read again with each such string
    as `NotUtf8`."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        pass
    import pyarrow as pa

    cols = {}
    for name, col in zip(batch.schema.names, batch.columns):
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            raw = col.cast(pa.binary() if pa.types.is_string(col.type) else pa.large_binary())
            cols[name] = [_utf8_or_bytes(v) for v in raw.to_pylist()]
        else:
            cols[name] = col.to_pylist()
    return [dict(zip(cols, values)) for values in zip(*cols.values())]


def _iter_parquet(spec: InputSpec, fields: Fields) -> Iterator[tuple[int, dict]]:
    with open(spec.path, "rb") as f:
        pf = _parquet_file(spec, f)
        cols = _columns(spec, pf.schema_arrow.names, fields)
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=1024, columns=cols):
                for rec in _batch_rows(batch):
                    row += 1
                    yield row, rec
        except (OSError, ValueError) as e:  # pyarrow's ArrowIOError / ArrowInvalid: a damaged page
            raise _unreadable(spec, row, e) from e


def _dataset_parts(spec: InputSpec) -> list:
    import datasets

    if spec.label != str(spec.path):
        raise CorpusError(f"{spec.label}: datasets cannot open a directory whose path is not UTF-8; rename it")
    try:
        ds = datasets.load_from_disk(str(spec.path))
    except Exception as e:
        raise CorpusError(f"{spec.label}: not a readable datasets directory ({shown(e)})") from e
    return [ds[k] for k in sorted(ds)] if isinstance(ds, datasets.DatasetDict) else [ds]


def _iter_datasets(spec: InputSpec, fields: Fields) -> Iterator[tuple[int, dict]]:
    parts = _dataset_parts(spec)
    row = 0
    for part in parts:
        cols = _columns(spec, part.column_names, fields)
        for batch in part.select_columns(cols).with_format("arrow").iter(batch_size=1024):
            for rec in _batch_rows(batch):
                row += 1
                yield row, rec


def check_inputs(specs: list[InputSpec], fields: Fields) -> None:
    """Raise `CorpusError` for the first input that cannot be read whole, before anything is written.

    Parquet and datasets inputs: their columns (metadata only). Plain JSONL: that it opens. Compressed JSONL:
    decompressed to the end, since only the end of a stream tells a truncated file from a whole one (cheap
    next to tagging it)."""
    for spec in specs:
        if spec.format == "parquet":  # read to the end too: a damaged data page hides behind a whole footer
            with open(spec.path, "rb") as f:
                pf = _parquet_file(spec, f)
                cols = _columns(spec, pf.schema_arrow.names, fields)  # outside the try: a missing column is no damage
                row = 0
                try:
                    for batch in pf.iter_batches(batch_size=65536, columns=cols):
                        row += batch.num_rows
                except (OSError, ValueError) as e:  # pyarrow's ArrowIOError / ArrowInvalid
                    raise _unreadable(spec, row, e) from e
        elif spec.format == "datasets":
            for part in _dataset_parts(spec):
                _columns(spec, part.column_names, fields)
        else:
            try:
                with _open_binary(spec) as f:
                    head = f.read(1 << 20)
                    while head and spec.compression and f.read(1 << 20):
                        pass
            except _read_errors() as e:
                raise _unreadable(spec, 0, e) from e
            if spec.compression is None:
                _refuse_misnamed(spec, head)
            _sniff_text_field(spec, fields)


# The magic bytes of each compression a JSONL input may have (a JSON text never starts with them).
_MAGIC = {b"\x1f\x8b": ("gzip", ".gz"), b"BZh": ("bz2", ".bz2"), b"\xfd7zXZ\x00": ("xz", ".xz"),
          b"\x28\xb5\x2f\xfd": ("zstd", ".zst")}


def _refuse_misnamed(spec: InputSpec, head: bytes) -> None:
    """A compressed file named as plain JSONL: refused with the name to give it (its lines would be quarantined
    one by one as invalid UTF-8, its records never read)."""
    for magic, (kind, suffix) in _MAGIC.items():
        if head.startswith(magic):
            raise CorpusError(f"{spec.label}: {kind}-compressed; name it {shown(spec.path.name)}{suffix} (or "
                              "decompress it)")


def _sniff_text_field(spec: InputSpec, fields: Fields) -> None:
    """A JSONL file none of whose first `SNIFF_RECORDS` JSON objects holds the text field is misconfigured
    (e.g. ``--text-field body`` misspelt), not a file of bad records: refuse it rather than quarantine it all.
    A field missing from some records only quarantines those records. A file whose lines hold no JSON object
    and which as a whole is a JSON array of objects is not JSON Lines: refused too (lines that merely open
    with ``[`` are bad records, quarantined)."""
    first = None
    seen = 0
    opening = None  # the first non-blank line's first character
    named = _named_fields(fields)
    has_text = False
    for line, payload in _iter_jsonl(spec):
        if opening is None:
            opening = bytes(payload[:64]).decode("utf-8-sig", "replace").lstrip()[:1] or None
        if isinstance(payload, LongLine):
            continue
        try:
            obj = json.loads(payload.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
        if not isinstance(obj, dict):
            continue
        named = [nm for nm in named if nm[0] not in obj]
        if fields.text in obj:
            if not named:
                return
            has_text = True
        first = first or (line, sorted(map(str, obj))[:10])
        seen += 1
        if seen >= SNIFF_RECORDS:
            break
    if has_text:  # the text field is there; an id or source field named on purpose is in none of the records
        name, option = named[0]
        raise CorpusError(f"{spec.label}: no field {name!r} in any of the first {seen} records (fields of line "
                          f"{first[0]}: {shown(', '.join(first[1]))}); check {option}")
    if first is None and seen == 0 and opening == "[" and _is_json_array_of_objects(spec):
        raise CorpusError(f"{spec.label}: holds a JSON array, not JSON Lines (one JSON object per line); write one "
                          "object per line (e.g. `jq -c '.[]'`)")
    if first is not None:
        line, keys = first
        raise CorpusError(f"{spec.label}: line {line}: no field {fields.text!r} (fields: {shown(', '.join(keys))}), "
                          f"nor in any of the first {seen} records; name the text field with --text-field "
                          "(or text_field in the tag config)")


def _is_json_array_of_objects(spec: InputSpec, limit: int = 256 * 1024 * 1024) -> bool:
    """Whether the whole file (up to `limit` bytes; a larger one is left to the record reader) is one JSON
    array holding a JSON object: records written as an array instead of one per line."""
    with _open_binary(spec) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        return False
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def _fingerprint(path: Path) -> tuple[int, int] | None:
    if path.is_dir():
        return None
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def iter_records(specs: list[InputSpec], fields: Fields) -> Iterator[tuple[int, int, Any]]:
    """All raw records of all inputs in order: (input index, line/row, bytes or dict).

    A file that changes while it is read is an error: its records would be part old, part new text."""
    for k, spec in enumerate(specs):
        before = _fingerprint(spec.path)
        if spec.format == "jsonl":
            it = _iter_jsonl(spec)
        elif spec.format == "parquet":
            it = _iter_parquet(spec, fields)
        else:
            it = _iter_datasets(spec, fields)
        for line, payload in it:
            yield k, line, payload
        if _fingerprint(spec.path) != before:
            raise CorpusError(f"{spec.label}: changed while being read (size or modification time); run again "
                              "when it no longer changes (finished chunks made from the old text are redone)")


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


def _escaped(value: Any) -> str:
    """A row value JSON cannot hold, as text: a string that is not UTF-8 with its bad bytes as ``\\xNN``."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, NotUtf8) else repr(value)


def raw_bytes(payload: Any) -> bytes:
    """The record as bytes, for the quarantine (JSONL: the line itself; rows: their JSON)."""
    if isinstance(payload, bytes):
        return payload
    try:
        return json.dumps(payload, ensure_ascii=False, default=_escaped).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):  # an integer over Python's digit limit, deep nesting
        return repr(payload).encode("utf-8", "backslashreplace")


def parse_record(spec: InputSpec, k: int, line: int, payload: Any, fields: Fields) -> Document | Quarantined:
    """Validate one raw record; every way a record can be unusable has its own reason."""

    def bad(reason: str, doc_id: str | None = None) -> Quarantined:
        return Quarantined(k, line, reason, raw_bytes(payload), doc_id)

    if isinstance(payload, LongLine):
        return bad(f"line of {payload.size} bytes, over the {MAX_LINE_BYTES} byte limit")
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
            if e.msg == "Extra data" and "\r" in s[:e.pos]:  # records split by bare CRs: one "line" to a reader
                return bad(f"malformed JSON: a second record at column {e.colno} after a CR: the file uses CR-only "
                           "line endings (old Mac); JSONL lines end in LF (\\n) or CRLF: convert the file")
            return bad(f"malformed JSON: {e.msg.removesuffix(' at')} at column {e.colno}")  # json's own may end in "at"
        except RecursionError:
            return bad("unreadable JSON: nested too deeply for the parser")
        except ValueError as e:  # valid JSON Python will not parse: an integer over 4300 digits
            return bad(f"unreadable JSON: {e}")
        if not isinstance(obj, dict):
            return bad(f"not a JSON object (got {type(obj).__name__})")
    else:
        obj = payload
    raw_id = obj.get(fields.id)
    if isinstance(raw_id, NotUtf8):
        return bad(f"field {fields.id!r} is not valid UTF-8 (byte {_bad_byte(raw_id)})")
    if raw_id is None:
        doc_id = None
    elif why := id_problem(raw_id):
        return bad(f"field {fields.id!r} {why}")
    else:
        doc_id = str(raw_id)
    if fields.text not in obj or obj[fields.text] is None:
        return bad(f"missing field {fields.text!r}", doc_id)
    text = obj[fields.text]
    if isinstance(text, NotUtf8):
        return bad(f"field {fields.text!r} is not valid UTF-8 (byte {_bad_byte(text)})", doc_id)
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
    value = obj.get(fields.source or DEFAULT_SOURCE_FIELD)
    if isinstance(value, str) and value.strip():
        source = shown(value)
    if doc_id is None:
        doc_id = stable_id(spec.name, line, text)
    return Document(doc_id, text, source, k, line)
