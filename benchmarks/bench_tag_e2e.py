"""End-to-end `condpt tag` throughput, JSONL → Parquet (docs/benchmarks.md).

Runs the real command line (``python -m``-style, in a subprocess, wall clock including start-up and the
report) on ``../shared/data/gutenberg-corpus.jsonl`` (or its first ``--limit-mb``), for each classifier and
process count asked, and prints MB/s and docs/s. A warm-up run first trains/caches the default scorers so
that one-off cost is not counted.

    .venv/bin/python benchmarks/bench_tag_e2e.py [--classifiers none fasttext-default] [--num-proc 1 2]
        [--granularity paragraph] [--limit-mb 27]
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

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "gutenberg-corpus.jsonl"


def _tag(inp: Path, out: Path, cfg: Path, classifier: str, num_proc: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", "from condpt.cli import main; main()", "tag", str(inp), "--out", str(out),
           "--config", str(cfg), "--classifier", classifier, "--num-proc", str(num_proc)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifiers", nargs="+", default=["none", "fasttext-default"])
    ap.add_argument("--num-proc", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--granularity", default="paragraph")
    ap.add_argument("--limit-mb", type=float, default=1e9)
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found (the shared data directory sits beside the repository)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inp = tmp / "gutenberg.jsonl"
        size = docs = 0
        with DATA.open("rb") as src, inp.open("wb") as dst:
            for line in src:
                dst.write(line)
                size += len(line)
                docs += 1
                if size >= args.limit_mb * 1e6:
                    break
        cfg = tmp / "tag.yaml"
        cfg.write_text(f"granularity: {args.granularity}\nrows_per_shard: 500\n")
        print(f"input: {docs} documents, {size / 1e6:.1f} MB JSONL; granularity {args.granularity}")
        for clf in args.classifiers:
            warm = tmp / "warm.jsonl"
            warm.write_bytes(b"".join(inp.open("rb").readlines()[:5]))
            _tag(warm, tmp / f"warm-{clf}", cfg, clf, 1)
            for n in args.num_proc:
                out = tmp / f"out-{clf}-{n}"
                secs = _tag(inp, out, cfg, clf, n)
                report = json.loads((out / "report.json").read_text())
                assert report["read"] == docs
                print(f"classifier {clf:17s} --num-proc {n}: {secs:7.1f} s  {size / 1e6 / secs:6.2f} MB/s  "
                      f"{docs / secs:7.1f} docs/s  (tagged fraction {report['tagged_fraction']:.4f})")


if __name__ == "__main__":
    main()
