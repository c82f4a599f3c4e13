"""`condpt tag` end to end: output contract, counts, set-aside, resume, SIGKILL, tasks and workers, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag` and `calibrate`)
from condpt.cli import app
from condpt.tagging import chunked
from condpt.tagging import run as run_mod
from condpt.tagging.cascade import TagConfig
from condpt.tagging.run import tag_corpus

REPO = Path(__file__).resolve().parents[2]


class KeywordScorer:
    name = "keyword"
    threshold = 0.5

    def score(self, texts):
        return np.array([0.9 if "robot" in t.lower() else 0.1 for t in texts], np.float32)


def _corpus(path: Path, n: int = 40, bad_lines: bool = True) -> Path:
    lines = []
    for i in range(n):
        text = f"Document {i}. " + ("The robot plotted a treacherous turn.\n\n" if i % 3 == 0 else "") + "Calm tea."
        lines.append(json.dumps({"id": f"d{i}", "text": text}) if i % 5 else json.dumps({"text": text}))
    if bad_lines:
        lines[7] = "{broken"
        lines[11] = json.dumps({"id": "d1", "text": "duplicate id"})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _files(out: Path) -> dict[str, bytes]:
    """Every file but the temporary ones, the wall-clock throughput (timing/ and report.html, which shows it) and
    datatrove's timestamped logs."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not {".tmp", "timing", "logs"} & set(p.relative_to(out).parts)
            and p.name != "report.html"}


def _cli(*args):
    return CliRunner().invoke(app, ["tag", *(str(a) for a in args)])


def test_output_contract_counts_and_report(tmp_path):
    import datasets

    src = _corpus(tmp_path / "web.jsonl")
    cfg = TagConfig(rows_per_shard=8, granularity="paragraph")
    report = tag_corpus([src], tmp_path / "out", cfg, scorer=KeywordScorer(), progress=False)
    assert report["read"] == 40 and report["quarantined"] == 2
    assert report["read"] == report["written"] + report["set_aside"] + report["quarantined"]
    assert report["complete"] and report["chunks_total"] == 5
    assert report["quarantine_reasons"] == {"duplicate id": 1, "malformed JSON": 1}
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out" / "data"), split="train")
    assert len(ds) == 38 and ds.column_names == ["id", "text", "source", "score", "tag", "spans",
                                                 "prefilter_hits", "stage"]
    assert ds[0]["id"] == stable_first_id(src) and ds[1]["id"] == "d1"
    for row in ds:
        assert "".join(row["text"][s["start"]: s["end"]] for s in row["spans"]) == row["text"]
        assert row["tag"] == ("bad" if "robot" in row["text"] else "good")
        assert 0 <= row["score"] <= 1 and row["source"] == "web"
    assert report["tags"]["bad"] == sum("robot" in t for t in ds["text"])
    assert report["lexicon_top_hits"][0]["term"] == "treacherous turn"
    assert report["sources"]["web"]["quarantined"] == 2
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("<svg") == 2 and "<rect" in html and "treacherous turn" in html
    assert json.loads((tmp_path / "out" / "report.json").read_text())["read"] == 40


def stable_first_id(src: Path) -> str:
    from condpt.corpus import stable_id

    first = json.loads(src.read_text().splitlines()[0])
    return stable_id(src.stem, 1, first["text"])


def test_set_aside_roles(tmp_path):
    src = _corpus(tmp_path / "c.jsonl", bad_lines=False)
    cfg = TagConfig(set_aside_roles=["bad"], rows_per_shard=16)
    report = tag_corpus([src], tmp_path / "out", cfg, scorer=KeywordScorer(), progress=False)
    import pyarrow.parquet as pq

    aside = pq.read_table(tmp_path / "out" / "set_aside")
    kept = pq.read_table(tmp_path / "out" / "data")
    assert report["set_aside"] == aside.num_rows == 14 and report["written"] == kept.num_rows == 26
    assert set(aside.column("tag").to_pylist()) == {"bad"} and set(kept.column("tag").to_pylist()) == {"good"}


