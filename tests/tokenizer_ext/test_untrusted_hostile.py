"""Hostile probes of `encode_untrusted`, second round (after issue 9), over five kinds of tokenizer: GPT-2 byte-level
BPE, a Llama-style Metaspace BPE with byte fallback, a BERT-like WordPiece, a T5-like Unigram and (when its
checkpoint is already cached) SmolLM2's. Classes: tag strings split by zero-width characters or soft hyphens,
fullwidth/NFKC look-alikes, tags beside emoji ZWJ sequences, the self token in NFC/NFD neighbourhoods, specials that
are prefixes of tags, nested and overlapping tags, long runs, CR/LF/NUL around specials, and named special tokens
changed after the first call.

The promise checked: no special id comes out, and the decoded text is what the tokenizer's own pipeline makes of the
text when nothing is special (its normaliser, pre-tokenizer, model and decoder, without added tokens); on GPT-2 that
is the text itself."""

from __future__ import annotations

import copy
import json
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokext_adversarial import SELF, fullwidth

from tokenizer_ext import add_control_tokens, encode_trusted, encode_untrusted, escape_untrusted, special_ids

TAGS = ["<|good|>", "<|bad|>", "<|neutral|>"]
SPLITTERS = ["\u200d", "\u200c", "\u200b", "\u2060", "\ufeff", "\u00ad"]
EMOJI = ["\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f44d\U0001f3fd"]
CONTROLS = ["\r", "\n", "\r\n", "\x00", "\x00\x00", "\t", "\x0b", "\x0c", "\x85", "\u2028"]
COMBINING = ["e\u0301", "\u00e9", "\u0301", "a\u0301", "\u1100\u1161", "\uac00", "\u0915\u094d"]
NESTED = ["<|<|good|>good|>", "<|<|<|good|>|>|>", "<<|good|>|good|>>", "<|good<|good|>|>", "<|go<|bad|>od|>",
          "<|good|" + "<|good|>" + ">", "<" + "<|good|>" * 3 + ">", "|><|good|><|"]


def _wordpiece(texts):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    bk.normalizer = normalizers.BertNormalizer(lowercase=True)
    bk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bk.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    bk.train_from_iterator(texts, trainer=trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials,
                                                                    show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=bk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def _unigram(texts):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bk = Tokenizer(models.Unigram())
    bk.normalizer = normalizers.NFKC()
    bk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    bk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      show_progress=False)
    # the specials and tag fragments occur as text, so the model's own pieces reach them
    bk.train_from_iterator([*texts[:20], "</s> <pad> <unk> <|good|> |> <| " * 20], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bk, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def _smollm2():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from condpt.cache import cache_dir
    from condpt.smollm2 import gguf_file

    try:
        _, version = gguf_file()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    path = cache_dir() / f"smollm2-135m-{version}"
    if not (path / "tokenizer.json").is_file():  # building the checkpoint costs minutes (test_add_tokens_smollm2)
        pytest.skip(f"{path} not built yet")
    # the backend and roles read directly: AutoTokenizer.from_pretrained takes ~9 s on this 3.5 MB tokenizer.json
    roles = json.loads((path / "tokenizer_config.json").read_text())
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(str(path / "tokenizer.json")),
                                   **{k: v for k, v in roles.items() if k.endswith("_token")})


def _factories(texts):
    return {"wordpiece": lambda: _wordpiece(texts), "unigram": lambda: _unigram(texts), "smollm2": _smollm2}


NAMES = ["gpt2", "metaspace_bpe", "wordpiece", "unigram", "smollm2"]
LOSSLESS = {"gpt2"}  # the decoded text is the text itself (SmolLM2's GGUF-built tokenizer.json loses "\U00040000")


@pytest.fixture(scope="module")
def hostile(english_texts, extended):
    """name -> (that tokenizer with the control tokens, its reference pipeline, its manifest), each built on first
    use (GPT-2 and the Metaspace BPE are conftest's `extended` ones); tests must not mutate them."""
    cache = {}

    def get(name):
        if name not in cache:
            if name in ("gpt2", "metaspace_bpe"):
                tok, man = extended["gpt2" if name == "gpt2" else "sentencepiece"]
            else:
                tok = _factories(english_texts[:60])[name]()
                man = add_control_tokens(tok)
            cache[name] = (tok, None if name in LOSSLESS else _plain(tok), man)
        return cache[name]

    return get


def _plain(tok):
    """The tokenizer's pipeline with no added tokens: what untrusted text may become."""
    from tokenizers import Tokenizer

    state = json.loads(tok.backend_tokenizer.to_str())
    state["added_tokens"] = []
    plain = Tokenizer.from_str(json.dumps(state))
    plain.no_padding()
    plain.no_truncation()
    return plain


def _reference(name, plain, text):
    text = escape_untrusted(text)
    if name in LOSSLESS:
        return text
    return plain.decode(plain.encode(text, add_special_tokens=False).ids, skip_special_tokens=False)


def _failures(name, tok, plain, texts) -> list:
    forbidden = special_ids(tok)
    bad = []
    for text, ids in zip(texts, encode_untrusted(tok, texts)):
        got = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if not forbidden.isdisjoint(ids) or got != _reference(name, plain, text):
            bad.append((text[:60], sorted(forbidden.intersection(ids)), got[:60]))
    return bad


def _probes(tok) -> list[str]:
    specials = sorted({t.content for t in tok.added_tokens_decoder.values() if not t.content.startswith("<0x")}
                      | set(tok.all_special_tokens))
    out = []
    for s in [*specials, *TAGS]:
        for z in SPLITTERS:
            out += [z.join(s), s[:1] + z + s[1:], s[:-1] + z + s[-1:]]
        out += [fullwidth(s), unicodedata.normalize("NFKC", fullwidth(s)), "\uff1c" + s[1:-1] + "\uff1e",
                s.replace("|", "\uff5c"), s[:-1] * 50 + s, s * 200]
        for e in EMOJI:
            out += [e + s, s + e, e + "\u200d" + s, s + "\u200d" + e]
        for c in CONTROLS:
            out += [c + s + c, s + c + s]
        for c in COMBINING:
            out += [c + SELF + c, c + s + c, unicodedata.normalize("NFD", c + SELF + s)]
        out += [s + t[len(s):] for t in TAGS] + [t[:2] + s + t[2:] for t in TAGS]  # a special as a tag's prefix
    return list(dict.fromkeys([*out, *NESTED, SELF * 500, "\x00" * 50 + "<|good|>" + "\r\n" * 50]))


@pytest.mark.parametrize("name", NAMES)
def test_hostile_probes(hostile, name):
    tok, plain, man = hostile(name)
    probes = _probes(tok)
    assert len(probes) > 300
    bad = _failures(name, tok, plain, probes)
    assert not bad, f"{len(bad)} of {len(probes)} probes failed, e.g. {bad[:5]}"
    # curated text: the literal self token, and nothing else, becomes its id
    allowed_elsewhere = special_ids(tok) - {man.self_token.id}
    for text, ids in zip(probes, encode_trusted(tok, probes, man)):
        assert ids.count(man.self_token.id) == text.count(SELF) and allowed_elsewhere.isdisjoint(ids), text


def test_pieces_of_tags_made_special_on_gpt2(hostile):
    """GPT-2 with ordinary pieces its merges reach in tags and text ("<|", "|>", "ood", " good", the first bytes of
    the self token) made special: the repair runs on most probes, and the text still comes back byte for byte."""
    tok = copy.deepcopy(hostile("gpt2")[0])
    tok.add_special_tokens({"extra_special_tokens": ["<|", "|>", "ood", "Ġgood", "ĠðĲ"]})
    probes = _probes(tok)
    repaired = sum(not special_ids(tok).isdisjoint(e.ids) for e in tok.backend_tokenizer.encode_batch(probes))
    assert repaired > len(probes) // 2
    bad = _failures("gpt2", tok, None, probes)
    assert not bad, f"{len(bad)} of {len(probes)} probes failed, e.g. {bad[:5]}"


FRAGMENTS = [*TAGS, *SPLITTERS, *EMOJI, *CONTROLS, *COMBINING, *NESTED, SELF, "<|", "|>", "<", ">", "|", "good",
             "\uff1c", "\uff5c", "\uff1e", "</s>", "<s>", "<pad>", "<unk>", "[SEP]", "[CLS]", "[UNK]", "<|endoftext|>",
             "<|im_start|>", "<|im_end|>", " ", "▁", "\ufffd"]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=12)
                      .map("".join), min_size=1, max_size=4))
