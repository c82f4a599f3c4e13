"""`condpt retag`: another threshold applied from stored scores, no model run; what a fresh `condpt tag` at
that threshold writes; counts that add up; set-aside placement; crash safety; `calibrate` prints the
corpus fraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`, `retag`, `calibrate`)
from condpt.cli import app
from condpt.tagging import retag as retag_mod
from condpt.tagging.cascade import TagConfig
from condpt.tagging.retag import retag_dir
from condpt.tagging.run import TagRunError, tag_corpus


class GradedScorer:
    """Scores a paragraph by the digit after 'level' (level 7 -> 0.7): thresholds split the corpus."""

    name = "graded"
    threshold = 0.5

    def score(self, texts):
        return np.array([int(t.split("level ")[1][0]) / 10 if "level " in t else 0.05 for t in texts], np.float32)


class NoScorer:
    name = "graded"
    threshold = 0.5

    def score(self, texts):
        raise AssertionError("retag must not run a model")


def _corpus(path: Path, n: int = 30) -> Path:
    lines = [json.dumps({"id": f"d{i}", "text": f"Doc {i} at level {i % 10}.\n\nCalm tea."}) for i in range(n)]
    lines[4] = "{broken"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
            and not {".tmp", "timing", "logs"} & set(p.relative_to(out).parts) and p.name != "report.html"}


def test_retag_is_a_fresh_tag_at_that_threshold(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "c.jsonl")
    cfg = TagConfig(rows_per_shard=8)
    tag_corpus([src], tmp_path / "out", cfg, scorer=GradedScorer(), progress=False)
    tag_corpus([src], tmp_path / "fresh", cfg.model_copy(update={"threshold": 0.75}), scorer=GradedScorer(),
               progress=False)
    report = retag_dir(tmp_path / "out", 0.75)
    assert report["tags"] == {"bad": 6, "good": 23} and report["threshold"] == 0.75
    assert report["read"] == 30 == report["written"] + report["set_aside"] + report["quarantined"]
    assert report["classifier"]["threshold_from"] == "config"
    assert _files(tmp_path / "out") == _files(tmp_path / "fresh")
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    for r in rows:
        assert r["tag"] == ("bad" if r["score"] >= 0.75 else "good")
        assert all(sp["tag"] == ("bad" if sp["score"] >= 0.75 else "good") for sp in r["spans"])
    # a later `condpt tag` with the new threshold finds the run done; the old config is another run
    again = tag_corpus([src], tmp_path / "out", cfg.model_copy(update={"threshold": 0.75}), scorer=NoScorer(),
                       progress=False)
    assert again["tags"] == report["tags"]


def test_set_aside_placement_follows_the_new_tags(tmp_path):
    src = _corpus(tmp_path / "c.jsonl")
    cfg = TagConfig(rows_per_shard=8, set_aside_roles=["bad"])
    first = tag_corpus([src], tmp_path / "out", cfg, scorer=GradedScorer(), progress=False)
    assert first["set_aside"] == 15
    for t, aside in ((0.85, 3), (0.15, 23)):
        report = retag_dir(tmp_path / "out", t)
        kept, moved = pq.read_table(tmp_path / "out" / "data"), pq.read_table(tmp_path / "out" / "set_aside")
        assert report["set_aside"] == moved.num_rows == aside and report["written"] == kept.num_rows == 29 - aside
        assert set(moved.column("tag").to_pylist()) == {"bad"} and set(kept.column("tag").to_pylist()) <= {"good"}
        assert report["read"] == report["written"] + report["set_aside"] + report["quarantined"]
        assert sorted(kept.column("id").to_pylist() + moved.column("id").to_pylist()) == sorted(
            f"d{i}" for i in range(30) if i != 4)


def test_an_interrupted_retag_is_finished_by_running_it_again(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "c.jsonl")
    cfg = TagConfig(rows_per_shard=8, set_aside_roles=["bad"])
    tag_corpus([src], tmp_path / "out", cfg, scorer=GradedScorer(), progress=False)
    tag_corpus([src], tmp_path / "fresh", cfg.model_copy(update={"threshold": 0.35}), scorer=GradedScorer(),
               progress=False)
    real = retag_mod._roll_forward
    calls = {"n": 0}

    def dying(out):  # dies half way through the renames of the second chunk
        calls["n"] += 1
        if calls["n"] == 3:
            plan = json.loads((out / ".retag" / "journal.json").read_text())
            staged, target = plan["moves"][0]
            (out / staged).replace(out / target)
            raise KeyboardInterrupt("killed")
        real(out)

    monkeypatch.setattr(retag_mod, "_roll_forward", dying)
    with pytest.raises(KeyboardInterrupt):
        retag_dir(tmp_path / "out", 0.35)
    monkeypatch.setattr(retag_mod, "_roll_forward", real)
    with pytest.raises(TagRunError, match="was interrupted"):
        tag_corpus([src], tmp_path / "out", cfg, scorer=GradedScorer(), progress=False)
    report = retag_dir(tmp_path / "out", 0.35)
    assert not (tmp_path / "out" / ".retag").exists()
    assert report["read"] == report["written"] + report["set_aside"] + report["quarantined"] == 30
    fresh = json.loads((tmp_path / "fresh" / "report.json").read_text())
    assert {k: report[k] for k in ("tags", "written", "set_aside")} == {k: fresh[k] for k in ("tags", "written",
                                                                                            "set_aside")}
    ids = lambda d: sorted(pq.read_table(d).column("id").to_pylist())
    for sub in ("data", "set_aside"):
        assert ids(tmp_path / "out" / sub) == ids(tmp_path / "fresh" / sub)


def test_cli_retag_with_threshold_or_calibrated_config(tmp_path):
    src = _corpus(tmp_path / "c.jsonl")
    tag_corpus([src], tmp_path / "out", TagConfig(rows_per_shard=8), scorer=GradedScorer(), progress=False)
    res = CliRunner().invoke(app, ["calibrate", str(tmp_path / "out"), "--target-fraction", "0.2",
                                   "--out", str(tmp_path / "tag.yaml")])
    assert res.exit_code == 0, res.output
    assert "corpus: threshold 0.800000 tags 0.2069 of the 29 documents" in res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["corpus_tagged_fraction"] == pytest.approx(6 / 29)
    res = CliRunner().invoke(app, ["retag", str(tmp_path / "out"), "--config", str(tmp_path / "tag.yaml")])
    assert res.exit_code == 0, res.output
    assert "retagged 29 documents at threshold 0.8" in res.output and "(fraction 0.2069)" in res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["tagged_fraction"] == pytest.approx(6 / 29, abs=1e-6)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "0.8000" in html
    res = CliRunner().invoke(app, ["retag", str(tmp_path / "out")])
    assert res.exit_code == 2 and "exactly one of --threshold, --config" in res.output
    res = CliRunner().invoke(app, ["retag", str(tmp_path / "nope"), "--threshold", "0.5"])
    assert res.exit_code == 2 and "not a `condpt tag` output" in res.output
    (tmp_path / "empty.yaml").write_text("granularity: sentence\n")
    res = CliRunner().invoke(app, ["retag", str(tmp_path / "out"), "--config", str(tmp_path / "empty.yaml")])
    assert res.exit_code == 2 and "no `threshold` key" in res.output


def test_calibrate_prints_the_fraction_of_another_corpus(tmp_path):
    src = _corpus(tmp_path / "c.jsonl")
    tag_corpus([src], tmp_path / "corpus", TagConfig(), scorer=GradedScorer(), progress=False)
    lab = tmp_path / "lab.jsonl"
    lab.write_text("".join(json.dumps({"id": f"d{i}", "label": int(i % 10 >= 6)}) + "\n" for i in range(30)
                           if i != 4))
    res = CliRunner().invoke(app, ["calibrate", str(tmp_path / "corpus"), "--labelled", str(lab),
                                   "--target-precision", "1.0", "--corpus", str(tmp_path / "corpus"),
                                   "--plot", str(tmp_path / "pr.png")])
    assert res.exit_code == 0, res.output
    assert "corpus: threshold 0.600000 tags 0.4138 of the 29 documents" in res.output


def _tagged(tmp_path: Path) -> Path:
    src = _corpus(tmp_path / "c.jsonl")
    tag_corpus([src], tmp_path / "out", TagConfig(rows_per_shard=8), scorer=GradedScorer(), progress=False)
    return tmp_path / "out"


def test_a_part_without_its_marker_is_refused_and_nothing_changes(tmp_path):
    """A data part whose marker is gone (a half-copied or hand-edited directory) was skipped: retag exited 0
    and reported 0 of its documents (issue 9: nothing lost silently)."""
    out = _tagged(tmp_path)
    (out / "markers" / "part-000001.json").unlink()
    before = _files(out)
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2 and "data/part-000001.parquet" in res.output and "no marker" in res.output, res.output
    assert _files(out) == before


def test_an_unreadable_part_is_named(tmp_path):
    out = _tagged(tmp_path)
    part = out / "data" / "part-000002.parquet"
    part.write_bytes(part.read_bytes()[:100])
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2 and "part-000002.parquet" in res.output and "Traceback" not in res.output, res.output


@pytest.mark.parametrize(("content", "why"), [("threshold: true\n", "valid number"),
                                              ("threshold: .nan\n", "finite number"),
                                              ("threshold: .inf\n", "finite number")])
def test_a_config_threshold_that_is_not_a_finite_number_is_refused(tmp_path, content, why):
    out = _tagged(tmp_path)
    (tmp_path / "t.yaml").write_text(content)
    res = CliRunner().invoke(app, ["retag", str(out), "--config", str(tmp_path / "t.yaml")])
    assert res.exit_code == 2 and "threshold" in res.output and why in res.output, res.output


def _set_json(path: Path, edit) -> None:
    if isinstance(edit, bytes):
        path.write_bytes(edit)
    else:
        path.write_text(edit(json.loads(path.read_text())) if callable(edit) else edit)


@pytest.mark.parametrize(("name", "edit", "why"), [
    ("run.json", "[]", "not a JSON object"),
    ("run.json", lambda r: json.dumps({k: v for k, v in r.items() if k != "config"}), "no 'config'"),
    ("run.json", lambda r: json.dumps({**r, "config": {**r["config"], "granularity": "x"}}), "granularity"),
    ("report.json", "[]", "not a JSON object"),
    ("report.json", "{", "not valid JSON"),
    ("markers/part-000001.json", "{", "not valid JSON"),
    ("markers/part-000001.json", "{}", "no 'chunk'"),
    ("markers/part-000001.json", lambda m: json.dumps({**m, "written": "3"}), "'written' is not a count"),
    ("markers/part-000001.json", lambda m: json.dumps({**m, "read": -1}), "'read' is not a count"),
    ("markers/part-000001.json", b"\xff\xfe{}", "not UTF-8"),
    ("markers/part-000001.json", lambda m: json.dumps({**m, "read": m["read"] + 1}), "do not add up"),
])
def test_damaged_run_files_are_named_and_nothing_changes(tmp_path, name, edit, why):
    """run.json, report.json or a marker that is not what `condpt tag` wrote (hand-edited, truncated, another
    tool's): an AttributeError/KeyError traceback or a JSON message naming no file (issue 9 sweep 2)."""
    out = _tagged(tmp_path)
    _set_json(out / name, edit)
    before = _files(out)
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2, res.output
    assert name in res.output and why in res.output and "Traceback" not in res.output, res.output
    assert _files(out) == before


@pytest.mark.parametrize("journal", ["{", "[]", json.dumps({"moves": [["../../x", "run.json"]], "remove": []}),
                                     json.dumps({"moves": [], "remove": ["run.json"]})])
def test_a_journal_that_retag_did_not_write_is_refused(tmp_path, journal):
    """The journal is rolled forward blindly: one that is not valid JSON failed naming no file, and one
    naming files outside the stage and the chunk's parts moved or deleted them (run.json here)."""
    out = _tagged(tmp_path)
    (out / ".retag").mkdir()
    (out / ".retag" / "journal.json").write_text(journal)
    res = CliRunner().invoke(app, ["retag", str(out), "--threshold", "0.35"])
    assert res.exit_code == 2 and ".retag/journal.json" in res.output, res.output
    assert "Traceback" not in res.output and (out / "run.json").is_file()
