"""`condpt tag --workers 2` vs `--workers 1` on the local executor, beside a bare fastText reference in one and in
two processes (docs/benchmarks.md, issue 10: 2 workers >= 1.7x one worker on 2 idle cores).

Every figure comes from one run of this script, each a fresh subprocess timed by wall clock (interpreter
start-up, imports, model load, Parquet writes and, for `condpt tag`, the report included), interleaved and
repeated (``--repeats``; the fastest wall clock and, separately, the fewest CPU seconds of each kept):

- ``reference, 1 process``: `bench_tag_e2e`'s bare job (``json.loads`` → the same ``fasttext-default``
  `FastTextScorer.score`, 256 at a time → one Parquet file) on the whole input.
- ``reference, 2 processes``: the same job twice at once, each on half of the input (the same split as
  ``--tasks 2``: blocks of ``rows_per_shard`` records, alternately); timed until both end. Its speedup over
  one process is what these two cores give a job with no engine at all: the bound to judge condpt's by.
- ``condpt tag --tasks T --workers W``: T = 1, W = 1; T = 2, W = 1 (two tasks one after the other: the same
  output as two workers, so their ratio is the workers' alone); T = 2, W = 2.
- ``start-up``: the reference and the two-task runs on the first 5 documents; subtracted from the full runs
  they give the per-document part, what a corpus large enough to make start-up negligible sees.
- ``--old DIR`` (repeatable): the `condpt tag` runs again with ``PYTHONPATH=DIR`` (another checkout's
  ``condpt/``, e.g. ``git archive HEAD~3 condpt | tar -x -C DIR``), to measure a change in the same run.

CPU seconds (user + system of the process and every process under it, sampled every 0.05 s) are split into the
main process, the forkserver and the pool's workers: each worker's share beyond its half of the one-worker work
is its start-up. The two-task outputs are checked to be the same files with one worker and with two.

    .venv/bin/python benchmarks/bench_tag_workers.py [--copies 6] [--repeats 3] [--budget-s 420] [--old DIR]

``--budget-s``: no repeat starts once this many seconds have passed (the first always runs whole).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gutenberg import REPO
from _tag_bench import REFERENCE, add_input_args, tag_command, write_input

BASE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _timed(cmds: list[list[str]], pythonpath: Path = REPO) -> tuple[float, dict[str, float]]:
    """Run `cmds` at once; (wall seconds until all end, CPU seconds by role: main, forkserver, workers, other).
    Each process's last reading is kept."""
    import psutil

    env = {**BASE_ENV, "PYTHONPATH": str(pythonpath)}
    t0 = time.perf_counter()
    # run in `pythonpath`: ``python -c`` puts the working directory before PYTHONPATH on sys.path
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, cwd=pythonpath) for cmd in cmds]
    roots = {p.pid for p in procs}
    cpu: dict[int, tuple[str, float]] = {}
    while any(p.poll() is None for p in procs):
        for proc in procs:
            try:
                root = psutil.Process(proc.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in tree:
                try:
                    t = p.cpu_times()
                    role = cpu[p.pid][0] if p.pid in cpu else _role(p, roots)
                    cpu[p.pid] = (role, t.user + t.system)
                except psutil.NoSuchProcess:
                    pass
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    for proc, cmd in zip(procs, cmds):
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, cmd)
    by_role = {"main": 0.0, "forkserver": 0.0, "workers": 0.0, "other": 0.0}
    for role, secs in cpu.values():
        by_role[role] += secs
    return wall, by_role


def _role(p, roots: set[int]) -> str:
    if p.pid in roots:
        return "main"
    line = " ".join(p.cmdline())
    if "forkserver import main" in line:  # the server, or a worker forked from it (same command line)
        return "forkserver" if p.ppid() in roots else "workers"
    if "resource_tracker" in line:
        return "other"
    return "workers"


def _reference(inp: Path, out: Path, classifier: str) -> list[str]:
    return [sys.executable, "-c", REFERENCE, str(inp), str(out), classifier, "-"]


