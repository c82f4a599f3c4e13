"""Training sources checked row by row when a run config loads: a row the data path would coerce, mistag or
fail on late (a tag that is no control-token role, a text that is not a string, a line that is not JSON) is an
error naming the file, the line and the field, before any process starts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from condpt.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "configs" / "tiny-cpu.yaml"
GOOD = {"id": "a", "text": "hello world", "tag": "good", "score": 0.1}


def _jsonl(path: Path, *rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _load(source: Path, *more: str):
    return load_config(TINY, [f"data.sources.0.path={source}", *more])


@pytest.mark.parametrize("row, field, why", [
    ({"id": "b", "text": "doom", "tag": "BAD"}, "tag", "'BAD' is not a role"),  # filter would train it
    ({"id": "b", "text": "doom", "tag": "bad "}, "tag", "'bad ' is not a role"),
    ({"id": "b", "text": "doom", "tag": 1}, "tag", "not a string"),  # datasets made every tag '"good"'
    ({"id": "b", "text": ["x"], "tag": "good"}, "text", "not a string"),  # trained as the text '["x"]'
    ({"id": "b", "text": None, "tag": "good"}, "text", "not a string"),  # a TypeError at packing
    ({"id": True, "text": "x", "tag": "good"}, "id", "not a string or integer"),
    ({"id": None, "text": "x", "tag": "good"}, "id", "not a string or integer"),
    ({"text": "x", "tag": "good"}, "id", "missing"),
    ({"id": "b", "text": "x", "tag": "good", "score": float("nan")}, "score", "not a number in [0, 1]"),
    ({"id": "b", "text": "x", "tag": "good", "score": 5}, "score", "not a number in [0, 1]"),
    ({"id": "b", "text": "x", "tag": "good", "score": "0.9"}, "score", "not a number in [0, 1]"),
    ('{"id": "b", "text": "x\\ud800", "tag": "good"}', "text", "lone surrogate"),
])
def test_a_bad_row_in_a_jsonl_source_names_file_line_and_field(tmp_path, row, field, why):
    src = _jsonl(tmp_path / "corpus.jsonl", GOOD, {**GOOD, "id": "c"}, row)
    with pytest.raises(ConfigError) as e:
        _load(src, "data.policy.mode=filter")
    msg = str(e.value)
    assert "data.sources.0.path" in msg and f"{src}: line 3: field {field!r}" in msg and why in msg, msg


@pytest.mark.parametrize("line, why", [("{not json", "not JSON"), ("[1, 2]", "not a JSON object"),
                                       (b'{"id": "b", "text": "\xff", "tag": "good"}', "not UTF-8")])
def test_a_line_that_is_no_json_object_names_file_and_line(tmp_path, line, why):
    src = tmp_path / "corpus.jsonl"
    src.write_bytes(json.dumps(GOOD).encode() + b"\n" + (line if isinstance(line, bytes) else line.encode()) + b"\n")
    with pytest.raises(ConfigError) as e:
        _load(src)
    assert f"{src}: line 2: " in str(e.value) and why in str(e.value), str(e.value)


def test_a_parquet_source_with_a_tag_that_is_no_role_names_file_row_and_field(tmp_path):
    src = tmp_path / "data.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"], "tag": ["good", None, "Bad"]}), src)
    with pytest.raises(ConfigError) as e:
        _load(src)
    assert f"{src}: row 3: field 'tag': 'Bad' is not a role" in str(e.value), str(e.value)


@pytest.mark.parametrize("column, values, why", [
    ("id", ["a", "  ", "c"], "field 'id': is empty"),  # the one id rule, as for a JSONL row (it passed)
    ("id", ["a", None, "c"], "field 'id': is not a string or integer"),
    ("text", ["x", None, "z"], "field 'text': null is not a string"),
])
def test_a_parquet_source_with_a_null_or_blank_id_or_text_names_file_row_and_field(tmp_path, column, values, why):
    src = tmp_path / "data.parquet"
    rows = {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "tag": ["good", None, "bad"], column: values}
    pq.write_table(pa.table(rows), src)
    with pytest.raises(ConfigError) as e:
        _load(src)
    assert f"{src}: row 2: {why}" in str(e.value), str(e.value)


def test_a_parquet_source_whose_text_is_not_strings_is_refused(tmp_path):
    src = tmp_path / "data.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": [["x"]], "tag": ["good"]}), src)
    with pytest.raises(ConfigError, match=r"field 'text' is list<.*>, not strings"):
        _load(src)


def test_valid_sources_load(tmp_path):
    src = _jsonl(tmp_path / "corpus.jsonl", GOOD, {"id": 7, "text": "", "tag": None}, {"id": "z", "text": "q",
                                                                                      "tag": "bad", "score": 1})
    assert _load(src).data.sources[0].path == src
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", "y"], "tag": ["good", None]}), tmp_path / "d.parquet")
    assert _load(tmp_path / "d.parquet").data.sources[0].path == tmp_path / "d.parquet"


def test_a_stamped_pass_skips_the_full_read_until_a_file_changes(tmp_path, row_scans):
    """`condpt train` reads the rows once and stamps the pass for the run's processes; a file edited since (its
    size or modification time: what the data cache sees) is read again, and its bad row found."""
    import os

    src = _jsonl(tmp_path / "corpus.jsonl", GOOD, {**GOOD, "id": "b"})
    out = f"output_dir={tmp_path / 'run'}"
    _load(src, out)  # a plain load (a dry run, a test) checks and stamps nothing
    assert len(row_scans) == 1 and not (tmp_path / "run").exists()
    load_config(TINY, [f"data.sources.0.path={src}", out], rows="stamp")
    assert len(row_scans) == 2 and len(list((tmp_path / "run" / "cache").glob("rows-*"))) == 1
    _load(src, out)
    load_config(TINY, [f"data.sources.0.path={src}", out], rows="stamp")
    assert len(row_scans) == 2  # trusted
    load_config(TINY, [f"data.sources.0.path={src}", out, "data.policy.threshold=0.5"])
    assert len(row_scans) == 3  # another check (any tag is fine when the scores re-tag): not this stamp's
    stat = src.stat()
    src.write_text(src.read_text().replace('"good"', '"Good"', 1))  # the same size, a nanosecond later
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    with pytest.raises(ConfigError, match=r"line 1: field 'tag': 'Good' is not a role"):
        load_config(TINY, [f"data.sources.0.path={src}", out], rows="stamp")
    assert len(row_scans) == 4 and len(list((tmp_path / "run" / "cache").glob("rows-*"))) == 1  # a problem: no stamp


def test_rows_later_leaves_the_read_to_the_run(tmp_path, row_scans):
    src = _jsonl(tmp_path / "corpus.jsonl", GOOD, {**GOOD, "tag": "BAD"})
    cfg = load_config(TINY, [f"data.sources.0.path={src}", f"output_dir={tmp_path / 'run'}"], rows="later")
    assert cfg.data.sources[0].path == src and not row_scans


def test_a_config_that_cannot_run_stamps_nothing(tmp_path, row_scans):
    """A stamp is a pass of the whole config: nothing is written in the output_dir of a config refused."""
    src = _jsonl(tmp_path / "corpus.jsonl", GOOD)
    with pytest.raises(ConfigError, match="train.report_to"):
        load_config(TINY, [f"data.sources.0.path={src}", f"output_dir={tmp_path / 'run'}",
                           "train.report_to=[tensorbord]"], rows="stamp")
    assert len(row_scans) == 1 and not (tmp_path / "run").exists()


def test_an_output_dir_that_cannot_take_the_stamp_costs_only_a_read(tmp_path, row_scans):
    src = _jsonl(tmp_path / "corpus.jsonl", GOOD)
    run = tmp_path / "run"
    run.mkdir()
    (run / "cache").write_text("")  # no directory can be made there (a read-only one is writable to root)
    for _ in range(2):
        load_config(TINY, [f"data.sources.0.path={src}", f"output_dir={run}"], rows="stamp")
    assert sorted(p.name for p in run.iterdir()) == ["cache"] and len(row_scans) == 2


def test_a_json_file_holding_one_array_is_named_as_not_json_lines(tmp_path):
    """Was 'missing column 'id' (columns: [])' for a file whose every record is there, in one array."""
    src = tmp_path / "corpus.json"
    src.write_text(json.dumps([GOOD, {**GOOD, "id": "b"}]))
    with pytest.raises(ConfigError, match="not a JSON object but list; a source holds JSON lines"):
        _load(src)


def test_a_gguf_checkpoint_is_named_as_one(tmp_path):
    gguf = tmp_path / "model.q8.bin"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "model.gguf").write_bytes(gguf.read_bytes())
    for ckpt, why in [(gguf, "a GGUF file"), (tmp_path / "dir", "it holds GGUF (model.gguf), which condpt does not")]:
        with pytest.raises(ConfigError, match=rf"model.checkpoint \(override\): {ckpt}: .*{re.escape(why)}"):
            load_config(TINY, [f"model.checkpoint={ckpt}", "model.config=null", "tokenizer.source=checkpoint"])


@pytest.mark.parametrize("kind, why", [("under a file", "is a file, not a directory"), ("a broken link", "is a broken link")])
def test_an_output_dir_that_cannot_be_made_is_named(tmp_path, kind, why):
    """Both passed the check and failed at the first mkdir, a NotADirectoryError/FileExistsError traceback."""
    if kind == "under a file":
        (tmp_path / "f").write_text("")
        out = tmp_path / "f" / "run"
    else:
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match=f"output_dir \\(override\\): {out}: .* {why}"):
        load_config(TINY, [f"output_dir={out}"])


def test_a_tokenizer_source_that_is_a_file_is_not_called_missing(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"tokenizer.json: not a directory \(use checkpoint"):
        load_config(TINY, [f"tokenizer.source={tmp_path / 'tokenizer.json'}"])


def test_a_source_without_a_single_record_is_named(tmp_path):
    """Was datasets' 'Instruction "train" corresponds to no data!', a traceback once the processes were up."""
    src = tmp_path / "corpus.jsonl"
    src.write_text("\n  \n")
    with pytest.raises(ConfigError, match=f"data.sources.0.path \\(override\\): {src}: no record"):
        _load(src)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.jsonl").write_text("")
    _jsonl(tmp_path / "dir" / "b.jsonl", GOOD)  # an empty file beside records is read fine
    assert _load(tmp_path / "dir")


