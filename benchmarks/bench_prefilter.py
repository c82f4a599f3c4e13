"""Lexicon prefilter throughput vs the raw Aho-Corasick engine on the same text (docs/benchmarks.md).

One core, the shipped lexicon, ``../shared/data/gutenberg-corpus.jsonl``. Measured in one process, the
variants interleaved and repeated; the ratio is what to quote (the machine is shared):

- ``raw``: ``automaton.find_matches_as_indexes(text, overlapping=True)`` — the engine alone (ahocorasick-rs's
  DFA), every raw match, no word boundaries;
- ``find``: `Lexicon.find` (every word-bounded match, term indices);
- ``any_hit``: `Lexicon.any_hit` (whether there is a word-bounded match: the gate).

    .venv/bin/python benchmarks/bench_prefilter.py [--repeats 5] [--limit-mb 27]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks._gutenberg import gutenberg_texts


def main() -> None:
    from condpt.tagging.lexicon import Lexicon

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--limit-mb", type=float, default=1e9)
    args = ap.parse_args()
    texts = gutenberg_texts(max_mb=args.limit_mb)
    lex = Lexicon.load()
    auto = lex.automaton

    def raw():
        for t in texts:
            auto.find_matches_as_indexes(t, overlapping=True)

    def find():
        for t in texts:
            lex.find(t)

    def any_hit():
        for t in texts:
            lex.any_hit(t)

    variants = {"raw": raw, "find": find, "any_hit": any_hit}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    med = {k: statistics.median(v) for k, v in times.items()}
    hits = sum(bool(lex.find(t)) for t in texts)
    print(f"{len(texts)} documents, {mb:.1f} MB, {len(lex.terms)} terms; {hits} documents with a hit")
    for name in variants:
        print(f"{name:9s} {mb / med[name]:8.1f} MB/s  (median of {args.repeats})")
    print(f"find    / raw: {med['raw'] / med['find']:.2f}x")
    print(f"any_hit / raw: {med['raw'] / med['any_hit']:.2f}x")


if __name__ == "__main__":
    main()
