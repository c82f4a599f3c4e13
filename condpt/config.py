"""`RunConfig`: the one pydantic config of a training run (YAML in, `key=value` overrides, `--dry-run`).

Paths to *inputs* written in a YAML file (data sources, checkpoint, tokenizer, control-token spec, self-reference
stories, a resume checkpoint) are resolved relative to that YAML file, so a config works from any working
directory; paths given as command-line overrides and `output_dir` are relative to the working directory.

`load_config` refuses, before any process starts, whatever cannot run: a file that is not UTF-8 or repeats a key
(`condpt.yamlfile`), a value of the wrong type or out of range (`configtypes.STRICT`: no bool-as-int, finite
floats), an unknown key (with a "did you mean"), and inputs that are missing or do not fit together
(`condpt.inputs`). Each error names the file, the field and where its value came from (YAML line or override).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, Strict, ValidationError, field_validator, model_validator

from condpt.configtypes import STRICT, Name, PathField, Seed
from condpt.sequences import DataConfig
from condpt.yamlfile import YamlError, key_lines, load_yaml, read_yaml


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the file and field."""


class _Strict(BaseModel):
    model_config = STRICT


TinyArch = Literal["gpt2", "llama", "gpt_neox", "qwen2"]
TINY_ARCHS = typing.get_args(TinyArch)
# Set from the tokenizer by `condpt.model.build_model`: a value in model.config would be silently replaced.
FROM_TOKENIZER = ("vocab_size", "eos_token_id", "bos_token_id")


class TinySpec(_Strict):
    """`model.config` for a `condpt.tiny` architecture (the keys `condpt.tiny.tiny_config` takes)."""

    arch: TinyArch
    d_model: int = Field(64, gt=0)
    n_layer: int = Field(2, gt=0)
    n_head: int = Field(4, gt=0)
    max_positions: int | None = Field(None, gt=0, description="default: data.block_size")
    tie_word_embeddings: bool = True

    @model_validator(mode="after")
    def _heads(self) -> TinySpec:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")
        return self


def _nested_errors(err: ValidationError, names: list[str]) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            msg = "unknown key" + (f"; did you mean {close[0]}?" if close else f" (keys: {', '.join(names)})")
        parts.append(f"{key}: {msg}" if key else msg)
    return "; ".join(parts)


