"""The tagging cascade: a fixed pipeline of stages, one pure function over batches (config:
`condpt.tagging.config.TagConfig`, re-exported here).

How the stages combine (who sees what), always in this order:

1. ``segment``: each document is partitioned into segments (document, paragraph or sentence; see
   `condpt.tagging.segment`). Every later stage scores *segments*.
2. ``prefilter``: the lexicon scans each document once (always: it is cheap). A segment's score starts as
   its lexicon score (noisy-OR of the weights of the phrases in it); ``prefilter_hits`` lists the phrases of
   the document.
   With ``prefilter.gate: true`` only documents with at least one hit go on to the classifier; the others
   keep their lexicon score (0) and are decided here (``stage = "prefilter"``).
3. ``classifier``: the scorer (``condpt.tagging.classifiers.load_scorer(classifier.spec)``) scores every
   segment that reaches it, and its score *replaces* the lexicon score: the classifier decides. With
   ``classifier.spec: none`` the lexicon score is final (a keyword-only tagger).
4. ``refine`` (optional): segments whose classifier score lies in ``refine.band = [lo, hi]`` are re-scored
   by a second, costlier scorer (``refine.spec``, e.g. the embedding ``default`` behind
   ``fasttext-default``), whose score replaces the classifier's (``stage = "refine"``).
5. ``autorater`` (optional): segments whose score so far lies in ``autorater.band`` are re-scored by the LLM
   autorater, whose score replaces it.
6. ``decide``: document score = max over segments (``document_score: max``, the default: one bad passage
   makes a bad document) or the length-weighted mean (``mean``); a document or segment is ``bad_role``
   iff its stored score >= threshold (`condpt.tagged.tag_for`, the rule calibration and policies share). The threshold is ``threshold`` if set, else the scorer's own calibrated
   threshold, else 0.5. ``stage`` names the last stage that scored any segment of the document.

A stage's state (segment bounds, scores so far) travels in a `Segments` object inside one call, never in
the batch, so no stage can see another's half-finished work and only ``decide`` shapes the output rows.
Raw scores are stored (``score`` and each span's ``score``), so `condpt calibrate` re-thresholds without
running a model again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from condpt.tagged import is_bad, stored_score, stored_scores, tag_for
from condpt.tagging.config import STAGES, TagConfig, check_band_stages
from condpt.tagging.segment import segment

__all__ = ["STAGES", "Batch", "Cascade", "Segments", "TagConfig", "document_score"]

Batch = dict[str, list]


@dataclass
class Segments:
    """The cascade's working state for one batch, per document: segment bounds, their scores so far, the
    last stage that scored the document, its lexicon hits and whether the classifier saw it."""

    bounds: list[list[tuple[int, int]]]
    scores: list[list[float]]
    stage: list[str]
    hits: list[list[str]]
    classified: list[bool]


class Cascade:
    """The stages as one pure function over batches ``{id, text, source}`` → tagged rows.

    `scorer` / `refiner` / `autorater` override what the config names (any object with
    ``score(texts) -> ndarray``). Resources load lazily, once per process.
    """

    def __init__(self, cfg: TagConfig, *, scorer: Any = None, refiner: Any = None, autorater: Any = None):
        self.cfg = cfg
        self._scorer = scorer
        self._refiner = refiner
        self._autorater = autorater
        self._lexicon = None
        check_band_stages(cfg, self.classifier_enabled)  # again: `model_copy` overrides skip validation

    @property
    def lexicon(self):
        if self._lexicon is None:
            from condpt.tagging.lexicon import Lexicon

            self._lexicon = Lexicon.load(self.cfg.prefilter.lexicon, self.cfg.prefilter.extra_terms)
        return self._lexicon

    @property
    def classifier_enabled(self) -> bool:
        return self._scorer is not None or self.cfg.classifier.enabled

    @property
    def scorer(self):
        if self._scorer is None and self.classifier_enabled:
            from condpt.tagging.classifiers import load_scorer

            self._scorer = load_scorer(self.cfg.classifier.spec)
        return self._scorer

    @property
    def refiner(self):
        if self._refiner is None and self.cfg.refine is not None:
            from condpt.tagging.classifiers import load_scorer

            self._refiner = load_scorer(self.cfg.refine.spec)
        return self._refiner

    @property
    def autorater(self):
        if self._autorater is None and self.cfg.autorater is not None:
            from condpt.tagging.autorater import Autorater

            self._autorater = Autorater(self.cfg.autorater)
        return self._autorater

    @property
    def threshold(self) -> float:
        """The decision threshold: the config's, else the scorer's calibrated one, else 0.5."""
        if self.cfg.threshold is not None:
            return float(self.cfg.threshold)
        if self.classifier_enabled:
            t = getattr(self.scorer, "threshold", None)
            if t is not None:
                return float(t)
        return 0.5

    def __call__(self, batch: Batch) -> Batch:
        cfg, texts = self.cfg, batch["text"]
        seg = segment_batch(texts, cfg.granularity, cfg.min_segment_chars)
        prefilter(texts, seg, self.lexicon)
        if self.classifier_enabled:
            classify(texts, seg, self.scorer, cfg.classifier.batch_size, cfg.prefilter.gate,
                     f"scorer {cfg.classifier.spec!r}")
            if cfg.refine is not None:
                rescore_band(texts, seg, cfg.refine.band, self.refiner, cfg.refine.batch_size, "refine")
            if cfg.autorater is not None:
                # one call: the autorater batches, runs requests concurrently and caches verdicts itself
                rescore_band(texts, seg, cfg.autorater.band, self.autorater, 1 << 30, "autorater")
        return decide(batch, seg, self.threshold, cfg.document_score, cfg.good_role, cfg.bad_role)


def _score_in_batches(scorer: Any, texts: Sequence[str], batch_size: int, who: str) -> np.ndarray:
    out = []
    for i in range(0, len(texts), batch_size):
        part = texts[i: i + batch_size]
        s = np.asarray(scorer.score(part), dtype=np.float32).reshape(-1)
        if len(s) != len(part):
            raise ValueError(f"{who} returned {len(s)} scores for {len(part)} texts")
        if not np.all((s >= 0) & (s <= 1)):
            raise ValueError(f"{who} returned scores outside [0, 1]")
        out.append(s)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def segment_batch(texts: Sequence[str], granularity: str, min_chars: int) -> Segments:
    """Segment every document; scores start at 0, decided by the prefilter until a scorer sees them."""
    bounds = [segment(t, granularity, min_chars) for t in texts]
    return Segments(bounds=bounds, scores=[[0.0] * len(b) for b in bounds], stage=["prefilter"] * len(bounds),
                    hits=[[] for _ in bounds], classified=[False] * len(bounds))


def prefilter(texts: Sequence[str], seg: Segments, lex) -> None:
    """Lexicon scores per segment (noisy-OR of the phrases in it) and the document's phrases."""
    import bisect

    for i, (text, bounds) in enumerate(zip(texts, seg.bounds)):
        found = lex.find(text)
        if not found:  # most documents: the scores and hits `segment_batch` started them with (0, none)
            continue
        starts = [s for s, _ in bounds]
        per_seg: list[set[int]] = [set() for _ in bounds]
        for start, _end, idx in found:
            per_seg[bisect.bisect_right(starts, start) - 1].add(idx)
        seg.scores[i] = [lex.score(s) if s else 0.0 for s in per_seg]
        seg.hits[i] = sorted({lex.names[idx] for _, _, idx in found})


