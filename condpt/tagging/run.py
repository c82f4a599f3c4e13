"""`tag_corpus`: inputs → ``OUT/data``, ``OUT/set_aside``, ``OUT/quarantine`` Parquet shards + report, run by a
datatrove executor (``LocalPipelineExecutor`` by default; Slurm and Ray for clusters).

The pipeline is `condpt.tagging.chunked.ChunkReader` → `condpt.tagging.datatrove_steps.CondptTagger` →
`condpt.tagging.chunked.ChunkWriter`: ``tasks`` tasks, task ``r`` taking the input chunks ``k`` with
``k mod tasks = r``; ``workers`` of them at a time. Layout of OUT (one file per chunk ``k``, ``part-{k:06d}``):

- ``data/`` tagged rows (`condpt.corpus.TAGGED_SCHEMA`), ``set_aside/`` same schema for documents whose tag
  is in ``set_aside_roles``, ``quarantine/`` unusable records with the reason and the raw bytes;
- ``attributes/`` (with ``attributes=True``, `condpt tag --attributes`): id + decision of each tagged document
  of the chunk (`condpt.tagging.attributes`), data and set-aside rows in input order, no text;
- ``markers/part-k.json``: the chunk's counts (the report sums them) and what it was made from;
- ``tasks/NNNNN.json``: what task NNNNN was made from (a hash chained over its chunks' raw records) and how
  many chunks the input has; ``logs/``: datatrove's logging_dir (``completions/``: the tasks that finished,
  task logs, stats);
- ``run.json``: inputs, config and task count; a re-run with other ones into the same OUT is refused (datatrove
  alone would skip every task it finished and report success);
- ``report.json`` / ``report.html``: built from the markers; written when a run starts (``complete: false``),
  when it fails (with ``error``) and when it ends.

Inputs are checked whole (`check_inputs`) before anything is written. A re-run skips the tasks datatrove
recorded as finished, but only after checking that each one was made from what the input holds now (its
chain): a task whose chunks changed (an input edited, grown or shortened) loses its completion file and is
redone whole, so the output is what a clean run on the new input writes. Determinism: chunking depends only on
the input bytes, a task is written in input order, files are renamed into place only when complete and hold no
timestamps, so a run killed at any point (SIGKILL included) and re-run writes byte-identical files. Duplicate
ids are found within a task (the first occurrence is kept): the split depends on ``tasks``, never on
``workers``. Worker processes die with the main process, even on SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from copy import deepcopy
from pathlib import Path
from typing import Any, Literal

from datatrove.executor import LocalPipelineExecutor
from pydantic import BaseModel, ConfigDict, Field

from condpt.corpus import InputSpec, check_inputs, expand_inputs, shown
from condpt.corpus.write import write_text_atomic
from condpt.tagging.cascade import Cascade, TagConfig
from condpt.tagging.chunked import (
    ATTRIBUTES,
    DATA,
    MARKERS,
    PARTS,
    PROGRESS,
    QUARANTINE,
    SET_ASIDE,
    TASKS,
    TMP,
    ChunkReader,
    ChunkWriter,
    fields_of,
    part_name,
    task_chains,
    task_file,
)
from condpt.tagging.datatrove_steps import share_cascade
from condpt.tagging.finished import RETAG
from condpt.tagging.pool import local_threads, local_workers_error, start_forkserver
from tokenizer_ext.procs import pid_alive

__all__ = ["ATTRIBUTES", "DATA", "FORMAT_VERSION", "MARKERS", "QUARANTINE", "RETAG", "SET_ASIDE", "Cluster",
           "Stopped", "TagRunError", "count_records", "fields_of", "part_name", "tag_corpus"]

FORMAT_VERSION = 2  # 2: tasks/ and logs/ (datatrove), run.json records the task count
LOGS = "logs"  # datatrove's logging_dir
TIMING = "timing"  # wall-clock throughput per run: the one thing that differs between runs (not in report.json)
# what a run (or `condpt retag`) writes in OUT: an input there would be deleted or replaced
OWN = (*PARTS, ATTRIBUTES, MARKERS, TASKS, LOGS, TMP, PROGRESS, TIMING, RETAG, "run.json", "report.json", "report.html")


class TagRunError(ValueError):
    """A run that cannot start (e.g. OUT holds a different run); reported to the user, non-zero exit."""


class Stopped(SystemExit):  # no `except Exception` on the way stops it, as KeyboardInterrupt
    """A signal (SIGTERM: `kill`, `timeout`, a scheduler) while the run was tagging; report.json says so. Left
    uncaught, the process exits 128 + the signal's number, as a shell reports a process the signal killed."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.why = f"stopped by {signal.Signals(signum).name}"

    def __str__(self) -> str:
        return self.why


