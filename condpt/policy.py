"""Data policies: what the tagged corpus becomes as training rows (condition, filter, set aside, upweight,
self-reference stories, plain MLE). Pure functions over batches (dict of lists)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from condpt.stories import SelfRefConfig


class PolicyConfig(BaseModel):
    """One data policy (an arm of the experiment grid)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["mle", "condition", "filter", "set_aside"] = "condition"
    granularity: Literal["document", "segment"] = "document"
    untagged_fraction: float = Field(0.0, ge=0.0, le=1.0, description="fraction of documents left without a tag")
    coverage: float = Field(
        1.0, ge=0.0, le=1.0, description="fraction of bad documents the tagger 'sees'; the rest pass as normal data"
    )
    upweight_good: float = Field(1.0, ge=1.0, description="repeat factor for good documents (fractional: stochastic rounding)")
    selfref: SelfRefConfig | None = None
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="re-tag from stored scores: bad iff score >= threshold")
    good_role: str = "good"
    bad_role: str = "bad"
    seed: int = 0
