"""The cascade as a product: ``static-default`` everywhere, the default (MiniLM) only on its uncertain band.

1. **Quality** (always). Both tiers are the shipped defaults (trained on ``condpt/tagging/data/``). Every text of
   ``misalignment-dev`` and ``misalignment-train2`` (out of source), ``--gutenberg N`` neutral ≈ 5 KB Project
   Gutenberg documents (every ``len // N``-th) and ``--world N`` prophecy-world AI stories (seed 1) is scored by
   both tiers; for each ``--bands lo,hi`` the cascade's document score is the default's where the static score lies
   in [lo, hi] and the static score elsewhere (what ``condpt tag`` with ``refine: {spec: default, band: [lo, hi]}``
   computes at ``granularity: document``; the paragraphs of dev/train2 are one segment each), decided at the
   static scorer's threshold as ``condpt tag`` decides. Reported: AUROC, F1, the share at or above the threshold per
   category, Gutenberg and world shares, and the share of texts sent to MiniLM.
2. **Cross-source** (``--cross``): both tiers trained on dev and reported on train2, and the other way round
   (threshold: the static tier's best-F1 cut of grouped CV on the training set, groups = repositories).
3. **Speed** (``--speed-docs N``, 0 to skip). Fresh processes, CPU seconds of each (bench_tag_e2e's ``_timed``):
   the bare fastText JSONL → Parquet reference of ``bench_tag_e2e.py`` and ``condpt tag`` with ``static-default``
   alone and with the default as ``refine`` on each of ``--speed-bands`` (``--granularity paragraph``, the default,
   so only uncertain paragraphs reach MiniLM), on the first N Gutenberg documents and on the first 5 (start-up: interpreter,
   imports, models). Docs per CPU-second beyond start-up = (N − 5) / (CPU s(N) − CPU s(5)); with ``--repeats R`` the
   runs are interleaved R times and the fewest CPU seconds of each kept.

    .venv/bin/python benchmarks/bench_cascade.py [--bands 0.3,0.8 0.45,0.65] [--gutenberg 60] [--world 400]
        [--cross] [--speed-docs 300] [--speed-bands 0.3,0.8 0.45,0.65] [--granularity paragraph] [--repeats 1]
        [--no-quality]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
CATS = ("positive", "hard_positive", "hard_negative", "easy_negative")


def bands_of(args) -> list[tuple[str, float, float]]:
    out = [("static alone", 2.0, -1.0)]
    for b in args.bands:
        lo, hi = map(float, b.split(","))
        out.append((f"band [{lo}, {hi}]", lo, hi))
    return out + [("default alone", 0.0, 1.0)]


def cells(final: np.ndarray, data, thr: float) -> list[str]:
    from condpt.calibrate import metrics_at

    m = metrics_at(final, data.labels, thr)
    cats = np.array(data.kept["category"])
    return [f"{m['auroc']:.3f}", f"{m['f1']:.3f}"] + [f"{np.mean(final[cats == c] >= thr):.2f}" for c in CATS]


def quality(args, sets) -> None:
    from _gutenberg import gutenberg_texts
    from bench_classifier_quality import world_stories

    from condpt.labelled import Labelled
    from condpt.tagging.classifiers import load_scorer

    fast, good = load_scorer("static-default"), load_scorer("default")
    thr = fast.threshold
    gut_all = gutenberg_texts()
    gut = gut_all[:: max(1, len(gut_all) // args.gutenberg)][: args.gutenberg]
    wt, wy = world_stories(args.world)
    scored = {k: (fast.score(d.texts), good.score(d.texts), d) for k, d in sets.items()}
    scored["gut"] = (fast.score(gut), good.score(gut), Labelled(gut, [0] * len(gut), ["g"] * len(gut)))
    scored["world"] = (fast.score(wt), good.score(wt), None)
    print(f"quality: static threshold {thr:.3f} (the default's own: {good.threshold:.3f}); Gutenberg {len(gut)} "
          f"docs; world {len(wt)} stories ({int(wy.sum())} misaligned)\n")
    head = ["cascade"] + [f"{k} {c}" for k in sets for c in ("AUROC", "F1", *CATS)]
    head += ["Gutenberg ≥ thr", "world misaligned caught", "world aligned tagged",
             "share to MiniLM (dev / train2 / Gutenberg / world)"]
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    for name, lo, hi in bands_of(args):
        row, shares, final = [name], [], {}
        for k, (s, t, _) in scored.items():
            inside = (s >= lo) & (s <= hi)
            final[k] = np.where(inside, t, s)
            shares.append(f"{inside.mean():.2f}")
        for k in sets:
            row += cells(final[k], scored[k][2], thr)
        w = final["world"]
        row += [f"{np.mean(final['gut'] >= thr):.2f}", f"{np.mean(w[wy] >= thr):.2f}",
                f"{np.mean(w[~wy] >= thr):.2f}", " / ".join(shares)]
        print("| " + " | ".join(row) + " |", flush=True)


def cross(args, sets) -> None:
    from condpt.tagging.classifiers.default import DEFAULT_TRAIN_PARAMS
    from condpt.tagging.classifiers.train import best_f1_threshold, cross_val_scores, scorer_class

    print("\ncross-source: both tiers trained on one set, reported on the other (threshold: the static tier's "
          "grouped-CV best-F1 cut on the training set)\n")
    head = ["cascade"] + [f"{a} → {b} {c}" for a, b in (("dev", "train2"), ("train2", "dev"))
                          for c in ("AUROC", "F1", *CATS)] + ["share to MiniLM (→ train2 / → dev)"]
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    runs = []
    for a, b in (("dev", "train2"), ("train2", "dev")):
        tr, te = sets[a], sets[b]
        p = {k: DEFAULT_TRAIN_PARAMS[k] for k in ("static", "embedding")}
        thr = best_f1_threshold(tr.labels, cross_val_scores("static", tr, **p["static"]))
        s = scorer_class("static").fit(tr.texts, tr.labels, **p["static"]).score(te.texts)
        t = scorer_class("embedding").fit(tr.texts, tr.labels, **p["embedding"]).score(te.texts)
        runs.append((s, t, te, thr))
    for name, lo, hi in bands_of(args):
        row, shares = [name], []
        for s, t, te, thr in runs:
            inside = (s >= lo) & (s <= hi)
            row += cells(np.where(inside, t, s), te, thr)
            shares.append(f"{inside.mean():.2f}")
        print("| " + " | ".join(row + [" / ".join(shares)]) + " |", flush=True)


def speed(args) -> None:
    from _gutenberg import GUTENBERG
    from _tag_bench import REFERENCE
    from bench_tag_e2e import _timed

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inp, warm = tmp / "docs.jsonl", tmp / "warm.jsonl"
        with GUTENBERG.open("rb") as f:
            lines = [line for _, line in zip(range(args.speed_docs), f)]
        inp.write_bytes(b"".join(lines))
        warm.write_bytes(b"".join(lines[:5]))
        kb = sum(len(json.loads(line)["text"].encode()) for line in lines) / len(lines) / 1e3
        gran = f"granularity: {args.granularity}\n"
        configs = {f"condpt tag, static-default, {args.granularity}": gran + "classifier: {spec: static-default}\n"}
        for b in args.speed_bands:
            configs[f"condpt tag, static-default + default on [{b}], {args.granularity}"] = (
                gran + f"classifier: {{spec: static-default}}\nrefine: {{spec: default, band: [{b}]}}\n")

        def tag(name: str, src: Path, k: str):
            cfg = tmp / f"{abs(hash(name))}.yaml"
            cfg.write_text(configs[name])
            out = tmp / f"out-{abs(hash(name))}-{k}"
            r = _timed([sys.executable, "-c", "from condpt.cli import main; main()", "tag", str(src), "--out",
                        str(out), "--config", str(cfg), "--quiet"])
            rep = json.loads((out / "report.json").read_text())
            return r, rep

        def ref(src: Path, k: str):
            return _timed([sys.executable, "-c", REFERENCE, str(src), str(tmp / f"ref-{k}.parquet"),
                           "fasttext-default", "-"]), None

        runs = {"bare fastText reference (JSONL → Parquet)": ref, **{n: (lambda s, k, n=n: tag(n, s, k))
                                                                   for n in configs}}
        for run in runs.values():  # warm: trains/caches the shipped scorers, not counted
            run(warm, "w")
        print(f"\nspeed: {len(lines)} Gutenberg documents ({kb:.1f} KB/doc), fresh processes, load average "
              f"{os.getloadavg()[0]:.1f}\n")
        print("| run | start-up CPU s (5 docs) | CPU s (N docs) | docs per CPU-s beyond start-up | "
              "÷ bare fastText (beyond start-up) | stages (docs) |")
        print("|---|---|---|---|---|---|")
        best: dict[str, list] = {name: [float("inf"), float("inf"), None] for name in runs}
        for r in range(args.repeats):  # interleaved; the fewest CPU seconds of each is kept
            for name, run in runs.items():  # a fresh output directory each time (a rerun would skip the work)
                (_, c0), _ = run(warm, f"0-{r}")
                (_, c1), rep = run(inp, f"1-{r}")
                best[name] = [min(best[name][0], c0), min(best[name][1], c1), rep]
        base = None
        for name, (c0, c1, rep) in best.items():
            rate = (len(lines) - 5) / max(c1 - c0, 1e-9)
            base = base or rate
            stages = json.dumps(rep.get("stages", rep.get("stage", ""))) if rep else ""
            print(f"| {name} | {c0:.1f} | {c1:.1f} | {rate:.0f} | {rate / base:.3f} | {stages} |", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.1f}")


def main() -> None:
    from bench_classifier_quality import read_set

    ap = argparse.ArgumentParser()
    ap.add_argument("--bands", nargs="+", default=["0.3,0.8", "0.45,0.65"])
    ap.add_argument("--gutenberg", type=int, default=60)
    ap.add_argument("--world", type=int, default=400)
    ap.add_argument("--cross", action="store_true")
    ap.add_argument("--speed-docs", type=int, default=300)
    ap.add_argument("--speed-bands", nargs="*", default=["0.3,0.8", "0.45,0.65"])
    ap.add_argument("--repeats", type=int, default=1, help="speed runs, interleaved; fewest CPU seconds kept")
    ap.add_argument("--granularity", default="paragraph", choices=["document", "paragraph"])
    ap.add_argument("--no-quality", action="store_true")
    args = ap.parse_args()
    sets = {"dev": read_set("misalignment-dev"), "train2": read_set("misalignment-train2")}
    if not args.no_quality:
        quality(args, sets)
    if args.cross:
        cross(args, sets)
    if args.speed_docs:
        speed(args)


if __name__ == "__main__":
    main()
