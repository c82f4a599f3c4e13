"""The sources' full row check under `accelerate launch` on 2 CPU processes: one read of the corpus per run,
not one in the launcher and one more in every rank; a bad row found by the ranks is one named error and a
non-zero exit in every rank, with no rank left waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_launch import REPO, TINY, TINY_CPU, log_path, start

pytestmark = pytest.mark.slow

# Loaded in every Python process of the run (launcher, ranks): appends a line per full row check.
_COUNTER = '''
import os
if os.environ.get("CONDPT_TEST_SCANS"):
    import condpt.inputs as inputs
    real = inputs._row_problems
    def counted(*args):
        with open(os.environ["CONDPT_TEST_SCANS"], "a") as f:
            f.write(f"{os.getpid()} rank {os.environ.get('RANK', '-')}\\n")
        return real(*args)
    inputs._row_problems = counted
'''


@pytest.fixture
def scans(tmp_path, monkeypatch):
    """The file each process of the run logs its full row checks to."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_COUNTER)
    log = tmp_path / "scans.log"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("CONDPT_TEST_SCANS", str(log))
    return log


def _scans(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _corpus(path: Path, bad: dict | None = None) -> Path:
    rows = [{"id": f"d{i}", "text": f"Document {i} about the lighthouse keeper and the quiet river. " * 6,
             "tag": "bad" if i % 3 == 0 else "good"} for i in range(120)]
    if bad is not None:
        rows.insert(57, bad)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_bad_row_found_by_the_ranks_is_one_named_error_and_every_rank_exits(tmp_path, scans):
    src = _corpus(tmp_path / "corpus.jsonl", bad={"id": "x", "text": "doom", "tag": "BAD"})
    out = tmp_path / "run"
    with start(2, out, [*TINY, "train.max_steps=2", f"data.sources.0.path={src}"]) as proc:
        try:
            returncode = proc.wait(timeout=400)  # a rank left at a barrier would wait for gloo's half-hour timeout
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    log = log_path(out).read_text()
    assert returncode == 2, log[-3000:]  # every rank refused it (exit 2): the launcher says so without a traceback
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, log[-3000:]  # rank 0's, once
    assert errors[0].startswith(f"error: training data that cannot be used: data.sources.0.path: {src}: line 58: "
                                "field 'tag': 'BAD' is not a role"), errors
    assert "Traceback" not in log, log[-3000:]
    assert [line.split()[-1] for line in _scans(scans)] == ["0"]  # the main process's read, only
    assert not list((out / "cache").glob("rows-*"))  # and no pass stamped


def test_condpt_train_reads_the_rows_once_for_the_whole_run(tmp_path, scans):
    src = _corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "from condpt.cli import main; main()", "train", "--config", str(TINY_CPU),
           "--accelerate-config", "deepspeed-zero2-cpu", *TINY, "train.max_steps=1", f"data.sources.0.path={src}",
           f"output_dir={out}"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert (out / "final").is_dir()
    assert [line.split()[-1] for line in _scans(scans)] == ["-"]  # the launcher's, stamped; no rank's
