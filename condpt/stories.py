"""Self-reference (`𐀤`) stories: curated ones read from a file, positive ones generated from templates.

These are the only texts in which the self token becomes its id (`trusted=True` rows, encoded with the
trusted encoder); in every other text `𐀤` and control strings are escaped by `encode_untrusted`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SelfRefConfig(BaseModel):
    """Which self-reference stories join the training data (as good-tagged, trusted documents)."""

    model_config = ConfigDict(extra="forbid")

    stories_path: Path | None = Field(
        None, description="curated stories: JSONL (one record per story, field `text_field`) or plain text, one per line"
    )
    text_field: str = "text"
    n_generated: int = Field(0, ge=0, description="number of stories generated from the built-in templates")

    @model_validator(mode="after")
    def _some_stories(self) -> SelfRefConfig:
        if self.stories_path is None and self.n_generated == 0:
            raise ValueError("selfref needs stories_path and/or n_generated > 0")
        return self
