"""`static-default` end to end through `condpt tag`, beside the bare fastText JSONL → Parquet reference, in one run
(issue 13: >= 500 five-KB documents per CPU-second per core; docs/benchmarks.md).

Each run a fresh subprocess; CPU seconds (user + system of the process tree) of the bare reference
(`bench_tag_e2e`'s job: ``json.loads`` → `fasttext-default` → Parquet) and of ``condpt tag`` with
``classifier: static-default``, on the first ``--docs`` Gutenberg documents and on the first 5 (start-up:
interpreter, imports, model and word table, report). Beyond start-up = the difference: what a corpus large
enough to make start-up negligible sees, per document. Interleaved ``--repeats`` times; the fewest CPU seconds
of each kept.

``--old DIR`` (repeatable): `condpt tag` again with ``PYTHONPATH=DIR`` (another checkout's ``condpt/``, e.g.
``git archive COMMIT condpt | tar -x -C DIR``), and its ``data/`` files checked byte-identical to this tree's:
a speed-up that changed a score or a tag fails here.

    .venv/bin/python benchmarks/bench_static_e2e.py [--docs 4985] [--granularity document] [--repeats 2] [--old DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gutenberg import GUTENBERG, REPO
from _tag_bench import REFERENCE
from bench_tag_workers import _timed


def _tag(inp: Path, out: Path, cfg: Path) -> list[str]:
    return [sys.executable, "-c", "from condpt.cli import main; main()", "tag", str(inp), "--out", str(out),
            "--config", str(cfg), "--quiet"]


def _data(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "data").glob("*.parquet"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=4985)
    ap.add_argument("--granularity", default="document", choices=["document", "paragraph"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--old", type=Path, action="append", default=[])
    args = ap.parse_args()
    if not GUTENBERG.exists():
        sys.exit(f"{GUTENBERG} not found (the shared data directory sits beside the repository)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with GUTENBERG.open("rb") as f:
            lines = [line for _, line in zip(range(args.docs), f)]
        inp, warm = tmp / "docs.jsonl", tmp / "warm.jsonl"
        inp.write_bytes(b"".join(lines))
        warm.write_bytes(b"".join(lines[:5]))
        kb = sum(len(json.loads(line)["text"].encode()) for line in lines) / len(lines) / 1e3
        cfg = tmp / "tag.yaml"
        cfg.write_text(f"granularity: {args.granularity}\nclassifier: {{spec: static-default}}\n")
        trees = {"": REPO, **{f" ({d.name})": d.resolve() for d in args.old}}

        def ref(src: Path, k: str, _root: Path = REPO):
            return _timed([[sys.executable, "-c", REFERENCE, str(src), str(tmp / f"ref-{k}.parquet"),
                            "fasttext-default", "-"]])

        def tag(src: Path, k: str, root: Path):
            return _timed([_tag(src, tmp / f"out-{k}", cfg)], root)

        runs = {"bare fastText reference (JSONL → Parquet)": (ref, REPO),
                **{f"condpt tag, static-default, {args.granularity}{label}": (tag, root)
                   for label, root in trees.items()}}
        for i, (run, root) in enumerate(runs.values()):  # trains / caches the shipped scorers, not counted
            run(warm, f"warm{i}", root)
        best = {name: [float("inf"), float("inf")] for name in runs}
        for r in range(args.repeats):
            for i, (name, (run, root)) in enumerate(runs.items()):
                c0 = sum(run(warm, f"{i}-0-{r}", root)[1].values())
                c1 = sum(run(inp, f"{i}-1-{r}", root)[1].values())
                best[name] = [min(best[name][0], c0), min(best[name][1], c1)]
        mine = _data(tmp / "out-1-1-0")
        for i in range(2, len(runs)):
            assert _data(tmp / f"out-{i}-1-0") == mine, f"{list(runs)[i]}: data/ differs from this tree's"
        print(f"{len(lines)} Gutenberg documents ({kb:.1f} KB/doc); load average {os.getloadavg()[0]:.1f}"
              f"{'; data/ files byte-identical across trees' if args.old else ''}\n")
        print("| run | start-up CPU s (5 docs) | CPU s | docs per CPU-s beyond start-up | ÷ bare fastText |")
        print("|---|---:|---:|---:|---:|")
        base = None
        for name, (c0, c1) in best.items():
            rate = (len(lines) - 5) / max(c1 - c0, 1e-9)
            base = base or rate
            print(f"| {name} | {c0:.2f} | {c1:.2f} | {rate:.0f} | {rate / base:.3f} |", flush=True)


if __name__ == "__main__":
    main()