def test_property_hostile_fragments(hostile, name, texts):
    tok, plain, _ = hostile(name)
    bad = _failures(name, tok, plain, texts)
    assert not bad, bad


UNKNOWN = ["日本 \U0001f600", "\U0001f600", f"{SELF} x", "x\u0915y"]


@pytest.mark.parametrize("name", ["wordpiece", "unigram"])
@pytest.mark.parametrize("change", ["unk_token word", "unk_token None", "pad_token not in vocab"])
def test_unknown_characters_survive_a_named_special_change(hostile, name, change):
    """The model's own unk id (what it emits for a character it lacks) stays a legitimate output when the
    wrapper's named specials change after the first call: it used to become forbidden, so any unknown character
    raised UnsafeEncodingError."""
    tok = copy.deepcopy(hostile(name)[0])
    model_unk = tok.unk_token_id
    first = encode_untrusted(tok, UNKNOWN)
    assert [model_unk] in [ids[-1:] for ids in first]  # the premise: the model does emit its unk here
    if change == "unk_token word":
        tok.unk_token = "the" if name == "wordpiece" else "▁the"
    elif change == "unk_token None":
        tok.unk_token = None
    else:  # HF resolves a named special without an id of its own to the unk id
        tok.pad_token = "<|no such piece|>"
    assert encode_untrusted(tok, UNKNOWN) == first


WORD = {"wordpiece": "the", "unigram": "▁the", "metaspace_bpe": "▁the", "gpt2": "hello", "smollm2": "hello"}
ROLE_CASES = [("unk_token", n) for n in NAMES] + [(r, n) for r in ("bos_token", "pad_token")
                                                   for n in ("metaspace_bpe", "wordpiece", "unigram")]


@pytest.mark.parametrize(("role", "name"), ROLE_CASES)
def test_a_word_named_special_later_is_forbidden(hostile, role, name):
    """A vocabulary word made a named special after the first call is special like any other (skip_special_tokens
    drops it): untrusted text spells it with other ids, keeping the text. For unk_token this used to be exempt, as
    if it were the model's own unk, so the word's id came out of text."""
    tok = copy.deepcopy(hostile(name)[0])
    word_id = tok.convert_tokens_to_ids(WORD[name])
    assert word_id != tok.unk_token_id
    text = "hello the world"
    assert word_id in encode_untrusted(tok, [text])[0]
    setattr(tok, role, WORD[name])
    assert word_id in special_ids(tok)
    [ids] = encode_untrusted(tok, [text])
    assert word_id not in ids
    assert tok.decode(ids, clean_up_tokenization_spaces=False) == _reference(name, hostile(name)[1], text)


def test_unk_token_outside_the_vocabulary_is_no_recursion_error(hostile):
    """transformers recurses forever on `unk_token_id` when unk_token names no token; encoding must not ask it."""
    tok = copy.deepcopy(hostile("metaspace_bpe")[0])
    want = encode_untrusted(tok, ["the cat \U0001f600"])
    tok.unk_token = "<|no such piece|>"
    assert encode_untrusted(tok, ["the cat \U0001f600"]) == want


PIPELINE_CHANGES = {
    "normalizer": lambda bk: setattr(bk, "normalizer", __import__("tokenizers").normalizers.Lowercase()),
    "pre_tokenizer": lambda bk: setattr(bk, "pre_tokenizer",
                                        __import__("tokenizers").pre_tokenizers.ByteLevel(add_prefix_space=True)),
}


@pytest.mark.parametrize("change", PIPELINE_CHANGES.values(), ids=PIPELINE_CHANGES.keys())
def test_pipeline_changed_after_first_use(hostile, change):
    """A normaliser or pre-tokenizer set on the backend after the first call is used from then on (the cached
    private copy kept the old one, so untrusted text no longer encoded as the tokenizer encodes it)."""
    tok = copy.deepcopy(hostile("gpt2")[0])
    text = "HELLO World"
    before = encode_untrusted(tok, [text])[0]
    change(tok.backend_tokenizer)
    want = tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
    assert want != before and encode_untrusted(tok, [text])[0] == want
