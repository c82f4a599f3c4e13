"""`condpt tag --attributes`: OUT/attributes/part-k.parquet holds id + decision of every tagged document of chunk
k, no text; kept whole through kills, edited inputs, retag; a run with and one without are different runs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rerun import crash_after, output_files, write_lines
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`)
from condpt.cli import app
from condpt.tagging import chunked
from condpt.tagging.attributes import ATTRIBUTES_SCHEMA
from condpt.tagging.cascade import TagConfig
from condpt.tagging.retag import retag_dir
from condpt.tagging.run import TagRunError, tag_corpus

CFG = TagConfig(rows_per_shard=6, classifier={"spec": "none"}, threshold=0.5, set_aside_roles=["bad"])


def _lines(n: int) -> list[str]:
    lines = [json.dumps({"id": f"d{i}", "text": f"Document {i}.\n\n" + ("The AI takeover began." if i % 4 == 0
                                                                           else "Calm tea.")}) for i in range(n)]
    lines[7] = "{broken"
    lines[9] = json.dumps({"id": "d1", "text": "Document 9. A duplicate id."})
    return lines




def _read(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist() if path.exists() else []


def _check_attributes(out: Path) -> int:
    """Each chunk's attributes are its data and set-aside rows' decisions, in input order; returns how many."""
    n = 0
    for marker in sorted((out / "markers").glob("part-*.json")):
        name = marker.stem
        rows = {r["id"]: r for sub in ("data", "set_aside") for r in _read(out / sub / f"{name}.parquet")}
        path = out / "attributes" / f"{name}.parquet"
        if not rows:
            assert not path.exists()
            continue
        table = pq.read_table(path)
        assert table.schema == ATTRIBUTES_SCHEMA  # id, score, tag, spans, stage: no text
        attrs = table.to_pylist()
        line = {i: int(r["text"].split(".")[0].split()[1]) for i, r in rows.items()}  # "Document N."
        assert [a["id"] for a in attrs] == sorted(rows, key=line.get)  # input order
        assert attrs == [{c: rows[a["id"]][c] for c in ATTRIBUTES_SCHEMA.names} for a in attrs]
        n += len(attrs)
    assert not {p.stem for p in (out / "attributes").iterdir()} - {m.stem for m in (out / "markers").iterdir()}
    return n


@pytest.mark.parametrize("workers", [1, 2])
def test_cli_attributes_hold_every_tagged_document_beside_its_chunk(tmp_path, workers):
    src = write_lines(tmp_path / "c.jsonl", _lines(30))
    cfg = tmp_path / "tag.yaml"
    cfg.write_text("classifier: {spec: none}\nrows_per_shard: 6\nthreshold: 0.5\nset_aside_roles: [bad]\n")
    res = CliRunner().invoke(app, ["tag", str(src), "--out", str(tmp_path / "out"), "--config", str(cfg),
                                   "--attributes", "--quiet", "--tasks", "2", "--workers", str(workers)])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["set_aside"] and report["quarantined"] == 1  # the duplicate id of chunk 1 is task 1's first d1
    assert _check_attributes(tmp_path / "out") == report["written"] + report["set_aside"] == 29
    assert json.loads((tmp_path / "out" / "run.json").read_text())["attributes"] is True


def test_without_the_option_nothing_changes(tmp_path):
    src = write_lines(tmp_path / "c.jsonl", _lines(30))
    tag_corpus([src], tmp_path / "out", CFG, progress=False)
    assert not (tmp_path / "out" / "attributes").exists()
    assert "attributes" not in json.loads((tmp_path / "out" / "run.json").read_text())


@pytest.mark.parametrize("first", [True, False])
def test_a_rerun_that_adds_or_drops_attributes_is_another_run(tmp_path, first):
    src = write_lines(tmp_path / "c.jsonl", _lines(30))
    tag_corpus([src], tmp_path / "out", CFG, attributes=first, progress=False)
    with pytest.raises(TagRunError, match="holds a run with other inputs or another config"):
        tag_corpus([src], tmp_path / "out", CFG, attributes=not first, progress=False)


def test_a_kill_inside_the_attributes_write_then_a_rerun_is_byte_identical(tmp_path, monkeypatch):
    src = write_lines(tmp_path / "c.jsonl", _lines(30))
    real = chunked.write_parquet_atomic
    calls = {"n": 0}

    def dying_write(table, where, tmp, **kw):
        if where.parent.name == "attributes":
            calls["n"] += 1
            if calls["n"] == 3:  # chunk 2: its data part is written, its attributes and marker are not
                (tmp / "half-written").write_bytes(b"PAR1")
                raise KeyboardInterrupt("killed")
        return real(table, where, tmp, **kw)

    with monkeypatch.context() as m:
        m.setattr(chunked, "write_parquet_atomic", dying_write)
        with pytest.raises(KeyboardInterrupt):
            tag_corpus([src], tmp_path / "out", CFG, attributes=True, progress=False)
    assert not (tmp_path / "out" / "markers" / "part-000002.json").exists()
    tag_corpus([src], tmp_path / "out", CFG, attributes=True, progress=False)
    tag_corpus([src], tmp_path / "clean", CFG, attributes=True, progress=False)
    assert output_files(tmp_path / "out") == output_files(tmp_path / "clean")
    assert _check_attributes(tmp_path / "out") == 28


def test_an_input_shortened_after_a_kill_leaves_no_attributes_past_its_end(tmp_path, monkeypatch):
    src = write_lines(tmp_path / "c.jsonl", _lines(30))
    with monkeypatch.context() as m:
        crash_after(m, 4)
        with pytest.raises(KeyboardInterrupt):
            tag_corpus([src], tmp_path / "out", CFG, attributes=True, progress=False)
    assert (tmp_path / "out" / "attributes" / "part-000003.parquet").exists()
    write_lines(src, _lines(12))
    tag_corpus([src], tmp_path / "out", CFG, attributes=True, progress=False)
    tag_corpus([src], tmp_path / "clean", CFG, attributes=True, progress=False)
    assert output_files(tmp_path / "out") == output_files(tmp_path / "clean")
    assert sorted(p.name for p in (tmp_path / "out" / "attributes").iterdir()) == ["part-000000.parquet",
                                                                                   "part-000001.parquet"]


def test_retag_rewrites_the_attributes_tags(tmp_path):
    src = write_lines(tmp_path / "c.jsonl", _lines(30))
    tag_corpus([src], tmp_path / "out", CFG, attributes=True, progress=False)
    before = [r for p in sorted((tmp_path / "out" / "attributes").iterdir()) for r in _read(p)]
    retag_dir(tmp_path / "out", 0.95)  # the lexicon's 0.9 for 'AI takeover' is now good
    after = [r for p in sorted((tmp_path / "out" / "attributes").iterdir()) for r in _read(p)]
    assert {r["tag"] for r in before} == {"good", "bad"} and {r["tag"] for r in after} == {"good"}
    assert [(r["id"], r["score"]) for r in after] == [(r["id"], r["score"]) for r in before]
    assert _check_attributes(tmp_path / "out") == 28
    tag_corpus([src], tmp_path / "clean", CFG.model_copy(update={"threshold": 0.95}), attributes=True,
               progress=False)
    assert {p: b for p, b in output_files(tmp_path / "out").items() if p.startswith("attributes/")} == {
        p: b for p, b in output_files(tmp_path / "clean").items() if p.startswith("attributes/")}
