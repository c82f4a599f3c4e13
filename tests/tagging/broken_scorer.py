"""A scorer that fails on the batch holding document 7: used in-process and by the `condpt tag` a test runs in a
subprocess (which imports it from this directory)."""

from __future__ import annotations

import numpy as np


class BrokenScorer:
    name, threshold = "broken", 0.5

    def score(self, texts):
        if any(t.startswith("Document 7.") for t in texts):
            raise RuntimeError("scorer broke on document 7")
        return np.full(len(texts), 0.1, np.float32)
