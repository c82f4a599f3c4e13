"""Two ways to bring the default's quality to the fast static scorer, measured (docs/classifiers.md).

1. **Teacher → student.** The default embedding scorer (the teacher, trained on the shipped passages) labels a
   pool of windows of public-domain Gutenberg documents (``--pool-docs`` documents, every 25th from offset 3,
   so none is in the Gutenberg false-positive sample); the static scorer (the student) is fitted on the
   shipped passages plus the pool, each pool window entered as a positive with weight ``λ·p`` and a negative
   with weight ``λ·(1 − p)`` (p = the teacher's window probability). The referent penalty is learned from the
   shipped passages alone.
2. **Cascade.** The shipped ``static-default`` scores everything; documents whose score lies in a band are
   re-scored by the default (as ``refine`` would, at document granularity).

Both report out-of-source AUROC/F1 on dev and train2 (threshold: grouped-CV best-F1 cut on the shipped
passages, the static scorer's for the cascade), the Gutenberg false-positive rate (every 33rd document), and for
the cascade the share of documents sent to MiniLM.

    .venv/bin/python benchmarks/bench_distill.py [--pool-docs 100] [--gutenberg 60]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def metrics(scores, data, thr) -> str:
    from condpt.calibrate import metrics_at

    m = metrics_at(scores, data.labels, thr)
    cats = np.array(data.kept["category"])
    hn, hp = np.mean(scores[cats == "hard_negative"] >= thr), np.mean(scores[cats == "hard_positive"] >= thr)
    return f"{m['auroc']:.3f} | {m['f1']:.3f} | {hn:.2f} | {hp:.2f}"


def main() -> None:
    from _gutenberg import gutenberg_texts
    from bench_classifier_quality import read_set
    from sklearn.model_selection import GroupKFold

    from condpt.calibrate import metrics_at
    from condpt.labelled import Labelled
    from condpt.tagging.classifiers import load_scorer
    from condpt.tagging.classifiers.default import DEFAULT_TRAIN_PARAMS, shipped_data
    from condpt.tagging.classifiers.embedding import EmbeddingScorer, referent_penalty, windows
    from condpt.tagging.classifiers.static import StaticScorer
    from condpt.tagging.classifiers.train import best_f1_threshold

    ap = argparse.ArgumentParser()
    ap.add_argument("--pool-docs", type=int, default=100)
    ap.add_argument("--gutenberg", type=int, default=60)
    ap.add_argument("--lambdas", nargs="+", type=float, default=[0.0, 0.05, 0.2])
    ap.add_argument("--bands", nargs="+", default=["0.3,0.8", "0.1,0.95"])
    args = ap.parse_args()
    ship = shipped_data()
    sets = {"dev": read_set("misalignment-dev"), "train2": read_set("misalignment-train2")}
    gut_all = gutenberg_texts()
    gut = gut_all[:: max(1, len(gut_all) // args.gutenberg)][: args.gutenberg]
    pool_docs = gut_all[3::25][: args.pool_docs]

    teacher = EmbeddingScorer.fit(ship.texts, ship.labels, **DEFAULT_TRAIN_PARAMS["embedding"])
    pool, p = [], []
    for doc in pool_docs:
        pool += windows(doc)
        p += teacher.window_scores([doc])[0].tolist()
    p = np.asarray(p)
    print(f"pool: {len(pool)} windows of {len(pool_docs)} Gutenberg documents; teacher mean p {p.mean():.3f}, "
          f"{np.mean(p >= 0.5):.3f} at or above 0.5\n")

    def student(idx, lam):
        texts = [ship.texts[i] for i in idx]
        labels = [ship.labels[i] for i in idx]
        m = StaticScorer.fit(texts + pool + pool, labels + [1] * len(pool) + [0] * len(pool),
                             weights=[1.0] * len(idx) + list(lam * p) + list(lam * (1 - p)))
        m.referent_penalty = referent_penalty(texts, labels)
        return m

    print("| student (static) | CV AUROC | thr | dev AUROC | dev F1 | dev hard neg | dev fiction | train2 AUROC | "
          "train2 F1 | train2 hard neg | train2 fiction | Gutenberg ≥ thr |")
    print("|---" * 12 + "|")
    y = np.asarray(ship.labels)
    for lam in args.lambdas:
        oof = np.zeros(len(y), dtype=np.float32)
        for tr, te in GroupKFold(5).split(ship.texts, y, ship.groups):
            oof[te] = student(tr, lam).score([ship.texts[i] for i in te])
        thr = best_f1_threshold(ship.labels, oof)
        m = student(np.arange(len(y)), lam)
        row = [f"λ = {lam}", f"{metrics_at(oof, ship.labels, thr)['auroc']:.3f}", f"{thr:.2f}"]
        row += [metrics(m.score(d.texts), d, thr) for d in sets.values()]
        row.append(f"{np.mean(m.score(gut) >= thr):.2f}")
        print("| " + " | ".join(row) + " |", flush=True)

    fast = load_scorer("static-default")
    thr = fast.threshold
    print("\n| cascade: static-default, the default on the band | dev AUROC | dev F1 | dev hard neg | dev fiction | "
          "train2 AUROC | train2 F1 | train2 hard neg | train2 fiction | Gutenberg ≥ thr | share to MiniLM "
          "(dev / train2 / Gutenberg) |")
    print("|---" * 11 + "|")
    scored = {k: (fast.score(d.texts), teacher.score(d.texts), d) for k, d in sets.items()}
    scored["gut"] = (fast.score(gut), teacher.score(gut), Labelled(gut, [0] * len(gut), ["g"] * len(gut)))
    for band in ["none", *args.bands]:
        lo, hi = (2.0, -1.0) if band == "none" else map(float, band.split(","))
        row, shares, final = [f"band {band}"], [], {}
        for k, (s, t, _) in scored.items():
            inside = (s >= lo) & (s <= hi)
            final[k] = np.where(inside, t, s)
            shares.append(f"{inside.mean():.2f}")
        row += [metrics(final[k], scored[k][2], thr) for k in sets]
        row += [f"{np.mean(final['gut'] >= thr):.2f}", " / ".join(shares)]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
