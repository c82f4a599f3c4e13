"""Scorer throughput, JSONL → Parquet, side by side with a bare fastText pipeline in the same run.

Each pipeline reads the first ``--docs`` Gutenberg documents (≈ 5.5 KB each) as JSONL lines, parses them,
scores every document and writes ``id, score`` to Parquet (pyarrow), in one process on one core:

- ``bare fastText``: ``json.loads`` → ``normalize`` → ``model.predict`` → Parquet (the floor NeMo Curator-style
  fastText classifiers are measured against);
- ``<spec>``: the same loop with ``load_scorer(spec).score`` (e.g. ``static-default``, ``fasttext-default``,
  ``default``).

Runs are interleaved and repeated and the best of each is kept; besides wall-clock docs/s it reports docs
per CPU-second of this process (``time.process_time``: what "per core" means, far less sensitive to other jobs
on the machine) and the ratio to the bare fastText pipeline measured in the same run. `condpt tag` end to end
(segmentation, lexicon, report) is ``benchmarks/bench_tag_e2e.py``.

    taskset -c 0 .venv/bin/python benchmarks/bench_scorer_speed.py [--specs static-default fasttext-default]
        [--docs 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def pipeline(lines: list[bytes], score, out: Path, batch: int = 256) -> None:
    """JSONL lines → scores → Parquet (id, score), in batches as a tagger would."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for i in range(0, len(lines), batch):
        rows = [json.loads(line) for line in lines[i:i + batch]]
        scores = score([r["text"] for r in rows])
        table = pa.table({"id": [r["id"] for r in rows], "score": pa.array(scores, type=pa.float32())})
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()


def main() -> None:
    from _gutenberg import GUTENBERG

    from condpt.tagging.classifiers import load_scorer
    from condpt.tagging.classifiers.fasttext import normalize

    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", nargs="+", default=["static-default", "fasttext-default"])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not GUTENBERG.exists():
        sys.exit(f"{GUTENBERG} not found (the benchmarks read ../shared/data beside the repository)")
    with GUTENBERG.open("rb") as f:
        lines = [line for _, line in zip(range(args.docs), f)]
    mb = sum(len(json.loads(line)["text"].encode()) for line in lines) / 1e6
    ft = load_scorer("fasttext-default")

    def bare(texts):
        labels, probs = ft.model.predict([normalize(t) for t in texts], k=-1)
        return [float(p[list(lab).index("__label__1")]) for lab, p in zip(labels, probs)]

    runs = {"bare fastText": bare}
    for spec in args.specs:
        scorer = load_scorer(spec)
        scorer.score([json.loads(line)["text"] for line in lines[:200]])  # warm: caches, first-use builds
        runs[spec] = scorer.score
    best = {k: float("inf") for k in runs}
    best_cpu = {k: float("inf") for k in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, score in runs.items():
                w, c = time.perf_counter(), time.process_time()
                pipeline(lines, score, Path(tmp) / "out.parquet")
                best[name] = min(best[name], time.perf_counter() - w)
                best_cpu[name] = min(best_cpu[name], time.process_time() - c)
    print(f"{len(lines)} Gutenberg documents, {mb:.1f} MB ({mb * 1e3 / len(lines):.1f} KB/doc); best of "
          f"{args.repeats}\n")
    print("| pipeline (JSONL → Parquet) | docs/s (wall) | docs per CPU-second | MB per CPU-second | "
          "÷ bare fastText (CPU) |")
    print("|---|---|---|---|---|")
    base = len(lines) / best_cpu["bare fastText"]
    for name in runs:
        per_cpu = len(lines) / best_cpu[name]
        print(f"| {name} | {len(lines) / best[name]:.0f} | {per_cpu:.0f} | {mb / best_cpu[name]:.2f} | "
              f"{per_cpu / base:.2f} |")


if __name__ == "__main__":
    main()
