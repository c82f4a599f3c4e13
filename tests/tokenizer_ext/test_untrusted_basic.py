from __future__ import annotations

import pytest

from tokenizer_ext import encode_trusted, encode_untrusted, escape_untrusted, special_ids

NAMES = ["gpt2", "sentencepiece", "preloaded"]
SELF = "\U00010024"


@pytest.mark.parametrize("name", NAMES)
def test_literal_controls_do_not_become_ids(extended, name):
    tok, man = extended[name]
    text = f"a <|good|>b<|bad|> {SELF} {tok.eos_token} {tok.bos_token}"
    [ids] = encode_untrusted(tok, [text])
    assert special_ids(tok).isdisjoint(ids)
    assert set(man.control_ids) <= special_ids(tok)
    assert "<|good|>" in tok.decode(ids) and SELF not in tok.decode(ids)


@pytest.mark.parametrize("name", NAMES)
def test_ordinary_text_matches_plain_tokenizer(extended, english_texts, name):
    tok, _ = extended[name]
    texts = english_texts[:20]
    assert encode_untrusted(tok, texts) == tok(texts, add_special_tokens=False)["input_ids"]


def test_user_tokenizer_state_untouched(extended):
    tok, man = extended["gpt2"]
    encode_untrusted(tok, ["<|good|>"])
    # the user's own tokenizer still matches control strings (for trusted pipelines that want it)
    assert tok._tokenizer.encode_special_tokens is False
    assert tok.encode("<|good|>", add_special_tokens=False) == [man.tag_id("good")]


def test_self_token_becomes_replacement_char(extended):
    tok, _ = extended["gpt2"]
    assert escape_untrusted(f"I am {SELF}.") == "I am \ufffd."
    assert encode_untrusted(tok, [f"I am {SELF}."]) == encode_untrusted(tok, ["I am \ufffd."])


@pytest.mark.parametrize("name", NAMES)
def test_trusted_maps_only_self_token(extended, name):
    tok, man = extended[name]
    ids = encode_trusted(tok, f"Then {SELF} said <|good|>{tok.eos_token}", man)
    assert ids.count(man.self_token.id) == 1
    assert (special_ids(tok) - {man.self_token.id}).isdisjoint(ids)
    assert encode_trusted(tok, ["plain text"], man) == encode_untrusted(tok, ["plain text"])


def test_rejects_bad_input(extended):
    tok, _ = extended["gpt2"]
    with pytest.raises(TypeError, match="sequence of strings"):
        encode_untrusted(tok, "one string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encode_untrusted(tok, ["ok", None])
