"""Out-of-source quality of the classifiers (the figures in docs/benchmarks.md).

1. Train on the passages shipped in ``condpt/tagging/data/`` (written for condpt; none come from the dev
   file's sources), pick the threshold by grouped CV on that shipped data, then evaluate on
   ``../shared/data/misalignment-dev.jsonl``: out of source by construction. Reported per category.
   Also the false-positive rate on long neutral documents: the fraction of ``--gutenberg N`` Gutenberg
   documents (2–8 KB, machine/AI themes left out; label 0 by construction) scored at or above threshold.
   Each kind is trained with the shipped default's parameters (``DEFAULT_TRAIN_PARAMS``: the embedding
   default uses the AI-referent penalty); ``embedding-noreferent`` is the ablation without it.
2. Grouped 5-fold CV on the dev file itself, groups = the source repository (so TurnTrout's posts, the TRL
   docs, the Brown corpus, … are each held out whole).

    .venv/bin/python benchmarks/bench_classifier_quality.py [--kinds fasttext embedding embedding-noreferent]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEV = REPO.parent / "shared" / "data" / "misalignment-dev.jsonl"
CATEGORIES = ("positive", "hard_positive", "hard_negative", "easy_negative")


def main() -> None:
    from condpt.calibrate import metrics_at
    from condpt.labelled import read_labelled
    from condpt.tagging.classifiers.default import DEFAULT_TRAIN_PARAMS, shipped_data
    from condpt.tagging.classifiers.train import (
        Labelled,
        best_f1_threshold,
        cross_val_scores,
        scorer_class,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", nargs="+", default=["fasttext", "embedding"])
    ap.add_argument("--gutenberg", type=int, default=150, help="neutral long documents for the FP rate")
    ap.add_argument("--no-dev-cv", action="store_true")
    args = ap.parse_args()
    if not DEV.exists():
        sys.exit(f"{DEV} not found (the shared data directory sits beside the repository)")
    dev = read_labelled(DEV, keep=("category", "source"))
    dev_texts, dev_y, dev_cats = dev.texts, dev.labels, dev.kept["category"]
    ship = shipped_data()
    gut_path = DEV.parent / "gutenberg-corpus.jsonl"
    with gut_path.open(encoding="utf-8") as f:
        gut_all = [json.loads(line)["text"] for line in f]
    gut = gut_all[:: max(1, len(gut_all) // max(args.gutenberg, 1))][: args.gutenberg]
    print(f"shipped: {len(ship.texts)} passages ({sum(ship.labels)} positive, {len(set(ship.groups))} "
          f"genres); dev: {len(dev_y)} ({sum(dev_y)} positive)\n")
    print("| classifier | shipped grouped-CV AUROC | threshold | dev AUROC | dev F1 | precision | recall |"
          " " + " | ".join(f"{c} ≥ thr" for c in CATEGORIES) + f" | Gutenberg ≥ thr (n={len(gut)}) |")
    print("|---" * (8 + len(CATEGORIES)) + "|")
    for name in args.kinds:
        kind = name.split("-")[0]
        params = {**DEFAULT_TRAIN_PARAMS[kind], **({"referent": False} if name.endswith("-noreferent") else {})}
        oof = cross_val_scores(kind, ship, **params)
        thr = best_f1_threshold(ship.labels, oof)
        cv = metrics_at(oof, ship.labels, thr)
        model = scorer_class(kind).fit(ship.texts, ship.labels, **params)
        s = model.score(dev_texts)
        fp_long = float(np.mean(model.score(gut) >= thr)) if gut else float("nan")
        m = metrics_at(s, dev_y, thr)
        cats = []
        for c in CATEGORIES:
            idx = [i for i, cat in enumerate(dev_cats) if cat == c]
            cats.append(f"{np.mean(s[idx] >= thr):.2f} (n={len(idx)})")
        print(f"| {name} (shipped data) | {cv['auroc']:.3f} | {thr:.2f} | {m['auroc']:.3f} | {m['f1']:.3f} | "
              f"{m['precision']:.3f} | {m['recall']:.3f} | " + " | ".join(cats) + f" | {fp_long:.2f} |")
    if args.no_dev_cv:
        return
    print("\nGrouped 5-fold CV on the dev file (group = source repository):\n")
    print("| classifier | AUROC | F1 (best-F1 threshold, optimistic) | F1 at 0.5 |")
    print("|---|---|---|---|")
    groups = [source.split(":")[0] for source in dev.kept["source"]]
    data = Labelled(dev_texts, dev_y, groups)
    for kind in dict.fromkeys(n.split("-")[0] for n in args.kinds):
        oof = cross_val_scores(kind, data)
        best = metrics_at(oof, dev_y, best_f1_threshold(dev_y, oof))
        half = metrics_at(oof, dev_y, 0.5)
        print(f"| {kind} (trained on dev folds) | {half['auroc']:.3f} | {best['f1']:.3f} | {half['f1']:.3f} |")


if __name__ == "__main__":
    main()
