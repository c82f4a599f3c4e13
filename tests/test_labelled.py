"""Labelled JSONL (`condpt.labelled`): one reader, one documented label set, errors naming file:line:field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import condpt.cli.classify  # registers `train-classifier` (and `condpt` for the next line)
import condpt.cli.tag  # noqa: F401  (registers `calibrate`)
from condpt.cli import app
from condpt.labelled import LabelledDataError, parse_label, read_labelled

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "misalignment-dev.jsonl"


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_documented_label_set():
    assert [parse_label(v) for v in (1, 0, True, False)] == [1, 0, 1, 0]
    for v in ("1", "0", 1.0, 0.0, 2, -1, "bad", "good", "true", None, [1]):
        assert parse_label(v) is None, v


@pytest.mark.parametrize("value", ["1", 1.0, "bad", None, 2])
def test_a_bad_label_names_file_line_and_field(tmp_path, value):
    p = _jsonl(tmp_path / "x.jsonl", [{"text": "a", "y": 1}, {"text": "b", "y": value}])
    with pytest.raises(LabelledDataError, match=r"x\.jsonl:2: field 'y' must be 1, 0, true or false, got "):
        read_labelled(p, label_field="y")


def test_other_errors_name_file_line_and_field(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0\n', encoding="utf-8")
    with pytest.raises(LabelledDataError, match=r"x\.jsonl:2: malformed JSON"):
        read_labelled(p)
    _jsonl(p, [{"text": "a"}])
    with pytest.raises(LabelledDataError, match=r"x\.jsonl:1: field 'label' missing"):
        read_labelled(p)
    _jsonl(p, [{"label": 1, "id": "d1"}])
    with pytest.raises(LabelledDataError, match=r"x\.jsonl:1: field 'text' missing"):
        read_labelled(p)
    assert read_labelled(p, need_text=False).ids == ["d1"]  # calibration may join on the id alone
    _jsonl(p, [{"label": 1}])
    with pytest.raises(LabelledDataError, match=r"x\.jsonl:1: needs field 'text' or 'id'"):
        read_labelled(p, need_text=False)
    p.write_bytes(b'{"text": "\xff", "label": 1}\n')
    with pytest.raises(LabelledDataError, match=r"x\.jsonl:1: invalid UTF-8"):
        read_labelled(p)
    p.write_text("\n\n", encoding="utf-8")
    with pytest.raises(LabelledDataError, match="no labelled rows"):
        read_labelled(p)
    with pytest.raises(LabelledDataError, match="no such file"):
        read_labelled(tmp_path / "missing.jsonl")


def test_kept_fields_come_back_per_row_and_a_missing_one_names_file_line_and_field(tmp_path):
    p = _jsonl(tmp_path / "x.jsonl", [{"text": "a", "label": 1, "category": "positive", "n": [1]},
                                      {"text": "b", "label": 0, "category": None, "n": 2}])
    data = read_labelled(p, keep=("category", "n"))
    assert data.kept == {"category": ["positive", None], "n": [[1], 2]}
    assert read_labelled(p).kept == {}
    _jsonl(p, [{"text": "a", "label": 1, "category": "positive"}, {"text": "b", "label": 0}])
    with pytest.raises(LabelledDataError, match=r"x\.jsonl:2: field 'category' missing"):
        read_labelled(p, keep=("category",))


def test_calibrate_and_train_classifier_accept_and_refuse_the_same_files(tmp_path):
    """They used to disagree: train-classifier took "1" and refused true; calibrate the other way round."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from condpt.corpus import TAGGED_SCHEMA

    texts = [f"passage number {i} " + ("rogue machine" if i % 2 else "bread and jam") for i in range(12)]
    scores = [0.9 if i % 2 else 0.1 for i in range(12)]
    (tmp_path / "tagged" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pydict({
        "id": [f"d{i}" for i in range(12)], "text": texts, "source": ["s"] * 12, "score": scores,
        "tag": ["good"] * 12, "spans": [[] for _ in texts], "prefilter_hits": [[] for _ in texts],
        "stage": ["classifier"] * 12}, schema=TAGGED_SCHEMA), tmp_path / "tagged" / "data" / "part-000000.parquet")
    run = CliRunner().invoke
    good = _jsonl(tmp_path / "bools.jsonl", [{"text": t, "label": bool(i % 2), "source": f"g{i % 3}"}
                                             for i, t in enumerate(texts)])
    res = run(app, ["calibrate", str(tmp_path / "tagged"), "--labelled", str(good), "--target-recall", "1.0"])
    assert res.exit_code == 0, res.output
    res = run(app, ["train-classifier", str(good), "--out", str(tmp_path / "clf"), "--kind", "fasttext", "--no-cv"])
    assert res.exit_code == 0, res.output
    bad = _jsonl(tmp_path / "strings.jsonl", [{"text": t, "label": str(i % 2)} for i, t in enumerate(texts)])
    res = run(app, ["calibrate", str(tmp_path / "tagged"), "--labelled", str(bad), "--target-recall", "1.0"])
    assert res.exit_code == 2 and "strings.jsonl:1: field 'label' must be 1, 0, true or false" in res.output
    res = run(app, ["train-classifier", str(bad), "--out", str(tmp_path / "clf2"), "--kind", "fasttext"])
    assert res.exit_code == 2 and "strings.jsonl:1: field 'label' must be 1, 0, true or false" in res.output


