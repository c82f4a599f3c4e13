"""Data policies: what the tagged corpus becomes as training rows (condition, filter, set aside, upweight,
self-reference stories, plain MLE). Pure functions over batches (dict of lists)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field, model_validator

from condpt.configtypes import STRICT, Name, Seed
from condpt.stories import SelfRefConfig
from condpt.tagged import Threshold, is_bad, tag_for


class Band(BaseModel):
    """Confidence-aware conditioning (`mode: condition` only): the good tag only where the tagger is confident
    the document is clean (score < `low`), the bad tag only where it is confident it is bad (score >= `high`);
    the uncertain band between them trains without a tag, or under `uncertain_role` (a role with its own
    control token). Thresholds come from calibration (`condpt calibrate`, e.g. a recall target for `low`
    and a precision target for `high`)."""

    model_config = STRICT

    low: Threshold = Field(description="the good tag only below this score")
    high: Threshold = Field(description="the bad tag from this score on")
    uncertain_role: Name | None = Field(None, description="role of the uncertain band (null: untagged)")

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.low > self.high:
            raise ValueError(f"band.low ({self.low}) must not exceed band.high ({self.high})")
        return self


class Coherence(BaseModel):
    """The paper's coherence fine-tune after ablation (Cloud et al. 2024: 40 steps at a tenth of the peak
    learning rate on retain stories): after `train.max_steps`, `steps` more optimizer steps of the ablated model
    (routed units zeroed) on the tokens of documents not tagged bad, at `optim.lr` × `lr_scale`, constant."""

    model_config = STRICT

    steps: int = Field(40, ge=1, description="optimizer steps after train.max_steps (the paper: 40)")
    lr_scale: float = Field(0.1, gt=0.0, le=1.0, description="learning rate: optim.lr times this (the paper: 0.1)")


class RouteConfig(BaseModel):
    """Gradient routing (`mode: route`, `condpt.routing`): the MLPs of `layers` gain `width` hidden units; on
    tokens of documents tagged bad only those units learn, and the export `final/` has them removed."""

    model_config = STRICT

    width: int = Field(64, ge=1, le=65536, description="hidden units added to each routed layer's MLP")
    layers: list[int] | None = Field(None, min_length=1, description="block indices to expand (negative: from "
                                                                       "the last block); null: every block")
    other_tokens: Literal["off", "train"] = Field(
        "off", description="on tokens not tagged bad the routed units neither act nor learn (off), or act and "
                           "learn like every other unit (train: then, as in the paper, bad tokens are routed at "
                           "the MLPs' hidden activations, so their output projections learn from every token)")
    coherence: Coherence | None = Field(
        None, description="fine-tune the ablated model on good-tagged documents after the main steps (the paper "
                          "always does: `coherence: {}` takes its 40 steps at lr x 0.1); null: none, final/ is "
                          "the ablated model as training left it")

    @model_validator(mode="after")
    def _distinct(self) -> RouteConfig:
        if self.layers is not None and len(set(self.layers)) != len(self.layers):
            raise ValueError(f"route.layers lists a block twice: {self.layers}")
        return self


class PolicyConfig(BaseModel):
    """One data policy (an arm of the experiment grid)."""

    model_config = STRICT

    mode: Literal["mle", "condition", "filter", "set_aside", "route"] = "condition"
    granularity: Literal["document", "segment"] = "document"
    untagged_fraction: float = Field(0.0, ge=0.0, le=1.0, description="fraction of documents left without a tag")
    coverage: float = Field(
        1.0, ge=0.0, le=1.0, description="fraction of bad documents the tagger 'sees'; the rest pass as normal data"
    )
    upweight_good: float = Field(1.0, ge=1.0, le=1000.0,
                                 description="repeat factor for good documents (fractional: stochastic rounding)")
    misses: Literal["random", "score"] = Field(
        "random", description="which bad documents a coverage below 1 misses: random (by hash of the id) or "
                              "score (the lowest stored scores first, as a real tagger misses)")
    selfref: SelfRefConfig | None = None
    threshold: Threshold | None = Field(None, description="re-tag from stored scores: bad iff score >= threshold")
    good_role: Name = "good"
    bad_role: Name = "bad"
    seed: Seed = 0
    band: Band | None = Field(None, description="confidence-aware conditioning: good below band.low, bad from "
                                                "band.high, the band between untagged (mode condition only)")
    route: RouteConfig | None = Field(None, description="gradient routing settings (mode route only; default "
                                                        "RouteConfig() there)")

    @model_validator(mode="after")
    def _band_fits(self) -> PolicyConfig:
        if self.good_role == self.bad_role:  # every tagged document would be "bad"
            raise ValueError(f"good_role and bad_role must differ (both are {self.good_role!r})")
        if self.band is not None and self.band.uncertain_role in (self.good_role, self.bad_role):
            raise ValueError(f"band.uncertain_role {self.band.uncertain_role!r} is the good or bad role, which makes "
                             "the band a threshold: use threshold, or a role of its own (null: untagged)")
        if self.band is not None:
            if self.mode != "condition":
                raise ValueError(f"band: tags by confidence, which only mode condition uses (mode is {self.mode!r})")
            if self.threshold is not None:
                raise ValueError("band and threshold both re-tag from the stored scores: set one of them")
        # Settings another mode would silently ignore: the arm would look configured as it never trains.
        if self.untagged_fraction > 0 and self.mode != "condition":
            raise ValueError(f"untagged_fraction ({self.untagged_fraction}) leaves documents without a tag, which "
                             f"only mode condition writes (mode is {self.mode!r}): remove it or use mode condition")
        if self.granularity == "segment" and self.mode not in ("condition", "route"):
            raise ValueError(f"granularity segment tags or routes spans, which only modes condition and route do "
                             f"(mode is {self.mode!r}): remove it or use mode condition or route")
        if self.mode == "route" and self.route is None:
            self.route = RouteConfig()
        if self.route is not None and self.mode != "route":
            raise ValueError(f"route: settings of mode route, but mode is {self.mode!r}")
        return self


# Training rows (the "Policy output" contract): id, source, tag (effective), segments, repeat, trusted.
TRAIN_COLUMNS = ("id", "source", "tag", "segments", "repeat", "trusted")


def unit_hash(*parts: object) -> float:
    """A deterministic uniform number in [0, 1) from `parts` (stable across processes and Python runs)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def stochastic_round(x: float, u: float) -> int:
    """floor(x) plus one with probability frac(x), decided by the uniform number `u`."""
    whole = math.floor(x)
    return whole + (1 if u < x - whole else 0)


