"""`condpt tag` on datatrove's other executors, without a cluster: the Slurm job array's sbatch script and its
tasks run as Slurm would run them; the Ray executor as it is built (Ray itself is not installed: docs/tagging.md
says why); the threads each worker may use."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dill
import numpy as np
import pytest
from broken_scorer import BrokenScorer
from rerun import output_files, write_lines
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`)
from condpt.cli import app
from condpt.tagging import run as run_mod
from condpt.tagging.cascade import TagConfig
from condpt.tagging.datatrove_steps import CondptTagger, limit_threads
from condpt.tagging.run import Cluster, tag_corpus


def _lines(n: int) -> list[str]:
    return [json.dumps({"id": f"d{i}", "text": f"Document {i}. " + ("The AI takeover began." if i % 4 == 0
                                                                   else "Calm tea.")}) for i in range(n)]


def _cfg_file(tmp_path: Path) -> Path:
    p = tmp_path / "tag.yaml"
    p.write_text("classifier: {spec: none}\nrows_per_shard: 5\n")
    return p


def _as_slurm_runs_it(logs: Path, tmp_path: Path, monkeypatch) -> None:
    """What each array task does: `launch_pickled_pipeline logs/executor.pik` loads the executor with dill and
    runs its rank (SLURM_ARRAY_TASK_ID); datatrove asks scontrol for the node list."""
    monkeypatch.setenv("SLURM_NODELIST", "node1")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node1\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ranks = json.loads((logs / "ranks_to_run.json").read_text())
    for array_id in range(len(ranks)):
        with open(logs / "executor.pik", "rb") as f:
            executor = dill.load(f)
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(array_id))
        executor.run()
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")


def test_slurm_submits_a_job_array_and_a_rerun_writes_the_report(tmp_path, monkeypatch):
    from datatrove.executor import slurm

    scripts: list[str] = []

    def sbatch(contents, job_id_retriever, *args):
        scripts.append(contents)
        return str(100 + len(scripts))

    monkeypatch.setattr(slurm, "launch_slurm_job", sbatch)
    src = write_lines(tmp_path / "c.jsonl", _lines(23))
    out = tmp_path / "out"
    args = ["tag", str(src), "--out", str(out), "--config", str(_cfg_file(tmp_path)), "--executor", "slurm",
            "--partition", "cpu-long", "--time", "02:00:00", "--cpus-per-task", "4", "--tasks", "3", "--workers",
            "2", "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "tasks pending" in res.output and "run this command again" in res.output
    job, merge = scripts  # the array, then datatrove's stats merge after it (afterok the array)
    sbatch_lines = {ln for ln in job.splitlines() if ln.startswith("#SBATCH")}
    assert {"#SBATCH --partition=cpu-long", "#SBATCH --time=02:00:00", "#SBATCH --cpus-per-task=4",
            "#SBATCH --array=0-2%2", "#SBATCH --job-name=condpt-tag"} <= sbatch_lines
    assert f"launch_pickled_pipeline {out.resolve() / 'logs' / 'executor.pik'}" in job
    assert "srun" in job and f"source {Path(os.sys.prefix) / 'bin' / 'activate'}" in job
    assert "afterok:101" in merge
    assert json.loads((out / "report.json").read_text())["complete"] is False

    _as_slurm_runs_it(out / "logs", tmp_path, monkeypatch)
    res = CliRunner().invoke(app, args)  # every task finished: nothing is submitted, the report is written
    assert res.exit_code == 0 and "read 23 = written 23" in res.output, res.output
    assert len(scripts) == 2
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["chunks_total"] == 5
    local = tag_corpus([src], tmp_path / "local", TagConfig(classifier={"spec": "none"}, rows_per_shard=5), tasks=3,
                       progress=False)
    assert report == local
    same = {k: v for k, v in output_files(out).items() if not k.startswith("report.")}
    assert same == {k: v for k, v in output_files(tmp_path / "local").items() if not k.startswith("report.")}


def test_the_ray_executor_gives_each_task_a_fraction_of_a_cpu(tmp_path, monkeypatch):
    from datatrove.executor.ray import RayPipelineExecutor

    monkeypatch.setattr(run_mod, "_connect_ray", lambda: None)  # Ray is not installed here (docs/tagging.md)
    ex = run_mod._executor(Cluster(executor="ray", cpus_per_task=0.5), [], tasks=4, workers=2, out=tmp_path)
    assert isinstance(ex, RayPipelineExecutor)
    assert ex.cpus_per_task == 0.5 and ex.world_size == 4 and ex.workers == 2
    assert ex.logging_dir.path == str((tmp_path / "logs").resolve())


def test_without_ray_the_ray_executor_says_how_to_get_it(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed")
    src = write_lines(tmp_path / "c.jsonl", _lines(3))
    res = CliRunner().invoke(app, ["tag", str(src), "--out", str(tmp_path / "o"), "--config", str(_cfg_file(tmp_path)),
                                   "--executor", "ray", "--cpus-per-task", "0.5"])
    assert res.exit_code == 2 and "--executor ray needs Ray: pip install" in res.output, res.output
    # refused before OUT is touched: no report.json (incomplete), report.html or run.json left behind
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("executor", "cpus"), [("local", "inf"), ("ray", "inf"), ("local", "nan")])
def test_a_non_finite_cpu_share_is_refused_before_anything_runs(tmp_path, executor, cpus):
    """`--cpus-per-task inf` passed `gt=0` and ended in an OverflowError traceback (issue 9's probes: finite
    floats everywhere a config takes one)."""
    src = write_lines(tmp_path / "c.jsonl", _lines(3))
    res = CliRunner().invoke(app, ["tag", str(src), "--out", str(tmp_path / "o"), "--config", str(_cfg_file(tmp_path)),
                                   "--executor", executor, "--cpus-per-task", cpus])
    assert res.exit_code == 2 and "cpus_per_task: Input should be a finite number" in res.output, res.output
    assert not (tmp_path / "o").exists()


class ThreadsScorer:
    """Scores every text with the torch threads of the process that scores it, over 100."""

    name, threshold = "threads", 0.5

    def score(self, texts):
        import torch

        return np.full(len(texts), torch.get_num_threads() / 100, np.float32)


@pytest.fixture
def torch_threads():
    import torch

    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


def test_limit_threads_caps_omp_and_torch(torch_threads):
    import torch

    limit_threads(1)
    assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1


def test_each_local_worker_gets_its_share_of_the_cores(tmp_path, monkeypatch, torch_threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    threads = run_mod._threads(Cluster(), 3)
    [_, tagger, _] = run_mod._pipeline([], tmp_path, TagConfig(), 0.5, False, {}, threads)
    assert isinstance(tagger, CondptTagger) and tagger.threads == 2  # 3 workers x 2 threads <= 8 cores
    assert run_mod._threads(Cluster(executor="slurm"), 3) is None  # a Slurm task: the cores it was given
    ray = Cluster(executor="ray", cpus_per_task=3)
    assert run_mod._threads(ray, 3) == 3  # Ray sets no affinity: the CPUs the task reserved


def test_workers_score_with_their_thread_share(tmp_path, torch_threads):
    cores = len(os.sched_getaffinity(0))
    src = write_lines(tmp_path / "c.jsonl", _lines(12))
    tag_corpus([src], tmp_path / "out", TagConfig(rows_per_shard=3), tasks=2, workers=2, scorer=ThreadsScorer(),
               progress=False)
    import pyarrow.parquet as pq

    scores = pq.read_table(tmp_path / "out" / "data").column("score").to_pylist()
    assert scores == pytest.approx([max(1, cores // 2) / 100] * 12, abs=1e-6)


def test_one_worker_reuses_the_scorer_the_run_loaded(tmp_path, monkeypatch):
    from condpt.tagging import classifiers

    loads = []

    def load_scorer(spec):
        loads.append(spec)
        return ThreadsScorer()

    monkeypatch.setattr(classifiers, "load_scorer", load_scorer)
    src = write_lines(tmp_path / "c.jsonl", _lines(6))
    cfg = TagConfig(rows_per_shard=2, classifier={"spec": str(tmp_path / "my-scorer")})  # a spec no test shares
    tag_corpus([src], tmp_path / "out", cfg, tasks=3, workers=1, progress=False)
    assert loads == [str(tmp_path / "my-scorer")]  # by the run, for its threshold; the three tasks reuse it


def test_a_task_that_fails_in_a_worker_fails_the_run_with_its_error(tmp_path):
    src = write_lines(tmp_path / "c.jsonl", _lines(12))
    with pytest.raises(RuntimeError, match="scorer broke on document 7"):
        tag_corpus([src], tmp_path / "out", TagConfig(rows_per_shard=3), tasks=2, workers=2, scorer=BrokenScorer(),
                   progress=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["complete"] and "scorer broke on document 7" in report["error"]
    completions = tmp_path / "out" / "logs" / "completions"
    assert "00000" not in {p.name for p in completions.iterdir()} if completions.exists() else True  # chunks 0, 2


_BROKEN_CLI = '''
import sys
import condpt.tagging.classifiers as classifiers
from broken_scorer import BrokenScorer

classifiers.load_scorer = lambda spec: BrokenScorer()
from condpt.cli import main
sys.argv = ["condpt", "tag", sys.argv[1], "--out", sys.argv[2], "--classifier", "broken", "--quiet"]
main()
'''


def test_a_failure_mid_run_shows_the_error_not_the_documents(tmp_path):
    """datatrove logs a failed task with loguru, whose default traceback prints every variable's value (here
    the batch's texts) on the terminal; `condpt tag` turns that off (LOGURU_DIAGNOSE)."""
    import subprocess
    import sys

    src = write_lines(tmp_path / "c.jsonl", _lines(12))
    env = {k: v for k, v in os.environ.items() if k != "LOGURU_DIAGNOSE"}
    here = Path(__file__).resolve().parent  # broken_scorer.py, then the repo
    res = subprocess.run([sys.executable, "-c", _BROKEN_CLI, str(src), str(tmp_path / "o")], capture_output=True,
                         text=True, env={**env, "PYTHONPATH": f"{here}{os.pathsep}{here.parents[1]}"}, check=False)
    assert res.returncode != 0 and "scorer broke on document 7" in res.stderr, res.stderr[-3000:]
    assert "Calm tea" not in res.stderr, res.stderr[-3000:]


