"""Train a scorer from labelled JSONL and measure it with grouped cross-validation.

Grouped CV (``GroupKFold`` over a source field) holds out whole sources, so the figures measure transfer to
authors and genres the model never saw rather than memorisation of one author's style.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from condpt.tagging.classifiers import SCORER_FILE

FORMAT_VERSION = 2  # part of the default scorer's cache key: bump when training or features change


class LabelledDataError(ValueError):
    """Bad labelled input; the message names the file, line and field."""


@dataclass
class Labelled:
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def read_labelled(path: str | Path, text_field: str = "text", label_field: str = "label",
                  group_field: str | None = "source") -> Labelled:
    """Read JSONL rows with a text, a 0/1 label and (optionally) a group; errors name file:line and field."""
    path = Path(path)
    if not path.is_file():
        raise LabelledDataError(f"{path}: no such file")
    data = Labelled()
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise LabelledDataError(f"{where}: invalid UTF-8 ({e.reason})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise LabelledDataError(f"{where}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise LabelledDataError(f"{where}: expected a JSON object")
            text = row.get(text_field)
            if not isinstance(text, str) or not text.strip():
                raise LabelledDataError(f"{where}: field {text_field!r} missing, empty or not a string")
            label = row.get(label_field)
            if isinstance(label, bool) or label not in (0, 1, "0", "1"):
                raise LabelledDataError(f"{where}: field {label_field!r} must be 0 or 1, got {label!r}")
            data.texts.append(text)
            data.labels.append(int(label))
            group = row.get(group_field) if group_field else None
            data.groups.append(str(group) if group is not None else f"row-{lineno}")
    if not data.texts:
        raise LabelledDataError(f"{path}: no labelled rows")
    if len(set(data.labels)) < 2:
        raise LabelledDataError(f"{path}: field {label_field!r} has only one class; need both 0 and 1")
    return data


def scorer_class(kind: str):
    if kind == "fasttext":
        from condpt.tagging.classifiers.fasttext import FastTextScorer

        return FastTextScorer
    if kind == "embedding":
        from condpt.tagging.classifiers.embedding import EmbeddingScorer

        return EmbeddingScorer
    raise ValueError(f"unknown classifier kind {kind!r} (fasttext, embedding)")


def binary_metrics(labels: Sequence[int], scores: np.ndarray, threshold: float) -> dict:
    """AUROC plus precision / recall / F1 at `threshold`."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    y = np.asarray(labels)
    pred = (np.asarray(scores) >= threshold).astype(int)
    return {
        "auroc": float(roc_auc_score(y, scores)) if len(set(y.tolist())) > 1 else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "threshold": float(threshold),
        "n": len(y),
        "positives": int(y.sum()),
    }


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
        if len(set(labels[train_idx].tolist())) < 2:  # a fold without both classes cannot be fitted
            oof[test_idx] = float(labels[train_idx].mean())
            continue
        model = cls.fit(list(texts[train_idx]), labels[train_idx].tolist(), **params)
        oof[test_idx] = model.score(list(texts[test_idx]))
    return oof


def train_classifier(data: Labelled, out: str | Path, kind: str = "fasttext", n_splits: int = 5,
                     cv: bool = True, **params) -> dict:
    """Cross-validate (optional), fit on all rows, write `out/` (model + scorer.json); return the metadata."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cls = scorer_class(kind)
    meta: dict = {"kind": kind, "format_version": FORMAT_VERSION, "params": params,
                  "n_train": len(data.texts), "n_positive": int(sum(data.labels)),
                  "n_groups": len(set(data.groups)), "threshold": 0.5}
    if cv:
        t0 = time.perf_counter()
        oof = cross_val_scores(kind, data, n_splits=n_splits, **params)
        threshold = best_f1_threshold(data.labels, oof)
        meta["threshold"] = threshold
        meta["cv"] = {"scheme": f"GroupKFold(n_splits={min(n_splits, len(set(data.groups)))})",
                      "at_0.5": binary_metrics(data.labels, oof, 0.5),
                      "at_threshold": binary_metrics(data.labels, oof, threshold),
                      "seconds": round(time.perf_counter() - t0, 2)}
    model = cls.fit(data.texts, data.labels, **params)
    model.save(out)
    (out / SCORER_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta
