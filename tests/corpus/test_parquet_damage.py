"""Damaged Parquet (and datasets) inputs: a data page that does not decode is an error naming the file before anything is
written (its footer reads, so only reading it tells); a string that is not UTF-8 is a quarantined record, as in
JSONL, not the end of the run."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`)
from condpt.cli import app
from condpt.corpus import CorpusError, Fields, check_inputs, expand_inputs, iter_records, parse_record


def _corrupt_page(path):
    pq.write_table(pa.table({"text": [f"text number {i} " * 5 for i in range(4000)]}), path, compression="none",
                   row_group_size=1000)
    blob = bytearray(path.read_bytes())
    blob[20000:20400] = b"\xff" * 400  # inside a data page; the footer stays whole
    path.write_bytes(bytes(blob))


def _not_utf8(path):
    texts = pa.array([b"fine", b"a\xed\xa0\x80b", b"also fine"], pa.binary()).cast(pa.string(), safe=False)
    pq.write_table(pa.table({"text": texts, "id": pa.array(["x", "y", "z"])}), path)


def test_a_corrupt_data_page_is_found_before_writing(tmp_path):
    _corrupt_page(tmp_path / "a.parquet")
    with pytest.raises(CorpusError, match="a.parquet: corrupt or unreadable"):
        check_inputs(expand_inputs([tmp_path / "a.parquet"]), Fields())
    res = CliRunner().invoke(app, ["tag", str(tmp_path / "a.parquet"), "--out", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 2 and "a.parquet" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_a_string_that_is_not_utf8_is_a_quarantined_record(tmp_path):
    _not_utf8(tmp_path / "a.parquet")
    specs = expand_inputs([tmp_path / "a.parquet"])
    check_inputs(specs, Fields())
    out = [parse_record(specs[k], k, line, payload, Fields()) for k, line, payload in iter_records(specs, Fields())]
    assert [type(r).__name__ for r in out] == ["Document", "Quarantined", "Document"]
    assert out[1].line == 2 and out[1].reason == "field 'text' is not valid UTF-8 (byte 1)" and out[1].id == "y"
    assert out[1].raw == rb'{"text": "a\\xed\\xa0\\x80b", "id": "y"}'  # the JSON of the row, bad bytes escaped


def test_a_datasets_string_that_is_not_utf8_is_a_quarantined_record(tmp_path):
    import datasets

    texts = pa.array([b"fine", b"a\xed\xa0\x80b"], pa.binary()).cast(pa.string(), safe=False)
    datasets.Dataset(pa.table({"text": texts, "id": ["x", "y"]})).save_to_disk(str(tmp_path / "ds"))
    specs = expand_inputs([tmp_path / "ds"])
    out = [parse_record(specs[k], k, line, payload, Fields()) for k, line, payload in iter_records(specs, Fields())]
    assert [type(r).__name__ for r in out] == ["Document", "Quarantined"]
    assert out[1].reason == "field 'text' is not valid UTF-8 (byte 1)" and out[1].id == "y"
