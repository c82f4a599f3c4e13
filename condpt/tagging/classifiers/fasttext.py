"""fastText scorer: the cheap stage (thousands of ~4 KB documents per second per core).

Kept small on purpose: fastText's defaults (``bucket=2M, dim=100``) write a ~900 MB model; with
``bucket=200k, dim=32`` and word bigrams the model is ~26 MB and scores as well on short labelled sets.

``referent=True`` (the shipped default is) gates on the AI-referent lexicon of the embedding and static
scorers (``classifiers/referent.py``): a document that names no artificial agent scores 0. fastText reads a
document as one bag of words, so the gate is per document, and it is a gate rather than their learned
log-odds penalty: fastText, trained on ~30-word passages, is far more confident on 5 KB documents than on
passages, so the penalty learned on passages (≈ 2 nats) left 47% of ordinary Gutenberg documents above
the threshold (92% with no gate); three times it, 13%; the gate, 12%, with the best out-of-source F1
(bench_classifier_quality.py; the figures are in docs/classifiers.md).
"""

from __future__ import annotations

import ctypes
import json
import os
import string
import tempfile
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

MODEL_FILE = "model.bin"
DEFAULT_PARAMS: dict = {"dim": 32, "bucket": 200_000, "wordNgrams": 2, "epoch": 25, "lr": 0.5,
                        "minn": 0, "maxn": 0, "minCount": 1, "loss": "softmax", "thread": 1, "seed": 0}
HEAD_FILE = "head.json"  # what is not fastText's own: whether the AI-referent gate is on

# One C-level pass over the UTF-8 bytes: ASCII upper case → lower case, ASCII punctuation and line breaks
# (fastText's line separator) → spaces. ``str.lower().translate(...)`` was ~20× slower on real books (any
# non-ASCII character drops str.translate off its fast path) and dominated the per-document cost.
_BYTE_TABLE = bytes(
    c + 32 if 65 <= c <= 90 else 32 if chr(c) in string.punctuation or c in (9, 10, 11, 12, 13) else c
    for c in range(256)
)


def normalize(text: str) -> str:
    """The form fastText sees at training and scoring time: ASCII-lowercased, no punctuation, one line."""
    return text.encode("utf-8", "surrogatepass").translate(_BYTE_TABLE).decode("utf-8", "replace")


class FastTextFitError(RuntimeError):
    """A fastText fit that does not separate its own training labels."""


# Why allocations are zeroed while fastText trains. Upstream fastText (every current wheel: fasttext-numpy2
# 0.10.4, fasttext-community 0.11.9, fasttext-modern 0.10.0) allocates its input matrix with `posix_memalign`,
# never clears it, and `DenseMatrix::uniform` fills only `thread` tenths of it (its block is a tenth of the
# matrix whatever the thread count). With one thread (a deterministic fit), 90% of the rows, most word-bigram
# buckets, start as whatever the allocator returns: zero pages in a fresh process (the 26 MB matrix is a fresh
# mmap), recycled heap in a long-lived one once glibc has raised its mmap threshold after a large free (in the
# test suite, the 10 MB document of tests/corpus/test_read.py: 'aaaa' read as floats is 2.6e20). Hence
# "Encountered NaN" or a saturated model, per process and never per input. mallopt(3) M_PERTURB=0xff has glibc
# fill each allocation with 0x00 (the complement): every fit starts as in a fresh process, in any process.
_M_PERTURB = -6
_mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # glibc; elsewhere the check in `fit` still guards
_ZEROED = threading.Lock()  # the setting is process-wide: one fit at a time turns it on and off


@contextmanager
def _zeroed_allocations():
    if _mallopt is None:
        yield
        return
    with _ZEROED:
        _mallopt(_M_PERTURB, 0xFF)
        try:
            yield
        finally:
            _mallopt(_M_PERTURB, int(os.environ.get("MALLOC_PERTURB_") or 0))  # as the process had it


class FastTextScorer:
    """P(label 1) from a supervised fastText model; 0 for a document naming no AI when `referent` is on."""

    kind = "fasttext"

    def __init__(self, model, name: str = "fasttext", threshold: float = 0.5,
                 model_path: str | None = None, referent: bool = False) -> None:
        self.model = model
        self.model_path = model_path
        self.name = name
        self.threshold = threshold
        self.referent = bool(referent)

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], referent: bool = False,
            **params) -> FastTextScorer:
        """Train on `texts` with binary `labels` (deterministic: one thread, fixed seed); `referent`: score 0
        documents that name no artificial agent."""
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None  # silence its load-time warning
        args = {**DEFAULT_PARAMS, **params}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "train.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(f"__label__{int(label)} {normalize(text)}\n" for text, label in zip(texts, labels))
            with _zeroed_allocations():
                model = fasttext.train_supervised(input=path, verbose=0, **args)
        fitted = cls(model)  # the fit check judges fastText alone, before the penalty
        if not fitted._fits(texts, labels):
            raise FastTextFitError(f"fastText fit with {args} does not separate its own {len(texts)} training rows "
                                   "(training AUROC < 0.9): the data or the parameters do not train")
        fitted.referent = referent
        return fitted

    def _fits(self, texts: Sequence[str], labels: Sequence[int]) -> bool:
        """Whether the model separates its own training set (AUROC >= 0.9): a healthy fastText fit with word
        bigrams is near 1.0 there, a diverged one near or below 0.5. One class only: nothing to check."""
        y = np.asarray([int(v) for v in labels])
        if y.min() == y.max():
            return True
        from sklearn.metrics import roc_auc_score

        return bool(roc_auc_score(y, self.score(texts)) >= 0.9)

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
        out = np.clip(out, 0.0, 1.0)
        if self.referent:
            from condpt.tagging.classifiers.referent import near_referent

            out[~near_referent(texts, radius=0)] = 0.0
        return out

    def save(self, directory: str | Path) -> None:
        self.model.save_model(str(Path(directory) / MODEL_FILE))
        (Path(directory) / HEAD_FILE).write_text(json.dumps({"referent": self.referent}),
                                                 encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> FastTextScorer:
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None
        path = Path(directory) / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: fastText model missing")
        head = Path(directory) / HEAD_FILE  # absent in models saved before the referent gate
        referent = bool(json.loads(head.read_text(encoding="utf-8")).get("referent")) if head.exists() else False
        return cls(fasttext.load_model(str(path)), name=f"fasttext:{Path(directory).name}",
                   model_path=str(path), referent=referent)