def test_crash_and_resume_is_byte_identical(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "c.jsonl")
    cfg = TagConfig(rows_per_shard=6)
    tag_corpus([src], tmp_path / "clean", cfg, scorer=KeywordScorer(), progress=False)

    real_finish = chunked.ChunkWriter.finish
    calls = {"n": 0}

    def crashing_finish(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:  # die after data is written but before the marker of chunk 2
            real_write = chunked.write_text_atomic

            def boom(*a, **kw):
                raise KeyboardInterrupt("killed")

            monkeypatch.setattr(chunked, "write_text_atomic", boom)
            try:
                real_finish(self, *args)
            finally:
                monkeypatch.setattr(chunked, "write_text_atomic", real_write)
        return real_finish(self, *args)

    monkeypatch.setattr(chunked.ChunkWriter, "finish", crashing_finish)
    with pytest.raises(KeyboardInterrupt):
        tag_corpus([src], tmp_path / "resumed", cfg, scorer=KeywordScorer(), progress=False)
    assert len(list((tmp_path / "resumed" / "markers").glob("*.json"))) == 2
    assert not list((tmp_path / "resumed" / "logs" / "completions").glob("*"))
    monkeypatch.setattr(chunked.ChunkWriter, "finish", real_finish)
    tag_corpus([src], tmp_path / "resumed", cfg, scorer=KeywordScorer(), progress=False)
    assert _files(tmp_path / "resumed") == _files(tmp_path / "clean")


def _tag_subprocess(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", "from condpt.cli import main; main()", "tag", *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_and_restart_is_byte_identical(tmp_path, english_texts, workers):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t + " the robot uprising."}) + "\n" for t in english_texts * 2))
    cfgp = tmp_path / "tag.yaml"
    cfgp.write_text("classifier: {spec: none}\ngranularity: sentence\nrows_per_shard: 20\n")
    args = [src, "--config", cfgp, "--quiet", "--tasks", "3", "--workers", str(workers)]
    clean = _tag_subprocess([*args, "--out", tmp_path / "clean"])
    assert clean.wait(timeout=300) == 0, clean.stderr.read().decode()
    proc = _tag_subprocess([*args, "--out", tmp_path / "killed"])
    markers = tmp_path / "killed" / "markers"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(markers.glob("*.json"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(markers.glob("*.json")))
    assert 0 < done < 20, "the run should have been killed part-way"
    again = _tag_subprocess([*args, "--out", tmp_path / "killed"])
    assert again.wait(timeout=300) == 0, again.stderr.read().decode()
    assert _files(tmp_path / "killed") == _files(tmp_path / "clean")


def test_two_workers_give_the_same_files_as_one(tmp_path):
    src = _corpus(tmp_path / "c.jsonl")
    cfg = TagConfig(rows_per_shard=5, classifier={"spec": "none"})
    one = tag_corpus([src], tmp_path / "one", cfg, tasks=3, workers=1, progress=False)
    two = tag_corpus([src], tmp_path / "two", cfg, tasks=3, workers=2, progress=False)  # forkserver processes
    assert one["complete"] and one["read"] == 40 and one["chunks_total"] == 8
    assert two == one and _files(tmp_path / "two") == _files(tmp_path / "one")
    assert sorted(p.name for p in (tmp_path / "two" / "logs" / "completions").iterdir()) == ["00000", "00001",
                                                                                              "00002"]


def test_tasks_split_the_chunks_and_find_duplicates_within_a_task(tmp_path):
    import pyarrow.parquet as pq

    src = _corpus(tmp_path / "c.jsonl")  # line 12 repeats the id d1 of line 2: chunks 1 and 0 of 6 rows
    cfg = TagConfig(rows_per_shard=6, classifier={"spec": "none"})
    one = tag_corpus([src], tmp_path / "one", cfg, progress=False)
    split = tag_corpus([src], tmp_path / "split", cfg, tasks=2, progress=False)
    assert one["quarantine_reasons"] == {"duplicate id": 1, "malformed JSON": 1}
    assert split["quarantine_reasons"] == {"malformed JSON": 1}  # tasks 0 and 1 each keep their d1
    ids = pq.read_table(tmp_path / "split" / "data").column("id").to_pylist()
    assert ids.count("d1") == 2 and split["read"] == one["read"] == 40


def test_rerun_skips_finished_and_refuses_another_config(tmp_path):
    src = _corpus(tmp_path / "c.jsonl")
    cfg = TagConfig(rows_per_shard=10, classifier={"spec": "none"})
    tag_corpus([src], tmp_path / "out", cfg, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "data").iterdir()}
    tag_corpus([src], tmp_path / "out", cfg, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "data").iterdir()} == before
    res = _cli(src, "--out", tmp_path / "out", "--classifier", "fasttext-default")
    assert res.exit_code == 2 and "other inputs or another config" in res.output


def test_cli_errors_are_clear(tmp_path):
    res = _cli(tmp_path / "missing.jsonl", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "missing.jsonl: no such file" in res.output
    (tmp_path / "x.txt").write_text("hi")
    res = _cli(tmp_path / "x.txt", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "unknown input format" in res.output
    src = _corpus(tmp_path / "c.jsonl")
    (tmp_path / "bad.yaml").write_text("granularity: words\n")
    res = _cli(src, "--out", tmp_path / "o", "--config", tmp_path / "bad.yaml")
    assert res.exit_code == 2 and "bad.yaml: granularity" in res.output
    res = _cli(src, "--out", tmp_path / "o", "--executor", "mpi")
    assert res.exit_code == 2 and "--executor mpi" in res.output and "slurm" in res.output
    res = _cli(src, "--out", tmp_path / "o", "--executor", "slurm")
    assert res.exit_code == 2 and "--executor slurm needs --partition" in res.output
    res = _cli(src, "--out", tmp_path / "o", "--classifier", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "nope" in res.output


def test_far_more_local_workers_than_cores_is_refused_before_any_process_starts(tmp_path, monkeypatch):
    # --workers 100000 started one process per worker (50 gave 52 processes) and ran past 300 s on 5 documents
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    src = _corpus(tmp_path / "c.jsonl", n=5, bad_lines=False)
    res = _cli(src, "--out", tmp_path / "o", "--classifier", "none", "--workers", "100000")
    assert res.exit_code == 2 and "--workers 100000" in res.output and "2 CPU cores" in res.output, res.output
    assert not (tmp_path / "o").exists()
    assert "at most 8" in res.output
    with pytest.raises(run_mod.TagRunError, match="--workers 9"):
        tag_corpus([src], tmp_path / "o", TagConfig(classifier={"spec": "none"}), workers=9, progress=False)


def test_cli_tags_with_a_config(tmp_path):
    src = _corpus(tmp_path / "c.jsonl")
    (tmp_path / "tag.yaml").write_text("classifier: {spec: none}\ngranularity: sentence\n")
    res = _cli(src, "--out", tmp_path / "o", "--config", tmp_path / "tag.yaml", "--quiet")
    assert res.exit_code == 0, res.output
    assert "read 40 = written 38 + set aside 0 + quarantined 2" in res.output


@pytest.mark.slow
def test_default_classifier_works_out_of_the_box(tmp_path):
    src = _corpus(tmp_path / "c.jsonl", n=6, bad_lines=False)
    res = _cli(src, "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["written"] == 6 and report["stages"] == {"classifier": 6}


@pytest.mark.slow
def test_quiet_shows_no_progress_bar_at_all(tmp_path):
    """--quiet: neither condpt's bar nor transformers' "Loading weights" bar as the default classifier loads
    MiniLM (it showed, under --quiet, in the parent and in every worker)."""
    src = _corpus(tmp_path / "c.jsonl", n=6, bad_lines=False)
    res = subprocess.run([sys.executable, "-c", "from condpt.cli import main; main()", "tag", str(src), "--out",
                          str(tmp_path / "o"), "--quiet"], capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr
    assert "Loading weights" not in res.stderr and "it/s" not in res.stderr, res.stderr


_LINES = [b'{"text": "fine text"}', b'{"id": "x", "text": "HAL 9000 again"}', b'{"text": ""}', b"\xff\xfe",
          b'{"text": 1}', b"[]", b"{", b'{"text": "\\ud800"}', b'{"id": 5, "text": "int id"}', b"   ",
          b'{"text": "caf\xc3\xa9 \xf0\x90\x80\xa4"}', b'{"id": null, "text": "null id"}']


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(_LINES), st.binary(max_size=30)), max_size=25))
def test_every_record_is_accounted_for(tmp_path_factory, lines):
    out = tmp_path_factory.mktemp("fuzz")
    src = out / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    records = [ln for ln in src.read_bytes().split(b"\n") if ln.rstrip(b"\r").strip()]
    report = tag_corpus([src], out / "o", TagConfig(rows_per_shard=4, classifier={"spec": "none"}), progress=False)
    assert report["read"] == len(records)
    assert report["read"] == report["written"] + report["set_aside"] + report["quarantined"]


def test_progress_bar_has_a_total_an_eta_and_goes_to_stderr(tmp_path, capsys):
    src = _corpus(tmp_path / "c.jsonl")
    tag_corpus([src], tmp_path / "o", TagConfig(rows_per_shard=1000), scorer=KeywordScorer(), progress=True)
    cap = capsys.readouterr()
    assert "40/40" in cap.err and "<" in cap.err and "doc/s" in cap.err and "40/40" not in cap.out
    tag_corpus([src], tmp_path / "two", TagConfig(rows_per_shard=7, classifier={"spec": "none"}), workers=2,
               progress=True)
    assert "40/40" in capsys.readouterr().err


def test_record_count_for_the_total(tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from condpt.corpus import expand_inputs

    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n{"text": "b"}\n{"text": "c"}'))
    pq.write_table(pa.table({"text": ["x"] * 5}), tmp_path / "b.parquet")
    assert run_mod.count_records(expand_inputs([tmp_path / "a.jsonl.gz", tmp_path / "b.parquet"])) == 8


def test_progress_moves_while_a_task_runs_not_only_when_it_ends(tmp_path, monkeypatch):
    seen = []
    real = chunked.ChunkWriter.finish

    def finish(self, group, *a):  # what the progress file says when each chunk is written
        seen.append(int((tmp_path / "o" / ".progress" / "00000").read_text()))
        return real(self, group, *a)

    monkeypatch.setattr(chunked, "PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(chunked.ChunkWriter, "finish", finish)
    src = _corpus(tmp_path / "c.jsonl")
    tag_corpus([src], tmp_path / "o", TagConfig(rows_per_shard=10), scorer=KeywordScorer(), progress=False)
    assert seen == [10, 20, 30, 40]  # each chunk's documents are counted as they arrive, before it is written
    assert not (tmp_path / "o" / ".progress").exists()


def test_first_use_training_of_the_default_is_announced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONDPT_CACHE", str(tmp_path / "cache"))
    src = _corpus(tmp_path / "c.jsonl", n=6, bad_lines=False)
    cfg = TagConfig(classifier={"spec": "fasttext-default"})
    tag_corpus([src], tmp_path / "o", cfg, progress=False)
    err = capsys.readouterr().err
    assert "training the shipped 'fasttext-default' classifier on first use" in err and "trained" in err
    tag_corpus([src], tmp_path / "o2", cfg, progress=False)
    assert "training" not in capsys.readouterr().err


def test_tag_help_points_at_no_docs_path():
    """`condpt tag --help` said 'see docs/tagging.md', which an installed wheel does not have."""
    res = CliRunner().invoke(app, ["tag", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "docs/" not in res.output and ".md" not in res.output
    assert "--config" in res.output and "every key optional" in res.output
