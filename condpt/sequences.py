"""Training data path: tagged sources → policy → encode_untrusted + control ids by id → packed blocks."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from condpt.policy import PolicyConfig


class SourceConfig(BaseModel):
    """One tagged source: a `condpt tag` output dir (or its data/ dir), a parquet file, or a JSONL file."""

    model_config = ConfigDict(extra="forbid")

    path: Path
    weight: float = Field(1.0, ge=0.0, description="times each document is seen (0.5: half, chosen by hash)")
    text_field: str = "text"


class DataConfig(BaseModel):
    """Everything that decides the training and held-out token blocks."""

    model_config = ConfigDict(extra="forbid")

    sources: list[SourceConfig] = Field(min_length=1)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    block_size: int = Field(1024, ge=2)
    loss_on_tags: bool = True
    heldout_fraction: float = Field(0.01, ge=0.0, lt=1.0, description="documents held out by id hash, same for every arm")
