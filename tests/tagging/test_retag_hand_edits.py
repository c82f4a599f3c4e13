"""`condpt retag` over a tagged directory whose rows were edited by hand (a span past its text, a NaN score,
a tag that is no role, ...): each is an error naming the file, the row's id and the field, raised before
anything is rewritten (retag went chunk by chunk: a bad row in a later chunk crashed with a traceback after
the earlier chunks were rewritten, and running it again crashed at the same row)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `retag`)
from condpt.cli import app
from condpt.corpus import TAGGED_SCHEMA
from condpt.tagging.cascade import TagConfig
from condpt.tagging.run import tag_corpus


class GradedScorer:
    name = "graded"
    threshold = 0.5

    def score(self, texts):
        return np.array([int(t.split("level ")[1][0]) / 10 if "level " in t else 0.05 for t in texts], np.float32)


def _tagged(tmp_path: Path, **cfg) -> Path:
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Doc {i} at level {i % 10}.\n\nCalm tea."}) + "\n"
                           for i in range(24)), encoding="utf-8")
    tag_corpus([src], tmp_path / "out", TagConfig(rows_per_shard=8, **cfg), scorer=GradedScorer(), progress=False,
               attributes=True)
    return tmp_path / "out"


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _span(row, **edit):
    return {**row, "spans": [{**row["spans"][0], **edit}, *row["spans"][1:]]}


# (the edit of the last chunk's second row, the field named, a phrase of the reason); rows keep the schema
ROW_EDITS = [
    (lambda r: _span(r, end=len(r["text"]) + 5), "spans", "past the end of the text"),
    (lambda r: _span(r, start=-1), "spans", "start -1"),
    (lambda r: _span(r, start=10, end=4), "spans", "ends before it starts"),
    (lambda r: _span(r, score=None), "spans", "score"),
    (lambda r: _span(r, score=float("nan")), "spans", "score"),
    (lambda r: _span(r, score=1.5), "spans", "score"),
    (lambda r: _span(r, start=None), "spans", "start"),
    (lambda r: {**r, "score": float("nan")}, "score", "not a number in [0, 1]"),
    (lambda r: {**r, "score": float("inf")}, "score", "not a number in [0, 1]"),
    (lambda r: {**r, "score": -0.5}, "score", "not a number in [0, 1]"),
    (lambda r: {**r, "score": None}, "score", "missing"),
    (lambda r: {**r, "tag": "evil"}, "tag", "'evil' is not a role"),
    (lambda r: {**r, "spans": None}, "spans", "not a list"),
    (lambda r: {**r, "text": None}, "text", "not a string"),
    (lambda r: {**r, "id": "  "}, "id", "is empty"),
]


def _edit_part(path: Path, edit, schema=TAGGED_SCHEMA) -> str:
    rows = pq.read_table(path).to_pylist()
    rows[1] = edit(rows[1])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return rows[1]["id"]


@pytest.mark.parametrize(("edit", "field", "why"), ROW_EDITS)
def test_a_hand_edited_row_is_named_before_anything_is_rewritten(tmp_path, edit, field, why):
    out = _tagged(tmp_path)
    doc = _edit_part(out / "data" / "part-000002.parquet", edit)
    before = _files(out)
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "data/part-000002.parquet" in res.output and f"field {field!r}" in res.output, res.output
    assert why in res.output and repr(doc) in res.output, res.output
    assert _files(out) == before  # the earlier chunks too: nothing rewritten


@pytest.mark.parametrize(("column", "values", "why"), [
    ("score", ["0.9"] * 8, "string"),
    ("spans", ["[]"] * 8, "string"),
    ("tag", [1] * 8, "int64"),
])
def test_a_column_of_another_type_is_named(tmp_path, column, values, why):
    out = _tagged(tmp_path)
    path = out / "data" / "part-000002.parquet"
    table = pq.read_table(path)
    table = table.set_column(table.column_names.index(column), column, pa.array(values[:table.num_rows]))
    pq.write_table(table, path)
    before = _files(out)
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "data/part-000002.parquet" in res.output and f"field {column!r}" in res.output, res.output
    assert why in res.output, res.output
    assert _files(out) == before


def test_a_hand_edited_attributes_row_is_named(tmp_path):
    from condpt.tagging.attributes import ATTRIBUTES_SCHEMA

    out = _tagged(tmp_path)
    doc = _edit_part(out / "attributes" / "part-000001.parquet", lambda r: _span(r, start=7, end=2),
                     ATTRIBUTES_SCHEMA)
    before = _files(out)
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2 and "attributes/part-000001.parquet" in res.output and repr(doc) in res.output, \
        res.output
    assert _files(out) == before


@pytest.mark.parametrize(("spelling", "recorded", "why"), [("-0.0", 0.0, None), ("1e-400", 0.0, None),
                                                           ("nan", None, "finite number"),
                                                           ("inf", None, "finite number"),
                                                           ("1.5", None, "less than or equal to 1"),
                                                           ("-0.5", None, "greater than or equal to 0")])
def test_retag_threshold_spellings(tmp_path, spelling, recorded, why):
    """`--threshold -0.0` was recorded as -0.0 in run.json and report.json; invalid ones are refused as a tag
    config refuses them (`condpt.tagged.Threshold`), nothing rewritten."""
    out = _tagged(tmp_path)
    before = _files(out)
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", spelling])
    if why:
        assert res.exit_code == 2 and why in res.output and "--threshold" in res.output, res.output
        assert _files(out) == before
        return
    assert res.exit_code == 0 and f"at threshold {recorded}:" in res.output, res.output
    for name, key in (("run.json", lambda d: d["config"]["threshold"]), ("report.json", lambda d: d["threshold"])):
        text = (out / name).read_text()
        assert key(json.loads(text)) == recorded and "-0.0" not in text, name


def test_a_missing_report_is_named(tmp_path):
    out = _tagged(tmp_path)
    (out / "report.json").unlink()
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2 and "report.json" in res.output and "Errno" not in res.output, res.output


def test_a_column_added_by_hand_is_named_not_dropped(tmp_path):
    """A column added to a part (a note, a second score) was dropped without a word when retag rewrote it."""
    out = _tagged(tmp_path)
    path = out / "set_aside" / "part-000000.parquet" if (out / "set_aside" / "part-000000.parquet").exists() \
        else out / "data" / "part-000000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.append_column("note", pa.array(["checked"] * table.num_rows)), path)
    before = _files(out)
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2 and "field 'note'" in res.output and path.name in res.output, res.output
    assert _files(out) == before
