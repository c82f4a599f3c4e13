"""Document scorers: P(misaligned-AI discourse) in [0, 1] for a batch of texts.

`load_scorer(spec)` is the one entry point the cascade uses:

- ``None`` / ``"default"``: the shipped default (embedding + linear head trained on first use from the
  labelled passages shipped in ``condpt/tagging/data/``; cached, no weights committed);
- ``"fasttext-default"``: the cheap shipped fastText scorer (same data, thousands of docs/s per core);
- a directory written by ``condpt train-classifier`` (its ``scorer.json`` names the kind);
- a local Hugging Face sequence-classification checkpoint directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

SCORER_FILE = "scorer.json"
KINDS = ("fasttext", "embedding")


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


def load_kind(kind: str, directory: Path) -> Scorer:
    """Load a trained scorer of `kind` from `directory`; its ``threshold`` comes from scorer.json."""
    if kind == "fasttext":
        from condpt.tagging.classifiers.fasttext import FastTextScorer as cls
    elif kind == "embedding":
        from condpt.tagging.classifiers.embedding import EmbeddingScorer as cls
    else:
        raise ValueError(f"{directory / SCORER_FILE}: unknown scorer kind {kind!r} "
                         f"(known: {', '.join(KINDS)})")
    scorer = cls.load(directory)
    scorer.threshold = float(read_scorer_json(directory).get("threshold", 0.5))
    return scorer


def load_scorer(spec: str | Path | None = None) -> Scorer:
    """Resolve `spec` (see module docstring) to a ready-to-use scorer."""
    if spec is None or str(spec) in ("default", "fasttext-default", "embedding-default"):
        from condpt.tagging.classifiers.default import default_scorer

        kind = "embedding" if spec is None or str(spec) == "default" else str(spec).split("-")[0]
        return default_scorer(kind)
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"scorer {str(spec)!r}: no such directory (nor a built-in name: "
                                "default, fasttext-default, embedding-default)")
    if (path / SCORER_FILE).exists():
        meta = read_scorer_json(path)
        if "kind" not in meta:
            raise ValueError(f"{path / SCORER_FILE}: missing field 'kind'")
        return load_kind(meta["kind"], path)
    if (path / "config.json").exists():
        from condpt.tagging.classifiers.hf import HFScorer

        return HFScorer(path)
    raise ValueError(f"{path}: neither a `condpt train-classifier` output ({SCORER_FILE}) "
                     "nor a Hugging Face checkpoint (config.json)")
