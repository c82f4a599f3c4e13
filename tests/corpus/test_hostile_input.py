"""Hostile inputs to the corpus readers: damaged compressed files, unknown files, records that would crash a
parser, file names that are not UTF-8. Each either is an error naming the file or quarantines the record with
its reason; nothing is dropped without a word."""

from __future__ import annotations

import bz2
import gzip
import json
import os

import pytest

from condpt.corpus import (
    CorpusError,
    Document,
    Fields,
    Quarantined,
    check_inputs,
    expand_inputs,
    iter_records,
    parse_record,
    stable_id,
)

LINES = b"".join(json.dumps({"text": f"line {i} " + "x" * (i % 13)}).encode() + b"\n" for i in range(4000))


def _read(paths, fields=None):
    fields = fields or Fields()
    specs = expand_inputs(paths)
    return [parse_record(specs[k], k, line, payload, fields) for k, line, payload in iter_records(specs, fields)]


def _zst(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_truncated_zstd_is_an_error_naming_the_file(tmp_path, cut):
    blob = _zst(LINES)
    p = tmp_path / "web.jsonl.zst"
    p.write_bytes(blob[: int(len(blob) * cut)])
    with pytest.raises(CorpusError, match=r"web\.jsonl\.zst.*truncated"):
        _read([p])
    with pytest.raises(CorpusError, match=r"web\.jsonl\.zst"):
        check_inputs(expand_inputs([p]), Fields())


@pytest.mark.parametrize("name", ["e.jsonl.zst", "e.jsonl.gz", "e.jsonl.bz2", "e.jsonl.xz"])
def test_an_empty_compressed_file_is_truncated(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(CorpusError, match=rf"{name}: truncated.*empty file"):
        _read([tmp_path / name])


def test_multi_frame_zstd_is_read_whole_and_truncation_in_a_later_frame_is_an_error(tmp_path):
    half = len(LINES) // 2
    cut = LINES.index(b"\n", half) + 1
    frames = _zst(LINES[:cut]) + _zst(LINES[cut:])
    p = tmp_path / "two.jsonl.zst"
    p.write_bytes(frames)
    assert len(_read([p])) == 4000
    p.write_bytes(frames[:-10])
    with pytest.raises(CorpusError, match="truncated"):
        _read([p])


def test_corrupt_zstd_and_gzip_are_errors(tmp_path):
    blob = bytearray(_zst(LINES))
    blob[len(blob) // 2: len(blob) // 2 + 64] = b"\x00" * 64
    (tmp_path / "z.jsonl.zst").write_bytes(bytes(blob))
    with pytest.raises(CorpusError, match=r"z\.jsonl\.zst"):
        _read([tmp_path / "z.jsonl.zst"])
    g = bytearray(gzip.compress(LINES))
    g[len(g) // 2: len(g) // 2 + 64] = b"\x00" * 64
    (tmp_path / "g.jsonl.gz").write_bytes(bytes(g))
    with pytest.raises(CorpusError, match=r"g\.jsonl\.gz"):
        check_inputs(expand_inputs([tmp_path / "g.jsonl.gz"]), Fields())


def test_bz2_is_read_and_a_truncated_bz2_is_an_error(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl.bz2").write_bytes(bz2.compress(LINES))
    docs = _read([d])
    assert len(docs) == 4000 and all(isinstance(x, Document) for x in docs) and docs[0].source == "a"
    blob = bz2.compress(LINES)
    (d / "a.jsonl.bz2").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorpusError, match=r"a\.jsonl\.bz2"):
        check_inputs(expand_inputs([d]), Fields())


def test_unrecognised_files_in_a_directory_are_refused_by_name(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "b.jsonl.lz4").write_bytes(b"whatever")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CorpusError, match=r"b\.jsonl\.lz4.*notes\.txt|notes\.txt.*b\.jsonl\.lz4"):
        expand_inputs([tmp_path])


def test_parquet_without_text_column_is_found_before_reading(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "b.parquet")
    with pytest.raises(CorpusError, match=r"b\.parquet: no column 'text'"):
        check_inputs(expand_inputs([tmp_path]), Fields())


@pytest.mark.parametrize("line, reason", [
    (b'{"text": "deep", "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "unreadable JSON: nested too deeply"),
    (b'{"text": "deep", "a": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}", "unreadable JSON: nested too deeply"),
    (b'{"text": "big", "n": ' + b"9" * 5000 + b"}", "unreadable JSON: Exceeds the limit (4300 digits)"),
    (b'{"text": "big", "id": ' + b"9" * 5000 + b"}", "unreadable JSON: Exceeds the limit (4300 digits)"),
])
def test_records_that_crash_a_json_parser_are_quarantined(tmp_path, line, reason):
    p = tmp_path / "hostile.jsonl"
    p.write_bytes(b'{"text": "fine"}\n' + line + b"\n" + b'{"text": "after"}\n')
    first, bad, after = _read([p])
    assert isinstance(first, Document) and isinstance(after, Document)
    assert isinstance(bad, Quarantined) and reason in bad.reason and bad.line == 2 and bad.raw == line


def test_a_non_utf8_file_name_is_escaped(tmp_path):
    name = os.fsdecode(b"caf\xe9-\xff.jsonl")  # Latin-1 bytes: not UTF-8, a surrogateescape str
    p = tmp_path / name
    p.write_text('{"text": "hello"}\n')
    [spec] = expand_inputs([tmp_path])
    assert spec.name == "caf\\xe9-\\xff" and spec.name.encode("utf-8")
    [doc] = _read([tmp_path])
    assert isinstance(doc, Document) and doc.source == "caf\\xe9-\\xff"
    assert doc.id == stable_id("caf\\xe9-\\xff", 1, "hello")
    fake = tmp_path / os.fsdecode(b"x\xff.jsonl.gz")  # a non-UTF-8 name in an error message is escaped too
    fake.write_bytes(b"not gzip")
    with pytest.raises(CorpusError) as e:
        check_inputs(expand_inputs([fake]), Fields())
    assert "x\\xff.jsonl.gz" in str(e.value)
    str(e.value).encode("utf-8")


def test_a_file_changed_while_being_read_is_an_error(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(LINES)
    specs = expand_inputs([p])
    records = iter_records(specs, Fields())
    next(records)
    with p.open("ab") as f:
        f.write(b'{"text": "appended"}\n')
    with pytest.raises(CorpusError, match=r"a\.jsonl: changed while being read"):
        list(records)


def test_entries_that_are_not_regular_files_are_refused(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "gone.jsonl").symlink_to(tmp_path / "missing.jsonl")
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(CorpusError, match=r"gone\.jsonl \(not a regular file\), pipe\.jsonl \(not a regular file\)"):
        expand_inputs([tmp_path])


def test_a_line_too_long_to_hold_is_quarantined_without_being_held(tmp_path, monkeypatch):
    import condpt.corpus.read as read_mod

    monkeypatch.setattr(read_mod, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(read_mod, "LONG_LINE_KEPT", 100)
    p = tmp_path / "long.jsonl"
    long_line = json.dumps({"text": "y" * 5000}).encode()
    p.write_bytes(b'{"text": "before"}\n' + long_line + b'\n{"text": "after"}\n' + b"z" * 3000)
    before, long, after, tail = _read([p])
    assert isinstance(before, Document) and isinstance(after, Document) and after.line == 3
    assert isinstance(long, Quarantined) and long.line == 2 and long.raw == long_line[:100]
    assert long.reason == f"line of {len(long_line) + 1} bytes, over the 1000 byte limit"
    assert isinstance(tail, Quarantined) and tail.line == 4 and "3000 bytes" in tail.reason


def test_a_link_to_a_directory_is_refused_not_skipped(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "other" / "b.jsonl").write_text('{"text": "y"}\n')
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "other")
    with pytest.raises(CorpusError, match=r"linked \(a link to a directory, not followed\)"):
        expand_inputs([tmp_path / "in"])
