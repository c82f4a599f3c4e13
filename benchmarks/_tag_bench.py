"""What the `condpt tag` throughput benchmarks share (bench_tag_e2e, bench_tag_workers; REFERENCE also
bench_static_e2e and bench_cascade): the bare fastText reference job, the `condpt tag` command line, the common
arguments and the input, the Gutenberg corpus `--copies` times over."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

from _gutenberg import GUTENBERG

# The bare job: argv = input JSONL, output Parquet, classifier spec, "lexicon" (also run the prefilter) or "-".
REFERENCE = '''
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
from condpt.tagging.classifiers import load_scorer

scorer = load_scorer(sys.argv[3])
lexicon = None
if sys.argv[4] == "lexicon":
    from condpt.tagging.lexicon import Lexicon
    lexicon = Lexicon.load()
ids, texts = [], []
with open(sys.argv[1], "rb") as f:
    for i, line in enumerate(f):
        rec = json.loads(line)
        ids.append(str(rec.get("id", i)))
        texts.append(rec["text"])
scores = []
for i in range(0, len(texts), 256):
    scores.extend(float(s) for s in scorer.score(texts[i: i + 256]))
    if lexicon is not None:
        hits = [lexicon.find(t) for t in texts[i: i + 256]]
pq.write_table(pa.table({"id": ids, "text": texts, "score": pa.array(scores, pa.float32())}), sys.argv[2],
               compression="zstd")
'''


def tag_command(inp: Path, out: Path, cfg: Path, classifier: str, tasks: int, workers: int) -> list[str]:
    return [sys.executable, "-c", "from condpt.cli import main; main()", "tag", str(inp), "--out", str(out),
            "--config", str(cfg), "--classifier", classifier, "--tasks", str(tasks), "--workers", str(workers),
            "--quiet"]


def add_input_args(ap: argparse.ArgumentParser, *, copies: int, repeats: int) -> None:
    ap.add_argument("--classifier", default="fasttext-default")
    ap.add_argument("--copies", type=int, default=copies)
    ap.add_argument("--limit-docs", type=int, default=10**9, help="documents per copy")
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--rows-per-shard", type=int, default=500)


class Input(NamedTuple):
    jsonl: Path  # the documents
    warm: Path  # their first 5 (start-up runs, and the warm-up that trains/caches the shipped scorer)
    config: Path  # the tag config: document granularity, --rows-per-shard
    docs: int
    size: int  # bytes of JSONL


def write_input(directory: Path, args: argparse.Namespace, limit_mb: float = math.inf) -> Input:
    """The input of `add_input_args`' arguments in `directory`: the first `--limit-docs` Gutenberg documents (up
    to `limit_mb` MB of JSONL, the one that crosses it included), `--copies` times over, each copy's ids
    suffixed ``-k``; exits with a clear message where the shared data directory is missing."""
    if not GUTENBERG.exists():
        sys.exit(f"{GUTENBERG} not found (the shared data directory sits beside the repository)")
    jsonl, warm, config = directory / "in.jsonl", directory / "warm.jsonl", directory / "tag.yaml"
    docs = size = 0
    with jsonl.open("wb") as dst:
        for copy in range(args.copies):
            written = 0
            with GUTENBERG.open("rb") as src:
                for line in itertools.islice(src, args.limit_docs):
                    rec = json.loads(line)
                    line = (json.dumps({"id": f"{rec['id']}-{copy}", "text": rec["text"]}) + "\n").encode()
                    dst.write(line)
                    written += len(line)
                    docs += 1
                    if written >= limit_mb * 1e6:
                        break
            size += written
    with jsonl.open("rb") as f:
        warm.write_bytes(b"".join(itertools.islice(f, 5)))
    config.write_text(f"granularity: document\nrows_per_shard: {args.rows_per_shard}\n")
    return Input(jsonl, warm, config, docs, size)
