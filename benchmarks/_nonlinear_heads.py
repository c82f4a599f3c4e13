"""Non-linear heads for the embedding and static scorers (issue 13; benchmark-only, measured and not shipped).

The shipped heads are one class-balanced logistic regression on the passage vector. Fiction about rogue machines,
AI-risk essays and ML-engineering hard negatives may sit in regions of embedding space that one hyperplane cannot
separate; these heads can bend:

- ``rbf``: an RBF kernel (``Nystroem`` with every training passage as a landmark, i.e. the exact kernel on the
  training set) and a class-balanced logistic regression on it;
- ``mlp``: one hidden layer (``MLPClassifier``, L-BFGS, class-balanced sample weights, seed 0);
- ``knn``: the kind's own linear head plus ``beta`` × (mean cosine to the ``k`` nearest positive passages − to the
  ``k`` nearest negative ones): a local correction of the hyperplane.

Everything else is the shipped scorer's: passage vectors to train (MiniLM window means / static passage sums),
window vectors to score, the learned AI-referent penalty subtracted from each window's log-odds, the max over
windows. A head's hyperparameters are chosen by the default's own rule (`select`: grouped-by-register CV AUROC on the
shipped passages, never on dev or train2), and the threshold is the best-F1 cut of the chosen setting's out-of-fold
scores. ``bench_classifier_quality.py --kinds embedding embedding+rbf ...`` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRIDS: dict[str, list[dict]] = {
    "rbf": [{"gamma": g, "C": c} for g in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0) for c in (1.0, 4.0, 16.0, 64.0)],
    "mlp": [{"hidden": h, "alpha": a} for h in (32, 128) for a in (0.01, 0.1, 1.0, 10.0)],
    "knn": [{"k": k, "beta": b} for k in (5, 15) for b in (2.0, 5.0, 10.0, 20.0)],
}


def _balanced(y: np.ndarray) -> np.ndarray:
    from sklearn.utils.class_weight import compute_sample_weight

    return compute_sample_weight("balanced", y)


class Head:
    """Log-odds of a row of unit vectors: `fit(x, y)` then `logit(x)`."""

    def __init__(self, family: str, linear_C: float, hp: dict) -> None:
        self.family, self.linear_C, self.hp = family, float(linear_C), hp

    def fit(self, x: np.ndarray, y: np.ndarray) -> Head:
        from sklearn.linear_model import LogisticRegression

        # float64 throughout: the exact kernel's K^-1/2 has huge entries, and in float32 a window's log-odds moved by
        # ~0.05 with the number of rows it was scored beside
        x, w = np.asarray(x, dtype=np.float64), _balanced(y)
        if self.family == "rbf":
            from sklearn.kernel_approximation import Nystroem

            self.map = Nystroem(kernel="rbf", gamma=self.hp["gamma"], n_components=len(x), random_state=0).fit(x)
            self.lr = LogisticRegression(C=self.hp["C"], max_iter=5000).fit(self.map.transform(x), y,
                                                                              sample_weight=w)
        elif self.family == "mlp":
            from sklearn.neural_network import MLPClassifier

            self.mlp = MLPClassifier((self.hp["hidden"],), alpha=self.hp["alpha"], solver="lbfgs", max_iter=1000,
                                     random_state=0).fit(x, y, sample_weight=w)
        elif self.family == "knn":
            self.lr = LogisticRegression(C=self.linear_C, max_iter=5000).fit(x, y, sample_weight=w)
            self.pos, self.neg = x[y == 1], x[y == 0]
        else:
            raise ValueError(f"unknown head {self.family!r} (known: {', '.join(GRIDS)})")
        return self

    def logit(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.family == "rbf":
            return self.lr.decision_function(self.map.transform(x))
        if self.family == "mlp":
            p = np.clip(self.mlp.predict_proba(x)[:, 1], 1e-7, 1 - 1e-7)
            return np.log(p / (1 - p))
        k = self.hp["k"]

        def near(protos: np.ndarray) -> np.ndarray:
            sims = x @ protos.T
            kk = min(k, protos.shape[0])
            return np.sort(np.partition(sims, -kk, axis=1)[:, -kk:], axis=1).mean(axis=1)

        return self.lr.decision_function(x) + self.hp["beta"] * (near(self.pos) - near(self.neg))


def embedding_class():
    from condpt.tagging.classifiers.embedding import (
        CACHE,
        DEFAULT_PARAMS,
        EmbeddingScorer,
        passage_features,
        referent_penalty,
        windows,
    )

    class HeadEmbeddingScorer(EmbeddingScorer):
        """The embedding scorer with `Head` in place of the linear head (same windows, penalty, max)."""

        def __init__(self, head: Head, **kw) -> None:
            super().__init__(np.zeros(1), 0.0, **kw)
            self.head = head

        @classmethod
        def fit(cls, texts, labels, head: str = "rbf", head_params: dict | None = None, **params):
            args = {**DEFAULT_PARAMS, **params}
            x = passage_features(args["encoder"], list(texts))
            h = Head(head, args["C"], head_params or {}).fit(x, np.asarray(labels))
            penalty = referent_penalty(texts, labels) if args["referent"] else 0.0
            return cls(h, encoder=args["encoder"], referent_penalty=penalty,
                       referent_radius=int(args["referent_radius"]))

        def window_scores(self, texts: Sequence[str]) -> list[np.ndarray]:
            from condpt.tagging.classifiers.referent import near_referent

            texts = list(texts)
            embs = CACHE.get_many(self.encoder, texts)
            z_all = self.head.logit(np.concatenate(embs))  # one call: sklearn's per-call overhead is ~0.1 ms
            out, pos = [], 0
            for text, emb in zip(texts, embs):
                z = z_all[pos:pos + len(emb)]
                pos += len(emb)
                if self.referent_penalty:
                    z = z - self.referent_penalty * ~near_referent(windows(text), self.referent_radius)
                out.append(1.0 / (1.0 + np.exp(-z)))
            return out

    return HeadEmbeddingScorer


def static_class():
    from condpt.tagging.classifiers import static as st
    from condpt.tagging.classifiers.embedding import referent_penalty

    class HeadStaticScorer(st.StaticScorer):
        """The static scorer with `Head` in place of the linear head (same windows, penalty, max)."""

        def __init__(self, head: Head, **kw) -> None:
            super().__init__(np.zeros(1), 0.0, **kw)
            self.head = head

        @classmethod
        def fit(cls, texts, labels, head: str = "rbf", head_params: dict | None = None, **params):
            args = {**st.DEFAULT_PARAMS, **params}
            vectors = st.word_vectors(args["encoder"], float(args["sif_a"]))
            x = np.stack([st.text_vector(vectors, t) for t in texts])
            h = Head(head, args["C"], head_params or {}).fit(x, np.asarray(labels))
            penalty = referent_penalty(texts, labels) if args["referent"] else 0.0
            return cls(h, encoder=args["encoder"], sif_a=float(args["sif_a"]), window=int(args["window"]),
                       referent_penalty=penalty)

        def _score_group(self, texts, lengths, rows):
            # StaticScorer._score_group with the head's log-odds of the normalised window vector
            half = max(1, self.window // 2)
            n_blocks = np.maximum(1, -(-lengths // half))
            first_block = np.cumsum(n_blocks) - n_blocks
            at = np.arange(len(rows)) + np.repeat(first_block * half - (np.cumsum(lengths) - lengths), lengths)
            idx = np.zeros(int(n_blocks.sum()) * half, dtype=np.intp)
            idx[at] = rows
            table = self.vectors.vectors
            blocks = table.take(idx, axis=0).reshape(-1, half, table.shape[1]).sum(axis=1)
            per_text, starts, ends = st.windows_of(lengths, self.window)
            base = np.repeat(first_block, per_text)
            win = blocks[base + starts // half]
            two = (ends - starts) > half
            win[two] += blocks[base[two] + starts[two] // half + 1]
            win = win / np.maximum(np.linalg.norm(win, axis=1, keepdims=True), 1e-12)
            z = self.head.logit(win)
            if self.referent_penalty:
                z = z - self.referent_penalty * ~st.referent_windows(texts, lengths, per_text, starts, ends,
                                                                     self.window)
            zmax = np.maximum.reduceat(z, np.cumsum(per_text) - per_text)
            return (1.0 / (1.0 + np.exp(-zmax.astype(np.float64)))).astype(np.float32)

    return HeadStaticScorer


def parse_setting(spec: str) -> dict:
    """``gamma=4,C=64`` → ``{"gamma": 4.0, "C": 64.0}`` (a grid of one: a setting named on the command line)."""
    out = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"head setting {spec!r}: expected NAME=VALUE[,NAME=VALUE]")
        out[key] = int(value) if key in ("hidden", "k") else float(value)
    return out


def head_class(kind: str):
    return {"embedding": embedding_class, "static": static_class}[kind]()


def grouped_oof(cls, data, n_splits: int = 5, **params) -> np.ndarray:
    """Out-of-fold scores with whole registers held out: `train.cross_val_scores`'s folds, for a class it does
    not know."""
    from sklearn.model_selection import GroupKFold

    texts = np.asarray(data.texts, dtype=object)
    labels = np.asarray(data.labels)
    oof = np.zeros(len(texts), dtype=np.float32)
    for tr, te in GroupKFold(n_splits=min(n_splits, len(set(data.groups)))).split(texts, labels, data.groups):
        model = cls.fit(list(texts[tr]), labels[tr].tolist(), **params)
        oof[te] = model.score(list(texts[te]))
    return oof


def select(kind: str, data, head: str, grid: list[dict] | None = None,
           **params) -> tuple[dict, np.ndarray, list[tuple[dict, float, float]]]:
    """The setting of `grid` (default: the `head` family's `GRIDS` entry) with the best grouped-CV AUROC on `data` (the shipped passages): (setting,
    its out-of-fold scores, every setting's (hp, CV AUROC, CV best F1))."""
    from sklearn.metrics import roc_auc_score

    from condpt.calibrate import metrics_at
    from condpt.tagging.classifiers.train import best_f1_threshold

    cls = head_class(kind)
    tried, best = [], None
    for hp in grid or GRIDS[head]:
        oof = grouped_oof(cls, data, head=head, head_params=hp, **params)
        auc = float(roc_auc_score(data.labels, oof))
        f1 = metrics_at(oof, data.labels, best_f1_threshold(data.labels, oof))["f1"]
        tried.append((hp, auc, f1))
        if best is None or auc > best[1]:
            best = (hp, auc, oof)
    return best[0], best[2], tried