@pytest.mark.skipif(not DEV.exists(), reason="the shared dev set sits beside the repository")
def test_the_shared_dev_set_reads():
    data = read_labelled(DEV, group_field="source", keep=("category",))
    assert len(data.labels) == 297 and sum(data.labels) == 118
    assert set(data.kept["category"]) == {"positive", "hard_positive", "hard_negative", "easy_negative"}


@pytest.mark.parametrize(("line", "why"), [
    ('{"text": "t", "label": 1' + "0" * 5000 + "}", "unreadable JSON"),
    ('{"text": "t", "label": 1, "x": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
    ('{"text": "t", "label": 1, "id": ["a"]}', "field 'id' is not a string or integer"),
    ('{"text": "t", "label": 1, "id": true}', "field 'id' is not a string or integer"),
    ('{"text": "t", "label": 1, "id": " "}', "field 'id' is empty"),
])
def test_rows_python_cannot_parse_or_odd_ids_name_file_and_line(tmp_path, line, why):
    """A 5,000-digit integer or JSON nested 100,000 deep was a ValueError/RecursionError traceback, and an id
    of any JSON type was stringified (["a"] joined as "['a']"); ids follow the corpus reader's rule."""
    path = tmp_path / "l.jsonl"
    path.write_text('{"text": "ok", "label": 0}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(LabelledDataError, match=f"l.jsonl:2: .*{why}"):
        read_labelled(path)


def test_a_duplicate_id_names_both_lines(tmp_path):
    """The same id twice (here with opposite labels) counted one document twice in calibration and in
    cross-validation, silently."""
    path = tmp_path / "l.jsonl"
    _jsonl(path, [{"id": "a", "text": "x", "label": 1}, {"id": "b", "text": "y", "label": 0},
                  {"id": "a", "text": "x", "label": 0}])
    with pytest.raises(LabelledDataError, match=r"l.jsonl:3: field 'id' 'a' is also on line 1"):
        read_labelled(path)


@pytest.mark.parametrize(("line", "why"), [
    ('{"text": "x\\ud800", "label": 1}', "field 'text' is not valid Unicode"),
    ('{"text": "x", "label": 1, "id": "d\\udfff"}', "field 'id' is not valid Unicode"),
    ('{"text": "x", "label": 1, "src": ["a", "b"]}', "field 'src' is not a string or integer"),
    ('{"text": "x", "label": 1, "src": {"a": 1}}', "field 'src' is not a string or integer"),
    ('{"text": "x", "label": 1, "src": "s\\ud800"}', "field 'src' is not valid Unicode"),
])
def test_a_lone_surrogate_or_a_list_group_names_file_line_and_field(tmp_path, line, why):
    """`train-classifier` accepted a lone surrogate in the text (it cannot be written out as UTF-8) and a list
    as a group (stringified: ['a', 'b'] grouped as "['a', 'b']")."""
    path = tmp_path / "l.jsonl"
    path.write_text('{"text": "ok", "label": 0}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(LabelledDataError, match=f"l.jsonl:2: {why}"):
        read_labelled(path, group_field="src")


def test_a_byte_order_mark_opening_the_file_is_read_as_the_corpus_reader_reads_it(tmp_path):
    """A UTF-8 BOM (Notepad, Excel's "CSV UTF-8" turned JSONL) was 'malformed JSON (Unexpected UTF-8 BOM)'
    although `condpt tag` reads the same file; CRLF line ends read as LF."""
    path = tmp_path / "l.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"text": "a", "label": 1}\r\n{"text": "b", "label": 0}\r\n')
    data = read_labelled(path)
    assert data.texts == ["a", "b"] and data.labels == [1, 0] and data.lines == [1, 2]
    path.write_bytes(b'{"text": "a", "label": 1}\n\xef\xbb\xbf{"text": "b", "label": 0}\n')
    with pytest.raises(LabelledDataError, match=r"l.jsonl:2: malformed JSON"):  # only the file's first bytes
        read_labelled(path)


def test_cr_only_line_ends_and_a_directory_are_named_for_what_they_are(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_bytes(b'{"text": "a", "label": 1}\r{"text": "b", "label": 0}\r')
    with pytest.raises(LabelledDataError, match=r"l.jsonl:1: .*CR-only line endings"):
        read_labelled(path)
    with pytest.raises(LabelledDataError, match=rf"{tmp_path}: a directory, not a labelled JSONL file"):
        read_labelled(tmp_path)
