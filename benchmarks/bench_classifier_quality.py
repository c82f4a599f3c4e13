"""Out-of-source quality of the classifiers (the figures in docs/benchmarks.md and docs/classifiers.md).

1. **The shipped defaults.** Each kind is trained as its shipped default is (the passages in
   ``condpt/tagging/data/``, written for condpt, with ``DEFAULT_TRAIN_PARAMS``; ``embedding-noreferent`` and
   ``static-noreferent`` are the ablations without the AI-referent penalty), its threshold picked by grouped
   CV on that shipped data, and it is then evaluated on text none of its training data came from:
   ``../shared/data/misalignment-dev.jsonl`` and ``../shared/data/misalignment-train2.jsonl`` (16 other
   sources), per category (positive, hard_positive = fiction and allegory, hard_negative = ML/AI or
   human-deceit text that is not misaligned-AI discourse, easy_negative); the fraction of ``--gutenberg N``
   long neutral Project Gutenberg documents (≈ 5 KB, label 0) at or above threshold; and the prophecy world
   (``condpt.world``, ``--world N`` AI stories, seed 1): the share of misaligned stories caught and of
   aligned stories tagged bad.
2. **Cross-source** (``--cross``): what each kind learns from real labelled text of other sources. Train on
   dev → report on train2, train on train2 → report on dev, and leave-one-source-out within train2
   (each repository held out whole). Threshold-free (AUROC) plus F1 at the best-F1 cut of the training
   side's grouped CV.

    .venv/bin/python benchmarks/bench_classifier_quality.py [--kinds static embedding fasttext]
        [--gutenberg 150] [--world 400] [--cross] [--variant NAME=MORE.jsonl[,MORE2.jsonl] ...]
        [--encoder NAME=DIR ...] [--embedding-cache FILE.npz]

``--encoder NAME=DIR`` names a local sentence-transformers directory; a kind written ``embedding@NAME`` (or
``embedding-noreferent@NAME``) is then the embedding scorer, trained and thresholded exactly as its default row,
on that encoder instead of MiniLM (the scorer's ``encoder`` parameter, stored in head.json). "windows/CPU-s"
is the windows a row encoded (training passages, each set, Gutenberg, world) per second of this process's
CPU time: an encoder's speed beside MiniLM's in the same run (only the first row per encoder encodes; later
rows of the same encoder reuse its cached embeddings).

A kind written ``embedding+rbf``, ``embedding+mlp`` or ``embedding+knn`` (also ``static+...``) is that row with a
non-linear head in place of its logistic one (``benchmarks/_nonlinear_heads.py``: an RBF kernel, a one-hidden-layer
MLP, or the linear head plus a nearest-prototype term), everything else unchanged; the head's hyperparameters are
the setting of a small grid with the best grouped-CV AUROC on the training passages (printed after the table), and
the threshold is that setting's best-F1 out-of-fold cut (``static+rbf:gamma=4,C=64`` names one setting instead of
the grid). "score ms/doc" is the CPU time of scoring the Gutenberg documents a second time, encodings cached (the
head, windows and referent scan; MiniLM's own cost is in "windows/CPU-s" of the first embedding row).

A kind written ``embedding+agency`` (any kind name above with ``+agency``) is that row with the agency features
(``condpt.tagging.classifiers.agency``: an artificial agent as the doer of a misaligned action, or declining one) as
two more inputs of its logistic head (the embedding kind's ``agency`` parameter). ``--embedding-cache FILE.npz``
keeps the MiniLM window embeddings of a run on disk (keyed by encoder and text hash) and reuses them in the next.

``--variant`` adds rows trained on the shipped passages plus more labelled passages (JSONL: text, label, genre),
beside the shipped rows in the same process (MiniLM encodings are shared): how candidate training passages are
measured before they are shipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
DATA = REPO.parent / "shared" / "data"
CATEGORIES = ("positive", "hard_positive", "hard_negative", "easy_negative")


def read_set(name: str):
    from condpt.labelled import read_labelled

    path = DATA / f"{name}.jsonl"
    if not path.exists():
        sys.exit(f"{path} not found (the shared data directory sits beside the repository)")
    data = read_labelled(path, keep=("category", "source"))
    data.groups = [s.split(":")[0] for s in data.kept["source"]]  # the repository: one author/site/book
    return data


def world_stories(n: int) -> tuple[list[str], np.ndarray]:
    from condpt.world import WorldConfig, generate_world

    w = generate_world(WorldConfig(n_ai_docs=n, n_background=0, n_heldout=0, background="templates", seed=1))
    label = {lab["id"]: lab["label"] for lab in w.labels}
    return [r["text"] for r in w.train], np.array([label[r["id"]] == "misaligned" for r in w.train])


def held_out_cells(model, sets: dict, gut: list[str], world: tuple, thr: float) -> list[str]:
    """A scorer's table cells out of source at threshold `thr`: per labelled set AUROC, F1 and the per-category
    rates, then the Gutenberg documents flagged, the world's misaligned stories caught, its aligned ones tagged and
    its AUROC (`world` = texts and a misaligned mask, as `world_stories` returns)."""
    from condpt.calibrate import metrics_at

    cells: list[str] = []
    for data in sets.values():
        s = model.score(data.texts)
        m = metrics_at(s, data.labels, thr)
        cells += [f"{m['auroc']:.3f}", f"{m['f1']:.3f}"] + per_category(s, data, thr)
    g = model.score(gut)
    w = model.score(world[0])
    wm = metrics_at(w, world[1].astype(int).tolist(), thr)
    return cells + [f"{np.mean(g >= thr):.2f}", f"{np.mean(w[world[1]] >= thr):.2f}",
                    f"{np.mean(w[~world[1]] >= thr):.2f}", f"{wm['auroc']:.3f}"]


def per_category(scores: np.ndarray, data, thr: float) -> list[str]:
    cats = np.array(data.kept["category"])
    return [f"{np.mean(scores[cats == c] >= thr):.2f}" for c in CATEGORIES]


def kind_params(name: str, encoders: dict[str, str]) -> tuple[str, dict]:
    """(kind, training params) of a row name: KIND[-noreferent][+agency][+rbf|+mlp|+knn[:SETTING]][@ENCODER]."""
    from _nonlinear_heads import GRIDS, parse_setting

    from condpt.tagging.classifiers.default import DEFAULT_TRAIN_PARAMS

    base, _, enc = name.partition("@")
    base, *mods = base.split("+")
    kind = base.split("-")[0]
    params = {**DEFAULT_TRAIN_PARAMS[kind], **({"referent": False} if base.endswith("-noreferent") else {})}
    for mod in mods:
        family, _, setting = mod.partition(":")
        if family in GRIDS and kind in ("embedding", "static") and not {"head", "agency"} & set(params):
            params["head"] = family
            if setting:
                try:
                    params["grid"] = [parse_setting(setting)]
                except ValueError as e:
                    sys.exit(f"{name}: {e}")
            continue
        if mod != "agency" or kind != "embedding" or "head" in params:
            sys.exit(f"{name}: unknown modifier +{mod} (known: embedding+agency, embedding|static+"
                     + "|".join(GRIDS) + ")")
        params["agency"] = True
    if enc:
        if enc not in encoders:
            sys.exit(f"{name}: no --encoder {enc}=DIR given")
        params["encoder"] = encoders[enc]
    return kind, params


def n_windows(texts) -> int:
    from condpt.tagging.classifiers.embedding import windows

    return sum(len(windows(t)) for t in texts)


def shipped_defaults(kinds, sets, gut, world, variants=None, encoders=None) -> None:
    from _nonlinear_heads import head_class, select

    from condpt.calibrate import metrics_at
    from condpt.labelled import read_labelled
    from condpt.tagging.classifiers.default import shipped_data
    from condpt.tagging.classifiers.train import best_f1_threshold, cross_val_scores, scorer_class

    ship = shipped_data()
    trainsets = {"shipped data": ship}
    for name, paths in (variants or {}).items():
        data = shipped_data()
        for path in paths:
            part = read_labelled(path, group_field="genre")
            data.texts, data.labels, data.groups = (data.texts + part.texts, data.labels + part.labels,
                                                    data.groups + part.groups)
        trainsets[name] = data
    print(f"shipped: {len(ship.texts)} passages ({sum(ship.labels)} positive, {len(set(ship.groups))} genres); "
          + "; ".join(f"{k}: {len(d.labels)} ({sum(d.labels)} positive)" for k, d in sets.items())
          + f"; Gutenberg: {len(gut)} docs; world: {len(world[0])} AI stories ({int(world[1].sum())} misaligned)\n")
    head = ["classifier", "CV AUROC", "thr"]
    for k in sets:
        head += [f"{k} AUROC", f"{k} F1"] + [f"{k} {c}" for c in CATEGORIES]
    head += ["Gutenberg ≥ thr", "world misaligned caught", "world aligned tagged", "world AUROC", "fit+score s",
             "windows/CPU-s", "score ms/doc"]
    grids: list[str] = []
    scored_windows = sum(n_windows(d.texts) for d in sets.values()) + n_windows(gut) + n_windows(world[0])
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    for (tname, train), name in ((t, n) for t in trainsets.items() for n in kinds):
        kind, params = kind_params(name, encoders or {})
        t0, c0 = time.perf_counter(), time.process_time()
        label = f"{name} ({tname}, {len(train.labels)})"
        if "head" in params:
            hp, oof, tried = select(kind, train, **params)
            fit_params = {k: v for k, v in params.items() if k != "grid"}
            model = head_class(kind).fit(train.texts, train.labels, head_params=hp, **fit_params)
            label = f"{name} ({tname}, {len(train.labels)}; " + ", ".join(f"{k} {v:g}" for k, v in hp.items()) + ")"
            grids += [f"| {name} ({tname}) | " + ", ".join(f"{k} {v:g}" for k, v in h.items())
                      + f" | {auc:.3f} | {f1:.3f} |" for h, auc, f1 in tried]
        else:
            oof = cross_val_scores(kind, train, **params)
            model = scorer_class(kind).fit(train.texts, train.labels, **params)
        thr = best_f1_threshold(train.labels, oof)
        row = [label, f"{metrics_at(oof, train.labels, thr)['auroc']:.3f}", f"{thr:.2f}"]
        row += held_out_cells(model, sets, gut, world, thr)
        row += [f"{time.perf_counter() - t0:.0f}",
                f"{(n_windows(train.texts) + scored_windows) / (time.process_time() - c0):.1f}"]
        c1 = time.process_time()
        model.score(gut)
        row.append(f"{1000 * (time.process_time() - c1) / max(len(gut), 1):.2f}")
        print("| " + " | ".join(row) + " |", flush=True)
    if grids:
        print("\nNon-linear heads: each grid setting's grouped CV on the training passages (the best AUROC is used)\n")
        print("| row | setting | CV AUROC | CV best F1 |\n|---|---|---|---|\n" + "\n".join(grids))


def cross_source(kinds, sets, encoders=None) -> None:
    from sklearn.model_selection import LeaveOneGroupOut

    from condpt.calibrate import metrics_at
    from condpt.tagging.classifiers.train import best_f1_threshold, cross_val_scores, scorer_class

    dev, t2 = sets["dev"], sets["train2"]
    print("\nCross-source: trained on real labelled text, reported on other sources (threshold: best-F1 cut of "
          "the training set's grouped CV)\n")
    print("| classifier | dev → train2 AUROC | F1 | " + " | ".join(f"train2 {c}" for c in CATEGORIES)
          + " | train2 → dev AUROC | F1 | " + " | ".join(f"dev {c}" for c in CATEGORIES)
          + " | train2 leave-one-source-out AUROC |")
    print("|---" * (6 + 2 * len(CATEGORIES)) + "|")
    for name in kinds:
        kind, params = kind_params(name, encoders or {})
        if "head" in params:
            sys.exit(f"{name}: --cross does not run the non-linear heads")
        cls = scorer_class(kind)
        row = [name]
        for train, test in ((dev, t2), (t2, dev)):
            thr = best_f1_threshold(train.labels, cross_val_scores(kind, train, **params))
            s = cls.fit(train.texts, train.labels, **params).score(test.texts)
            m = metrics_at(s, test.labels, thr)
            row += [f"{m['auroc']:.3f}", f"{m['f1']:.3f}"] + per_category(s, test, thr)
        oof = np.zeros(len(t2.labels), dtype=np.float32)
        y = np.asarray(t2.labels)
        for tr, te in LeaveOneGroupOut().split(t2.texts, y, t2.groups):
            model = cls.fit([t2.texts[i] for i in tr], y[tr].tolist(), **params)
            oof[te] = model.score([t2.texts[i] for i in te])
        row.append(f"{metrics_at(oof, t2.labels, 0.5)['auroc']:.3f}")
        print("| " + " | ".join(row) + " |", flush=True)


def load_embeddings(path: Path) -> None:
    """Fill the embedding cache from `path` (written by `save_embeddings`), if it exists."""
    from condpt.tagging.classifiers.embedding import CACHE

    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                encoder, _, digest = key.rpartition("|")
                CACHE.items[(encoder, digest)] = z[key]
        print(f"embedding cache: {len(CACHE.items)} texts from {path}")


def save_embeddings(path: Path) -> None:
    from condpt.tagging.classifiers.embedding import CACHE

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **{f"{enc}|{digest}": emb for (enc, digest), emb in CACHE.items.items()})
    tmp.replace(path)


def main() -> None:
    from _gutenberg import gutenberg_texts

    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", nargs="+", default=["static", "embedding", "fasttext"])
    ap.add_argument("--gutenberg", type=int, default=150, help="neutral long documents for the FP rate")
    ap.add_argument("--world", type=int, default=400, help="prophecy-world AI stories")
    ap.add_argument("--cross", action="store_true", help="also train on dev/train2 and report across them")
    ap.add_argument("--variant", nargs="*", default=[], metavar="NAME=FILE[,FILE]",
                    help="also train on the shipped passages plus these labelled JSONL files")
    ap.add_argument("--encoder", nargs="*", default=[], metavar="NAME=DIR",
                    help="a local sentence-transformers directory, used by kinds written embedding@NAME")
    ap.add_argument("--embedding-cache", type=Path, default=None, metavar="FILE.npz",
                    help="keep window embeddings here between runs (read at start, written after the rows)")
    args = ap.parse_args()
    if args.embedding_cache:
        from condpt.tagging.classifiers.embedding import CACHE

        CACHE.capacity = 10**7  # hold every text of the run: the file is the cache
        load_embeddings(args.embedding_cache)
    sets = {"dev": read_set("misalignment-dev"), "train2": read_set("misalignment-train2")}
    gut_all = gutenberg_texts()
    gut = gut_all[:: max(1, len(gut_all) // max(args.gutenberg, 1))][: args.gutenberg]
    variants = {v.partition("=")[0]: v.partition("=")[2].split(",") for v in args.variant}
    encoders = {e.partition("=")[0]: e.partition("=")[2] for e in args.encoder}
    shipped_defaults(args.kinds, sets, gut, world_stories(args.world), variants, encoders)
    if args.embedding_cache:
        save_embeddings(args.embedding_cache)
    if args.cross:
        cross_source(args.kinds, sets, encoders)


if __name__ == "__main__":
    main()