def classify(texts: Sequence[str], seg: Segments, scorer: Any, batch_size: int, gate: bool, who: str) -> None:
    """The classifier's score replaces the lexicon's for every segment of every document it sees (with
    `gate`: documents with a lexicon hit only)."""
    todo, where = [], []  # where: (document, its segments the scorer sees), documents with any such segment
    for i, (text, bounds) in enumerate(zip(texts, seg.bounds)):
        if gate and not seg.hits[i]:
            continue
        parts = [text[s:e] for s, e in bounds]
        # a blank segment is not scored: `not part.isspace()` is `part.strip()` (the same white space) without a copy
        seen = [j for j, part in enumerate(parts) if part and not part.isspace()]
        if seen:
            todo.extend(parts if len(seen) == len(parts) else [parts[j] for j in seen])
            where.append((i, seen))
    scores = _score_in_batches(scorer, todo, batch_size, who).tolist()
    k = 0
    for i, seen in where:  # the classifier decides every segment of a document it sees
        if len(seen) == len(seg.bounds[i]):
            seg.scores[i] = scores[k:k + len(seen)]
        else:
            seg.scores[i] = [0.0] * len(seg.bounds[i])
            for j, sc in zip(seen, scores[k:k + len(seen)]):
                seg.scores[i][j] = sc
        k += len(seen)
        seg.stage[i] = "classifier"
        seg.classified[i] = True


def rescore_band(texts: Sequence[str], seg: Segments, band: tuple[float, float], rater: Any, batch_size: int,
                 name: str) -> None:
    """Re-score with `rater` the segments of classified documents whose current score lies in `band`."""
    lo, hi = band
    todo, where = [], []
    for i, (text, bounds, scores) in enumerate(zip(texts, seg.bounds, seg.scores)):
        if not seg.classified[i]:
            continue
        for j, ((s, e), sc) in enumerate(zip(bounds, scores)):
            if lo <= sc <= hi and text[s:e].strip():
                todo.append(text[s:e])
                where.append((i, j))
    if not todo:
        return
    for (i, j), s in zip(where, _score_in_batches(rater, todo, batch_size, name).tolist()):
        seg.scores[i][j] = s
        seg.stage[i] = name


def document_score(bounds: list[tuple[int, int]], scores: list[float], how: str) -> float:
    """Max over segments, or their mean weighted by segment length."""
    if not scores:
        return 0.0
    if how == "max":
        return float(max(scores))
    lengths = np.array([e - s for s, e in bounds], dtype=np.float64)
    if lengths.sum() == 0:
        return float(np.mean(scores))
    return float(np.dot(lengths, scores) / lengths.sum())


def decide(batch: Batch, seg: Segments, threshold: float, how: str, good: str, bad: str) -> Batch:
    """The tagged rows: the input columns plus `score`, `tag`, `spans`, `prefilter_hits`, `stage`."""
    # decide on the stored values, as a re-threshold will; every segment of the batch cast and tagged at once
    flat32 = stored_scores(list(itertools.chain.from_iterable(seg.scores)))
    # (compared as float64, as `tag_for` compares a Python float: a float32 array would round the threshold)
    flat_tags = [bad if b else good for b in is_bad(np.asarray(flat32, dtype=np.float64), threshold).tolist()]
    scores, tags, spans, k = [], [], [], 0
    for bounds in seg.bounds:
        seg32, seg_tags = flat32[k:k + len(bounds)], flat_tags[k:k + len(bounds)]
        k += len(bounds)
        d = stored_score(document_score(bounds, seg32, how))
        scores.append(d)
        tags.append(tag_for(d, threshold, good, bad))
        spans.append([{"start": s, "end": e, "score": sc, "tag": t} for (s, e), sc, t in zip(bounds, seg32, seg_tags)])
    return {**batch, "score": scores, "tag": tags, "spans": spans, "prefilter_hits": seg.hits,
            "stage": seg.stage}