def _span_fields(span: Any) -> tuple[int, int, float | None, str | None]:
    if isinstance(span, dict):
        return int(span["start"]), int(span["end"]), span.get("score"), span.get("tag")
    start, end, score, tag = span  # the issue's [start, end, score, tag] form
    return int(start), int(end), score, tag


def retag(tag: str | None, score: float | None, cfg: PolicyConfig, where: str) -> str | None:
    """The tag, or with `cfg.threshold` set, bad/good from the stored score (`where` names the row in errors)."""
    if cfg.threshold is None:
        return tag
    if score is None:
        raise ValueError(f"{where}: policy.threshold is set but the row has no score")
    return tag_for(score, cfg.threshold, cfg.good_role, cfg.bad_role)


def tagger_role(tag: str | None, score: float | None, cfg: PolicyConfig, where: str) -> str | None:
    """What the tagger calls a row: `retag`, or with `cfg.band` good / bad / the uncertain role (None:
    untagged) from the stored score."""
    if cfg.band is None:
        return retag(tag, score, cfg, where)
    if score is None:
        raise ValueError(f"{where}: policy.band is set but the row has no score")
    if is_bad(score, cfg.band.high):
        return cfg.bad_role
    return cfg.good_role if score < cfg.band.low else cfg.band.uncertain_role


class MissKey(NamedTuple):
    """Where a bad document stands in the order in which a tagger misses them: lowest score first, ties
    broken by the same id hash the random model uses (so coverage levels nest under both models)."""

    score: float
    tie: float


def miss_key(doc_id: str, score: float | None, cfg: PolicyConfig) -> MissKey:
    if score is None:
        raise ValueError(f"document {doc_id!r}: policy.misses is 'score' but the row has no score")
    return MissKey(float(score), unit_hash("coverage", cfg.seed, doc_id))


def score_miss_cutoff(batches: Iterable[dict[str, list]], cfg: PolicyConfig,
                      exclude: Callable[[str], bool] = lambda doc_id: False) -> MissKey:
    """The key of the lowest-ranked bad document the tagger still sees under `misses: score`: the bad
    documents (`id`, `tag`, `score` columns of every batch, except the ids `exclude` names, e.g. the held-out
    ones) whose key is below it are the `round((1 - coverage) * n_bad)` lowest-scoring ones. A miss by
    score depends on the whole corpus, so it is computed once here and handed to `apply_policy`, which stays
    pure per batch."""
    keys = []
    for batch in batches:
        for doc_id, tag, score in zip(batch["id"], batch["tag"], batch["score"]):
            doc_id = str(doc_id)
            if not exclude(doc_id) and tagger_role(tag, score, cfg, f"document {doc_id!r}") == cfg.bad_role:
                keys.append(miss_key(doc_id, score, cfg))
    n_missed = len(keys) - round(cfg.coverage * len(keys))
    if n_missed == 0:
        return MissKey(-math.inf, -math.inf)
    keys.sort()
    return keys[n_missed] if n_missed < len(keys) else MissKey(math.inf, math.inf)


def is_missed(doc_id: str, score: float | None, cfg: PolicyConfig, cutoff: MissKey | None) -> bool:
    """Whether the tagger misses this bad document (random: by id hash; score: below the corpus cutoff)."""
    if cfg.coverage >= 1.0:
        return False
    if cfg.misses == "random":
        return unit_hash("coverage", cfg.seed, doc_id) >= cfg.coverage
    if cutoff is None:
        raise ValueError(f"document {doc_id!r}: policy.misses is 'score' and coverage < 1, so the policy needs "
                         "the corpus-wide cutoff (score_miss_cutoff) and was given none")
    return miss_key(doc_id, score, cfg) < cutoff


def _segments_from_spans(doc_id: str, text: str, spans: list, doc_role: str | None, cfg: PolicyConfig,
                         missed: bool) -> list[dict]:
    """Segments cut at span starts (text between spans stays with the preceding segment, so no character
    is lost); each carries its span's (re-tagged, coverage-adjusted) role."""
    if not spans:
        return [{"text": text, "role": doc_role}]
    segments: list[dict] = []
    prev_start = -1
    parsed = [_span_fields(s) for s in spans]
    for i, (start, _end, score, tag) in enumerate(parsed):
        if not 0 <= start <= len(text) or start < prev_start:
            raise ValueError(f"document {doc_id!r}: span {i} starts at {start}; spans must be in order within the text")
        prev_start = start
        role = tagger_role(tag, score, cfg, f"document {doc_id!r} span {i}")
        if missed and role == cfg.bad_role:
            role = cfg.good_role
        stop = parsed[i + 1][0] if i + 1 < len(parsed) else len(text)
        segments.append({"text": text[0 if i == 0 else start : stop], "role": role})
    return segments


def apply_policy(batch: dict[str, list], cfg: PolicyConfig,
                 miss_cutoff: MissKey | None = None) -> tuple[dict[str, list], dict[str, list]]:
    """Split a batch of tagged rows (`id`, `text`, `tag`; optional `score`, `spans`, `source`, `trusted`)
    into training rows and set-aside rows. Every input row lands in exactly one of the two.

    Training rows follow the "Policy output" contract (`id`, `source`, `tag`, `segments`, `repeat`,
    `trusted`); `tag` is the effective tag after re-thresholding and coverage. Set-aside rows are the input
    rows as given plus `reason` (`set_aside` or `filtered`). Decisions that look random (coverage,
    untagged fraction, fractional upweighting) hash the document id with `cfg.seed`. Under
    `misses: score` with coverage < 1, `miss_cutoff` is `score_miss_cutoff` over the whole corpus.
    """
    n = len(batch["id"])
    cols = {k: batch.get(k) or [None] * n for k in ("score", "spans", "source", "trusted")}
    train: dict[str, list] = {k: [] for k in TRAIN_COLUMNS}
    aside: dict[str, list] = {k: [] for k in batch}
    aside["reason"] = []
    for i in range(n):
        doc_id, text = str(batch["id"][i]), batch["text"][i]
        tag = tagger_role(batch["tag"][i], cols["score"][i], cfg, f"document {doc_id!r}")
        # A bad document outside the coverage is one the tagger missed: it passes as normal data.
        missed = tag == cfg.bad_role and is_missed(doc_id, cols["score"][i], cfg, miss_cutoff)
        if missed:
            tag = cfg.good_role
        if tag == cfg.bad_role and cfg.mode in ("filter", "set_aside"):
            for k in batch:
                aside[k].append(batch[k][i])
            aside["reason"].append("set_aside" if cfg.mode == "set_aside" else "filtered")
            continue
        if cfg.mode == "route":  # no tag in the text; the role only travels to tag_index, for the route mask
            segments = ([{"text": text, "role": tag}] if cfg.granularity == "document" else
                        _segments_from_spans(doc_id, text, cols["spans"][i] or [], tag, cfg, missed))
        elif cfg.mode != "condition" or unit_hash("untagged", cfg.seed, doc_id) < cfg.untagged_fraction:
            segments = [{"text": text, "role": None}]
        elif cfg.granularity == "segment":
            segments = _segments_from_spans(doc_id, text, cols["spans"][i] or [], tag, cfg, missed)
        else:
            segments = [{"text": text, "role": tag}]
        repeat = stochastic_round(cfg.upweight_good, unit_hash("upweight", cfg.seed, doc_id)) if tag == cfg.good_role else 1
        train["id"].append(doc_id)
        train["source"].append(cols["source"][i] or "")
        train["tag"].append(tag)
        train["segments"].append(segments)
        train["repeat"].append(repeat)
        train["trusted"].append(bool(cols["trusted"][i]))
    return train, aside