def test_an_output_dir_among_the_inputs_is_refused(tmp_path):
    """A run in its source directory wrote metrics.jsonl there, read as training data by the next run."""
    (tmp_path / "data").mkdir()
    _jsonl(tmp_path / "data" / "a.jsonl", GOOD)
    for out in (tmp_path / "data", tmp_path / "data" / "run"):
        with pytest.raises(ConfigError, match=r"output_dir \(override\): .*: inside data.sources.0.path"):
            _load(tmp_path / "data", f"output_dir={out}")
    assert _load(tmp_path / "data", f"output_dir={tmp_path / 'run'}")
    (tmp_path / "run" / "final").mkdir(parents=True)  # continuing a run's export in that same run directory
    with pytest.raises(ConfigError, match=r"model.checkpoint \(.*final\) is the export this run replaces"):
        load_config(TINY, [f"output_dir={tmp_path / 'run'}", f"model.checkpoint={tmp_path / 'run' / 'final'}",
                           "model.config=null", "tokenizer.source=checkpoint"])


def test_the_shipped_demo_config_without_data_says_to_give_a_source():
    """`condpt train --config demo` as it ships names a placeholder source inside the package: the error pointed
    into site-packages without saying that the demo and the grids give their own data."""
    from condpt.shipped import shipped_config

    with pytest.raises(ConfigError) as e:
        load_config(shipped_config("run", "demo"))
    assert "the shipped config names no data of its own" in str(e.value)
    assert "data.sources.0.path=YOUR_TAGGED_DATA" in str(e.value), str(e.value)
