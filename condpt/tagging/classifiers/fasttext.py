"""fastText scorer: the cheap stage (thousands of ~4 KB documents per second per core).

Kept small on purpose: fastText's defaults (``bucket=2M, dim=100``) write a ~900 MB model; with
``bucket=200k, dim=48`` and word bigrams the model is ~40 MB and scores as well on short labelled sets.
"""

from __future__ import annotations

import os
import string
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MODEL_FILE = "model.bin"
DEFAULT_PARAMS: dict = {"dim": 48, "bucket": 200_000, "wordNgrams": 2, "epoch": 25, "lr": 0.5,
                        "minn": 0, "maxn": 0, "minCount": 1, "loss": "softmax", "thread": 1, "seed": 0}

# Punctuation becomes a separate token and newlines (fastText's line separator) become spaces, in one
# C-level `str.translate` call: a regex here would dominate the per-document cost.
_TABLE = str.maketrans({**{c: f" {c} " for c in string.punctuation}, "\n": " ", "\r": " ", "\t": " "})


def normalize(text: str) -> str:
    """Lowercase, split punctuation off, one line: the form fastText sees at training and scoring time."""
    return text.lower().translate(_TABLE)


class FastTextScorer:
    """P(label 1) from a supervised fastText model."""

    kind = "fasttext"

    def __init__(self, model, name: str = "fasttext", threshold: float = 0.5,
                 model_path: str | None = None) -> None:
        self.model = model
        self.model_path = model_path
        self.name = name
        self.threshold = threshold

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], **params) -> FastTextScorer:
        """Train on `texts` with binary `labels` (deterministic: one thread, fixed seed)."""
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None  # silence its load-time warning
        args = {**DEFAULT_PARAMS, **params}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "train.txt")
            with open(path, "w", encoding="utf-8") as f:
                for text, label in zip(texts, labels):
                    f.write(f"__label__{int(label)} {normalize(text)}\n")
            # fastText aborts with "Encountered NaN" on some small sets at a given learning rate; a
            # smaller rate trains fine, so step it down (deterministically) instead of failing the run.
            for attempt in range(4):
                try:
                    model = fasttext.train_supervised(input=path, verbose=0, **args)
                    break
                except RuntimeError as e:
                    if "NaN" not in str(e) or attempt == 3:
                        raise
                    args["lr"] = args["lr"] / 2
        return cls(model)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float32)
        labels, probs = self.model.predict([normalize(t) for t in texts], k=-1)
        out = np.empty(len(texts), dtype=np.float32)
        for i, (ls, ps) in enumerate(zip(labels, probs)):
            p1 = 0.0
            for lab, p in zip(ls, ps):
                if lab == "__label__1":
                    p1 = float(p)
            out[i] = p1
        return np.clip(out, 0.0, 1.0)

    def save(self, directory: str | Path) -> None:
        self.model.save_model(str(Path(directory) / MODEL_FILE))

    @classmethod
    def load(cls, directory: str | Path) -> FastTextScorer:
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None
        path = Path(directory) / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: fastText model missing")
        return cls(fasttext.load_model(str(path)), name=f"fasttext:{Path(directory).name}",
                   model_path=str(path))
