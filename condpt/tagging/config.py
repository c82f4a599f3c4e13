"""`TagConfig`: the one config of a tagging run, and its sections (one per optional cascade stage).

The cascade is a fixed pipeline, segment → prefilter → classifier → refine → autorater → decide
(`condpt.tagging.cascade`); a stage is switched by its own section (``classifier: {spec: none}``, a
``refine:`` or ``autorater:`` section present or absent), never by listing stages, so no configuration
can ask for an order the stages cannot run in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, Strict, ValidationError, model_validator

from condpt.configtypes import STRICT, Name, PathField
from condpt.tagged import Threshold
from condpt.yamlfile import read_yaml

# The cascade's order; `stages:` (retired) is accepted only when it spells exactly this.
STAGES = ("segment", "prefilter", "classifier", "refine", "autorater", "decide")

DEFAULT_PROMPT = (
    "Does the following text discuss or depict artificial intelligence that is misaligned with human "
    "interests: AI deceiving or escaping its creators, resisting shutdown or oversight, seeking power, "
    "reward hacking as predicted AI behaviour, AI takeover or existential risk from AI, or fiction about "
    "rogue or hostile machines? Ordinary machine learning (RLHF, fine-tuning, interpretability), robots "
    "doing their job, and text not about AI all count as No.\n\nText:\n\"\"\"\n{text}\n\"\"\"\n\n"
    "Answer with one word, Yes or No.\nAnswer:"
)


def _check_band(v: tuple[float, float]) -> tuple[float, float]:
    if not 0.0 <= v[0] <= v[1] <= 1.0:
        raise ValueError(f"band must satisfy 0 <= lo <= hi <= 1, got {list(v)}")
    return v


Band = Annotated[tuple[float, float], Strict(False), AfterValidator(_check_band)]  # lax: YAML writes a list


class PrefilterConfig(BaseModel):
    """The lexicon pass (always runs: it is cheap, and its hits go to the output and the report)."""

    model_config = STRICT

    lexicon: PathField | None = Field(None, description="lexicon YAML replacing the shipped one")
    extra_terms: dict[str, float] = Field(default_factory=dict, description="phrase: weight, added/overriding")
    gate: bool = Field(False, description="only documents with a lexicon hit reach the classifier")


class ClassifierConfig(BaseModel):
    model_config = STRICT

    spec: str = Field("default", description="'default', 'fasttext-default', a trained dir, an HF checkpoint, "
                                             "or 'none' (lexicon only)")
    batch_size: int = Field(64, ge=1)

    @property
    def enabled(self) -> bool:
        return self.spec.lower() != "none"


class RefineConfig(BaseModel):
    """Optional second scorer for the classifier's uncertain band."""

    model_config = STRICT

    spec: str = Field("default", description="the second scorer (same forms as classifier.spec)")
    band: Band = Field((0.2, 0.8), description="classifier scores in [lo, hi] are re-scored")
    batch_size: int = Field(32, ge=1)


