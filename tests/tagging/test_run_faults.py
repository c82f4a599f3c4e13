"""`tag_corpus` under faults: bad inputs found before anything is written, hostile records quarantined end to
end, non-UTF-8 file names, kills inside a write, SIGKILL of the main process with workers, inputs edited
between a kill and the re-run."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rerun import crash_after, output_files, write_lines
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`)
from condpt.cli import app
from condpt.corpus.read import CorpusError
from condpt.tagging import chunked
from condpt.tagging import run as run_mod
from condpt.tagging.cascade import TagConfig
from condpt.tagging.run import tag_corpus

REPO = Path(__file__).resolve().parents[2]
CFG = TagConfig(rows_per_shard=6, classifier={"spec": "none"})


def _lines(n: int, tag: str = "") -> list[str]:
    return [json.dumps({"text": f"Document {tag}{i}. " + ("The AI takeover began." if i % 4 == 0 else "Calm tea.")})
            for i in range(n)]




def _cli(*args):
    return CliRunner().invoke(app, ["tag", *(str(a) for a in args)])


def _bad_parquet(p: Path) -> None:
    pq.write_table(pa.table({"body": ["no text column"]}), p)


def _truncated_gz(p: Path) -> None:
    blob = gzip.compress(("\n".join(_lines(500)) + "\n").encode())
    p.write_bytes(blob[: len(blob) // 2])


def _truncated_zst(p: Path) -> None:
    import zstandard

    blob = zstandard.ZstdCompressor().compress(("\n".join(_lines(500)) + "\n").encode())
    p.write_bytes(blob[: len(blob) // 2])


@pytest.mark.parametrize("name, make", [("b.parquet", _bad_parquet), ("b.jsonl.gz", _truncated_gz),
                                        ("b.jsonl.zst", _truncated_zst)])
def test_a_bad_input_after_good_ones_is_an_error_before_anything_is_written(tmp_path, name, make):
    d = tmp_path / "in"
    d.mkdir()
    write_lines(d / "a.jsonl", _lines(40))
    make(d / name)
    res = _cli(d, "--out", tmp_path / "out", "--config", _cfg_file(tmp_path), "--quiet")
    assert res.exit_code == 2 and name in res.output, res.output
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] if (tmp_path / "out").exists() else []
    assert written == []


def _cfg_file(tmp_path: Path) -> Path:
    p = tmp_path / "tag.yaml"
    p.write_text("classifier: {spec: none}\nrows_per_shard: 6\n")
    return p


@pytest.mark.parametrize("workers", [1, 2])
def test_records_that_crash_a_parser_are_quarantined_end_to_end(tmp_path, workers):
    lines = _lines(20)
    lines[3] = '{"text": "deep", "m": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines[9] = '{"text": "big", "n": ' + "9" * 5000 + "}"
    src = write_lines(tmp_path / "web.jsonl", lines)
    report = tag_corpus([src], tmp_path / "out", CFG, tasks=2, workers=workers, progress=False)
    assert report["read"] == 20 and report["quarantined"] == 2 and report["written"] == 18
    q = pq.read_table(tmp_path / "out" / "quarantine").to_pylist()
    assert [(r["input"], r["line"]) for r in q] == [(str(src), 4), (str(src), 10)]
    assert "nested too deeply" in q[0]["reason"] and "4300" in q[1]["reason"]


def test_a_non_utf8_file_name_is_reported_escaped(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    lines = _lines(10)
    lines[2] = "{broken"
    write_lines(d / os.fsdecode(b"caf\xe9.jsonl"), lines)
    with open(d / os.fsdecode(b"d\xe9.parquet"), "wb") as f:  # pyarrow cannot open a non-UTF-8 path itself
        pq.write_table(pa.table({"text": ["from Parquet"]}), f)
    res = _cli(d, "--out", tmp_path / "out", "--config", _cfg_file(tmp_path), "--quiet")
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    assert set(pq.read_table(out / "data").column("source").to_pylist()) == {"caf\\xe9", "d\\xe9"}
    [q] = pq.read_table(out / "quarantine").to_pylist()
    assert q["input"] == str(d / "caf\\xe9.jsonl") and q["line"] == 3
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["complete"] and report["sources"]["caf\\xe9"]["quarantined"] == 1


def test_a_non_utf8_output_directory_and_source_field(tmp_path):
    src = write_lines(tmp_path / "c.jsonl", [json.dumps({"text": "one", "site": "\udcff"}), json.dumps({"text": "two"})])
    (tmp_path / "tag.yaml").write_text("classifier: {spec: none}\nsource_field: site\n")
    out = tmp_path / os.fsdecode(b"out\xff")
    res = _cli(src, "--out", out, "--config", tmp_path / "tag.yaml", "--quiet")
    assert res.exit_code == 0 and "out\\xff" in res.output, res.output
    [part] = (out / "data").iterdir()
    with open(part, "rb") as f:
        assert pq.read_table(f).column("source").to_pylist() == ["\\xff", "c"]  # a lone surrogate: escaped


def test_a_kill_inside_a_write_leaves_no_temporary_file_after_the_rerun(tmp_path, monkeypatch):
    import condpt.corpus.write as write_mod

    src = write_lines(tmp_path / "c.jsonl", _lines(40))
    tag_corpus([src], tmp_path / "clean", CFG, progress=False)
    real = write_mod.pq.write_table
    calls = {"n": 0}

    def dying_write(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            where.write(b"PAR1 half a file")
            raise KeyboardInterrupt("killed inside a write")
        return real(table, where, **kw)

    with monkeypatch.context() as m:  # a killed process: its temporary files carry another pid than the re-run's
        m.setattr(write_mod.pq, "write_table", dying_write)
        m.setattr(write_mod.os, "getpid", lambda: 4_000_000)
        with pytest.raises(KeyboardInterrupt):
            tag_corpus([src], tmp_path / "out", CFG, progress=False)
    assert list((tmp_path / "out" / ".tmp").rglob("*.4000000.tmp"))
    tag_corpus([src], tmp_path / "out", CFG, progress=False)
    assert not (tmp_path / "out" / ".tmp").exists()
    assert output_files(tmp_path / "out") == output_files(tmp_path / "clean")


@pytest.mark.parametrize("edit", ["same_size_same_mtime", "longer", "shorter"])
def test_an_input_edited_between_a_kill_and_the_rerun_is_redone(tmp_path, monkeypatch, edit):
    src = write_lines(tmp_path / "c.jsonl", _lines(40))
    with monkeypatch.context() as m:
        crash_after(m, 4)
        with pytest.raises(KeyboardInterrupt):
            tag_corpus([src], tmp_path / "resumed", CFG, progress=False)
    st = src.stat()
    if edit == "same_size_same_mtime":  # only a record of the content itself notices this one
        lines = _lines(40)
        lines[1] = lines[1].replace("Calm tea.", "HAL 9000!")
        write_lines(src, lines)
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert src.stat().st_size == st.st_size
    elif edit == "longer":
        write_lines(src, _lines(3, "new") + _lines(40))
    else:
        write_lines(src, _lines(10))
    tag_corpus([src], tmp_path / "resumed", CFG, progress=False)
    tag_corpus([src], tmp_path / "clean", CFG, progress=False)
    assert output_files(tmp_path / "resumed") == output_files(tmp_path / "clean")


def test_an_input_edited_after_a_finished_run_is_redone(tmp_path):
    lines = _lines(40)
    lines[30] = json.dumps({"id": "x", "text": "first"})
    lines[35] = json.dumps({"id": "x", "text": "second, a duplicate id"})
    src = write_lines(tmp_path / "c.jsonl", lines)
    assert tag_corpus([src], tmp_path / "out", CFG, progress=False)["quarantined"] == 1
    lines[30] = json.dumps({"id": "y", "text": "first"})  # chunk 5 changes; chunk 5's duplicate goes away
    write_lines(src, lines)
    again = tag_corpus([src], tmp_path / "out", CFG, progress=False)
    assert again["quarantined"] == 0
    clean = tag_corpus([src], tmp_path / "clean", CFG, progress=False)
    assert again == clean and output_files(tmp_path / "out") == output_files(tmp_path / "clean")


def test_a_run_that_fails_part_way_leaves_a_report_saying_so(tmp_path, monkeypatch):
    src = write_lines(tmp_path / "c.jsonl", _lines(40))
    assert tag_corpus([src], tmp_path / "out", CFG, progress=False)["complete"]
    real = chunked.iter_chunks

    def failing(*a, **kw):
        for i, chunk in enumerate(real(*a, **kw)):
            if i == 2:
                raise CorpusError(f"{src}: cannot read (disk went away)")
            yield chunk

    monkeypatch.setattr(chunked, "iter_chunks", failing)
    src.write_text(src.read_text().replace("Document 0.", "Document zero."))
    with pytest.raises(CorpusError):
        tag_corpus([src], tmp_path / "out", CFG, progress=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["complete"] and "disk went away" in report["error"]


_SLOW_RUN = '''
import sys, time
import numpy as np

class SlowScorer:
    name, threshold = "slow", 0.5

    def score(self, texts):
        time.sleep(0.2)
        return np.full(len(texts), 0.1, np.float32)

if __name__ == "__main__":
    from condpt.tagging.cascade import TagConfig
    from condpt.tagging.run import tag_corpus

    tag_corpus([sys.argv[1]], sys.argv[2], TagConfig(rows_per_shard=2), tasks=4, workers=2, scorer=SlowScorer(),
               progress=False)
'''


def test_sigkill_of_the_main_process_takes_its_workers_with_it(tmp_path):
    import psutil

    src = write_lines(tmp_path / "c.jsonl", _lines(400))
    script = tmp_path / "slow_run.py"
    script.write_text(_SLOW_RUN)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(tmp_path / "out")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    main = psutil.Process(proc.pid)
    markers = tmp_path / "out" / "markers"
    deadline = time.time() + 120
    children: list = []
    while time.time() < deadline and proc.poll() is None:
        children = main.children(recursive=True)
        if len(children) >= 3 and len(list(markers.glob("*.json"))) >= 2:  # 2 workers, forkserver, manager
            break
        time.sleep(0.05)
    assert proc.poll() is None and len(children) >= 3, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and (alive := [p for p in children if _running(p)]):
        time.sleep(0.1)
    left = [(p.pid, p.name()) for p in alive]
    for p in alive:
        p.kill()
    assert left == []


def _running(p) -> bool:
    import psutil

    try:  # orphans are reaped by init, which in a container may never do it: a zombie is dead
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_skipped_hidden_entries_are_named(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_lines(d / "a.jsonl", _lines(5))
    (d / "_SUCCESS").write_text("")
    res = _cli(d, "--out", tmp_path / "out", "--config", _cfg_file(tmp_path), "--quiet")
    assert res.exit_code == 0 and "skipped 1 hidden entries" in res.output and "_SUCCESS" in res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["skipped_files"] == [str(d / "_SUCCESS")] and report["read"] == 5


def test_a_finished_task_whose_input_changed_is_redone_not_skipped(tmp_path, monkeypatch):
    """datatrove's trap: it skips every task with a completion file. Task 0 finishes, task 1 is killed, then a
    record of task 0's chunk is edited (same size, same mtime): task 0 must be redone, not skipped."""
    src = write_lines(tmp_path / "c.jsonl", _lines(40))
    with monkeypatch.context() as m:
        real = chunked.ChunkWriter.finish

        def finish(self, group, *a):
            if group[0].metadata["chunk"] == 3:  # task 1's second chunk
                raise KeyboardInterrupt("killed")
            return real(self, group, *a)

        m.setattr(chunked.ChunkWriter, "finish", finish)
        with pytest.raises(KeyboardInterrupt):
            tag_corpus([src], tmp_path / "out", CFG, tasks=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "out" / "logs" / "completions").iterdir()) == ["00000"]
    st = src.stat()
    lines = _lines(40)
    lines[1] = lines[1].replace("Calm tea.", "HAL 9000!")  # chunk 0: task 0's
    write_lines(src, lines)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = tag_corpus([src], tmp_path / "out", CFG, tasks=2, progress=False)
    clean = tag_corpus([src], tmp_path / "clean", CFG, tasks=2, progress=False)
    assert again == clean and output_files(tmp_path / "out") == output_files(tmp_path / "clean")
    assert "HAL 9000" in pq.read_table(tmp_path / "out" / "data" / "part-000000.parquet").column("text")[1].as_py()


