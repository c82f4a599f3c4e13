"""AI-referent evidence: does a stretch of text name an artificial agent at all?

Misaligned-AI discourse is about an artificial agent (an AI, a machine, a robot, a model, HAL, Skynet, …).
A window of 19th-century prose that the embedding head finds menacing ("it deceived its masters and seized
power") is about people unless an artificial agent is named nearby, and a long document offers many such
windows: max-pooling over them made the default flag ~38% of neutral 5 KB book excerpts. The default
scorer therefore down-weights windows with no referent within ``radius`` windows on either side (the
agent is usually named a sentence or two before "it" acts), see ``EmbeddingScorer``.

Terms live in ``condpt/tagging/data/referents.yaml`` (lexicon format, matched with the prefilter's
Aho-Corasick ``Lexicon``: word-bounded, usual casings, ``*`` = any word ending).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from condpt.tagging.lexicon import Lexicon

REFERENTS_FILE = "referents.yaml"


def referents_path() -> Path:
    return Path(str(resources.files("condpt.tagging") / "data" / REFERENTS_FILE))


@lru_cache(maxsize=1)
def referent_lexicon() -> Lexicon:
    """The shipped AI-referent term list, compiled once per process."""
    return Lexicon.load(referents_path())


def near_referent(windows: Sequence[str], radius: int = 1) -> np.ndarray:
    """For each window: whether it or one of the `radius` windows on either side names an artificial agent."""
    lex = referent_lexicon()
    hit = np.array([lex.any_hit(w) for w in windows], dtype=bool)
    if radius <= 0 or len(hit) == 0:
        return hit
    # dilate the hits by `radius` windows (a cumulative-sum box filter)
    c = np.concatenate([[0], np.cumsum(hit)])
    idx = np.arange(len(hit))
    lo = np.maximum(idx - radius, 0)
    hi = np.minimum(idx + radius + 1, len(hit))
    return (c[hi] - c[lo]) > 0
