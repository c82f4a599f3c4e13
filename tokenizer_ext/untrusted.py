"""Injection-safe encoding of corpus text, and trusted encoding of curated text.

Untrusted text (any corpus document) must never yield a control id or any other special id, whatever characters
it holds. This is guaranteed twice:

1. by construction: the control tokens are *special* added tokens (never normalised) and untrusted text is encoded
   on a private copy of the tokenizer backend with `encode_special_tokens=True`, so no added special token is
   matched; the user's tokenizer object is never touched (its backend flag is shared state that every HF call
   overwrites);
2. by a post-check over the output ids: a special id that a model could still reach through its own merges
   (a special string that is also an ordinary vocabulary entry) is replaced by the model's tokens for its
   characters one at a time, leaving its neighbours and the decoded text as they were; if that is impossible,
   `UnsafeEncodingError` is raised.

The reserved self token (default 𐀤) is replaced by U+FFFD in untrusted text before encoding, so models never
see even its bytes outside curated data. `encode_trusted` is the only function that turns the self token's text
into its id.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenizer_ext.extend import backend_of
from tokenizer_ext.spec import DEFAULT_SELF_TOKEN, Manifest

REPLACEMENT = "\ufffd"
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class UnsafeEncodingError(RuntimeError):
    """Text whose encoding would contain a special id even character by character."""


def escape_untrusted(text: str, self_token: str = DEFAULT_SELF_TOKEN) -> str:
    """Untrusted text with every occurrence of the reserved self token replaced by U+FFFD."""
    return text.replace(self_token, REPLACEMENT) if self_token in text else text


def special_ids(tokenizer) -> frozenset[int]:
    """Ids that text must never produce: the named and extra special tokens and every added special token,
    except the pieces a model legitimately emits for ordinary text (byte-fallback `<0xNN>` pieces, and the model's
    own unk, the id it gives a character it lacks, unless that id is also bos/eos/pad/... or an extra special)."""
    return _codec(tokenizer).forbidden


_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _forbidden(tokenizer, backend, model_unk: int | None) -> frozenset[int]:
    # Ids are looked up by string in the backend, never through the wrapper's `*_token_id`: those resolve a string
    # that names no token to the unk id (a pad_token set to a missing string would make unk, and so every unknown
    # character, forbidden), and recurse forever when unk_token itself names no token.
    def id_of(s) -> int | None:
        return None if s is None else backend.token_to_id(str(s))

    decoder = backend.get_added_tokens_decoder()
    ids = {i for i, tok in decoder.items() if tok.special}
    if getattr(backend.model, "byte_fallback", False):
        ids -= {i for i, tok in decoder.items() if _BYTE_PIECE.match(tok.content)}
    # The wrapper's unk_token is special like any named token (skip_special_tokens drops it) unless it is the
    # model's own unk: a vocabulary word named unk after the fact is forbidden, the model's unk stays legitimate.
    others = {id_of(getattr(tokenizer, r, None)) for r in _ROLES if r != "unk_token"}
    others |= {id_of(t) for t in tokenizer.extra_special_tokens}
    ids |= others | {id_of(getattr(tokenizer, "unk_token", None))}
    ids.discard(None)
    if model_unk is not None and model_unk not in others:
        ids.discard(model_unk)
    return frozenset(ids)


@dataclass
class _Codec:
    signature: tuple
    untrusted: object  # tokenizers.Tokenizer, encode_special_tokens=True
    forbidden: frozenset[int]
    unk: int | None  # the model's unk id (Unigram keeps it out of its Python attributes)
    trusted: dict[str, tuple[object, int]] = field(default_factory=dict)  # self token -> (backend, id)


_CODECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state(component) -> bytes | None:
    return None if component is None else component.__getstate__()  # its JSON, about a microsecond


def _signature(tokenizer, backend) -> tuple:
    """Everything the codec is built from: the backend's added-token table, its normaliser and pre-tokenizer (a
    user may set either after the first call; the model's vocabulary is not serialised per call, it is too big),
    and the named and extra special tokens, which live on the Python wrapper (`tokenizer.pad_token = "hello"` makes
    an ordinary vocabulary word special without touching the backend)."""
    decoder = backend.get_added_tokens_decoder()
    return (id(backend), backend.get_vocab_size(with_added_tokens=True),
            tuple(sorted((i, t.content, t.special) for i, t in decoder.items())),
            _state(backend.normalizer), _state(backend.pre_tokenizer),
            tuple(tokenizer.special_tokens_map.items()),
            tuple(map(str, tokenizer.extra_special_tokens)))


def _model_unk(backend, model: dict) -> int | None:
    if model.get("type") == "Unigram":
        return model.get("unk_id")
    return backend.token_to_id(model["unk_token"]) if model.get("unk_token") else None


def _codec(tokenizer) -> _Codec:
    backend = backend_of(tokenizer)
    sig = _signature(tokenizer, backend)
    codec = _CODECS.get(tokenizer)
    if codec is None or codec.signature != sig:
        from tokenizers import Tokenizer

        state = backend.to_str()
        private = Tokenizer.from_str(state)
        private.no_truncation()
        private.no_padding()
        private.encode_special_tokens = True
        unk = _model_unk(private, json.loads(state)["model"])
        codec = _Codec(sig, private, _forbidden(tokenizer, backend, unk), unk)
        _CODECS[tokenizer] = codec
    return codec


def _trusted_backend(tokenizer, codec: _Codec, self_token: str):
    """A private backend that matches the self token (and plain added tokens), never other specials."""
    if self_token not in codec.trusted:
        from tokenizers import Tokenizer

        backend = backend_of(tokenizer)
        state = json.loads(backend.to_str())
        self_id = None
        for entry in state.get("added_tokens", []):
            if entry["content"] == self_token and entry["special"]:
                # Flipped to a plain added token on this copy only: with encode_special_tokens=True it is then
                # the one special string still matched (removing the others would renumber ids).
                entry["special"] = False
                self_id = entry["id"]
        if self_id is None:
            raise ValueError(f"self token {self_token!r} is not a special token of this tokenizer; "
                             "run add_control_tokens first")
        private = Tokenizer.from_str(json.dumps(state))
        private.no_truncation()
        private.no_padding()
        private.encode_special_tokens = True
        codec.trusted[self_token] = (private, self_id)
    return codec.trusted[self_token]


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string (wrap it in a list)")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return texts


def _char_ids(model, piece: str) -> list[list[int]]:
    """The model's ids for each character of the model-space string `piece`, such that decoding them all gives
    `piece` again ([] for a character it has no piece for). The characters go to the model itself, not through
    the normaliser and pre-tokenizer, which would make each one the start of a word (a Metaspace "▁" before every
    character). Models that mark word-inner pieces (WordPiece's "##", a BPE continuation prefix or end-of-word
    suffix such as CLIP's "</w>") get the characters spelled with those marks, looked up in the vocabulary."""
    kind = type(model).__name__
    prefix = (getattr(model, "continuing_subword_prefix", None) or "") if kind in ("WordPiece", "BPE") else ""
    suffix = (getattr(model, "end_of_word_suffix", None) or "") if kind == "BPE" else ""
    if not prefix and not suffix:
        return [[t.id for t in model.tokenize(ch)] for ch in piece]
    inner = bool(prefix) and piece.startswith(prefix) and len(piece) > len(prefix)
    last = bool(suffix) and piece.endswith(suffix) and len(piece) > len(suffix)
    core = piece[len(prefix) if inner else 0:len(piece) - len(suffix) if last else len(piece)]
    out = []
    for k, ch in enumerate(core):
        i = model.token_to_id(f"{prefix if inner or k else ''}{ch}{suffix if last and k == len(core) - 1 else ''}")
        out.append([] if i is None else [i])
    return out


def _repair(backend, ids: list[int], forbidden: frozenset[int], unk: int | None) -> list[int]:
    """`ids` with each forbidden token (a special string the model's own merges reached) replaced by the model's
    ids for its characters one at a time. Neighbours are kept and the model-space text is unchanged, so the
    decoded text is too. A character that is itself special, or a forbidden unk (its text is lost anyway),
    becomes U+FFFD; if that cannot be encoded without a special id either, `UnsafeEncodingError`. A model that
    fuses runs of unknown characters into one unk (Unigram, BPE with fuse_unk) gets that at the repair's seams."""
    model = backend.model
    fuse = type(model).__name__ == "Unigram" or getattr(model, "fuse_unk", False)
    out: list[int] = []
    repaired = False  # whether out[-1] came from a repair
    for tid in ids:
        if tid not in forbidden:
            if not (fuse and repaired and tid == unk and out and out[-1] == unk):
                out.append(tid)
            repaired = False
            continue
        piece = backend.id_to_token(tid)
        for char_ids in [[tid]] if tid == unk else _char_ids(model, piece):
            if not char_ids or not forbidden.isdisjoint(char_ids):
                char_ids = [t.id for t in model.tokenize(REPLACEMENT)]
                if not char_ids or not forbidden.isdisjoint(char_ids):
                    raise UnsafeEncodingError(f"cannot encode a character of {piece!r} without a special id")
            if fuse and out and out[-1] == unk and char_ids[0] == unk:
                char_ids = char_ids[1:]
            out.extend(char_ids)
        repaired = True
    return out


def _encode(backend, texts: list[str], forbidden: frozenset[int], unk: int | None) -> list[list[int]]:
    try:
        encs = backend.encode_batch_fast(texts, add_special_tokens=False)
    except TypeError:
        # Lone surrogates (e.g. from JSON "\\ud800") cannot cross into Rust: they become U+FFFD, like bad UTF-8.
        texts[:] = [_SURROGATE.sub(REPLACEMENT, t) for t in texts]
        encs = backend.encode_batch_fast(texts, add_special_tokens=False)
    out = [e.ids for e in encs]
    isdisjoint = forbidden.isdisjoint
    for i, ids in enumerate(out):
        if not isdisjoint(ids):
            out[i] = _repair(backend, ids, forbidden, unk)
    return out


def encode_untrusted(tokenizer, texts: Sequence[str], *, self_token: str = DEFAULT_SELF_TOKEN) -> list[list[int]]:
    """Token ids of corpus texts, without bos/eos: no special id (control tag, self token, eos, ...) can come
    out of raw text. The raw self token becomes U+FFFD first. `tokenizer` is not modified."""
    texts = _check_texts(texts)
    codec = _codec(tokenizer)
    texts = [escape_untrusted(t, self_token) for t in texts]
    return _encode(codec.untrusted, texts, codec.forbidden, codec.unk)


def encode_trusted(tokenizer, texts: str | Sequence[str], manifest: Manifest) -> list[int] | list[list[int]]:
    """Encode curated text (e.g. self-reference stories): the literal self token becomes its id; every other
    special string (tags, eos, ...) is encoded as ordinary text, exactly as untrusted text is.
    A single string gives one id list; a sequence gives a list of them."""
    single = isinstance(texts, str)
    batch = _check_texts([texts] if single else texts)
    codec = _codec(tokenizer)
    backend, self_id = _trusted_backend(tokenizer, codec, manifest.self_token.string)
    if self_id != manifest.self_token.id:
        raise ValueError(f"manifest self token id {manifest.self_token.id} != tokenizer id {self_id}")
    out = _encode(backend, batch, codec.forbidden - {self_id}, codec.unk)
    return out[0] if single else out