def test_a_rerun_with_another_task_count_is_refused_with_the_one_to_use(tmp_path):
    src = write_lines(tmp_path / "c.jsonl", _lines(20))
    tag_corpus([src], tmp_path / "out", CFG, tasks=2, progress=False)
    res = _cli(src, "--out", tmp_path / "out", "--config", _cfg_file(tmp_path), "--quiet", "--tasks", "3")
    assert res.exit_code == 2 and "--tasks 2" in res.output, res.output
    res = _cli(src, "--out", tmp_path / "out", "--config", _cfg_file(tmp_path), "--quiet", "--tasks", "2",
               "--workers", "1")
    assert res.exit_code == 0 and "read 20 = written 20" in res.output, res.output


def test_completions_without_a_run_file_are_refused(tmp_path):
    src = write_lines(tmp_path / "c.jsonl", _lines(10))
    tag_corpus([src], tmp_path / "out", CFG, progress=False)
    (tmp_path / "out" / "run.json").unlink()
    with pytest.raises(run_mod.TagRunError, match="finished tasks but no run.json"):
        tag_corpus([src], tmp_path / "out", CFG, progress=False)


@pytest.mark.parametrize(("name", "content", "why"), [("run.json", "{", "not valid JSON"),
                                                      ("run.json", "[]", "not a JSON object"),
                                                      ("markers/part-000000.json", "{}", "no 'chunk'"),
                                                      ("markers/part-000000.json", '{"read": true}', "no 'chunk'")])
def test_a_rerun_into_a_damaged_output_names_the_file(tmp_path, name, content, why):
    """run.json or a marker hand-edited or truncated: the re-run failed with a JSON message naming no file
    (run.json) or a KeyError traceback while summing the markers (issue 9 sweep 2)."""
    src = write_lines(tmp_path / "c.jsonl", _lines(10))
    tag_corpus([src], tmp_path / "out", CFG, progress=False)
    (tmp_path / "out" / name).write_text(content)
    res = _cli(src, "--out", tmp_path / "out", "--config", _cfg_file(tmp_path), "--quiet")
    assert res.exit_code == 2 and name in res.output and why in res.output, res.output