class Cluster(BaseModel):
    """Where the tasks run: ``local`` (this machine, `workers` processes), ``slurm`` (a job array: `partition`,
    `time`, `cpus_per_task`, `gpus_per_task`; `workers`, when given, caps how many array tasks run at once) or
    ``ray`` (the Ray cluster ``ray.init()`` finds; `cpus_per_task` may be a fraction)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # --cpus-per-task inf: refused, not int(inf)
    executor: Literal["local", "slurm", "ray"] = "local"
    partition: str | None = None
    time: str = "24:00:00"
    cpus_per_task: float = Field(1, gt=0)
    gpus_per_task: int = Field(0, ge=0)
    mem_per_cpu_gb: float = Field(2, gt=0)
    job_name: str = "condpt-tag"


def count_records(specs: list[InputSpec]) -> int:
    """About how many records the inputs hold, cheaply, for the progress bar's total: Parquet and datasets
    from their metadata, JSONL by counting line ends (blank lines count too: an estimate)."""
    import pyarrow.parquet as pq

    from condpt.corpus.read import _dataset_parts, _open_binary

    n = 0
    for spec in specs:
        if spec.format == "parquet":
            with open(spec.path, "rb") as f:
                n += pq.ParquetFile(f).metadata.num_rows
        elif spec.format == "datasets":
            n += sum(part.num_rows for part in _dataset_parts(spec))
        else:
            last = b"\n"
            with _open_binary(spec) as f:
                while block := f.read(1 << 22):
                    n += block.count(b"\n")
                    last = block[-1:]
            n += last != b"\n"
    return n


def _load_scorer(cascade: Cascade, cfg: TagConfig, scorer_given: bool) -> float:
    """Load the scorer before forking (its threshold); say so when a shipped default is trained first."""
    from condpt.tagging.expected import BUILT_IN, scorer_dir

    spec = cfg.classifier.spec
    first_use = not scorer_given and spec in BUILT_IN and scorer_dir(spec) is None
    if first_use:
        print(f"training the shipped {spec!r} classifier on first use (once: it is cached for later runs)...",
              file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    threshold = cascade.threshold  # loads (and, for the default, trains once) the scorer
    if first_use:
        print(f"trained {spec!r} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return threshold


def _meta(cascade: Cascade, cfg: TagConfig, scorer_given: bool) -> dict:
    """What report.json says about the classifier (`condpt.tagging.report.build_report`'s `meta`)."""
    from condpt.tagging.expected import scorer_meta

    on = cascade.classifier_enabled
    name = getattr(cascade.scorer, "name", type(cascade.scorer).__name__) if on else None
    own = getattr(cascade.scorer, "threshold", None) if on else None
    source = "config" if cfg.threshold is not None else "scorer" if own is not None else "default 0.5"
    return {"classifier": {"spec": "python object" if scorer_given else cfg.classifier.spec, "name": name,
                           "threshold_from": source},
            "scorer": scorer_meta(cfg, scorer_given)}


def tag_corpus(inputs: list[str | Path], out_dir: str | Path, cfg: TagConfig | None = None, *,
               tasks: int | None = None, workers: int = 1, cluster: Cluster | None = None, scorer: Any = None,
               refiner: Any = None, autorater: Any = None, progress: bool = True, attributes: bool = False) -> dict:
    """Tag `inputs` into `out_dir` (see module docstring); returns the report (also in report.json).

    `tasks`: how the input is split (default: `workers`; keep it when re-running into the same OUT). `workers`:
    tasks run at once. `cluster`: the executor (default local). `attributes`: also write ``attributes/``
    (id + decision, no text). `scorer`, `refiner`, `autorater`: objects with ``score(texts)`` replacing what the
    config names (picklable by dill when ``workers > 1``). A tagged fraction far from what the scorer's
    cross-validation predicts is warned about on stderr (`condpt.tagging.expected`).

    With ``executor: slurm`` the job array is submitted and the report says ``complete: false``; run the same
    command again once the jobs are done: it checks the tasks and writes the final report."""
    from condpt.tagging.expected import warning
    from condpt.tagging.report import write_report

    started = time.perf_counter()
    cfg = cfg or TagConfig()
    cluster = cluster or Cluster()
    if workers < 1:
        raise TagRunError(f"--workers {workers}: must be at least 1")
    if cluster.executor == "local" and (why := local_workers_error(workers)):
        raise TagRunError(why)
    tasks = workers if tasks is None else tasks
    if tasks < 1:
        raise TagRunError(f"--tasks {tasks}: must be at least 1")
    if cluster.executor == "slurm" and not cluster.partition:
        raise TagRunError("--executor slurm needs --partition")
    if cluster.executor == "ray":
        _ray()  # before OUT is touched: a run that cannot start must leave no report behind
    skipped: list[str] = []
    specs = expand_inputs(inputs, skipped)
    out = Path(out_dir)
    if why := _overlap(inputs, specs, out):
        raise TagRunError(why)
    check_inputs(specs, fields_of(cfg))  # a bad input found half way would leave half a run behind
    if (out / RETAG).exists():
        raise TagRunError(f"{shown(out)}: a `condpt retag` was interrupted; run `condpt retag {shown(out)} "
                          "--threshold T` again to finish it first")
    run_file = _run_file(out, specs, cfg, tasks, attributes)
    scorers = {"scorer": scorer, "refiner": refiner, "autorater": autorater}
    imported = set(sys.modules)
    cascade = Cascade(cfg, **scorers)
    threshold = _load_scorer(cascade, cfg, scorer is not None)
    _ = cascade.lexicon, cascade.refiner  # loaded lazily, a bad one failed in the first task: OUT half written
    threads = _threads(cluster, workers)
    if cluster.executor == "local" and min(workers, tasks) > 1:
        given = {type(v).__module__ for v in scorers.values() if v is not None} - {"__main__"}
        warm = {"config": cfg.model_dump(mode="json")} if all(v is None for v in scorers.values()) else None
        start_forkserver(threads, set(sys.modules) - imported | given, warm)  # workers fork warm (pool.py)
    if all(v is None for v in scorers.values()):
        share_cascade(cascade)  # tasks run in this process (workers=1) reuse the loaded scorer
    meta = _meta(cascade, cfg, scorer is not None)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / TMP / "main"
    shutil.rmtree(tmp, ignore_errors=True)
    if run_file is not None:
        write_text_atomic(run_file, out / "run.json", tmp)
    write_report(out, tmp_dir=tmp, skipped=skipped, meta=meta)  # from here on a report says how far the run got
    executor = _executor(cluster, _pipeline(specs, out, cfg, threshold, attributes, scorers, threads), tasks,
                         workers, out)
    shutil.rmtree(out / PROGRESS, ignore_errors=True)
    try:
        with _sigterm_stops():
            done_before = _check_finished_tasks(out, specs, cfg, tasks, executor, tmp)
            redo = [r for r in range(tasks) if r not in done_before]
            with _ProgressBar(out, specs, done_before, enabled=progress and cluster.executor != "slurm"):
                _run_quietly(executor)
    except BaseException as e:
        _report_failure(out, tmp, e, skipped, meta)
        raise
    finished = [r for r in range(tasks) if executor.is_rank_completed(r)]
    chunks_total = _chunks_total(out, tasks) if len(finished) == tasks else None
    documents = sum(_task_read(out, r, tasks) for r in redo if r in finished)
    if documents:  # a re-run that found everything done keeps the timing of the run that did the work
        timing = {"job": f"{cluster.executor} executor", "documents": documents,
                  "bytes": sum(_input_bytes(s) for s in specs) * len(redo) // tasks,
                  "seconds": round(time.perf_counter() - started, 3), "num_proc": min(workers, tasks),
                  "tasks": tasks}
        write_text_atomic(json.dumps(timing, indent=1), out / TIMING / "run.json", tmp)
    report = write_report(out, chunks_total=chunks_total, tmp_dir=tmp, skipped=skipped, meta=meta)
    if len(finished) == tasks:
        shutil.rmtree(out / TMP, ignore_errors=True)
        shutil.rmtree(out / PROGRESS, ignore_errors=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if report["complete"] and (line := warning(report["expected"], shown(out))):
        print(line, file=sys.stderr)
    return report


def _overlap(inputs: list[str | Path], specs: list[InputSpec], out: Path) -> str | None:
    """Why `out` and the inputs overlap, or None (links resolved). An OUT in an input directory is read as input
    by the next run (its data/ shards hold a text column); an input among the entries the run writes in OUT is
    deleted or replaced by the tasks (an input elsewhere in OUT, OUT/raw/, is left alone)."""
    where = out.resolve()
    for p in map(Path, inputs):
        if p.is_dir() and where.is_relative_to(p.resolve()):
            return (f"--out {shown(out)} is inside the input directory {shown(p)}: a re-run would read the output "
                    "as input; write it outside the input directories")
    own = [where / name for name in OWN]
    for spec in specs:
        if any(spec.path.resolve().is_relative_to(o) for o in own):
            return (f"{shown(spec.path)} is inside --out {shown(out)}, among the files the run rewrites; move the "
                    "input out or write to another --out")
    return None


def _threads(cluster: Cluster, workers: int) -> int | None:
    """The OpenMP / torch thread cap of each task's process (`CondptTagger`'s `threads`)."""
    # local: W processes share this machine's cores. Slurm: a task's affinity is the CPUs it was given (None: all
    # of them). Ray pins nothing, so a task would see the whole node: its own --cpus-per-task (at least 1).
    return {"local": local_threads(workers), "slurm": None,
            "ray": max(1, int(cluster.cpus_per_task))}[cluster.executor]


def _pipeline(specs: list[InputSpec], out: Path, cfg: TagConfig, threshold: float, attributes: bool,
              scorers: dict, threads: int | None) -> list:
    from condpt.tagging.datatrove_steps import CondptTagger

    return [ChunkReader(specs, cfg, out),
            # one classifier batch per step: the progress bar moves with each (256 documents of the default
            # scorer was minutes without a sign of life)
            CondptTagger(cfg, batch_size=cfg.classifier.batch_size, threads=threads,
                         **{k: v for k, v in scorers.items() if v is not None}),
            ChunkWriter(out, cfg, threshold, attributes)]


def _executor(cluster: Cluster, pipeline: list, tasks: int, workers: int, out: Path):
    """The datatrove executor `cluster` names, with OUT/logs as its logging_dir."""
    logs = str((out / LOGS).resolve())
    if cluster.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        activate = Path(sys.prefix) / "bin" / "activate"
        return SlurmPipelineExecutor(
            pipeline, tasks=tasks, time=cluster.time, partition=cluster.partition,
            cpus_per_task=max(1, round(cluster.cpus_per_task)), gpus_per_task=cluster.gpus_per_task,
            mem_per_cpu_gb=max(1, round(cluster.mem_per_cpu_gb)), workers=workers if workers > 1 else -1,
            job_name=cluster.job_name, logging_dir=logs, slurm_logs_folder=str((out / LOGS / "slurm").resolve()),
            venv_path=str(activate) if activate.exists() else None)
    if cluster.executor == "ray":
        from datatrove.executor.ray import RayPipelineExecutor

        _connect_ray()

        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, cpus_per_task=cluster.cpus_per_task,
                                   gpus_per_task=cluster.gpus_per_task, mem_per_cpu_gb=cluster.mem_per_cpu_gb,
                                   logging_dir=logs)
    return _LocalExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logs)


