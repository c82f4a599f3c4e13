"""Injection safety: no special id comes out of untrusted text, on three kinds of tokenizer, for an adversarial
corpus and for hypothesis-generated text; and the guarantee's second layer (the post-check) repairs special ids
that a model's own merges can reach."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokext_adversarial import LOOKALIKE, SELF, ZERO_WIDTH, corpus

from tokenizer_ext import (
    UnsafeEncodingError,
    add_control_tokens,
    encode_trusted,
    encode_untrusted,
    escape_untrusted,
    special_ids,
)

NAMES = ["gpt2", "sentencepiece", "preloaded"]


def _assert_safe(tok, texts, ids_list):
    forbidden = special_ids(tok)
    for text, ids in zip(texts, ids_list):
        bad = forbidden.intersection(ids)
        assert not bad, f"{text!r} produced special ids {sorted(bad)}"


@pytest.mark.parametrize("name", NAMES)
def test_adversarial_corpus(extended, name):
    tok, man = extended[name]
    assert set(man.control_ids) | {tok.eos_token_id} <= special_ids(tok)
    texts = corpus(tok)
    out = encode_untrusted(tok, texts)
    _assert_safe(tok, texts, out)
    # one document at a time gives the same result as the batch
    assert [encode_untrusted(tok, [t])[0] for t in texts[:50]] == out[:50]


def test_gpt2_lossless_and_unchanged_by_extension(extended, gpt2_tok):
    """On byte-level BPE, untrusted encoding is exactly the pre-extension tokenizer's encoding of the text with the
    self token escaped, and decodes back to that text: control strings stay text."""
    tok, _ = extended["gpt2"]
    texts = [t for t in corpus(tok) if "\ud800" not in t]
    got = encode_untrusted(tok, texts)
    plain = gpt2_tok._tokenizer  # vanilla GPT-2, before any control token
    old = plain.encode_special_tokens
    try:
        plain.encode_special_tokens = True
        want = [e.ids for e in plain.encode_batch([escape_untrusted(t) for t in texts], add_special_tokens=False)]
    finally:
        plain.encode_special_tokens = old
    assert got == want
    for t, ids in zip(texts, got):
        assert tok.decode(ids, clean_up_tokenization_spaces=False) == escape_untrusted(t)


FRAGMENTS = ["<|good|>", "<|bad|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<|im_start|>", "[MASK]", "<tool>",
             SELF, "<|", "|>", "<", ">", "|", "good", "bad", "endoftext", " ", "\n", "\ufffd", "<0x41>", "▁", "Ġ",
             *ZERO_WIDTH, *(c for alts in LOOKALIKE.values() for c in alts)]
text_strategy = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=12).map("".join)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(text_strategy, min_size=1, max_size=4))
def test_property_no_special_id(extended, name, texts):
    tok, man = extended[name]
    out = encode_untrusted(tok, texts)
    _assert_safe(tok, texts, out)
    if name == "gpt2":  # lossless: every character survives as text
        for t, ids in zip(texts, out):
            assert tok.decode(ids, clean_up_tokenization_spaces=False) == escape_untrusted(t)
    # trusted text: the self token's id appears exactly as often as the literal, and nothing else special
    trusted = encode_trusted(tok, texts, man)
    for t, ids in zip(texts, trusted):
        assert ids.count(man.self_token.id) == t.count(SELF)
        assert (special_ids(tok) - {man.self_token.id}).isdisjoint(ids)


def _merge_reachable_tokenizer():
    """A BPE whose special tokens are also ordinary vocabulary entries that merges reach (like `<s>` in some
    SentencePiece vocabularies): construction alone cannot stop them, the post-check must."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5, " ": 6, "z": 7}
    merges = [("a", "b"), ("ab", "c")]
    bk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    bk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=bk, unk_token="<unk>", eos_token="abc", pad_token="z")
    return tok


def test_post_check_repairs_merge_reachable_specials():
    tok = _merge_reachable_tokenizer()
    assert tok._tokenizer.model.tokenize("abc")[0].id == 5  # the model alone reaches the eos id
    forbidden = special_ids(tok)
    assert {5, 7} <= forbidden and 0 not in forbidden  # unk is a legitimate output here
    texts = ["abc", "ab abc c", "zz", "abcabc"]
    out = encode_untrusted(tok, texts)
    _assert_safe(tok, texts, out)
    assert out[0] == [1, 2, 3]  # the span is re-encoded one character at a time
    assert out[2] == [0, 0]  # "z" is itself special: each becomes U+FFFD, here <unk>


def test_post_check_raises_when_unrepairable():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bk = Tokenizer(models.WordLevel(vocab={"x": 0, "y": 1}, unk_token="x"))
    bk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=bk, unk_token="x", eos_token="x")  # unk is also eos
    with pytest.raises(UnsafeEncodingError):
        encode_untrusted(tok, ["q"])


def test_cache_follows_tokenizer_changes(fresh_gpt2_tok):
    tok = fresh_gpt2_tok
    before = encode_untrusted(tok, ["<|good|>"])
    man = add_control_tokens(tok)
    after = encode_untrusted(tok, ["<|good|>"])
    assert before == after and man.tag_id("good") not in after[0]
    assert man.tag_id("good") in special_ids(tok)


SPECIAL_MUTATIONS = {  # ways a named or extra special token changes after the first encode (issue 9)
    "pad_token attribute": lambda t: setattr(t, "pad_token", "hello"),
    "mask_token attribute": lambda t: setattr(t, "mask_token", "hello"),
    "extra_special_tokens attribute": lambda t: setattr(t, "extra_special_tokens", ["hello"]),
    "add_special_tokens pad": lambda t: t.add_special_tokens({"pad_token": "hello"}),
    "add_special_tokens extra": lambda t: t.add_special_tokens({"extra_special_tokens": ["hello"]}),
}


@pytest.mark.parametrize("mutate", SPECIAL_MUTATIONS.values(), ids=SPECIAL_MUTATIONS.keys())
def test_cache_follows_special_token_changes(gpt2_tok, mutate):
    """A vocabulary word made special after the first call is forbidden from then on (it used to come out of the
    cached codec as the new special's id); made ordinary again, it is plain text again."""
    tok = copy.deepcopy(gpt2_tok)
    hello = tok.convert_tokens_to_ids("hello")
    assert encode_untrusted(tok, ["hello world"])[0][0] == hello
    mutate(tok)
    assert hello in special_ids(tok)
    [ids] = encode_untrusted(tok, ["hello world"])
    assert hello not in ids and tok.decode(ids) == "hello world"
    assert hello not in encode_untrusted(tok, ["hello"])[0]


def test_cache_follows_special_token_removal(gpt2_tok):
    tok = copy.deepcopy(gpt2_tok)
    hello = tok.convert_tokens_to_ids("hello")
    tok.pad_token = "hello"
    assert hello not in encode_untrusted(tok, ["hello world"])[0]
    tok.pad_token = None
    assert hello not in special_ids(tok)
    assert encode_untrusted(tok, ["hello world"])[0][0] == hello
