"""The one document-id rule (`condpt.corpus.ids.id_problem`), applied alike by the corpus reader, the labelled
reader and the tagged-row check: three copies differed at the edges (a whitespace-only or lone-surrogate id
passed the tagged-row check, which refused only "")."""

from __future__ import annotations

import json

import pytest

from condpt.corpus import Fields, Quarantined, expand_inputs, iter_records, parse_record
from condpt.corpus.ids import id_problem
from condpt.labelled import LabelledDataError, read_labelled
from condpt.tagged import row_problem

# (the id as JSON, why it is refused or None)
EDGES = [
    ('"a"', None), ("7", None), ("0", None), ("-3", None), ('" a "', None),
    ('""', "is empty"), ('"   "', "is empty"), ('"\\t\\n"', "is empty"),
    ('"d\\ud800"', "lone surrogate"), ('"\\udfff"', "lone surrogate"),
    ("true", "not a string or integer"), ("false", "not a string or integer"),
    ("1.5", "not a string or integer"), ("2.0", "not a string or integer"),
    ('["a"]', "not a string or integer"), ('{"a": 1}', "not a string or integer"),
]


def _corpus_reason(tmp_path, raw: str) -> str | None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": ' + raw + ', "text": "hello"}\n', encoding="utf-8")
    specs = expand_inputs([path])
    [out] = [parse_record(specs[k], k, line, p, Fields()) for k, line, p in iter_records(specs, Fields())]
    return out.reason if isinstance(out, Quarantined) else None


def _labelled_reason(tmp_path, raw: str) -> str | None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"id": ' + raw + ', "text": "hello", "label": 1}\n', encoding="utf-8")
    try:
        read_labelled(path)
    except LabelledDataError as e:
        return str(e)
    return None


@pytest.mark.parametrize(("raw", "why"), EDGES)
def test_every_reader_applies_the_one_id_rule(tmp_path, raw, why):
    value = json.loads(raw)
    assert (id_problem(value) is None) == (why is None)
    if why is not None:
        assert why in id_problem(value)
    corpus = _corpus_reason(tmp_path, raw)
    labelled = _labelled_reason(tmp_path, raw)
    tagged = row_problem({"id": value, "text": "hello"}, "text", None)
    for who, reason in (("corpus", corpus), ("labelled", labelled), ("tagged", tagged)):
        if why is None:
            assert reason is None, (who, reason)
        else:
            assert reason is not None and why in reason and "field 'id'" in reason, (who, reason)
    if why is not None:
        assert labelled.startswith(f"{tmp_path / 'l.jsonl'}:1: ")  # the file and line, as before


def test_a_missing_id_is_the_callers_business():
    """Absent is allowed in a corpus (a stable id is made) and in labelled rows, not in a tagged row."""
    assert row_problem({"text": "x"}, "text", None) == "field 'id': missing"
    assert "not a string or integer" in row_problem({"id": None, "text": "x"}, "text", None)
