"""Throughput of `encode_untrusted` against a plain batched tokenizer call, on real Gutenberg text.

    .venv/bin/python benchmarks/bench_encode_untrusted.py [--docs 2000] [--repeats 7] [--tokenizer gpt2|sentencepiece]

Both sides encode the same documents with the same tokenizer (control tokens added); runs are interleaved and
repeated, and the ratio of medians is reported (goal: >= 0.9x the plain call's throughput), both in wall time and
in process CPU time. On a shared machine run it with TOKENIZERS_PARALLELISM=false: encoding is then one thread of
this process and the CPU-time ratio is insensitive to other load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "gutenberg-corpus.jsonl"


def load_docs(n: int) -> list[str]:
    if not DATA.exists():
        raise SystemExit(f"{DATA} not found: this benchmark reads real text from ../shared/data")
    with DATA.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for _, line in zip(range(n), f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--tokenizer", choices=["gpt2", "sentencepiece"], default="gpt2")
    args = ap.parse_args()

    from condpt.tiny import gpt2_tokenizer, train_sentencepiece_tokenizer
    from tokenizer_ext import add_control_tokens, encode_untrusted

    docs = load_docs(args.docs)
    tok = gpt2_tokenizer() if args.tokenizer == "gpt2" else train_sentencepiece_tokenizer(docs[:300], 8000)
    add_control_tokens(tok)
    n_chars = sum(map(len, docs))

    def plain():
        return tok(docs)["input_ids"]

    def untrusted():
        return encode_untrusted(tok, docs)

    encode_untrusted(tok, docs[:10])  # build the private backend copy once, as a pipeline would
    times = {"plain": [], "untrusted": []}
    cpu = {"plain": [], "untrusted": []}
    n_tokens = 0
    order = [("plain", plain), ("untrusted", untrusted)]
    for rep in range(args.repeats):
        for name, fn in order if rep % 2 == 0 else order[::-1]:  # alternate who goes first
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            n_tokens = sum(map(len, out))
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    result = {
        "tokenizer": args.tokenizer,
        "docs": len(docs),
        "chars": n_chars,
        "tokens": n_tokens,
        "plain_MB_per_s": round(n_chars / med["plain"] / 1e6, 2),
        "untrusted_MB_per_s": round(n_chars / med["untrusted"] / 1e6, 2),
        "throughput_ratio_wall": round(med["plain"] / med["untrusted"], 3),
        "throughput_ratio_cpu": round(med_cpu["plain"] / med_cpu["untrusted"], 3),
        "plain_cpu_MB_per_s": round(n_chars / med_cpu["plain"] / 1e6, 2),
        "untrusted_cpu_MB_per_s": round(n_chars / med_cpu["untrusted"] / 1e6, 2),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset)"),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
