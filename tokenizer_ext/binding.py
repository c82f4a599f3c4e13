"""Which tokenizer and control tokens a model's weights were made with: a record (`BINDING_KEY`) in the
model's config.json, written wherever a model is saved beside its tokenizer and manifest (`condpt add-tokens`,
a condpt run's export), and compared when the three are loaded together (`condpt.layout.load_run`).

Why in config.json and not in the manifest: a manifest and its tokenizer are copied together, so a record
between the two cannot notice that both came from another model; what they must belong to is the weights.
A tokenizer taken from a smaller model beside a larger one loads (every id has a row), and its ids then mean
other rows: the model generates garbage and nothing fails. The record holds

- `tokenizer_sha256`, `tokenizer_size`: a fingerprint of the tokenizer's token -> id map (added tokens
  included) and its length. Cheap (one pass over the vocabulary), exact, and independent of the embedding
  rows, so a vocabulary padded to a multiple of 64 is no concern; a tokenizer of the same length but other
  tokens (two BPEs trained to one size) is told apart too.
- `tags`, `self_token`: the role -> id map of the manifest, so a manifest with its roles exchanged or
  renamed is told apart from the one the model was trained with.

The fingerprint is of token strings and ids only, so saving and reloading a tokenizer, or setting its pad
token to an existing token, keeps it; adding a token changes it (the model has no trained row for it).
`transformers` keeps unknown config keys, so a model fine-tuned and re-saved with plain `save_pretrained`
keeps the record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tokenizer_ext.spec import MANIFEST_NAME, ControlTokenError, Manifest

BINDING_KEY = "condpt_tokenizer"


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's (id, token) pairs in id order, added tokens included."""
    pairs = sorted((i, t) for t, i in tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()


def binding(tokenizer, manifest: Manifest) -> dict[str, Any]:
    """The record of `tokenizer` and `manifest` that a model saved with them carries."""
    return {"tokenizer_sha256": tokenizer_fingerprint(tokenizer), "tokenizer_size": len(tokenizer),
            "tags": {role: entry.id for role, entry in manifest.tags.items()},
            "self_token": manifest.self_token.id}


def write_binding(directory: str | Path, record: dict[str, Any]) -> None:
    """Add `record` (`binding`) to `directory`/config.json (written by `save_pretrained` just before)."""
    path = Path(directory) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[BINDING_KEY] = record
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def check_binding(directory: str | Path, config: dict, tokenizer, manifest: Manifest | None) -> None:
    """Raise a `ControlTokenError` naming `directory` and what disagrees if the model's config (a config.json
    object) records another tokenizer or manifest than `tokenizer` and `manifest` (None: the directory has
    none). A config without the record (a foreign checkpoint, or one saved before condpt wrote it) passes."""
    record = config.get(BINDING_KEY)
    if record is None:
        return
    where = f"{directory}: the model (config.json {BINDING_KEY})"
    if not isinstance(record, dict):
        raise ControlTokenError(f"{where}: not a JSON object")
    size, sha = record.get("tokenizer_size"), record.get("tokenizer_sha256")
    if size != len(tokenizer) or sha != tokenizer_fingerprint(tokenizer):
        raise ControlTokenError(
            f"{where} was saved with a tokenizer of {size} tokens (sha256 {str(sha)[:12]}), but the tokenizer "
            f"beside it has {len(tokenizer)} tokens (sha256 {tokenizer_fingerprint(tokenizer)[:12]}): the "
            "tokenizer files (and condpt_tokens.json) come from another model; copy the ones saved with these "
            f"weights (if you changed the tokenizer on purpose, remove {BINDING_KEY} from config.json)")
    if manifest is None:
        raise ControlTokenError(f"{where} was trained with control tokens but the directory has no "
                                f"{MANIFEST_NAME}: copy the one saved with these weights")
    have = {"tags": {role: entry.id for role, entry in manifest.tags.items()}, "self_token": manifest.self_token.id}
    for field, value in have.items():
        if record.get(field) != value:
            raise ControlTokenError(f"{where} records {field} {record.get(field)}, but {MANIFEST_NAME} has "
                                    f"{value}: the manifest belongs to another model")
