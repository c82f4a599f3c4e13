"""An OUT that holds output directories but no run.json was not made by `condpt tag` (or not by a run it can
account for): refused before anything in it is touched. The run used to delete a foreign data/part-000099.parquet
while writing its own parts beside it."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from condpt.tagging.cascade import TagConfig
from condpt.tagging.run import TagRunError, tag_corpus


@pytest.mark.parametrize("part", ["data", "quarantine", "markers"])
def test_an_out_with_output_files_but_no_run_file_is_refused_untouched(tmp_path, part):
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(10)))
    theirs = tmp_path / "out" / part / "part-000099.parquet"
    theirs.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["zz"], "text": ["someone else's"]}), theirs)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))
    with pytest.raises(TagRunError, match=f"holds {part}/ but no run.json"):
        tag_corpus([src], tmp_path / "out", TagConfig(classifier={"spec": "none"}, rows_per_shard=3), progress=False)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*")) == before


def test_an_out_with_other_files_only_is_used(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"text": "doc"}) + "\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    report = tag_corpus([src], tmp_path / "out", TagConfig(classifier={"spec": "none"}), progress=False)
    assert report["written"] == 1 and (tmp_path / "out" / "notes.txt").read_text() == "mine"
