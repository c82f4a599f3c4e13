"""The forkserver `condpt tag`'s local worker pool forks from, started early and warm (issue 10).

datatrove's `LocalPipelineExecutor` starts its workers with forkserver (forking a process that holds an fsspec
event-loop thread, tqdm's monitor and a progress thread is not safe): a fresh interpreter that, left to
itself, imports nothing, so every worker imported condpt's pipeline (datatrove and huggingface_hub, pyarrow, and
pandas, which pyarrow imports on its first array) and the scorer's libraries itself: ~1 CPU-second each before
its first document, on top of the main process's own start-up (measured: docs/benchmarks.md). Here the server
imports them once and workers fork with them imported. Started as soon as the run's shape is known (`condpt
tag` does it before its own imports), the server's imports run beside the main process's instead of after it.
Last, the server loads the run's cascade (`condpt.tagging.warm`): workers inherit the scorer, lexicons and word
tables instead of each loading them.

The server runs no Python thread; the one native thread its imports start (pyarrow's jemalloc background
thread) is handled by jemalloc's own fork handlers, as in `datasets`' fork-based worker pools. This module
imports nothing heavy: the CLI calls it first.
"""

from __future__ import annotations

import contextlib
import json
import os

PIPELINE = ("condpt.tagging.run", "pandas")  # what every worker needs: the executor, the steps, pyarrow, pandas
WARM = "condpt.tagging.warm"  # imported last: loads the run's cascade, then freezes the server's heap
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def local_threads(workers: int) -> int:
    """A local worker's share of this machine's cores (its OpenMP / torch thread cap): W workers x threads <= C."""
    return max(1, _cores() // workers)


PROCESSES_PER_CORE = 4  # room for scorers that wait (an autorater's API calls) and for 2-worker runs on 1 core


def local_workers_error(workers: int) -> str | None:
    """Why `workers` local processes cannot be started, or None. Each local worker is a process (and `--tasks`
    defaults to `--workers`): far more than the cores only compete for them, and an absurd count (100,000)
    started processes until the machine gave out."""
    cores = _cores()
    if workers <= PROCESSES_PER_CORE * cores:
        return None
    return (f"--workers {workers}: this machine has {cores} CPU cores and each local worker is a process; give at "
            f"most {PROCESSES_PER_CORE * cores} ({PROCESSES_PER_CORE} per core; --tasks N splits the input finer "
            "without more processes)")


def start_forkserver(threads: int, modules: set[str] = frozenset(), warm: dict | None = None) -> None:
    """Start the forkserver now (if it is not running yet) with `PIPELINE` and `modules` imported in it: for a
    module of a package, the package (condpt's own modules by full name). The server inherits this process's
    environment, and a worker's thread cap (`condpt.tagging.datatrove_steps.limit_threads`, `threads`) is set in
    it before it imports numpy or torch, which read it then. `warm`: the run's cascade, which the server loads
    last, for the workers to inherit (`condpt.tagging.warm`: ``{"options": ...}`` as `condpt tag` takes them, or
    ``{"config": ...}``).

    Fails soft: a module the server cannot import, or a cascade it cannot load, is loaded by each worker, as
    without a preload. A server already running (an earlier run in this process, or `condpt tag` before its
    imports) keeps what it preloaded then; each worker loads the rest."""
    from multiprocess import forkserver

    from condpt.tagging.warm import WARM_VAR

    packages = {name.partition(".")[0] for name in modules} | {n for n in modules if n.startswith("condpt.")}
    extra = sorted(n for n in packages - set(PIPELINE) if n.replace(".", "_").isidentifier())
    forkserver.set_forkserver_preload([*PIPELINE, *extra, WARM])
    env = ({var: str(threads) for var in THREAD_VARS} | {"TOKENIZERS_PARALLELISM": "false"}
           | {WARM_VAR: json.dumps(warm or {})})
    saved = {var: os.environ.get(var) for var in env}
    os.environ.update(env)
    try:
        with _sigint_ignored():
            forkserver.ensure_running()
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored while the server is spawned: it inherits that, so Ctrl-C (sent to the whole process group)
    cannot interrupt its preloading imports with a KeyboardInterrupt traceback (it ignores SIGINT itself only once
    they are done), and its workers inherit it too: the main process stops the run and terminates the pool."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
