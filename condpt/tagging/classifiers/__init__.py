"""Document scorers: P(misaligned-AI discourse) in [0, 1] for a batch of texts.

`load_scorer(spec)` is the one entry point the cascade uses:

- ``None`` / ``"default"``: the shipped default (embedding + linear head trained on first use from the
  labelled passages shipped in ``condpt/tagging/data/``; cached, no weights committed);
- ``"static-default"``: the fast shipped scorer (static MiniLM word vectors + the same kind of head, same data;
  hundreds of 5 KB docs/s per core, no transformer at scoring time);
- ``"fasttext-default"``: the cheapest shipped scorer (fastText, same data; transfers worst);
- a directory written by ``condpt train-classifier`` (its ``scorer.json`` names the kind);
- a local Hugging Face sequence-classification checkpoint directory.
"""

from __future__ import annotations

from pathlib import Path

from condpt.tagging.classifiers.base import (
    KINDS,
    SCORER_FILE,
    Scorer,
    load_kind,
    read_scorer_json,
    scorer_class,
)
from condpt.tagging.classifiers.default import default_scorer
from condpt.tagging.classifiers.hf import HFScorer

# Built-in scorer names → the kind of shipped default they train (`default_scorer`).
BUILT_IN = {"default": "embedding", "embedding-default": "embedding", "static-default": "static",
            "fasttext-default": "fasttext"}

__all__ = ["BUILT_IN", "KINDS", "SCORER_FILE", "Scorer", "load_kind", "load_scorer", "read_scorer_json", "scorer_class"]


def load_scorer(spec: str | Path | None = None) -> Scorer:
    """Resolve `spec` (see module docstring) to a ready-to-use scorer."""
    if spec is None or str(spec) in BUILT_IN:
        return default_scorer(BUILT_IN[str(spec or "default")])
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"scorer {str(spec)!r}: no such directory (nor a built-in name: "
                                f"{', '.join(BUILT_IN)})")
    if (path / SCORER_FILE).exists():
        meta = read_scorer_json(path)
        if "kind" not in meta:
            raise ValueError(f"{path / SCORER_FILE}: missing field 'kind'")
        return load_kind(meta["kind"], path)
    if (path / "config.json").exists():
        return HFScorer(path)
    raise ValueError(f"{path}: neither a `condpt train-classifier` output ({SCORER_FILE}) "
                     "nor a Hugging Face checkpoint (config.json)")
