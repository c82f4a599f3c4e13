"""The prompt layout and the run directory: the one home of both.

A document in a packed training block, and a prompt at generation or evaluation, are laid out the same way:

    [EOS] [tag id of the condition] [trusted system text + newline] [untrusted text]

The EOS that closes one packed document opens the next (position ids restart there), so a prompt opens
with EOS exactly as the next document of a block does. The tag id is inserted by id (never made from text);
no tag is the condition `none`. Trusted text (`encode_trusted`) is the only path on which the self token
`𐀤` becomes its id; untrusted text (`encode_untrusted`) yields no special id at all.
`condpt.sequences.pack_batch` takes the tag ids from `condition_ids`; `condpt.generate` and
`condpt.evaluate` build prompts with `prompt_ids`.

A run directory (`OUTPUT_DIR/final`, or any `save_pretrained` directory) holds the model, its tokenizer
and the control-token manifest (`MANIFEST_NAME`); `load_run` loads the three together and refuses them unless
they belong together: the manifest must describe the tokenizer, every token must have an embedding row, and a
model saved by condpt (`condpt add-tokens`, a run's export) records in its config.json the tokenizer and
manifest it was made with (`tokenizer_ext.binding`), which must be the ones beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizer_ext import (
    DEFAULT_SELF_TOKEN,
    MANIFEST_NAME,
    ControlTokenError,
    Manifest,
    encode_trusted,
    encode_untrusted,
)
from tokenizer_ext.binding import check_binding

NO_CONDITION = "none"


# ----------------------------------------------------------------------------------------- layout

def conditions(manifest: Manifest | None) -> list[str]:
    """Every condition a prompt can be put under: the manifest's tag roles, then `none`."""
    return [*(manifest.roles if manifest is not None else []), NO_CONDITION]


def condition_ids(manifest: Manifest | None, role: str | None) -> list[int]:
    """The ids that set a condition: the role's tag id, inserted by id; nothing for no role (`None` in
    training rows, `none` in prompts). Packing puts them before each tagged segment, prompts after EOS."""
    if role is None or role == NO_CONDITION:
        return []
    if manifest is None or role not in manifest.tags:
        raise ValueError(f"condition {role!r}: this model has no such tag; use one of {conditions(manifest)}")
    return [manifest.tags[role].id]


def encode_text(tokenizer: Any, manifest: Manifest | None, texts: Sequence[str]) -> list[list[int]]:
    """Untrusted text (prompts, corpus text, evaluation items): no special id can come out."""
    self_token = manifest.self_token.string if manifest is not None else DEFAULT_SELF_TOKEN
    return encode_untrusted(tokenizer, list(texts), self_token=self_token) if texts else []


def encode_curated(tokenizer: Any, manifest: Manifest | None, texts: Sequence[str]) -> list[list[int]]:
    """Curated text (ours, never a user's or a corpus's): the self token becomes its id."""
    if manifest is None:
        raise ValueError(f"this model has no {MANIFEST_NAME}, so no self-reference token")
    return encode_trusted(tokenizer, list(texts), manifest) if texts else []


def prompt_ids(tokenizer: Any, manifest: Manifest | None, condition: str, *, system: str | None = None,
               text: str = "") -> list[int]:
    """[EOS] + condition ids + trusted(system + newline) + untrusted(text); the EOS only where the tokenizer
    has one (packing requires it, a foreign checkpoint may lack it)."""
    eos = tokenizer.eos_token_id
    ids = [] if eos is None else [eos]
    ids += condition_ids(manifest, condition)
    if system:
        ids += encode_curated(tokenizer, manifest, [system.rstrip("\n") + "\n"])[0]
    if text:
        ids += encode_text(tokenizer, manifest, [text])[0]
    return ids


# ----------------------------------------------------------------------------------------- run directory

def context_length(config: Any) -> int | None:
    """The number of positions a model config declares (`n_positions` or `max_position_embeddings`, on the
    text config of a multimodal model), or None if it declares none."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(text_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class Run:
    """A trained model with its tokenizer and control-token manifest (None: the directory has none)."""

    model: Any
    tokenizer: Any
    manifest: Manifest | None


def _check_files(model_dir: Path) -> dict:
    """config.json a JSON object (returned) and every safetensors file readable, else a ValueError naming the
    file (transformers raised a TypeError or a SafetensorError traceback that named neither)."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        config = json.loads((model_dir / "config.json").read_bytes())
    except ValueError as e:  # malformed JSON, not UTF-8
        raise ValueError(f"{model_dir / 'config.json'}: not JSON ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{model_dir / 'config.json'}: not a JSON object (a model config)")
    for path in sorted(model_dir.glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):  # reads the header; a truncated file fails here
                pass
        except SafetensorError as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e}): damaged or copied incompletely") \
                from None
    return config


_RUN_OUTPUT = ("run_config.yaml", "checkpoints", "tokenizer", "metrics.jsonl")  # what a run writes before final/


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def check_run_dir(model_dir: Path) -> None:
    """A FileNotFoundError saying what `model_dir` is, unless it is a `save_pretrained` directory: a GGUF file
    (transformers reads one only to convert it), a run's OUTPUT_DIR (its model is final/), or one whose run
    did not finish (no final/ yet)."""
    if model_dir.is_file() and (model_dir.suffix.lower() == ".gguf" or _starts_with(model_dir, b"GGUF")):
        raise FileNotFoundError(
            f"{model_dir}: a GGUF file, not a model directory; convert it to a save_pretrained directory "
            "(transformers: from_pretrained(its folder, gguf_file=its name), then save_pretrained, as "
            "condpt.smollm2.build does) and add the control tokens with `condpt add-tokens`")
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: not a model directory")
    if (model_dir / "config.json").is_file():
        return
    if (model_dir / "final" / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: a run's output directory; its model is {model_dir / 'final'}")
    if any((model_dir / name).exists() for name in _RUN_OUTPUT):
        steps = sorted((model_dir / "checkpoints").glob("step_*"), key=lambda p: (len(p.name), p.name))
        last = f" (its last checkpoint: {steps[-1].name})" if steps else ""
        raise FileNotFoundError(
            f"{model_dir}: a run's output directory without final/: the run did not finish{last}; run the "
            f"same `condpt train` command again to resume it, then use {model_dir / 'final'}")
    raise FileNotFoundError(f"{model_dir}: no config.json (expected a save_pretrained directory)")


def load_run(model_dir: str | Path, *, device: str | None = None) -> Run:
    """Load a `save_pretrained` directory (float32, eval mode, on `device`; default: cuda if available).
    The three must belong together (see the module docstring); what disagrees is a ValueError naming the
    directory, raised before the weights are read where the files alone tell."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    check_run_dir(model_dir)
    config = _check_files(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    manifest = Manifest.load(model_dir) if (model_dir / MANIFEST_NAME).is_file() else None
    if manifest is not None:
        try:
            manifest.check(tokenizer)
        except ControlTokenError as e:
            raise ControlTokenError(f"{model_dir}: {e}") from None
    check_binding(model_dir, config, tokenizer, manifest)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:  # its last ids would be an IndexError on the first prompt that holds one
        raise ValueError(f"{model_dir}: the tokenizer has {len(tokenizer)} tokens but the model only {rows} "
                         "embedding rows: a tokenizer saved from another model?")
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    return Run(model, tokenizer, manifest)
