"""Embedding-scorer throughput (the default scorer) on real documents, one process.

Scores Gutenberg documents (2–8 KB) with the shipped default (MiniLM windows of ≤ 64 words, max-pooled)
and reports docs/s, MB/s and windows/s, with ``torch`` limited to ``--threads`` threads.

    .venv/bin/python benchmarks/bench_embedding.py [--docs 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks._gutenberg import gutenberg_texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from condpt.tagging.classifiers import load_scorer
    from condpt.tagging.classifiers.embedding import CACHE, windows

    texts = gutenberg_texts(max_docs=args.docs)
    scorer = load_scorer(None)
    scorer.score(["warm-up text"])
    mb = sum(len(t.encode()) for t in texts) / 1e6
    n_win = sum(len(windows(t)) for t in texts)
    CACHE.items.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    scorer.score(texts)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    sum(range(10**7))
    loop = time.perf_counter() - t0
    print(f"{len(texts)} docs, {mb:.2f} MB, {n_win} windows, torch threads {args.threads}; "
          f"CPU load check: sum(range(1e7)) took {loop:.2f} s (≈0.2 s on an idle core)")
    print(f"| scorer | docs/s (wall) | docs per CPU-second | MB per CPU-second | windows per CPU-second |\n"
          f"|---|---|---|---|---|\n| default (embedding) | {len(texts) / sec:.1f} | {len(texts) / cpu:.1f} | "
          f"{mb / cpu:.3f} | {n_win / cpu:.0f} |")


if __name__ == "__main__":
    main()
