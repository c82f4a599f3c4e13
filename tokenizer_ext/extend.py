"""Add the control tokens to a fast Hugging Face tokenizer, each as one *special* id."""

from __future__ import annotations

import warnings
from pathlib import Path

from tokenizers import AddedToken

from tokenizer_ext.spec import ControlTokenError, ControlTokens, Manifest, TokenEntry


def backend_of(tokenizer):
    """The `tokenizers.Tokenizer` behind a fast HF tokenizer; a clear error for slow (Python-only) ones."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise ControlTokenError(
            f"{type(tokenizer).__name__} is a slow (Python-only) tokenizer; tokenizer_ext needs a fast one "
            "(a tokenizer.json backed by the `tokenizers` library). Convert it, e.g. "
            "`AutoTokenizer.from_pretrained(path, use_fast=True)`, and save it with save_pretrained."
        )
    return backend


def _control_token(string: str) -> AddedToken:
    # normalized=False: an NFKC/lowercasing normaliser must not fold look-alikes *into* the control string, and
    # no strip/single_word: the token is exactly these characters, wherever they are.
    return AddedToken(string, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)


def _named_special_tokens(tokenizer) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for attr in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            out.setdefault(str(value), []).append(attr)
    return {k: "/".join(v) for k, v in out.items()}


def add_control_tokens(tokenizer, spec: ControlTokens | None = None) -> Manifest:
    """Add `spec`'s tag tokens and self token to `tokenizer` (in place) and return their manifest.

    Each string becomes exactly one special id that is never split, normalised or stripped. Idempotent: a second
    call returns the same ids and adds nothing. A string that already exists as an ordinary token of the model
    vocabulary, or as one of the tokenizer's own special tokens (eos, pad, ...), is a `ControlTokenError`; one
    that exists as a plain added token is re-registered as special (with a warning).
    """
    spec = spec or ControlTokens()
    backend = backend_of(tokenizer)
    model_vocab = backend.get_vocab(with_added_tokens=False)
    added = {tok.content: (i, tok) for i, tok in tokenizer.added_tokens_decoder.items()}
    named = _named_special_tokens(tokenizer)

    for s in spec.strings():
        if s in named:
            raise ControlTokenError(f"control token {s!r} is already this tokenizer's {named[s]}; choose another")
        if s in added:
            i, tok = added[s]
            if not tok.special or tok.normalized or tok.lstrip or tok.rstrip or tok.single_word:
                warnings.warn(
                    f"{s!r} already exists as added token id {i} ({tok!r}); re-registering it as a special, "
                    "unnormalised control token with the same id",
                    stacklevel=2,
                )
        elif s in model_vocab:
            raise ControlTokenError(
                f"control token {s!r} is already an ordinary token (id {model_vocab[s]}) of this tokenizer's "
                "vocabulary, so plain text would produce it; choose a string that is not in the vocabulary"
            )

    tokens = [_control_token(s) for s in spec.strings()]
    # Registered as extra special tokens so that all_special_ids, skip_special_tokens and the saved
    # tokenizer_config.json know them; re-added on the backend so existing entries get the right flags.
    tokenizer.add_special_tokens({"extra_special_tokens": tokens}, replace_extra_special_tokens=False)
    backend.add_special_tokens(tokens)

    ids = {}
    for s in spec.strings():
        i = tokenizer.convert_tokens_to_ids(s)
        got = tokenizer.encode(s, add_special_tokens=False, split_special_tokens=False)
        if i is None or got != [i]:
            raise ControlTokenError(f"{s!r} did not become a single token id after adding it (got {got})")
        ids[s] = i
    if len(set(ids.values())) != len(ids):
        raise ControlTokenError(f"control tokens share ids: {ids}")

    return Manifest(
        tags={t.role: TokenEntry(string=t.string, id=ids[t.string]) for t in spec.tags},
        self_token=TokenEntry(string=spec.self_token, id=ids[spec.self_token]),
        control_ids=[ids[s] for s in spec.strings()],
        spec=spec,
    )


def load_tokenizer_with_manifest(directory: str | Path):
    """`(tokenizer, manifest)` from a directory written by `add-tokens` (or `save_pretrained` + `Manifest.save`),
    checked against each other."""
    from transformers import AutoTokenizer

    manifest = Manifest.load(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    backend_of(tokenizer)
    manifest.check(tokenizer)
    return tokenizer, manifest
