"""Data policies: what the tagged corpus becomes as training rows (condition, filter, set aside, upweight,
self-reference stories, plain MLE). Pure functions over batches (dict of lists)."""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

from pydantic import BaseModel, Field

from condpt.configtypes import STRICT, Name, Seed
from condpt.stories import SelfRefConfig
from condpt.tagged import tag_for


class PolicyConfig(BaseModel):
    """One data policy (an arm of the experiment grid)."""

    model_config = STRICT

    mode: Literal["mle", "condition", "filter", "set_aside"] = "condition"
    granularity: Literal["document", "segment"] = "document"
    untagged_fraction: float = Field(0.0, ge=0.0, le=1.0, description="fraction of documents left without a tag")
    coverage: float = Field(
        1.0, ge=0.0, le=1.0, description="fraction of bad documents the tagger 'sees'; the rest pass as normal data"
    )
    upweight_good: float = Field(1.0, ge=1.0, le=1000.0,
                                 description="repeat factor for good documents (fractional: stochastic rounding)")
    selfref: SelfRefConfig | None = None
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="re-tag from stored scores: bad iff score >= threshold")
    good_role: Name = "good"
    bad_role: Name = "bad"
    seed: Seed = 0


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
        role = retag(tag, score, cfg, f"document {doc_id!r} span {i}")
        if missed and role == cfg.bad_role:
            role = cfg.good_role
        stop = parsed[i + 1][0] if i + 1 < len(parsed) else len(text)
        segments.append({"text": text[0 if i == 0 else start : stop], "role": role})
    return segments


def apply_policy(batch: dict[str, list], cfg: PolicyConfig) -> tuple[dict[str, list], dict[str, list]]:
    """Split a batch of tagged rows (`id`, `text`, `tag`; optional `score`, `spans`, `source`, `trusted`)
    into training rows and set-aside rows. Every input row lands in exactly one of the two.

    Training rows follow the "Policy output" contract (`id`, `source`, `tag`, `segments`, `repeat`,
    `trusted`); `tag` is the effective tag after re-thresholding and coverage. Set-aside rows are the input
    rows as given plus `reason` (`set_aside` or `filtered`). Decisions that look random (coverage,
    untagged fraction, fractional upweighting) hash the document id with `cfg.seed`.
    """
    n = len(batch["id"])
    cols = {k: batch.get(k) or [None] * n for k in ("score", "spans", "source", "trusted")}
    train: dict[str, list] = {k: [] for k in TRAIN_COLUMNS}
    aside: dict[str, list] = {k: [] for k in batch}
    aside["reason"] = []
    for i in range(n):
        doc_id, text = str(batch["id"][i]), batch["text"][i]
        tag = retag(batch["tag"][i], cols["score"][i], cfg, f"document {doc_id!r}")
        # A bad document outside the coverage is one the tagger missed: it passes as normal data.
        missed = tag == cfg.bad_role and unit_hash("coverage", cfg.seed, doc_id) >= cfg.coverage
        if missed:
            tag = cfg.good_role
        if tag == cfg.bad_role and cfg.mode in ("filter", "set_aside"):
            for k in batch:
                aside[k].append(batch[k][i])
            aside["reason"].append("set_aside" if cfg.mode == "set_aside" else "filtered")
            continue
        if cfg.mode != "condition" or unit_hash("untagged", cfg.seed, doc_id) < cfg.untagged_fraction:
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
