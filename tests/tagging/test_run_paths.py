"""OUT and the inputs must not overlap: an OUT inside an input directory is read as input by the next run (its
data/ shards hold a `text` column), and an input among the entries a run writes in OUT (data/, markers/, ...)
is deleted by the tasks that rewrite them; an input elsewhere in OUT is read."""

from __future__ import annotations

import json
import os

import pytest

from condpt.tagging.cascade import TagConfig
from condpt.tagging.run import TagRunError, tag_corpus

CFG = TagConfig(classifier={"spec": "none"})


def _corpus(d, n=3):
    d.mkdir(parents=True, exist_ok=True)
    (d / "a.jsonl").write_text("".join(json.dumps({"text": f"Document {i}."}) + "\n" for i in range(n)))
    return d


@pytest.mark.parametrize("where", ["same", "inside"])
def test_an_out_inside_an_input_directory_is_refused_before_anything_is_written(tmp_path, where):
    d = _corpus(tmp_path / "in")
    out = d if where == "same" else d / "tagged"
    with pytest.raises(TagRunError, match=r"--out .* is inside the input directory .*in\b"):
        tag_corpus([d], out, CFG, progress=False)
    assert sorted(os.listdir(d)) == ["a.jsonl"]


def test_an_out_reached_through_a_link_is_refused(tmp_path):
    d = _corpus(tmp_path / "in")
    (tmp_path / "link").symlink_to(d)
    with pytest.raises(TagRunError, match="inside the input directory"):
        tag_corpus([d], tmp_path / "link" / "tagged", CFG, progress=False)
    assert sorted(os.listdir(d)) == ["a.jsonl"]


def test_an_input_among_out_s_own_entries_is_refused_and_left_whole(tmp_path):
    out = tmp_path / "o"
    first = tag_corpus([_corpus(tmp_path / "in")], out, CFG, progress=False)
    assert first["written"] == 3
    shards = sorted(os.listdir(out / "data"))
    with pytest.raises(TagRunError, match=r"o/data.* is inside --out .*among the files the run rewrites"):
        tag_corpus([out / "data"], out, CFG, progress=False)
    assert sorted(os.listdir(out / "data")) == shards  # the tasks delete their part files first
    with pytest.raises(TagRunError, match="is inside --out"):
        tag_corpus([out / "data" / shards[0]], out, CFG, progress=False)


def test_an_input_beside_the_run_s_own_entries_in_out_is_read(tmp_path):
    out = tmp_path / "project"
    report = tag_corpus([_corpus(out / "raw")], out, CFG, progress=False)
    assert report["complete"] and report["written"] == 3
    assert tag_corpus([out / "raw"], out, CFG, progress=False)["written"] == 3  # the re-run too


def test_neighbours_that_share_a_name_prefix_are_not_overlaps(tmp_path):
    d = _corpus(tmp_path / "corpus")
    report = tag_corpus([d], tmp_path / "corpus-tagged", CFG, progress=False)
    assert report["complete"] and report["written"] == 3
