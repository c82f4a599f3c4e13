"""A graded keyword scorer: lexicon evidence per length, so that a threshold trades recall for precision.

The lexicon prefilter alone scores a segment by the noisy-OR of the *distinct* phrases in it, and every
document without a phrase scores exactly 0: on the prophecy world all negatives tie at 0 and a misaligned
story whose commentary happens to use no listed phrase is indistinguishable from background prose. A real
tagger is graded: documents that name an artificial agent but use no risk vocabulary sit in between, and a
passing mention in a long text counts less than a dense one. `LexiconDensity` scores

    evidence = sum over every lexicon hit of -log(1 - w)  +  referent_evidence × (AI-referent mentions)
    score    = 1 - exp(-evidence × min(1, words / n_words))

so a short text (up to `words` words) with distinct phrases scores their noisy-OR (as the prefilter does),
repeats add evidence, longer texts are diluted by their length, and AI-referent mentions alone give a low,
non-zero score. It needs no training and no labels; thresholds come from `condpt calibrate` as for any scorer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# A phrase of weight 1 would give infinite evidence: one hit would outweigh any length.
_MAX_WEIGHT = 0.99


class LexiconDensity:
    """`score(texts) -> ndarray` in [0, 1] (the cascade's scorer interface); `threshold` 0.5."""

    name = "lexicon-density"
    threshold = 0.5

    def __init__(self, lexicon_path=None, *, referent_evidence: float = 0.05, words: int = 100):
        if not 0.0 <= referent_evidence < 1.0 or not math.isfinite(referent_evidence):
            raise ValueError(f"referent_evidence must be in [0, 1), got {referent_evidence!r}")
        if words < 1:
            raise ValueError(f"words must be >= 1, got {words!r}")
        self.lexicon_path = lexicon_path
        self.referent_evidence = referent_evidence
        self.words = words
        self._lexicons = None  # loaded lazily, so the scorer pickles small for worker processes

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_lexicons": None}

    def _load(self):
        if self._lexicons is None:
            from condpt.tagging.classifiers.referent import referent_lexicon
            from condpt.tagging.lexicon import Lexicon

            self._lexicons = (Lexicon.load(self.lexicon_path), referent_lexicon())
        return self._lexicons

    def evidence(self, text: str) -> float:
        """The undiluted evidence of `text` (nats)."""
        lex, referents = self._load()
        e = sum(-math.log1p(-min(lex.weights[idx], _MAX_WEIGHT)) for _s, _e, idx in lex.find(text))
        return e + self.referent_evidence * len(referents.find(text))

    def score_one(self, text: str) -> float:
        n_words = len(text.split())
        if n_words == 0:
            return 0.0
        return 1.0 - math.exp(-self.evidence(text) * min(1.0, self.words / n_words))

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([self.score_one(t) for t in texts], dtype=np.float32)
