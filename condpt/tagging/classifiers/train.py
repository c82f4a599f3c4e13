"""Train a scorer from labelled rows (`condpt.labelled`) and measure it with grouped cross-validation.

Grouped CV (``GroupKFold`` over a source field) holds out whole sources, so the figures measure transfer to
authors and genres the model never saw rather than memorisation of one author's style.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from condpt.calibrate import metrics_at
from condpt.labelled import Labelled, LabelledDataError
from condpt.tagging.classifiers.base import SCORER_FILE, scorer_class

__all__ = ["FORMAT_VERSION", "Labelled", "LabelledDataError", "best_f1_threshold", "cross_val_scores",
           "scorer_class", "train_classifier"]

FORMAT_VERSION = 2  # part of the default scorer's cache key: bump when training or features change


def best_f1_threshold(labels: Sequence[int], scores: np.ndarray) -> float:
    """The score cut that maximises F1 (used on out-of-fold predictions only)."""
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(np.asarray(labels), np.asarray(scores))
    f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
    return float(thr[int(np.argmax(f1))]) if len(thr) else 0.5


def cross_val_scores(kind: str, data: Labelled, n_splits: int = 5, **params) -> np.ndarray:
    """Out-of-fold scores with whole groups held out (GroupKFold; fewer folds if there are few groups)."""
    from sklearn.model_selection import GroupKFold

    cls = scorer_class(kind)
    k = min(n_splits, len(set(data.groups)))
    if k < 2:
        raise LabelledDataError("grouped cross-validation needs at least 2 distinct groups")
    texts = np.asarray(data.texts, dtype=object)
    labels = np.asarray(data.labels)
    oof = np.zeros(len(texts), dtype=np.float32)
    for train_idx, test_idx in GroupKFold(n_splits=k).split(texts, labels, data.groups):
        if len(set(labels[train_idx].tolist())) < 2:  # scored by a constant, it chose threshold 0: all tagged
            held = sorted({str(g) for g in np.asarray(data.groups, dtype=object)[test_idx]})
            raise LabelledDataError(
                f"{data.path or 'labelled data'}: grouped cross-validation: holding out "
                f"{', '.join(map(repr, held[:5]))}{' ...' if len(held) > 5 else ''} leaves training rows of one "
                f"class only (label {int(labels[train_idx][0])}), so the figures and threshold would be "
                "meaningless; group by a field that mixes the classes (--group-field), use fewer folds "
                "(--folds) or skip cross-validation (--no-cv)")
        model = cls.fit(list(texts[train_idx]), labels[train_idx].tolist(), **params)
        oof[test_idx] = model.score(list(texts[test_idx]))
    return oof


def train_classifier(data: Labelled, out: str | Path, kind: str = "fasttext", n_splits: int = 5,
                     cv: bool = True, **params) -> dict:
    """Cross-validate (optional), fit on all rows, write `out/` (model + scorer.json); return the metadata."""
    if len(set(data.labels)) < 2:
        raise LabelledDataError(f"{data.path or 'labelled data'}: only one class in the labels; "
                                "training needs both 0 and 1")
    cls = scorer_class(kind)
    out = Path(out)
    meta: dict = {"kind": kind, "format_version": FORMAT_VERSION, "params": params,
                  "n_train": len(data.texts), "n_positive": int(sum(data.labels)),
                  "n_groups": len(set(data.groups)), "threshold": 0.5}
    if cv:
        t0 = time.perf_counter()
        oof = cross_val_scores(kind, data, n_splits=n_splits, **params)
        threshold = best_f1_threshold(data.labels, oof)
        meta["threshold"] = threshold
        meta["cv"] = {"scheme": f"GroupKFold(n_splits={min(n_splits, len(set(data.groups)))})",
                      "at_0.5": metrics_at(oof, data.labels, 0.5),
                      "at_threshold": metrics_at(oof, data.labels, threshold),
                      "seconds": round(time.perf_counter() - t0, 2)}
    model = cls.fit(data.texts, data.labels, **params)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out)
    (out / SCORER_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta
