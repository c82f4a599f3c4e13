"""End-to-end `condpt tag` throughput, JSONL → Parquet, beside a bare fastText reference (docs/benchmarks.md).

Every figure comes from one run of this script, side by side, each a fresh subprocess timed by wall clock
(interpreter start-up, imports, model load, Parquet writes and, for `condpt tag`, the report included):

- ``reference``: the bare job in one process: read the JSONL with ``json.loads``, score the documents with the
  same shipped ``fasttext-default`` model (`FastTextScorer.score`: normalise + predict, 256 at a time), write
  id, text and score to one Parquet file. No ids checked, nothing quarantined, no segments, no report.
- ``reference + condpt lexicon``: the same, plus condpt's lexicon prefilter (`Lexicon.find` on every text, as
  the cascade runs it): what the tag's work costs without condpt's engine (reader, chunks, datatrove, report).
- ``condpt tag --workers 1``: the same model at ``granularity: document`` (one segment per document), through
  datatrove's LocalPipelineExecutor (one task, in-process).
- ``condpt tag --tasks 2 --workers 2``: two tasks in two worker processes.

Ratios: tag ÷ reference (target ≥ 0.8) and 2 workers ÷ 1 worker (target ≥ 1.7 on 2 idle cores). With
``--repeats R`` each is run R times, interleaved; the fastest wall clock and, separately, the fewest CPU seconds
of each are used. A warm-up run first trains/caches the shipped scorer so that one-off cost is not counted.
``--copies K`` repeats the corpus K times (each copy's ids suffixed ``-k``), so that start-up weighs less. CPU
seconds (user + system of the process and every process under it) are printed beside the wall clock: on a
loaded machine they show what the work costs when wall-clock ratios cannot. The reference and ``condpt tag``
are also run on the first 5 documents (``start-up``: interpreter, imports, model load, report), and the ratio
of the CPU seconds beyond start-up is printed: what a corpus large enough to make start-up negligible gets.

    .venv/bin/python benchmarks/bench_tag_e2e.py [--limit-mb 28] [--copies 3] [--repeats 2]
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

from _gutenberg import REPO
from _tag_bench import REFERENCE, add_input_args, tag_command, write_input

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "PYTHONPATH": str(REPO)}

def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the subprocess and every process under it: worker pools too, sampled
    every 0.1 s, each process's last reading kept)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL)
    root, cpu = psutil.Process(proc.pid), {}
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            try:
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, sum(cpu.values())


def _tag(inp: Path, out: Path, cfg: Path, classifier: str, tasks: int, workers: int) -> tuple[float, float]:
    return _timed(tag_command(inp, out, cfg, classifier, tasks, workers))


def _reference(inp: Path, out: Path, classifier: str, lexicon: bool = False) -> tuple[float, float]:
    return _timed([sys.executable, "-c", REFERENCE, str(inp), str(out), classifier, "lexicon" if lexicon else "-"])


def main() -> None:
    ap = argparse.ArgumentParser()
    add_input_args(ap, copies=1, repeats=1)
    ap.add_argument("--limit-mb", type=float, default=1e9, help="MB of JSONL per copy")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inp, warm, cfg, docs, size = write_input(tmp, args, args.limit_mb)
        print(f"input: {docs} documents, {size / 1e6:.1f} MB JSONL; granularity document; classifier "
              f"{args.classifier}; load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
        _tag(warm, tmp / "warm", cfg, args.classifier, 1, 1)
        runs = {"reference, start-up (5 documents)": lambda k: _reference(warm, tmp / f"ref0-{k}.parquet",
                                                                            args.classifier),
                "condpt tag, start-up (5 documents)": lambda k: _tag(warm, tmp / f"w0-{k}", cfg, args.classifier,
                                                                     1, 1),
                "reference (bare fastText, 1 process)": lambda k: _reference(inp, tmp / f"ref-{k}.parquet",
                                                                               args.classifier),
                "reference + condpt lexicon (1 process)": lambda k: _reference(inp, tmp / f"lex-{k}.parquet",
                                                                                 args.classifier, lexicon=True),
                "condpt tag --workers 1": lambda k: _tag(inp, tmp / f"w1-{k}", cfg, args.classifier, 1, 1),
                "condpt tag --tasks 2 --workers 2": lambda k: _tag(inp, tmp / f"w2-{k}", cfg, args.classifier, 2, 2)}
        best = {name: (float("inf"), float("inf")) for name in runs}
        for k in range(args.repeats):
            for name, run in runs.items():
                wall, cpu = run(k)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        for out in (tmp / "w1-0", tmp / "w2-0"):
            assert json.loads((out / "report.json").read_text())["read"] == docs
        print("| run | wall s | CPU s | MB/s | docs/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, (secs, cpu) in best.items():
            rate = "| — | — |" if "start-up" in name else f"| {size / 1e6 / secs:.2f} | {docs / secs:.0f} |"
            print(f"| {name} | {secs:.1f} | {cpu:.1f} {rate}")
        (_, ref0_cpu), (_, one0_cpu), (ref, ref_cpu), (lex, lex_cpu), (one, one_cpu), (two, two_cpu) = best.values()
        print(f"condpt tag --workers 1 / reference: {ref / one:.2f}x wall, {ref_cpu / one_cpu:.2f}x CPU "
              "(target >= 0.8)")
        print(f"condpt tag --workers 1 / reference + lexicon: {lex / one:.2f}x wall, {lex_cpu / one_cpu:.2f}x CPU")
        print(f"beyond start-up (CPU s minus the 5-document run's): reference {ref_cpu - ref0_cpu:.1f}, condpt tag "
              f"{one_cpu - one0_cpu:.1f}: {(ref_cpu - ref0_cpu) / (one_cpu - one0_cpu):.2f}x")
        print(f"--workers 2 / --workers 1: {one / two:.2f}x wall (target >= 1.7 on 2 idle cores); CPU "
              f"{two_cpu:.1f} s vs {one_cpu:.1f} s")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
