"""A source's `text_field` cannot be one of the other columns the data path reads: `text_field: source` trained
every document as its source name, `id` or `tag` failed late with a datasets error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from condpt.sequences import SourceConfig


@pytest.mark.parametrize("field", ["id", "tag", "score", "spans", "source"])
def test_text_field_cannot_be_another_column(field):
    with pytest.raises(ValidationError, match=f"text_field {field!r} is the source's {field!r} column"):
        SourceConfig(path="corpus.jsonl", text_field=field)


def test_text_field_may_be_any_other_name():
    assert SourceConfig(path="corpus.jsonl", text_field="body").columns == ("id", "body", "tag")


def _write(path, text='{"id": "a", "text": "t", "tag": "good"}\n'):
    path.write_text(text)
    return path


@pytest.mark.parametrize("other", ["b.jsonl.zst", "b.txt", "sub"])
def test_a_source_directory_with_an_entry_it_would_not_read_is_refused_by_name(tmp_path, other):
    from condpt.sequences import _source_files

    _write(tmp_path / "a.jsonl")
    if other == "sub":
        (tmp_path / "sub").mkdir()
        _write(tmp_path / "sub" / "c.jsonl")
    else:
        _write(tmp_path / other)
    with pytest.raises(ValueError, match=f"holds {other}, which a data source cannot read"):
        _source_files(tmp_path)


@pytest.mark.parametrize("kind, why", [("dir", "a directory"), ("link", "a broken link")])
def test_an_entry_named_like_data_that_is_no_file_is_named_for_what_it_is(tmp_path, kind, why):
    """Was 'holds b.jsonl, which a data source cannot read (.parquet, .jsonl or .json...)': the name is right."""
    from condpt.sequences import _source_files

    _write(tmp_path / "a.jsonl")
    if kind == "dir":
        (tmp_path / "b.jsonl").mkdir()
    else:
        (tmp_path / "b.jsonl").symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(ValueError, match=f"b.jsonl: not a file \\({why}\\)"):
        _source_files(tmp_path)


def test_json_lines_files_are_read_whatever_the_case_of_their_suffix(tmp_path):
    from condpt.sequences import _source_files

    names = ["a.jsonl", "b.JSONL", "c.json.gz", "d.Json"]
    for name in names:
        _write(tmp_path / name)
    assert _source_files(tmp_path) == ("json", [str(tmp_path / n) for n in sorted(names)])


def test_a_source_directory_mixing_parquet_and_jsonl_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from condpt.sequences import _source_files

    _write(tmp_path / "a.jsonl")
    pq.write_table(pa.table({"id": ["b"], "text": ["t"], "tag": ["good"]}), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match="a.jsonl"):  # the parquet files alone were read: a.jsonl lost
        _source_files(tmp_path)


def test_a_tag_output_directory_reads_its_data_parts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from condpt.sequences import _source_files

    (tmp_path / "data").mkdir()
    (tmp_path / "quarantine").mkdir()
    pq.write_table(pa.table({"id": ["b"], "text": ["t"], "tag": ["good"]}), tmp_path / "data" / "part-000000.parquet")
    _write(tmp_path / "report.json", "{}")
    assert _source_files(tmp_path) == ("parquet", [str(tmp_path / "data" / "part-000000.parquet")])
    _write(tmp_path / "data" / ".DS_Store", "x")  # hidden entries are no data
    assert _source_files(tmp_path) == ("parquet", [str(tmp_path / "data" / "part-000000.parquet")])


def test_a_tag_output_that_wrote_no_data_says_so(tmp_path):
    from condpt.sequences import _source_files

    (tmp_path / "set_aside").mkdir()
    _write(tmp_path / "run.json", "{}")
    _write(tmp_path / "report.json", "{}")
    with pytest.raises(ValueError, match="a `condpt tag` output without data/"):
        _source_files(tmp_path)