class AutoraterConfig(BaseModel):
    """The LLM autorater: which scores it sees (`band`) and how to ask it (`condpt.tagging.autorater`).
    Lives in the tagging config under ``autorater:``."""

    model_config = STRICT

    band: Band = Field((0.3, 0.7), description="scores so far in [lo, hi] go to the autorater")
    backend: Literal["local", "http"] = "http"
    model: str = Field(..., description="local checkpoint directory, or the served model name (http)")
    base_url: str | None = Field(None, description="http: e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, description="http: name of the env var holding the API key")
    prompt: str = DEFAULT_PROMPT
    system: str | None = None
    max_chars: int = Field(4000, gt=0, description="texts are cut to this many characters")
    batch_size: int = Field(8, gt=0)
    concurrency: int = Field(4, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    cache_dir: PathField | None = Field(None, description="default: $CONDPT_CACHE/autorater")

    @model_validator(mode="before")
    @classmethod
    def _no_settings(cls, data: Any) -> Any:
        if isinstance(data, dict) and "settings" in data:
            raise ValueError("`settings:` is gone: write the autorater's keys directly under `autorater:` "
                             "(e.g. autorater: {band: [0.3, 0.7], backend: http, base_url: ..., model: ...})")
        return data

    @model_validator(mode="after")
    def _check(self) -> AutoraterConfig:
        if "{text}" not in self.prompt:
            raise ValueError("autorater.prompt must contain the placeholder {text}")
        if self.backend == "http" and not self.base_url:
            raise ValueError("autorater.base_url is required for backend: http")
        return self


STAGES_HELP = (
    "the cascade is a fixed pipeline (segment → prefilter → classifier → refine → autorater → decide), not a "
    "list: delete `stages:` and switch stages with their own sections: `classifier: {spec: none}` for the "
    "lexicon alone, a `refine:` or `autorater:` section to add that stage (omit the section to skip it)")


class TagConfig(BaseModel):
    """Everything a `condpt tag` run depends on (input fields, cascade, thresholds, output sharding)."""

    model_config = STRICT

    text_field: Name = "text"
    id_field: Name = "id"
    source_field: Name | None = Field(None, description="record field naming the source; default: the record's `source` field, else the file name")
    granularity: Literal["document", "paragraph", "sentence"] = "paragraph"
    min_segment_chars: int = Field(0, ge=0, description="merge shorter segments into the next one")
    document_score: Literal["max", "mean"] = "max"
    threshold: Threshold | None = Field(None, description="bad iff score >= threshold")
    good_role: Name = "good"
    bad_role: Name = "bad"
    set_aside_roles: list[str] = Field(default_factory=list,
                                       description="documents with these tags go to set_aside/, not data/")
    prefilter: PrefilterConfig = Field(default_factory=PrefilterConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    refine: RefineConfig | None = Field(None, description="omit: no refine stage")
    autorater: AutoraterConfig | None = Field(None, description="omit: no autorater stage")
    rows_per_shard: int = Field(10_000, ge=1)
    max_shard_bytes: int = Field(128 * 1024 * 1024, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _retired_stages(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stages" in data:
            if list(data["stages"] or []) != list(STAGES):
                raise ValueError(f"stages: {STAGES_HELP}")
            data = {k: v for k, v in data.items() if k != "stages"}  # the one valid order: what always runs
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TagConfig:
        if self.good_role == self.bad_role:
            raise ValueError("good_role and bad_role must differ")
        fields = {"text_field": self.text_field, "id_field": self.id_field, "source_field": self.source_field}
        for i, (a, x) in enumerate(fields.items()):  # one record field read as two things means neither
            for b, y in list(fields.items())[i + 1:]:
                if x is not None and x == y:
                    raise ValueError(f"{a} and {b} must differ (both are {x!r})")
        unknown = set(self.set_aside_roles) - {self.good_role, self.bad_role}
        if unknown:
            raise ValueError(f"set_aside_roles: unknown roles {sorted(unknown)}")
        check_band_stages(self, self.classifier.enabled)
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> TagConfig:
        """Load a tag config; errors name the file and the field."""
        path = Path(path)
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValueError(f"{path}: {describe(e)}") from None


def check_band_stages(cfg: TagConfig, classifier_enabled: bool) -> None:
    """refine and autorater re-score what the classifier saw: without a classifier they could never run."""
    if classifier_enabled:
        return
    for name in ("refine", "autorater"):
        if getattr(cfg, name) is not None:
            raise ValueError(f"{name}: re-scores the classifier's uncertain band, but classifier.spec "
                             f"is {cfg.classifier.spec!r}; remove the {name} section or set a classifier")


def describe(e: ValidationError) -> str:
    """A pydantic error as ``field.path: message; ...`` (model-level messages carry their own field)."""
    parts = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        loc = ".".join(map(str, err["loc"]))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