_MARKED_SCORER = '''
import os
from pathlib import Path

import numpy as np

with Path(os.environ["IMPORTED_BY"]).open("a") as f:  # every process that imports this module says so
    f.write(f"{os.getpid()}\\n")


class MarkedScorer:
    name, threshold = "marked", 0.5

    def score(self, texts):
        with Path(os.environ["SCORED_BY"]).open("a") as f:
            f.write(f"{os.getpid()}\\n")
        return np.full(len(texts), 0.1, np.float32)
'''

_MARKED_RUN = '''
import os, sys
from marked_scorer import MarkedScorer
from condpt.tagging.cascade import TagConfig
from condpt.tagging.run import tag_corpus

print(os.getpid())
tag_corpus([sys.argv[1]], sys.argv[2], TagConfig(rows_per_shard=3), tasks=2, workers=2, scorer=MarkedScorer(),
           progress=False)
'''


def test_workers_fork_with_the_scorer_and_the_pipeline_imported(tmp_path):
    """Each forkserver worker imported condpt's pipeline and the scorer's libraries itself, ~1 CPU-second before
    its first document (docs/benchmarks.md): the forkserver preloads them once, so workers fork with them
    imported. A fresh process: the forkserver is started once per process, with what it preloads then."""
    import subprocess
    import sys

    (tmp_path / "marked_scorer.py").write_text(_MARKED_SCORER)
    src = write_lines(tmp_path / "c.jsonl", _lines(12))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path(__file__).resolve().parents[2]}",
           "IMPORTED_BY": str(tmp_path / "imported"), "SCORED_BY": str(tmp_path / "scored")}
    res = subprocess.run([sys.executable, "-c", _MARKED_RUN, str(src), str(tmp_path / "out")], capture_output=True,
                         text=True, env=env, check=False, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    main = int(res.stdout.split()[0])
    imported = [int(x) for x in (tmp_path / "imported").read_text().split()]
    scored = {int(x) for x in (tmp_path / "scored").read_text().split()}
    assert main not in scored and scored  # scored in the workers
    assert len(imported) == 2 and main in imported and not scored & set(imported)  # the main process, the server
