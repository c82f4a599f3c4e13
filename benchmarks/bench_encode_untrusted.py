"""Throughput of `encode_untrusted` against a plain batched tokenizer call, on real Gutenberg text.

    .venv/bin/python benchmarks/bench_encode_untrusted.py [--docs 2000] [--repeats 7] [--tokenizer gpt2|sentencepiece]

Both sides encode the same documents with the same tokenizer (control tokens added); runs are interleaved and
repeated, and the ratio of medians is reported (goal: >= 0.9x the plain call's throughput).
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
    n_tokens = 0
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("untrusted", untrusted)):
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            n_tokens = sum(map(len, out))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "tokenizer": args.tokenizer,
        "docs": len(docs),
        "chars": n_chars,
        "tokens": n_tokens,
        "plain_MB_per_s": round(n_chars / med["plain"] / 1e6, 2),
        "untrusted_MB_per_s": round(n_chars / med["untrusted"] / 1e6, 2),
        "throughput_ratio": round(med["plain"] / med["untrusted"], 3),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset)"),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