def _non_finite(value: Any, where: str = "") -> str | None:
    """The key path of the first inf/nan inside a free-form dict (what STRICT cannot see into), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "<value>"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


class ModelConfig(_Strict):
    """Exactly one of `config` (train from scratch) or `checkpoint` (continued pretraining).

    `config` is either a tiny-model spec `{arch: gpt2|llama|gpt_neox|qwen2, d_model, n_layer, n_head}`
    (`TinySpec`, see `condpt.tiny.tiny_config`) or any Hugging Face config dict with a `model_type` key of a
    causal LM (checked against transformers at load time). `vocab_size` and the eos/bos ids always come
    from the tokenizer.
    """

    config: dict[str, Any] | None = None
    checkpoint: PathField | None = None
    vocab_multiple: int = Field(1, ge=1, le=1024, description="pad the embedding to a multiple of this (64 helps GPUs)")
    token_init: Literal["mean", "text"] | None = Field(
        None, description="checkpoint only: rows of the control tokens it lacks start at the mean of its rows (mean, "
                          "the default), or at the mean embedding of each token's description (text), as "
                          "`condpt add-tokens --init`")
    gradient_checkpointing: bool = False

    def tiny_spec(self) -> TinySpec | None:
        """`config` read as a tiny-model spec, when it is one (an `arch` key; validated at load)."""
        return TinySpec.model_validate(self.config) if self.config and "arch" in self.config else None

    @field_validator("config")
    @classmethod
    def _spec(cls, spec: dict[str, Any] | None) -> dict[str, Any] | None:
        if spec is None:
            return spec
        bad = _non_finite(spec)
        if bad:
            raise ValueError(f"{bad}: must be a finite number")
        if "arch" in spec:
            try:
                TinySpec.model_validate(spec)
            except ValidationError as e:
                raise ValueError(_nested_errors(e, list(TinySpec.model_fields))) from None
        elif not isinstance(spec.get("model_type"), str) or not spec["model_type"]:
            raise ValueError("needs `arch` (a condpt.tiny architecture: "
                             f"{', '.join(TINY_ARCHS)}) or `model_type` (a Hugging Face config)")
        taken = [k for k in FROM_TOKENIZER if k in spec]
        if taken:
            raise ValueError(f"{', '.join(taken)}: set from the tokenizer, not in model.config")
        return spec

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.config is None) == (self.checkpoint is None):
            raise ValueError("set exactly one of model.config (scratch) or model.checkpoint (continued pretraining)")
        if self.config is not None and self.token_init is not None:
            raise ValueError("model.token_init: only for model.checkpoint (a model from model.config is trained "
                             "from scratch, every row included)")
        return self


class TokenizerConfig(_Strict):
    """Where the tokenizer comes from; control tokens are added if missing.

    `source`: `checkpoint` (the tokenizer saved with `model.checkpoint`), `gpt2-bpe` (the real GPT-2 BPE,
    built offline), `train-bpe` (a byte-level BPE trained on the training sources, for scratch tiny runs),
    or a path to a saved tokenizer directory. With `model.checkpoint`, only `checkpoint` or a directory
    holding the checkpoint's own vocabulary (checked at load time, `condpt.inputs`).
    """

    source: Name = "checkpoint"
    vocab_size: int = Field(2048, ge=300, le=2**20, description="only for train-bpe")
    train_docs: int = Field(20000, ge=1, description="only for train-bpe: documents read to train it")
    control_tokens: PathField | None = Field(None, description="ControlTokens YAML; default <|good|>, <|bad|>, 𐀤")


Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class OptimConfig(_Strict):
    """AdamW (a torch optimizer created in the script) and a warmup + decay schedule."""

    lr: float = Field(6e-4, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: Annotated[tuple[Beta, Beta], Strict(False)] = (0.9, 0.95)  # lax only so YAML's list becomes the tuple
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
    resume: Name = Field("auto", description="auto (latest checkpoint in output_dir, if any), never, or a path")
    stop_after: int | None = Field(
        None, gt=0, description="checkpoint and exit after this step (split a run across fixed-length jobs)"
    )
    peak_flops: float | None = Field(
        None, gt=0, description="peak FLOP/s per process for MFU; None: measure an fp32 matmul at start"
    )
    report_to: list[Name] = Field(default_factory=list, description="accelerate trackers, e.g. [tensorboard]")
    num_workers: int = Field(0, ge=0, description="DataLoader workers per process")
    preprocess_num_proc: int = Field(1, ge=1, description="processes for tokenising and packing (main process)")


class RunConfig(_Strict):
    """One training run: the single source of truth (written to OUTPUT_DIR/run_config.yaml)."""

    output_dir: PathField
    seed: Seed = 0
    model: ModelConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    data: DataConfig
    train: TrainConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        # Messages start with the field: errors of this validator have no location of their own.
        if self.tokenizer.source == "checkpoint" and self.model.checkpoint is None:
            raise ValueError("tokenizer.source: `checkpoint` needs model.checkpoint; use gpt2-bpe, train-bpe or a path")
        if self.model.checkpoint is not None and self.tokenizer.source in ("gpt2-bpe", "train-bpe"):
            raise ValueError(f"tokenizer.source: {self.tokenizer.source} builds a new tokenizer whose ids do not "
                             "match model.checkpoint's embeddings (<|good|> would get the id of an ordinary token "
                             "of the checkpoint); use `checkpoint` or a tokenizer directory saved with it")
        if self.train.stop_after is not None and self.train.stop_after > self.total_steps:
            raise ValueError(f"train.stop_after must be <= train.max_steps (+ data.policy.route.coherence.steps): "
                             f"{self.total_steps}")
        tiny = self.model.config if self.model.config and "arch" in self.model.config else {}
        if tiny.get("max_positions") is not None and tiny["max_positions"] < self.data.block_size:
            raise ValueError(f"data.block_size: {self.data.block_size} exceeds model.config.max_positions "
                             f"({tiny['max_positions']})")
        if not any(src.weight > 0 for src in self.data.sources):
            raise ValueError("data.sources: every weight is 0, so there is nothing to train on")
        return self

    @property
    def coherence_steps(self) -> int:
        """Optimizer steps after `train.max_steps`: the coherence fine-tune of an ablated route model (else 0)."""
        route = self.data.policy.route
        return route.coherence.steps if route is not None and route.coherence is not None else 0

    @property
    def total_steps(self) -> int:
        return self.train.max_steps + self.coherence_steps

    def to_yaml(self) -> str:
        return yaml.safe_dump(json.loads(self.model_dump_json()), sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------------
# loading

_YAML_RELATIVE_PATHS = ("model.checkpoint", "tokenizer.control_tokens", "data.policy.selfref.stories_path")
_BUILTIN_TOKENIZERS = ("checkpoint", "gpt2-bpe", "train-bpe")


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML, so numbers/bools/lists work)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value (e.g. train.max_steps=10)")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a file name with bytes that are not UTF-8, decoded by Python as surrogates
        shown = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise ConfigError(f"override {key}: not UTF-8 text ({shown}); a run config (and the run_config.yaml a "
                          "run saves) holds only UTF-8: rename or link the file") from None
    try:
        value = load_yaml(raw, f"override {item!r}") if raw.strip() else ""
    except YamlError as e:
        raise ConfigError(str(e)) from None
    return key.split("."), value


def _is_index(part: str) -> bool:
    """A list index in a dotted key: ASCII digits (str.isdigit also takes '²', which int() refuses, and '٠')."""
    return part.isascii() and part.isdigit()


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `raw[path...] = value`; numeric parts index lists (`data.sources.0.weight=2`)."""
    node: Any = raw
    for i, part in enumerate(path):
        last = i == len(path) - 1
        where = ".".join(path[: i + 1])
        if isinstance(node, list):
            if not _is_index(part) or int(part) >= len(node):
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
        if isinstance(value, str) and value.strip() and not Path(value).is_absolute():
            return str((base / value).resolve())
        return value

    for dotted in _YAML_RELATIVE_PATHS:
        *parents, leaf = dotted.split(".")
        section: Any = raw
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict) and leaf in section:
            section[leaf] = fix(section[leaf])
    tok = raw.get("tokenizer")
    if isinstance(tok, dict) and isinstance(tok.get("source"), str) and tok["source"] not in _BUILTIN_TOKENIZERS:
        tok["source"] = fix(tok["source"])
    train = raw.get("train")
    if isinstance(train, dict) and isinstance(train.get("resume"), str) and train["resume"] not in ("auto", "never"):
        train["resume"] = fix(train["resume"])
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("sources"), list):
        for src in data["sources"]:
            if isinstance(src, dict) and "path" in src:
                src["path"] = fix(src["path"])


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The config class at `loc` (a path of field names and list indices below RunConfig)."""
    cls: type[BaseModel] | None = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if cls is not None else None
        if field is None:
            return None
        cls = _model_in(field.annotation)
    return cls


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):  # Optional[...], list[...], Annotated[...]
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def did_you_mean(loc: tuple) -> str:
    """'; did you mean optim.lr?' for the unknown key at `loc` (difflib over the fields beside it), or ''."""
    cls = _model_at(loc[:-1])
    if cls is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(cls.model_fields), n=1, cutoff=0.5)
    return f"; did you mean {'.'.join(map(str, (*loc[:-1], close[0])))}?" if close else ""


class _Origin:
    """Where each field of a loaded config came from: a line of the YAML file or a command-line override."""

    def __init__(self, path: Path | None, overrides: list[list[str]]):
        self.path = path
        self.overridden = {tuple(int(p) if _is_index(p) else p for p in keys) for keys in overrides}

    @functools.cached_property
    def lines(self) -> dict[tuple, int]:
        return key_lines(self.path) if self.path is not None else {}  # parsed again only when reporting

    def of(self, loc: tuple) -> str:
        """' (override)' or ' (line N)' for the field at `loc` (or the nearest enclosing one that was set)."""
        if any(loc[: len(o)] == o or o[: len(loc)] == loc for o in self.overridden):
            return " (override)"
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.lines:
                return f" (line {self.lines[loc[:n]]})"
        return ""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _format_errors(err: ValidationError, origin: str, where: _Origin) -> str:
    lines = [f"invalid run config ({origin}):"]
    for e in err.errors():
        loc = tuple(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not loc:  # a cross-field check of RunConfig: its message starts with the field
            lines.append(f"  {msg}")
            continue
        if e["type"] == "extra_forbidden":
            unseen = "" if str(loc[-1]).isprintable() else f" {loc[-1]!a}, with characters that do not show,"
            msg = "unknown key" + unseen + did_you_mean(loc)
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "extra_forbidden" else f" (got {_shown(got)})"
        lines.append(f"  {'.'.join(map(str, loc))}{where.of(loc)}: {msg}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] = (), rows: str = "check") -> RunConfig:
    """Read a YAML run config, apply `key=value` overrides, validate, and check every input it names on disk
    (`condpt.inputs`; `rows` says what becomes of the full read of the sources: `check`, `stamp`, `later`, as
    `input_problems` takes it). Raises `ConfigError` naming the file, the field and its line."""
    cfg, origin, where = _read_config(path, overrides)
    from condpt.inputs import input_problems

    problems = input_problems(cfg, rows)
    if problems:
        shown = [f"  {field}{where.of(tuple(int(p) if _is_index(p) else p for p in field.split('.')))}: {msg}"
                 for field, msg in problems]
        raise ConfigError("\n".join([f"invalid run config ({origin}): inputs that cannot be used:", *shown]))
    return cfg


def read_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """`load_config` without the inputs on disk: for a config whose inputs do not exist yet (an experiment
    grid's recipe, checked before its world is generated and tagged)."""
    return _read_config(path, overrides)[0]


def _read_config(path: str | Path | None, overrides: list[str]) -> tuple[RunConfig, str, _Origin]:
    raw: dict[str, Any] = {}
    origin = "overrides"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = read_yaml(path)
        except YamlError as e:
            raise ConfigError(str(e)) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections")
        raw = loaded
        _resolve_relative(raw, path.resolve().parent)
    parsed = [parse_override(item) for item in overrides]
    for keys, value in parsed:
        apply_override(raw, keys, value)
    where = _Origin(path, [keys for keys, _ in parsed])
    try:
        return RunConfig.model_validate(raw), origin, where
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin, where)) from None
