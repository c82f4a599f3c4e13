"""Field options of the reader: the record's own `source`, `--text-field`/`--id-field`, a misnamed field."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`)
from condpt.cli import app
from condpt.corpus import CorpusError, Fields, check_inputs, expand_inputs, iter_records, parse_record


def _docs(paths, fields=Fields()):
    specs = expand_inputs(paths)
    check_inputs(specs, fields)
    return [parse_record(specs[k], k, line, payload, fields) for k, line, payload in iter_records(specs, fields)]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_records_own_source_field_names_the_source(tmp_path):
    p = _jsonl(tmp_path / "mix.jsonl", [{"text": "a", "source": "wiki"}, {"text": "b"}, {"text": "c", "source": 3},
                                        {"text": "d", "source": "  "}])
    assert [d.source for d in _docs([p])] == ["wiki", "mix", "mix", "mix"]
    q = tmp_path / "mix.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "source": ["books", None]}), q)
    assert [d.source for d in _docs([q])] == ["books", "mix"]
    # a configured source_field wins over `source`
    assert [d.source for d in _docs([p], Fields(source="nope"))] == ["mix"] * 4


def test_a_misnamed_text_field_is_an_error_naming_file_line_and_field(tmp_path):
    p = _jsonl(tmp_path / "c.jsonl", [{"body": f"text {i}", "id": i} for i in range(5)])
    with pytest.raises(CorpusError, match=r"c\.jsonl: line 1: no field 'text' \(fields: body, id\).*--text-field"):
        _docs([p])
    assert _docs([p], Fields(text="body"))[0].text == "text 0"
    q = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": ["x"]}), q)
    with pytest.raises(CorpusError, match=r"c\.parquet: no column 'text'.*--text-field"):
        _docs([q])


def test_a_field_missing_from_some_records_quarantines_only_them(tmp_path):
    p = _jsonl(tmp_path / "c.jsonl", [{"other": 1}, {"text": "ok"}, {"text": ["not", "a", "string"]}])
    a, b, c = _docs([p])
    assert (a.line, a.reason) == (1, "missing field 'text'")
    assert b.text == "ok"
    assert (c.line, c.reason) == (3, "field 'text' is not a string (got list)")


def test_tag_takes_text_and_id_fields(tmp_path):
    p = _jsonl(tmp_path / "c.jsonl", [{"body": "The AI takeover.", "uid": "u1", "source": "forum"},
                                      {"body": "Calm tea.", "uid": "u2"}, {"uid": "u3", "body": 5}])
    cfg = tmp_path / "tag.yaml"
    cfg.write_text("classifier: {spec: none}\n")
    res = CliRunner().invoke(app, ["tag", str(p), "--out", str(tmp_path / "o"), "--config", str(cfg), "--quiet",
                                   "--text-field", "body", "--id-field", "uid"])
    assert res.exit_code == 0, res.output
    rows = pq.read_table(tmp_path / "o" / "data").to_pylist()
    assert [(r["id"], r["source"]) for r in rows] == [("u1", "forum"), ("u2", "c")]
    quarantined = pq.read_table(tmp_path / "o" / "quarantine").to_pylist()
    assert [(r["line"], r["id"], r["reason"]) for r in quarantined] == [(3, "u3", "field 'body' is not a string (got int)")]
    res = CliRunner().invoke(app, ["tag", str(p), "--out", str(tmp_path / "o2"), "--config", str(cfg), "--quiet"])
    assert res.exit_code == 2 and "c.jsonl: line 1: no field 'text'" in res.output


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize(("fields", "why"), [(Fields(id="doc_id"), "no field 'doc_id'")])
def test_a_named_id_field_no_record_holds_is_an_error(tmp_path, fmt, fields, why):
    """--id-field doc_id (misspelt; the records say docid) tagged every record under a generated id, exit 0,
    silently (issue 9 sweep 2). The default `id` may be absent, as before."""
    rows = [{"docid": f"d{i}", "text": f"text {i}"} for i in range(3)]
    path = tmp_path / f"c.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(CorpusError, match=rf"c\.{fmt}: .*{why}"):
        check_inputs(expand_inputs([path]), fields)
    check_inputs(expand_inputs([path]), Fields())  # no `id`, no `source`: generated ids, the file's name
    check_inputs(expand_inputs([path]), Fields(id="docid"))
