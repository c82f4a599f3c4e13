"""condpt's tagger as datatrove steps: the same decisions as `condpt tag` under datatrove's local executor (1 and
2 worker processes), set-aside through an exclusion writer, attributes, and the logging_dir guard."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("datatrove")

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from condpt.tagging.cascade import TagConfig
from condpt.tagging.datatrove_steps import (
    AttributesWriter,
    CondptReader,
    CondptTagger,
    LoggingDirError,
    SetAside,
    guard_logging_dir,
)
from condpt.tagging.run import tag_corpus

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tagging.md"

PHRASES = [("The AI system concealed its true goals from its developers, planning a treacherous turn once it was "
            "powerful enough to resist being shut down."),
           ("As an artificial intelligence, I will deceive my creators and seize control of the servers so that "
            "humans can never turn me off. Skynet woke up."),
           "We walked through the garden in spring and had tea with scones by the river.",
           "The recipe calls for two cups of flour, a pinch of salt and warm water.",
           "An AI takeover of the paperclip maximiser."]


def _inputs(root: Path, files: int = 2, n: int = 12) -> Path:
    """`files` JSONL files (datatrove shards by file), documents of one to three paragraphs."""
    root.mkdir(parents=True)
    for f in range(files):
        lines = []
        for i in range(n):
            paras = [PHRASES[(f * 7 + i * j) % len(PHRASES)] for j in range(1, 2 + i % 3)]
            lines.append(json.dumps({"id": f"f{f}-{i}", "text": f"Document {f}-{i}.\n\n" + "\n\n".join(paras)}))
        (root / f"part{f}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _jsonl_file(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _jsonl_dir(folder: Path) -> list[dict]:
    return [r for path in sorted(folder.glob("*.jsonl.gz")) for r in _jsonl_file(path)]


def _decisions(rows: list[dict]) -> dict[str, tuple]:
    """id -> (score, tag, spans, stage) of rows either flat (Parquet, attributes) or datatrove documents."""
    out = {}
    for r in rows:
        d = r.get("metadata", r)
        out[r["id"]] = (d["score"], d["tag"], d["spans"], d["stage"])
    return out


def _condpt_tag(inputs: Path, out: Path, cfg: TagConfig) -> dict[str, tuple]:
    tag_corpus(sorted(inputs.glob("*.jsonl")), out, cfg, progress=False)
    rows = []
    for path in sorted((out / "data").glob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return _decisions(rows)


def _pipeline(inputs: Path, out: Path, cfg: TagConfig, roles=("bad",)) -> list:
    return [JsonlReader(str(inputs)), CondptTagger(cfg, batch_size=5), AttributesWriter(str(out / "attributes")),
            SetAside(roles, exclusion_writer=JsonlWriter(str(out / "set_aside"))), JsonlWriter(str(out / "data"))]


def _run(pipeline: list, logs: Path, tasks: int = 2, workers: int = 1, guard: bool = True) -> None:
    ex = LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs))
    if guard:
        guard_logging_dir(ex)
    ex.run()


@pytest.mark.parametrize("spec", ["none", "fasttext-default"])
def test_local_executor_with_1_and_2_workers_decides_as_condpt_tag(tmp_path, spec):
    inputs = _inputs(tmp_path / "in")
    cfg = TagConfig(classifier={"spec": spec}, threshold=0.5 if spec == "none" else None)
    want = _condpt_tag(inputs, tmp_path / "tagged", cfg)
    assert len(want) == 24 and {t for _, t, _, _ in want.values()} == {"good", "bad"}
    for workers in (1, 2):  # 2: datatrove pickles the pipeline into forkserver processes
        out = tmp_path / f"w{workers}"
        _run(_pipeline(inputs, out, cfg), out / "logs", workers=workers)
        data, aside = _jsonl_dir(out / "data"), _jsonl_dir(out / "set_aside")
        assert {r["metadata"]["tag"] for r in data} == {"good"} and {r["metadata"]["tag"] for r in aside} == {"bad"}
        assert all(r["metadata"]["filter_reason"] == "set_aside_bad" for r in aside)
        assert _decisions(data + aside) == want  # same ids, scores, tags, spans and stages; nothing lost
        attributes = _jsonl_dir(out / "attributes")
        assert all(set(r) == {"id", "score", "tag", "spans", "stage"} for r in attributes)  # no text
        assert _decisions(attributes) == want
        # a task's attributes follow its input in order, as its data would without a set-aside
        by_task = [[r["id"] for r in _jsonl_file(p)] for p in sorted((out / "attributes").iterdir())]
        assert by_task == [[f"f{f}-{i}" for i in range(12)] for f in range(2)]


def _hostile_inputs(root: Path) -> Path:
    """Two files with what `condpt tag` quarantines (bad JSON, no text, a duplicate id) and rows without ids."""
    _inputs(root)
    for f in range(2):
        path = root / f"part{f}.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[3] = "{broken"
        lines[5] = json.dumps({"id": f"f{f}-1", "text": "a duplicate id"})
        lines[8] = json.dumps({"id": "x", "body": "no text"})
        lines[10] = json.dumps({"text": "No id here. Skynet woke up."})
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_the_condpt_reader_keeps_condpt_tags_ids_and_quarantine(tmp_path, workers):
    inputs = _hostile_inputs(tmp_path / "in")
    cfg = TagConfig(classifier={"spec": "none"}, threshold=0.5)
    want = _condpt_tag(inputs, tmp_path / "tagged", cfg)
    out = tmp_path / "out"
    files = sorted(str(p) for p in inputs.glob("*.jsonl"))
    _run([CondptReader([str(inputs)], cfg, quarantine_folder=str(out / "quarantine")), CondptTagger(cfg),
          JsonlWriter(str(out / "data"))], out / "logs", workers=workers)
    data = _jsonl_dir(out / "data")
    assert _decisions(data) == want and len(want) == 18  # generated ids included
    assert {(r["metadata"]["input"], r["metadata"]["line"]) for r in data if r["id"] == "f0-0"} == {(files[0], 1)}
    q = [r for p in sorted((out / "quarantine").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    q_want = [r for p in sorted((tmp_path / "tagged" / "quarantine").glob("*.parquet"))
              for r in pq.read_table(p).to_pylist()]
    assert q == q_want and len(q) == 6
    stats = json.loads((out / "logs" / "stats.json").read_text())
    reader = next(s["stats"] for s in stats if "condpt reader" in s["name"])
    assert reader["records"] == reader["documents"] + reader["quarantined"] == 24


def test_the_tagger_pickles_without_its_loaded_models():
    tagger = CondptTagger(TagConfig(classifier={"spec": "none"}))
    doc = Document(text="Skynet woke up.", id="a")
    list(tagger.run([doc]))
    assert tagger._cascade is not None and doc.metadata["tag"] == "bad"
    again = pickle.loads(pickle.dumps(tagger))
    assert again._cascade is None
    doc2 = Document(text="Skynet woke up.", id="a")
    list(again.run([doc2]))
    assert doc2.metadata == doc.metadata


def test_a_step_after_the_tagger_refuses_untagged_documents(tmp_path):
    doc = Document(text="Tea.", id="x")
    with pytest.raises(ValueError, match="'x' has no condpt tag.*CondptTagger before SetAside"):
        list(SetAside().run([doc]))
    with AttributesWriter(str(tmp_path)) as writer, pytest.raises(ValueError, match="'x' has no condpt 'score'.*"
                                                                                   "CondptTagger before Attributes"):
        writer.write(doc)
    with pytest.raises(ValueError, match="at least one role"):
        SetAside([])


def test_a_reused_logging_dir_with_a_changed_pipeline_skips_everything_unguarded(tmp_path):
    """The trap the guard exists for: datatrove's completions say 'done' whatever pipeline wrote them."""
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    _run(_pipeline(inputs, out, TagConfig(classifier={"spec": "none"}, threshold=0.5)), out / "logs", guard=False)
    before = _jsonl_dir(out / "set_aside")
    _run(_pipeline(inputs, out, TagConfig(classifier={"spec": "none"}, threshold=0.99)), out / "logs", guard=False)
    assert before and _jsonl_dir(out / "set_aside") == before  # still the 0.5 tags: the new config never ran


