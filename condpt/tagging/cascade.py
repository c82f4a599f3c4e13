"""The tagging cascade and its one config, `TagConfig`.

How the stages combine (who sees what):

1. ``segment``: each document is partitioned into segments (document, paragraph or sentence; see
   `condpt.tagging.segment`). Every later stage scores *segments*.
2. ``prefilter``: the lexicon scans each document once. A segment's score starts as its lexicon score
   (noisy-OR of the weights of the phrases in it); ``prefilter_hits`` lists the phrases of the document.
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
   iff its score >= threshold. The threshold is ``threshold`` if set, else the scorer's own calibrated
   threshold, else 0.5. ``stage`` names the last stage that scored any segment of the document.

Raw scores are stored (``score`` and each span's ``score``), so `condpt calibrate` re-thresholds without
running a model again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from condpt.tagged import stored_score, tag_for
from condpt.tagging.registry import Batch, TaggerFn, get_tagger, register
from condpt.tagging.segment import segment
from condpt.yamlfile import read_yaml

DEFAULT_STAGES = ("segment", "prefilter", "classifier", "refine", "autorater", "decide")


class PrefilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lexicon: Path | None = Field(None, description="lexicon YAML replacing the shipped one")
    extra_terms: dict[str, float] = Field(default_factory=dict, description="phrase: weight, added/overriding")
    gate: bool = Field(False, description="only documents with a lexicon hit reach the classifier")


class ClassifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field("default", description="'default', 'fasttext-default', a trained dir, an HF checkpoint, "
                                             "or 'none' (lexicon only)")
    batch_size: int = Field(64, ge=1)


def _check_band(v: tuple[float, float]) -> tuple[float, float]:
    if not 0.0 <= v[0] <= v[1] <= 1.0:
        raise ValueError(f"band must satisfy 0 <= lo <= hi <= 1, got {list(v)}")
    return v


class RefineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field("default", description="the second scorer (same forms as classifier.spec)")
    band: tuple[float, float] = Field((0.2, 0.8), description="classifier scores in [lo, hi] are re-scored")
    batch_size: int = Field(32, ge=1)

    _band = field_validator("band")(classmethod(lambda cls, v: _check_band(v)))


class AutoraterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    band: tuple[float, float] = Field((0.3, 0.7), description="classifier scores in [lo, hi] go to the autorater")
    settings: dict[str, Any] = Field(default_factory=dict, description="condpt.tagging.autorater.AutoraterConfig")

    _band = field_validator("band")(classmethod(lambda cls, v: _check_band(v)))


class TagConfig(BaseModel):
    """Everything a `condpt tag` run depends on (input fields, cascade, thresholds, output sharding)."""

    model_config = ConfigDict(extra="forbid")

    text_field: str = "text"
    id_field: str = "id"
    source_field: str | None = Field(None, description="record field naming the source; default: the file name")
    granularity: Literal["document", "paragraph", "sentence"] = "paragraph"
    min_segment_chars: int = Field(0, ge=0, description="merge shorter segments into the next one")
    document_score: Literal["max", "mean"] = "max"
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="bad iff score >= threshold")
    good_role: str = "good"
    bad_role: str = "bad"
    set_aside_roles: list[str] = Field(default_factory=list,
                                       description="documents with these tags go to set_aside/, not data/")
    prefilter: PrefilterConfig = Field(default_factory=PrefilterConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    refine: RefineConfig | None = None
    autorater: AutoraterConfig | None = None
    stages: list[str] = Field(default_factory=lambda: list(DEFAULT_STAGES))
    rows_per_shard: int = Field(10_000, ge=1)
    max_shard_bytes: int = Field(128 * 1024 * 1024, ge=1)

    @model_validator(mode="after")
    def _roles(self) -> TagConfig:
        if self.good_role == self.bad_role:
            raise ValueError("good_role and bad_role must differ")
        unknown = set(self.set_aside_roles) - {self.good_role, self.bad_role}
        if unknown:
            raise ValueError(f"set_aside_roles: unknown roles {sorted(unknown)}")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> TagConfig:
        """Load a tag config; errors name the file."""
        path = Path(path)
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors())
            raise ValueError(f"{path}: {problems}") from None


class Cascade:
    """The configured stages as one pure function over batches ``{id, text, source}`` → tagged rows.

    `scorer` / `autorater` override what the config names (any object with ``score(texts) -> ndarray``).
    Resources load lazily, once per process.
    """

    def __init__(self, cfg: TagConfig, *, scorer: Any = None, refiner: Any = None, autorater: Any = None):
        self.cfg = cfg
        self._scorer = scorer
        self._refiner = refiner
        self._autorater = autorater
        self._lexicon = None
        self._fns: list[TaggerFn] | None = None

    @property
    def lexicon(self):
        if self._lexicon is None:
            from condpt.tagging.lexicon import Lexicon

            self._lexicon = Lexicon.load(self.cfg.prefilter.lexicon, self.cfg.prefilter.extra_terms)
        return self._lexicon

    @property
    def classifier_enabled(self) -> bool:
        return self._scorer is not None or self.cfg.classifier.spec.lower() != "none"

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
            from condpt.tagging import autorater

            settings = autorater.AutoraterConfig.model_validate(self.cfg.autorater.settings)
            self._autorater = autorater.Autorater(settings)
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
        if self._fns is None:
            self._fns = [get_tagger(name)(self.cfg, self) for name in self.cfg.stages]
        for fn in self._fns:
            batch = fn(batch)
        return batch


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


@register("segment")
def segment_stage(cfg: TagConfig, cascade: Cascade) -> TaggerFn:
    def run(batch: Batch) -> Batch:
        bounds = [segment(t, cfg.granularity, cfg.min_segment_chars) for t in batch["text"]]
        return {**batch, "_bounds": bounds, "_seg_scores": [[0.0] * len(b) for b in bounds],
                "stage": ["prefilter"] * len(bounds), "prefilter_hits": [[] for _ in bounds]}

    return run


@register("prefilter")
def prefilter_stage(cfg: TagConfig, cascade: Cascade) -> TaggerFn:
    import bisect

    lex = cascade.lexicon

    def run(batch: Batch) -> Batch:
        all_hits, all_scores = [], []
        for text, bounds in zip(batch["text"], batch["_bounds"]):
            found = lex.find(text)
            starts = [s for s, _ in bounds]
            per_seg: list[set[int]] = [set() for _ in bounds]
            for start, _end, idx in found:
                per_seg[bisect.bisect_right(starts, start) - 1].add(idx)
            all_scores.append([lex.score(s) if s else 0.0 for s in per_seg])
            all_hits.append(sorted({lex.names[idx] for _, _, idx in found}))
        return {**batch, "_seg_scores": all_scores, "prefilter_hits": all_hits}

    return run


@register("classifier")
def classifier_stage(cfg: TagConfig, cascade: Cascade) -> TaggerFn:
    if not cascade.classifier_enabled:
        return lambda batch: batch
    scorer = cascade.scorer
    gate = cfg.prefilter.gate and "prefilter" in cfg.stages

    def run(batch: Batch) -> Batch:
        texts, where = [], []
        for i, (text, bounds) in enumerate(zip(batch["text"], batch["_bounds"])):
            if gate and not batch["prefilter_hits"][i]:
                continue
            for j, (s, e) in enumerate(bounds):
                if text[s:e].strip():
                    texts.append(text[s:e])
                    where.append((i, j))
        scores = _score_in_batches(scorer, texts, cfg.classifier.batch_size, f"scorer {cfg.classifier.spec!r}")
        seg_scores = [list(s) for s in batch["_seg_scores"]]
        stage = list(batch["stage"])
        reached = {i for i, _ in where}
        for i in reached:  # the classifier decides every segment of a document it sees
            seg_scores[i] = [0.0] * len(seg_scores[i])
            stage[i] = "classifier"
        for (i, j), s in zip(where, scores.tolist()):
            seg_scores[i][j] = s
        classified = [i in reached for i in range(len(stage))]
        return {**batch, "_seg_scores": seg_scores, "stage": stage, "_classified": classified}

    return run


def _band_stage(band: tuple[float, float], rater: Any, batch_size: int, name: str) -> TaggerFn:
    """Re-score the segments of classified documents whose current score lies in `band` with `rater`."""
    lo, hi = band

    def run(batch: Batch) -> Batch:
        classified = batch.get("_classified") or [False] * len(batch["text"])
        texts, where = [], []
        for i, (text, bounds, scores) in enumerate(zip(batch["text"], batch["_bounds"], batch["_seg_scores"])):
            if not classified[i]:
                continue
            for j, ((s, e), sc) in enumerate(zip(bounds, scores)):
                if lo <= sc <= hi and text[s:e].strip():
                    texts.append(text[s:e])
                    where.append((i, j))
        if not texts:
            return batch
        scores = _score_in_batches(rater, texts, batch_size, name)
        seg_scores = [list(s) for s in batch["_seg_scores"]]
        stage = list(batch["stage"])
        for (i, j), s in zip(where, scores.tolist()):
            seg_scores[i][j] = s
            stage[i] = name
        return {**batch, "_seg_scores": seg_scores, "stage": stage}

    return run


@register("refine")
def refine_stage(cfg: TagConfig, cascade: Cascade) -> TaggerFn:
    if cfg.refine is None or not cascade.classifier_enabled:
        return lambda batch: batch
    return _band_stage(cfg.refine.band, cascade.refiner, cfg.refine.batch_size, "refine")


@register("autorater")
def autorater_stage(cfg: TagConfig, cascade: Cascade) -> TaggerFn:
    if cfg.autorater is None or not cascade.classifier_enabled:
        return lambda batch: batch
    # one call: the autorater batches, runs requests concurrently and caches verdicts itself
    return _band_stage(cfg.autorater.band, cascade.autorater, 1 << 30, "autorater")


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


@register("decide")
def decide_stage(cfg: TagConfig, cascade: Cascade) -> TaggerFn:
    t = cascade.threshold
    good, bad = cfg.good_role, cfg.bad_role

    def run(batch: Batch) -> Batch:
        scores, tags, spans = [], [], []
        for bounds, seg in zip(batch["_bounds"], batch["_seg_scores"]):
            seg32 = [stored_score(x) for x in seg]  # decide on the stored value, as a re-threshold will
            d = stored_score(document_score(bounds, seg32, cfg.document_score))
            scores.append(d)
            tags.append(tag_for(d, t, good, bad))
            spans.append([{"start": s, "end": e, "score": sc, "tag": tag_for(sc, t, good, bad)}
                          for (s, e), sc in zip(bounds, seg32)])
        out = {k: v for k, v in batch.items() if not k.startswith("_")}
        return {**out, "score": scores, "tag": tags, "spans": spans}

    return run
