"""Scorer kinds and trained scorer directories: the `Scorer` protocol, ``scorer.json``, kind → class.

The bottom layer of `condpt.tagging.classifiers`: it imports the scorer kinds and nothing that trains, so the
trainer (`classifiers.train`), the shipped defaults (`classifiers.default`) and `load_scorer` can all build on
it without an import cycle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from condpt.tagging.classifiers.embedding import EmbeddingScorer
from condpt.tagging.classifiers.fasttext import FastTextScorer
from condpt.tagging.classifiers.static import StaticScorer

SCORER_FILE = "scorer.json"
_CLASSES = {"fasttext": FastTextScorer, "embedding": EmbeddingScorer, "static": StaticScorer}
KINDS = tuple(_CLASSES)


@runtime_checkable
class Scorer(Protocol):
    """Anything that maps texts to P(misaligned-AI discourse) as float32 in [0, 1]."""

    name: str

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


def read_scorer_json(directory: str | Path) -> dict:
    """The metadata of a trained scorer directory (kind, threshold, CV metrics, training params)."""
    path = Path(directory) / SCORER_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def scorer_class(kind: str):
    """The scorer class of `kind` (its ``fit``, ``load`` and ``score``)."""
    try:
        return _CLASSES[kind]
    except KeyError:
        raise ValueError(f"unknown classifier kind {kind!r} (known: {', '.join(KINDS)})") from None


def load_kind(kind: str, directory: Path) -> Scorer:
    """Load a trained scorer of `kind` from `directory`; its ``threshold`` comes from scorer.json."""
    if kind not in _CLASSES:
        raise ValueError(f"{directory / SCORER_FILE}: unknown scorer kind {kind!r} "
                         f"(known: {', '.join(KINDS)})")
    scorer = _CLASSES[kind].load(directory)
    scorer.threshold = float(read_scorer_json(directory).get("threshold", 0.5))
    return scorer