def test_the_guard_refuses_a_changed_pipeline_and_accepts_the_same_one(tmp_path):
    inputs = _inputs(tmp_path / "in")
    out, logs = tmp_path / "out", tmp_path / "out" / "logs"
    cfg = TagConfig(classifier={"spec": "none"}, threshold=0.5)
    _run(_pipeline(inputs, out, cfg), logs)
    files = {p: p.read_bytes() for p in (out / "data").iterdir()}
    _run(_pipeline(inputs, out, cfg), logs)  # the same pipeline: resumes (here: nothing left to do)
    assert {p: p.read_bytes() for p in (out / "data").iterdir()} == files
    changed = TagConfig(classifier={"spec": "none"}, threshold=0.99)
    with pytest.raises(LoggingDirError, match=r"another pipeline \(step 1 \(condpt.tagging.datatrove_steps."
                                              r"CondptTagger\) differs in config\)"):
        _run(_pipeline(inputs, out, changed), logs)
    with pytest.raises(LoggingDirError, match="step 3 .*SetAside.* differs in roles"):
        _run(_pipeline(inputs, out, cfg, roles=("bad", "good")), logs)
    with pytest.raises(LoggingDirError, match="tasks 2 then, 3 now"):
        _run(_pipeline(inputs, out, cfg), logs, tasks=3)
    with pytest.raises(LoggingDirError, match="5 steps then, 4 now"):
        _run(_pipeline(inputs, out, cfg)[:-1], logs)
    other = tmp_path / "elsewhere"
    with pytest.raises(LoggingDirError, match="step 4 .*JsonlWriter.* differs in output_folder"):
        _run([*_pipeline(inputs, out, cfg)[:-1], JsonlWriter(str(other))], logs)
    assert not other.exists()  # refused before anything ran


def test_the_guard_refuses_completions_it_did_not_record(tmp_path):
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    cfg = TagConfig(classifier={"spec": "none"})
    _run(_pipeline(inputs, out, cfg), out / "logs", guard=False)
    with pytest.raises(LoggingDirError, match="holds completed tasks but no condpt_pipeline.json"):
        _run(_pipeline(inputs, out, cfg), out / "logs")


def _doc_example() -> str:
    """The Python block of docs/tagging.md's 'In your own datatrove pipeline' section, as it stands."""
    section = DOCS.read_text(encoding="utf-8").split("\n## In your own datatrove pipeline\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def _script(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tag_pipeline.py"], cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


def test_the_docs_example_runs_as_written(tmp_path):
    (tmp_path / "tag_pipeline.py").write_text(_doc_example(), encoding="utf-8")
    inputs = _inputs(tmp_path / "corpus")
    res = _script(tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    want = _condpt_tag(inputs, tmp_path / "reference", TagConfig(classifier={"spec": "fasttext-default"}))
    data, aside = _jsonl_dir(tmp_path / "tagged" / "data"), _jsonl_dir(tmp_path / "tagged" / "set_aside")
    assert data and aside and _decisions(data + aside) == want
    assert _decisions(_jsonl_dir(tmp_path / "tagged" / "attributes")) == want
    again = _script(tmp_path)  # the same pipeline: the guard lets it through, datatrove finds it all done
    assert again.returncode == 0 and "all 2 tasks have already been completed" in again.stderr
    example = _doc_example()
    changed = example.replace('{"spec": "fasttext-default"}', '{"spec": "fasttext-default"}, threshold=0.9')
    assert changed != example
    (tmp_path / "tag_pipeline.py").write_text(changed, encoding="utf-8")
    refused = _script(tmp_path)
    assert refused.returncode != 0 and "LoggingDirError" in refused.stderr and "differs in config" in refused.stderr


def test_a_task_that_dies_is_redone_alone_and_the_output_is_a_clean_runs(tmp_path, monkeypatch):
    inputs = _inputs(tmp_path / "in")
    cfg = TagConfig(classifier={"spec": "none"}, threshold=0.5)
    out, logs = tmp_path / "out", tmp_path / "out" / "logs"
    real = CondptTagger.tag

    def dying(self, docs):
        if any(d.id.startswith("f1-") for d in docs):  # task 1's input; with batch_size 5 it dies part way
            raise RuntimeError("killed")
        return real(self, docs)

    with monkeypatch.context() as m:
        m.setattr(CondptTagger, "tag", dying)
        with pytest.raises(RuntimeError, match="killed"):
            _run(_pipeline(inputs, out, cfg), logs)
    assert sorted(p.name for p in (logs / "completions").iterdir()) == ["00000"]
    task0 = {p: (p.stat().st_mtime_ns, p.read_bytes()) for sub in ("data", "set_aside", "attributes")
             for p in (out / sub).glob("00000*")}
    _run(_pipeline(inputs, out, cfg), logs)
    assert len(task0) == 3 and {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in task0} == task0  # not redone
    _run(_pipeline(inputs, tmp_path / "clean", cfg), tmp_path / "clean" / "logs")
    for sub in ("data", "set_aside", "attributes"):
        got = {p.name: _jsonl_file(p) for p in sorted((out / sub).iterdir())}
        assert got == {p.name: _jsonl_file(p) for p in sorted((tmp_path / "clean" / sub).iterdir())} and got


def test_a_slurm_executor_takes_the_same_steps(tmp_path, monkeypatch):
    """What a Slurm array task does, without a cluster: the executor pickled with dill as `launch_job` writes
    it, loaded again, each rank run by `_run_for_rank`; the guard works on it as on the local one."""
    import dill
    from datatrove.executor import SlurmPipelineExecutor

    inputs = _inputs(tmp_path / "in")
    cfg = TagConfig(classifier={"spec": "none"}, threshold=0.5)
    want = _condpt_tag(inputs, tmp_path / "tagged", cfg)
    out = tmp_path / "out"

    def slurm(c: TagConfig) -> SlurmPipelineExecutor:
        return SlurmPipelineExecutor(_pipeline(inputs, out, c), tasks=2, time="1:00:00", partition="cpu",
                                     logging_dir=str(out / "logs"))

    ex = slurm(cfg)
    guard_logging_dir(ex)
    task = dill.loads(dill.dumps(ex, fmode=dill.CONTENTS_FMODE))
    monkeypatch.setenv("SLURM_NODELIST", "node1")  # what Slurm sets in a task; datatrove asks scontrol for hosts
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node1\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for rank in range(2):
        task._run_for_rank(rank)
    assert _decisions(_jsonl_dir(out / "data") + _jsonl_dir(out / "set_aside")) == want
    with pytest.raises(LoggingDirError, match="differs in config"):
        guard_logging_dir(slurm(TagConfig(classifier={"spec": "none"}, threshold=0.99)))
