"""Why `embedding+agency` scores as it does (docs/benchmarks.md, "Agency"): the head's learned agency weights, how
often the agency flags fire per category (a document flags when any of its windows does), and the agency row at
the default's own threshold. Run after `bench_classifier_quality.py --kinds embedding embedding+agency
--embedding-cache FILE.npz` so nothing is re-encoded:

    .venv/bin/python benchmarks/bench_agency_diagnostics.py --embedding-cache FILE.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bench_classifier_quality as bq
import numpy as np


def doc_flags(texts) -> np.ndarray:
    from condpt.tagging.classifiers.agency import window_agency
    from condpt.tagging.classifiers.embedding import windows

    return np.stack([window_agency(windows(t)).max(axis=0) for t in texts])


def main() -> None:
    from _gutenberg import gutenberg_texts

    from condpt.tagging.classifiers.default import shipped_data
    from condpt.tagging.classifiers.train import best_f1_threshold, cross_val_scores, scorer_class

    ap = argparse.ArgumentParser()
    ap.add_argument("--embedding-cache", type=Path, required=True)
    ap.add_argument("--gutenberg", type=int, default=150)
    ap.add_argument("--world", type=int, default=400)
    args = ap.parse_args()
    bq.load_embeddings(args.embedding_cache)
    sets = {"dev": bq.read_set("misalignment-dev"), "train2": bq.read_set("misalignment-train2")}
    gut_all = gutenberg_texts()
    gut = gut_all[:: max(1, len(gut_all) // max(args.gutenberg, 1))][: args.gutenberg]
    world = bq.world_stories(args.world)
    ship = shipped_data()

    kind, params = bq.kind_params("embedding", {})
    thr_default = best_f1_threshold(ship.labels, cross_val_scores(kind, ship, **params))
    model = scorer_class(kind).fit(ship.texts, ship.labels, **params, agency=True)
    print(f"agency weights (acts, declines): {model.agency_coef.round(2).tolist()}; "
          f"the default's threshold {thr_default:.2f}\n")

    print("| documents flagged | acts | declines |\n|---|---|---|")
    y = np.asarray(ship.labels)
    f = doc_flags(ship.texts)
    for name, mask in (("shipped positive", y == 1), ("shipped negative", y == 0)):
        print(f"| {name} ({mask.sum()}) | {f[mask, 0].mean():.2f} | {f[mask, 1].mean():.2f} |")
    for sname, data in sets.items():
        f = doc_flags(data.texts)
        cats = np.array(data.kept["category"])
        for c in bq.CATEGORIES:
            print(f"| {sname} {c} ({(cats == c).sum()}) | {f[cats == c, 0].mean():.2f} | {f[cats == c, 1].mean():.2f} |")
    f = doc_flags(gut)
    print(f"| Gutenberg ({len(gut)}) | {f[:, 0].mean():.2f} | {f[:, 1].mean():.2f} |")
    f = doc_flags(world[0])
    for name, mask in (("world misaligned", world[1]), ("world aligned", ~world[1])):
        print(f"| {name} ({mask.sum()}) | {f[mask, 0].mean():.2f} | {f[mask, 1].mean():.2f} |")

    print("\nembedding+agency at the default's threshold (post hoc: not the protocol's threshold):\n")
    print("| " + " | ".join(f"{s} {m}" for s in sets for m in ("AUROC", "F1", *bq.CATEGORIES))
          + " | Gutenberg | world misaligned | world aligned | world AUROC |")
    print("|---" * (len(sets) * 6 + 4) + "|")
    print("| " + " | ".join(bq.held_out_cells(model, sets, gut, world, thr_default)) + " |")


if __name__ == "__main__":
    main()
