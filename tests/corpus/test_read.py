"""Corpus readers: formats, fields, stable ids, quarantine reasons, chunking."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from condpt.corpus import (
    MAX_DOC_BYTES,
    CorpusError,
    Document,
    Fields,
    Quarantined,
    expand_inputs,
    iter_chunks,
    iter_records,
    parse_record,
    stable_id,
)

ROWS = [{"id": "a", "text": "First document.", "meta": 1},
        {"text": "Second document, no id.", "src": "web"},
        {"id": 7, "text": "Third, integer id. é 𐀤"}]


def _docs(paths, fields=None):
    fields = fields or Fields()
    specs = expand_inputs(paths)
    return [parse_record(specs[k], k, line, payload, fields) for k, line, payload in iter_records(specs, fields)]


def _write_all_formats(tmp_path: Path) -> list[Path]:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    lines = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    out = []
    d = tmp_path / "plain"
    d.mkdir()
    (d / "c.jsonl").write_bytes(lines)
    out.append(d / "c.jsonl")
    d = tmp_path / "gz"
    d.mkdir()
    (d / "c.jsonl.gz").write_bytes(gzip.compress(lines))
    out.append(d / "c.jsonl.gz")
    d = tmp_path / "zst"
    d.mkdir()
    (d / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    out.append(d / "c.jsonl.zst")
    d = tmp_path / "pq"
    d.mkdir()
    table = pa.table({"id": [r.get("id") and str(r["id"]) for r in ROWS], "text": [r["text"] for r in ROWS]})
    pq.write_table(table, d / "c.parquet")
    out.append(d / "c.parquet")
    datasets.Dataset.from_dict(table.to_pydict()).save_to_disk(str(tmp_path / "c"))
    out.append(tmp_path / "c")
    return out


def test_every_format_reads_the_same_documents(tmp_path):
    results = [_docs([p]) for p in _write_all_formats(tmp_path)]
    for docs in results:
        assert all(isinstance(d, Document) for d in docs)
        assert [d.text for d in docs] == [r["text"] for r in ROWS]
        assert [d.line for d in docs] == [1, 2, 3]
        assert docs[0].id == "a" and docs[2].id == "7"
        assert docs[0].source == "c"
    # generated ids depend on the input name + line + text, not on the directory, format or compression
    assert len({docs[1].id for docs in results}) == 1
    assert results[0][1].id == stable_id("c", 2, ROWS[1]["text"])


def test_stable_ids_change_with_line_name_and_text():
    base = stable_id("a.jsonl", 1, "x")
    assert base == stable_id("a.jsonl", 1, "x") and len(base) == 20
    assert len({base, stable_id("a.jsonl", 2, "x"), stable_id("b.jsonl", 1, "x"), stable_id("a.jsonl", 1, "y")}) == 4


def test_configurable_fields(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"body": "hello", "uid": "u1", "site": "blog"}) + "\n")
    [d] = _docs([p], Fields(text="body", id="uid", source="site"))
    assert (d.id, d.text, d.source) == ("u1", "hello", "blog")
    [q] = _docs([p])
    assert isinstance(q, Quarantined) and q.reason == "missing field 'text'"


@pytest.mark.parametrize("line, reason", [
    (b'{"text": "ok"', "malformed JSON"),
    (b'{"text": "bad \xff byte"}', "invalid UTF-8 at byte"),
    (b'[1, 2]', "not a JSON object"),
    (b'{"id": "x"}', "missing field 'text'"),
    (b'{"text": null}', "missing field 'text'"),
    (b'{"text": 3}', "not a string"),
    (b'{"text": "   \\n "}', "empty field 'text'"),
    (b'{"text": "lone \\ud800 surrogate"}', "not valid Unicode"),
    (b'{"text": "x", "id": {"a": 1}}', "field 'id' is not a string or integer"),
    (b'{"text": "x", "id": ""}', "field 'id' is empty"),
])
def test_bad_records_are_quarantined_with_reason(tmp_path, line, reason):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "fine"}\n\n' + line + b"\n")
    docs = _docs([p])
    assert isinstance(docs[0], Document)
    assert len(docs) == 2  # the blank line is not a record
    q = docs[1]
    assert isinstance(q, Quarantined) and reason in q.reason
    assert q.line == 3 and q.raw == line


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "one"}\r\n{"text": "two"}\r\n')
    assert [d.text for d in _docs([p])] == ["one", "two"]


def test_documents_over_10mb_are_quarantined(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text(json.dumps({"text": "a" * (MAX_DOC_BYTES + 1)}) + "\n" + json.dumps({"text": "a" * 100}) + "\n")
    big, small = _docs([p])
    assert isinstance(big, Quarantined) and "10485760 byte limit" in big.reason
    assert isinstance(small, Document)


def test_unusable_inputs_raise(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        expand_inputs([tmp_path / "missing.jsonl"])
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(CorpusError, match="unknown input format"):
        expand_inputs([tmp_path / "x.csv"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="no .jsonl/.parquet"):
        expand_inputs([empty])
    (tmp_path / "fake.parquet").write_bytes(b"not parquet")
    with pytest.raises(CorpusError, match="not a readable Parquet"):
        list(iter_records(expand_inputs([tmp_path / "fake.parquet"]), Fields()))


def test_parquet_without_text_column_is_an_input_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(CorpusError, match="no column 'text'.*body"):
        list(iter_records(expand_inputs([tmp_path / "a.parquet"]), Fields()))


def test_truncated_gzip_is_an_input_error(tmp_path):
    data = gzip.compress(b'{"text": "x"}\n' * 1000)
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError, match=r"t\.jsonl\.gz: truncated"):
        list(iter_records(expand_inputs([tmp_path / "t.jsonl.gz"]), Fields()))


def test_directory_inputs_expand_sorted_and_skip_hidden(tmp_path):
    for name in ("b.jsonl", "a.jsonl", ".hidden.jsonl", "_SUCCESS", ".git/objects/x", ".git/HEAD"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text('{"text": "x"}\n')
    skipped = []
    assert [s.path.name for s in expand_inputs([tmp_path], skipped)] == ["a.jsonl", "b.jsonl"]
    assert skipped == [str(tmp_path / n) for n in (".git", ".hidden.jsonl", "_SUCCESS")]
    (tmp_path / "notes.txt").write_text("hi")  # an unrecognised file is refused, never skipped
    with pytest.raises(CorpusError, match="unrecognised files notes.txt"):
        expand_inputs([tmp_path])


def test_chunks_are_deterministic_and_bounded(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({"text": "x" * (i % 7 + 1)}) + "\n" for i in range(50)))
    specs = expand_inputs([p])
    a = list(iter_chunks(specs, Fields(), rows=8, nbytes=10**9))
    b = list(iter_chunks(specs, Fields(), rows=8, nbytes=10**9))
    assert [len(c.records) for c in a] == [8] * 6 + [2]
    assert [c.records for c in a] == [c.records for c in b]
    assert [c.index for c in a] == list(range(7))
    by_bytes = list(iter_chunks(specs, Fields(), rows=1000, nbytes=200))
    assert all(c.nbytes < 200 + 30 for c in by_bytes) and sum(len(c.records) for c in by_bytes) == 50


@pytest.mark.parametrize("indent", [None, 1])
def test_a_json_array_file_is_an_input_error_not_a_quarantine(tmp_path, indent):
    """A `.json` file holding one JSON array (what many tools write) was read as JSON Lines: exit 0, every line
    quarantined (82 'records' from 20 documents), nothing written (issue 9 sweep 2)."""
    from condpt.corpus import check_inputs

    path = tmp_path / "arr.json"
    path.write_text(json.dumps([{"id": f"x{i}", "text": "hello"} for i in range(20)], indent=indent))
    with pytest.raises(CorpusError, match=r"arr\.json: .*JSON array.*not JSON Lines"):
        check_inputs(expand_inputs([path]), Fields())


def test_a_file_whose_first_lines_are_all_bad_is_still_quarantined_when_objects_follow(tmp_path):
    from condpt.corpus import check_inputs

    path = tmp_path / "c.jsonl"
    path.write_text("{broken\n[1, 2]\n" + json.dumps({"text": "fine"}) + "\n")
    check_inputs(expand_inputs([path]), Fields())
    path.write_text("[]\n[1, {}]\n")  # lines that open with '[': bad records (quarantined), not an array file
    check_inputs(expand_inputs([path]), Fields())