class _LocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor with two changes. Each task's log is kept in logs/logs/ and off the terminal
    (errors still show): `condpt tag` draws its own progress bar. And `run` starts no ``multiprocess.Manager``
    (datatrove's holds a queue of local ranks, used only to label logs): that server process, forked from the
    main one, outlived a SIGKILLed `condpt tag`, and its workers end with the main process (`_die_with_parent`)
    so that none goes on writing into OUT while a re-run writes the same files."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        from loguru import logger

        logger.disable("datatrove.executor.local")
        return super()._run_for_rank(rank, local_rank + 1, node_rank)  # local_rank > 0: errors only on stderr

    def run(self):
        import multiprocess
        from datatrove.utils.stats import PipelineStats

        ranks = self.get_incomplete_ranks(range(self.tasks))
        if not ranks:
            return PipelineStats()
        self.save_executor_as_json()
        if self.workers == 1:
            pipeline, stats = self.pipeline, []
            try:
                for rank in ranks:
                    self.pipeline = deepcopy(pipeline)  # each task starts from the steps as configured
                    stats.append(self._run_for_rank(rank))
            finally:
                self.pipeline = pipeline
        else:
            ctx = multiprocess.get_context(self.start_method)  # forkserver: the pipeline travels pickled by dill
            with ctx.Pool(min(self.workers, len(ranks)), initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
                stats = list(pool.imap_unordered(self._run_for_rank, ranks))
        stats = sum(stats, start=PipelineStats())
        with self.logging_dir.open("stats.json", "wt") as f:
            stats.save_to_disk(f)
        return stats


PR_SET_PDEATHSIG = 1


def _die_with_parent(main: int) -> None:
    """A pool worker's initializer: end when the main process `main` ends, even on SIGKILL (which never shuts the
    pool down). Linux: the kernel sends SIGKILL when the parent (the forkserver, which exits with the main
    process) goes (PR_SET_PDEATHSIG). Everywhere: a thread that polls the parent's pid."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent and pid_alive(main):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ray():
    """The `ray` module; Ray is not a condpt dependency (docs/tagging.md)."""
    try:
        import ray
    except ImportError:
        raise TagRunError("--executor ray needs Ray: pip install 'ray>=2.9' (not a condpt dependency)") from None
    return ray


def _connect_ray() -> None:
    """Join the Ray cluster (``RAY_ADDRESS``, else a local one)."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)


@contextlib.contextmanager
def _sigterm_stops():
    """While the tasks run, SIGTERM raises `Stopped` in the main thread, so the run ends as on Ctrl-C: the pool's
    workers are terminated before the main process exits (killed at once by the signal, it left them to finish
    their task and print BrokenPipeError tracebacks) and report.json says why. A handler the caller installed,
    or a run outside the main thread, is left as it is."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise Stopped(signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_quietly(executor) -> None:
    from loguru import logger

    logger.disable("datatrove.executor.local")
    try:
        executor.run()
    finally:
        logger.enable("datatrove.executor.local")


def _check_finished_tasks(out: Path, specs: list[InputSpec], cfg: TagConfig, tasks: int, executor,
                          tmp: Path) -> set[int]:
    """The tasks datatrove will skip, each checked against the input as it is now: one whose chain differs
    (its chunks were edited, added or removed) or whose record is missing loses its completion file and is
    redone. Reads the input once, only when some task is finished."""
    done = {r for r in range(tasks) if executor.is_rank_completed(r)}
    if not done:
        return done
    chains, total = task_chains(specs, cfg, tasks, done)
    for r in sorted(done):
        try:
            rec = json.loads(task_file(out, r).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rec = {}
        if rec.get("chain") != chains[r] or rec.get("tasks") != tasks:
            executor.logging_dir.rm(f"completions/{r:05d}")
            done.discard(r)
        elif rec.get("chunks_total") != total:  # the task's own chunks are as they were; the input's end moved
            write_text_atomic(json.dumps({**rec, "chunks_total": total}, sort_keys=True, indent=1),
                              task_file(out, r), tmp)
    return done


def _chunks_total(out: Path, tasks: int) -> int:
    totals = {json.loads(task_file(out, r).read_text(encoding="utf-8"))["chunks_total"] for r in range(tasks)}
    assert len(totals) == 1, totals
    return totals.pop()


def _task_read(out: Path, rank: int, tasks: int) -> int:
    """Records task `rank` read (from its chunks' markers)."""
    from condpt.tagging.report import read_marker

    n = 0
    for path in (out / MARKERS).glob("part-*.json"):
        if int(path.stem.split("-")[1]) % tasks == rank:
            n += read_marker(path)["read"]
    return n


def _input_bytes(spec: InputSpec) -> int:
    try:
        return spec.path.stat().st_size if spec.path.is_file() else 0
    except OSError:
        return 0


class _ProgressBar:
    """A tqdm bar on stderr in the main process while the executor runs: the running tasks write how many
    records they have done to OUT/.progress/ (`ChunkWriter`), finished tasks count from their markers."""

    def __init__(self, out: Path, specs: list[InputSpec], done: set[int], enabled: bool):
        self.out, self.specs, self.done, self.enabled = out, specs, done, enabled
        self._stop = threading.Event()

    def __enter__(self):
        if not self.enabled:
            return self
        from tqdm import tqdm

        tasks = json.loads((self.out / "run.json").read_text(encoding="utf-8"))["tasks"]
        self.base = sum(_task_read(self.out, r, tasks) for r in self.done)
        self.bar = tqdm(total=count_records(self.specs), unit="doc", desc="tag", file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1, initial=self.base)
        self._thread = threading.Thread(target=self._poll, name="progress", daemon=True)
        self._thread.start()
        return self

    def _now(self) -> int:
        n = self.base
        for path in (self.out / PROGRESS).glob("*"):
            try:
                n += int(path.read_text())
            except (OSError, ValueError):  # being replaced right now
                pass
        return n

    def _poll(self) -> None:
        while not self._stop.wait(0.25):
            self.bar.update(self._now() - self.bar.n)

    def __exit__(self, kind, *_):
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join()
        self.bar.update(self._now() - self.bar.n)
        if kind is None and self.bar.total != self.bar.n:  # the estimate counted blank lines
            self.bar.total = self.bar.n
            self.bar.refresh()
        self.bar.close()


def _run_file(out: Path, specs: list[InputSpec], cfg: TagConfig, tasks: int, attributes: bool) -> str | None:
    """The text of ``run.json`` to write, None when OUT already holds this run; another run is refused."""
    meta = {"format": FORMAT_VERSION, "inputs": [shown(s.path.resolve()) for s in specs],
            "config": cfg.model_dump(mode="json"), "tasks": tasks}
    if attributes:  # only then: a run without keeps the run.json it always had
        meta["attributes"] = True
    text = json.dumps(meta, sort_keys=True, indent=1)
    path = out / "run.json"
    if not path.exists():
        if (out / LOGS / "completions").is_dir() and any((out / LOGS / "completions").iterdir()):
            raise TagRunError(f"{shown(out)}: holds finished tasks but no run.json saying what made them; use a "
                              "new --out directory (or delete this one)")
        # run.json is written before any part: parts without it are someone else's, which the tasks would delete
        held = [d for d in (*PARTS, ATTRIBUTES, MARKERS, TASKS) if (out / d).is_dir() and any((out / d).iterdir())]
        if held:
            raise TagRunError(f"{shown(out)}: holds {held[0]}/ but no run.json saying what made it; use a new --out "
                              "directory (or delete this one)")
        return text
    from condpt.corpus.write import read_json_object

    theirs = read_json_object(path)  # not JSON, or not an object: an error naming it
    if theirs != json.loads(text):
        if {**theirs, "tasks": tasks} == json.loads(text):
            raise TagRunError(f"{shown(path)}: {shown(out)} was split into --tasks {theirs.get('tasks')}; re-run "
                              f"with --tasks {theirs.get('tasks')} (the split decides the output), or use a new "
                              "--out directory")
        raise TagRunError(f"{shown(path)}: {shown(out)} holds a run with other inputs or another config; "
                          "use a new --out directory (or delete this one)")
    return None


def _report_failure(out: Path, tmp: Path, e: BaseException, skipped: list[str], meta: dict) -> None:
    """Say in report.json that the run stopped and why (best effort: the failure may be the disk itself)."""
    from condpt.tagging.report import write_report

    if isinstance(e, KeyboardInterrupt) and not str(e):
        why = "interrupted (Ctrl-C)"
    else:
        why = str(e) if isinstance(e, Stopped) else f"{type(e).__name__}: {e}"
    try:
        write_report(out, tmp_dir=tmp, error=shown(why), skipped=skipped, meta=meta)
    except Exception as again:  # noqa: BLE001 (the original error is what the user must see)
        print(f"warning: could not write {shown(out / 'report.json')}: {shown(again)}", file=sys.stderr)