def _halves(inp: Path, rows: int, dst: tuple[Path, Path]) -> None:
    """Blocks of `rows` records, alternately into the two files (`--tasks 2`'s split at this chunk size)."""
    with inp.open("rb") as src, dst[0].open("wb") as a, dst[1].open("wb") as b:
        for i, line in enumerate(src):
            (a, b)[(i // rows) % 2].write(line)


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for sub in ("data", "set_aside", "quarantine", "markers")
            for p in sorted((out / sub).glob("*")) if p.is_file()}


def main() -> None:
    ap = argparse.ArgumentParser()
    add_input_args(ap, copies=6, repeats=3)
    ap.add_argument("--old", type=Path, action="append", default=[],
                    help="another checkout's root (holding condpt/) to time beside this one; repeatable")
    ap.add_argument("--budget-s", type=float, default=float("inf"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inp, warm, cfg, docs, size = write_input(tmp, args)
        halves = (tmp / "half0.jsonl", tmp / "half1.jsonl")
        _halves(inp, args.rows_per_shard, halves)
        print(f"input: {docs} documents, {size / 1e6:.1f} MB JSONL; granularity document; classifier "
              f"{args.classifier}; {os.cpu_count()} cores; load average before {os.getloadavg()[0]:.2f}")
        _timed([tag_command(warm, tmp / "warm", cfg, args.classifier, 1, 1)])  # trains/caches the shipped scorer once
        c = args.classifier
        runs = {
            "reference, start-up (5 documents)": lambda k: _timed([_reference(warm, tmp / f"r0-{k}.parquet", c)]),
            "reference, 1 process": lambda k: _timed([_reference(inp, tmp / f"r1-{k}.parquet", c)]),
            "reference, 2 processes": lambda k: _timed([_reference(h, tmp / f"r2-{k}-{i}.parquet", c)
                                                        for i, h in enumerate(halves)]),
        }
        trees = [("", REPO)] + [(f" ({d.name})", d.resolve()) for d in args.old]
        for label, root in trees:
            for tasks, workers, src, what in ((2, 1, warm, "start-up (5 documents)"),
                                              (2, 2, warm, "start-up (5 documents)"),
                                              (1, 1, inp, ""), (2, 1, inp, ""), (2, 2, inp, "")):
                name = f"condpt tag --tasks {tasks} --workers {workers}{label}" + (f", {what}" if what else "")
                tag = f"t{tasks}w{workers}{label.strip(' ()')}{'s' if what else ''}"
                runs[name] = (lambda k, src=src, tasks=tasks, workers=workers, tag=tag, root=root:
                              _timed([tag_command(src, tmp / f"{tag}-{k}", cfg, c, tasks, workers)], root))
        best: dict[str, tuple[float, dict[str, float]]] = {}
        started = time.perf_counter()
        for k in range(args.repeats):
            if k and time.perf_counter() - started > args.budget_s:
                print(f"{k} repeats (--budget-s {args.budget_s:.0f} reached)")
                break
            for name, run in runs.items():
                wall, cpu = run(k)
                if name not in best:
                    best[name] = (wall, cpu)
                else:
                    old_wall, old_cpu = best[name]
                    best[name] = (min(wall, old_wall), cpu if sum(cpu.values()) < sum(old_cpu.values()) else old_cpu)
        for label, _ in trees:
            tag = label.strip(" ()")
            assert _files(tmp / f"t2w1{tag}-0") == _files(tmp / f"t2w2{tag}-0"), "1 and 2 workers wrote different files"
            assert json.loads((tmp / f"t2w2{tag}-0" / "report.json").read_text())["read"] == docs
        print(f"load average after: {os.getloadavg()[0]:.2f}\n")
        print("| run | wall s | CPU s | main | forkserver | workers | docs/s (wall) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, (wall, cpu) in best.items():
            rate = "—" if "start-up" in name else f"{docs / wall:.0f}"
            print(f"| {name} | {wall:.2f} | {sum(cpu.values()):.2f} | {cpu['main']:.2f} | {cpu['forkserver']:.2f} | "
                  f"{cpu['workers']:.2f} | {rate} |")
        w = {name: wall for name, (wall, _) in best.items()}
        ref1, ref2, ref0 = w["reference, 1 process"], w["reference, 2 processes"], w["reference, start-up (5 documents)"]
        print(f"\nreference, 2 processes / 1 process: {ref1 / ref2:.2f}x wall (what these cores give a bare job); "
              f"beyond start-up {(ref1 - ref0) / (ref2 - ref0):.2f}x")
        for label, _ in trees:
            t11, t21, t22 = (w[f"condpt tag --tasks {t} --workers {n}{label}"] for t, n in ((1, 1), (2, 1), (2, 2)))
            s21, s22 = (w[f"condpt tag --tasks 2 --workers {n}{label}, start-up (5 documents)"] for n in (1, 2))
            print(f"condpt tag{label}: --workers 2 / --workers 1: {t21 / t22:.2f}x wall at --tasks 2, {t11 / t22:.2f}x "
                  f"against --tasks 1 (target >= 1.7); beyond start-up {(t21 - s21) / (t22 - s22):.2f}x; "
                  f"start-up {s21:.2f} s with 1 worker, {s22:.2f} s with 2; --tasks 1 --workers 1 / reference, "
                  f"1 process: {ref1 / t11:.2f}x wall")


if __name__ == "__main__":
    main()
