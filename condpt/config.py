"""`RunConfig`: the one pydantic config of a training run (YAML in, `key=value` overrides, `--dry-run`).

Paths to *inputs* written in a YAML file (data sources, checkpoint, tokenizer, control-token spec) are
resolved relative to that YAML file, so a config works from any working directory; paths given as
command-line overrides and `output_dir` are relative to the working directory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from condpt.sequences import DataConfig


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """Exactly one of `config` (train from scratch) or `checkpoint` (continued pretraining).

    `config` is either a tiny-model spec `{arch: gpt2|llama|gpt_neox|qwen2, d_model, n_layer, n_head}`
    (see `condpt.tiny.tiny_config`) or any Hugging Face config dict with a `model_type` key. `vocab_size`
    and the eos/bos ids always come from the tokenizer.
    """

    config: dict[str, Any] | None = None
    checkpoint: Path | None = None
    vocab_multiple: int = Field(1, ge=1, description="pad the embedding to a multiple of this (64 helps GPUs)")
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.config is None) == (self.checkpoint is None):
            raise ValueError("set exactly one of model.config (scratch) or model.checkpoint (continued pretraining)")
        if self.config is not None and "arch" not in self.config and "model_type" not in self.config:
            raise ValueError("model.config needs `arch` (a condpt.tiny architecture) or `model_type` (an HF config)")
        return self


class TokenizerConfig(_Strict):
    """Where the tokenizer comes from; control tokens are added if missing.

    `source`: `checkpoint` (the tokenizer saved with `model.checkpoint`), `gpt2-bpe` (the real GPT-2 BPE,
    built offline), `train-bpe` (a byte-level BPE trained on the training sources, for scratch tiny runs),
    or a path to a saved tokenizer directory.
    """

    source: str = "checkpoint"
    vocab_size: int = Field(2048, ge=300, description="only for train-bpe")
    train_docs: int = Field(20000, ge=1, description="only for train-bpe: documents read to train it")
    control_tokens: Path | None = Field(None, description="ControlTokens YAML; default <|good|>, <|bad|>, 𐀤")


class OptimConfig(_Strict):
    """AdamW (a torch optimizer created in the script) and a warmup + decay schedule."""

    lr: float = Field(6e-4, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float = Field(1.0, ge=0, description="max global grad norm; 0 disables")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)

    def lr_at(self, step: int, max_steps: int) -> float:
        """Learning rate for optimizer step `step` (0-based): a pure function, so resuming is exact."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        span = max(1, max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if self.schedule == "cosine" else 1 - progress
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * decay)


class TrainConfig(_Strict):
    """Steps, batch shape, evaluation, checkpointing and logging."""

    max_steps: int = Field(gt=0, description="optimizer steps")
    micro_batch_size: int = Field(8, gt=0, description="blocks per process per forward pass")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step")
    log_every: int = Field(10, gt=0)
    eval_every: int = Field(0, ge=0, description="steps between held-out evaluations; 0: only at the end")
    eval_batches: int = Field(20, gt=0, description="held-out micro-batches per evaluation (per process)")
    save_every: int = Field(0, ge=0, description="steps between checkpoints; 0: only on SIGTERM/stop_after")
    keep_last: int = Field(2, ge=1, description="checkpoints kept in OUTPUT_DIR/checkpoints")
    resume: str = Field("auto", description="auto (latest checkpoint in output_dir, if any), never, or a path")
    stop_after: int | None = Field(
        None, gt=0, description="checkpoint and exit after this step (split a run across fixed-length jobs)"
    )
    peak_flops: float | None = Field(
        None, gt=0, description="peak FLOP/s per process for MFU; None: measure an fp32 matmul at start"
    )
    report_to: list[str] = Field(default_factory=list, description="accelerate trackers, e.g. [tensorboard]")
    num_workers: int = Field(0, ge=0, description="DataLoader workers per process")
    preprocess_num_proc: int = Field(1, ge=1, description="processes for tokenising and packing (main process)")


class RunConfig(_Strict):
    """One training run: the single source of truth (written to OUTPUT_DIR/run_config.yaml)."""

    output_dir: Path
    seed: int = 0
    model: ModelConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    data: DataConfig
    train: TrainConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.tokenizer.source == "checkpoint" and self.model.checkpoint is None:
            raise ValueError("tokenizer.source: `checkpoint` needs model.checkpoint; use gpt2-bpe, train-bpe or a path")
        if self.train.stop_after is not None and self.train.stop_after > self.train.max_steps:
            raise ValueError("train.stop_after must be <= train.max_steps")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(json.loads(self.model_dump_json()), sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------------
# loading

_YAML_RELATIVE_PATHS = ("model.checkpoint", "tokenizer.control_tokens")


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML, so numbers/bools/lists work)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value (e.g. train.max_steps=10)")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from e
    return key.split("."), value


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `raw[path...] = value`; numeric parts index lists (`data.sources.0.weight=2`)."""
    node: Any = raw
    for i, part in enumerate(path):
        last = i == len(path) - 1
        where = ".".join(path[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {'.'.join(path)}: {where} is not an index of the list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"override {'.'.join(path)}: {'.'.join(path[:i])} is not a mapping")


def _resolve_relative(raw: dict[str, Any], base: Path) -> None:
    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str((base / value).resolve())
        return value

    for dotted in _YAML_RELATIVE_PATHS:
        head, _, leaf = dotted.partition(".")
        section = raw.get(head)
        if isinstance(section, dict) and leaf in section:
            section[leaf] = fix(section[leaf])
    tok = raw.get("tokenizer")
    if isinstance(tok, dict) and isinstance(tok.get("source"), str):
        src = tok["source"]
        if src not in ("checkpoint", "gpt2-bpe", "train-bpe"):
            tok["source"] = fix(src)
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("sources"), list):
        for src in data["sources"]:
            if isinstance(src, dict) and "path" in src:
                src["path"] = fix(src["path"])


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid run config ({origin}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc}: {e['msg']}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML run config, apply `key=value` overrides, validate. Raises `ConfigError`."""
    raw: dict[str, Any] = {}
    origin = "overrides"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections")
        raw = loaded
        _resolve_relative(raw, path.resolve().parent)
    for item in overrides:
        keys, value = parse_override(item)
        apply_override(raw, keys, value)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin)) from None
